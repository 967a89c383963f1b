"""Writing: create, update, delete, and the bulk paths (create_many, upsert, upsert_many)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, cast

from sqlalchemy import Connection, and_, select

from app.db.bulk import Batch, execute_for_columns, insert_batches
from app.db.errors import (
    ConflictError,
    InvalidQueryError,
    StaleObjectError,
    constraint_for_columns,
    translating_errors,
)
from app.db.types import utcnow
from app.repositories.batch_columns import complete_columns
from app.repositories.core import Data, ModelT, batches
from app.repositories.reading import ReadingMixin
from app.repositories.upsert_rounds import Prepared, UniformUpsert, upsert_in_rounds
from app.repositories.upserts import (
    check_conflict_target,
    conflicting_key,
    other_keys_given,
    upsert_statement,
)

DEFAULT_BATCH_SIZE = 1000


class WritingMixin(ReadingMixin[ModelT]):
    """The writing half of a repository: it adds and flushes, never commits."""

    def create(self, data: Data) -> ModelT:
        """Add a row and flush it, so its id and defaults are set."""
        values = self._new_row_values(data)
        instance = self.model(**values)
        self.session.add(instance)
        self._flush()
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
                "someone changed it since it was read; load it again and retry",
                lost_race=False,
            )
        for name, value in values.items():
            setattr(instance, name, value)
        self._flush()
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
        session are not refreshed. A call that fails stores none of its rows.
        """
        self._flush()
        prepared = (self._bulk_batch(batch) for batch in batches(rows, batch_size))
        with translating_errors(model=self.model), self._all_or_nothing() as connection:
            return insert_batches(connection, self._table, prepared)

    @contextmanager
    def _all_or_nothing(self) -> Iterator[Connection]:
        """A savepoint around a bulk call: one that fails stores none of its rows, on every
        backend (SQLite's executemany and MariaDB's statements of a megabyte store row by
        row, statement by statement), and the caller's transaction goes on."""
        with self.session.begin_nested():
            yield self.session.connection()

    def _bulk_batch(self, batch: list[Data]) -> Batch:
        """One batch of new rows, checked and completed: column by column when it is uniform."""
        now = utcnow()
        uniform = complete_columns(self, batch, now)
        if uniform is not None:
            return Batch(len(batch), columns=uniform[0], stored_as_is=uniform[1])
        columns = tuple(self._table.columns.keys())
        checked = [self._new_row_values(row) for row in batch]
        return Batch(len(batch), rows=self._complete_rows(checked, columns, now))

    def upsert(self, data: Data, *, conflict: Sequence[str] = ("email",)) -> ModelT:
        """Insert the row, or update the one that has the same `conflict` values, atomically.

        On update only the given fields change, `version` advances and `updated_at` moves; the
        id, `created_at` and every field left out stay as stored. A row whose other unique
        values (an id, an email) belong to a different row is a `ConflictError`, and nothing
        is written.
        """
        target = check_conflict_target(self._table, conflict)
        (row,) = self._upsert_batch([data], target)
        statement = select(self.model).where(
            and_(*(getattr(self.model, name) == row[name] for name in target))
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
        """`upsert` for many rows, streamed in batches; returns how many rows were sent.

        Rows may give different sets of fields: each set is one statement per batch. A call
        that fails stores none of its rows.
        """
        target = check_conflict_target(self._table, conflict)
        self._flush()
        written = 0

        def prepared() -> Iterator[Prepared]:
            nonlocal written
            for batch in batches(rows, batch_size):
                written += len(batch)
                yield batch, self._uniform_upsert(batch, target)

        with translating_errors(model=self.model), self._all_or_nothing():
            if self._dialect == "postgresql":
                send = partial(self._send_upsert, target=target)
                upsert_in_rounds(self.session, self._table, target, prepared(), send)
            else:
                for batch, uniform in prepared():
                    self._send_upsert(batch, uniform, target)
        return written

    def _uniform_upsert(self, batch: list[Data], target: tuple[str, ...]) -> UniformUpsert | None:
        """A batch whose rows give the same fields, the target's among them, and no other
        unique key, checked and completed column by column; None for any other batch."""
        if len(batch) < 2:
            return None
        uniform = complete_columns(self, batch, utcnow())
        if uniform is None:
            return None
        columns, stored_as_is = uniform
        given: frozenset[str] = frozenset(cast("dict[str, Any]", batch[0]))
        if not all(name in given for name in target if name != "id"):
            return None
        if other_keys_given(self._table, given, target):
            return None  # the outcome must be checked row by row (`_upsert_group`)
        keys = set(zip(*(columns[name] for name in target), strict=True))
        return UniformUpsert(columns, stored_as_is, given, keys, len(batch))

    def _send_upsert(
        self, batch: list[Data], uniform: UniformUpsert | None, target: tuple[str, ...]
    ) -> None:
        """Upsert one batch: column by column through one compiled statement when it is
        uniform and its columns are plainly the statement's parameters, else row by row."""
        if uniform is not None:
            columns, given = uniform.columns, uniform.given
            statement = upsert_statement(self._dialect, self._table, tuple(columns), target, given)
            connection = self.session.connection()
            if execute_for_columns(
                connection, self._table, statement, columns, uniform.stored_as_is
            ):
                return
        self._upsert_batch(batch, target)

    def _upsert_batch(self, batch: list[Data], target: tuple[str, ...]) -> list[dict[str, Any]]:
        self._flush()
        missing: set[str] = set()
        given_sets: dict[frozenset[str], list[dict[str, Any]]] = {}
        for data in batch:
            values = self._new_row_values(data)
            # An id left out is generated: such a row can only be inserted.
            missing |= {name for name in target if name != "id" and values.get(name) is None}
            given_sets.setdefault(frozenset(values), []).append(values)
        if missing:
            raise InvalidQueryError(
                f"upsert needs a value for {', '.join(sorted(missing))} in every row"
            )
        columns = tuple(self._table.columns.keys())
        now = utcnow()
        sent: list[dict[str, Any]] = []
        for given, group in given_sets.items():
            params = [
                dict(zip(columns, row, strict=True))
                for row in self._complete_rows(group, columns, now)
            ]
            self._upsert_group(params, target, given)
            sent += params
        return sent

    def _upsert_group(
        self, params: list[dict[str, Any]], target: tuple[str, ...], given: frozenset[str]
    ) -> None:
        statement = upsert_statement(self._dialect, self._table, tuple(params[0]), target, given)
        others = other_keys_given(self._table, given, target)
        if not others:
            with translating_errors(model=self.model):
                self.session.execute(statement, params)
            return
        # The rows name another unique key too: check that they met no other row, in a
        # savepoint, so a conflict leaves nothing changed.
        with translating_errors(model=self.model), self.session.begin_nested() as savepoint:
            self.session.execute(statement, params)
            connection = self.session.connection()
            collided = conflicting_key(connection, self._table, params, target, others)
            if collided is not None:
                savepoint.rollback()
        if collided is not None:
            raise ConflictError(
                f"a {self._entity} with this {' and '.join(collided)} already exists",
                constraint=constraint_for_columns(self._table, collided),
                fields=collided,
            )
