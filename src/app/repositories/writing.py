"""Writing: create, update, delete, and the bulk paths (create_many, upsert, upsert_many)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, select

from app.db.bulk import bulk_insert
from app.db.errors import InvalidQueryError, StaleObjectError, translating_errors
from app.db.types import utcnow
from app.repositories.core import Data, ModelT, batches
from app.repositories.reading import ReadingMixin
from app.repositories.upserts import check_conflict_target, upsert_statement

DEFAULT_BATCH_SIZE = 1000


class WritingMixin(ReadingMixin[ModelT]):
    """The writing half of a repository: it adds and flushes, never commits."""

    def create(self, data: Data) -> ModelT:
        """Add a row and flush it, so its id and defaults are set."""
        values = self._values(data, writable=self._creatable)
        instance = self.model(**values)
        self.session.add(instance)
        self._flush(values)
        return instance

    def update(
        self, id: uuid.UUID | str, data: Data, *, expected_version: int | None = None
    ) -> ModelT:
        """Change the given fields; a row changed by someone else since it was read is stale.

        `expected_version` is the version the caller last saw (for example in a form sent to a
        browser): a row at any other version is stale without writing anything.
        """
        values = self._values(data, writable=self._updatable)
        instance = self.get_one(id)
        current = getattr(instance, "version", None)
        if expected_version is not None and current != expected_version:
            raise StaleObjectError(
                f"the {self._entity} is at version {current}, not version {expected_version}: "
                "someone changed it since it was read; load it again and retry"
            )
        for name, value in values.items():
            setattr(instance, name, value)
        self._flush(values)
        return instance

    def delete(self, id: uuid.UUID | str) -> None:
        """Delete the row (and, through the database, what it owns)."""
        instance = self.get_one(id)
        self.session.delete(instance)
        self._flush()

    def create_many(self, rows: Iterable[Data], *, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
        """Insert rows in bulk, one COPY or executemany per batch; returns how many were inserted.

        `rows` may be any iterable: it is consumed one batch at a time. Ids and timestamps are
        filled in Python as `create` does. The rows skip the ORM: objects already in the
        session are not refreshed.
        """
        columns = tuple(self._table.columns.keys())
        inserted = 0
        self._flush()
        for batch in batches(rows, batch_size):
            values = self._complete_rows(batch, columns, utcnow())
            single = dict(zip(columns, values[0], strict=True)) if len(values) == 1 else None
            with translating_errors(model=self.model, values=single):
                bulk_insert(self.session.connection(), self._table, columns, values)
            inserted += len(values)
        return inserted

    def upsert(self, data: Data, *, conflict: Sequence[str] = ("email",)) -> ModelT:
        """Insert the row, or update the one that has the same `conflict` values, atomically.

        On update the given fields change, `version` advances and `updated_at` moves; the id
        and `created_at` stay.
        """
        target = check_conflict_target(self._table, conflict)
        (row,) = self._upsert_batch([data], target)
        keys = dict(zip(self._table.columns.keys(), row, strict=True))
        statement = select(self.model).where(
            and_(*(getattr(self.model, name) == keys[name] for name in target))
        )
        with translating_errors(model=self.model):
            found: ModelT = self.session.scalars(
                statement.execution_options(populate_existing=True)
            ).one()
        return found

    def upsert_many(
        self,
        rows: Iterable[Data],
        *,
        conflict: Sequence[str] = ("email",),
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> int:
        """`upsert` for many rows, streamed in batches; returns how many rows were sent."""
        target = check_conflict_target(self._table, conflict)
        written = 0
        for batch in batches(rows, batch_size):
            written += len(self._upsert_batch(batch, target))
        return written

    def _upsert_batch(self, batch: list[Data], target: tuple[str, ...]) -> list[tuple[Any, ...]]:
        self._flush()
        columns = tuple(self._table.columns.keys())
        rows = self._complete_rows(batch, columns, utcnow())
        missing = [name for name in target if any(row[columns.index(name)] is None for row in rows)]
        if missing:
            raise InvalidQueryError(f"upsert needs a value for {', '.join(missing)} in every row")
        statement = upsert_statement(
            self.session.get_bind().dialect.name, self._table, columns, target
        )
        params = [dict(zip(columns, row, strict=True)) for row in rows]
        with translating_errors(model=self.model, values=params[0] if len(params) == 1 else None):
            self.session.execute(statement, params)
        return rows
