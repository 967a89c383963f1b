"""A generic repository: CRUD for one model on a session it is given. It never commits."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import Table
from sqlalchemy.orm import Session

from app.db.bulk import bulk_insert
from app.db.errors import (
    InvalidQueryError,
    NotFoundError,
    StaleObjectError,
    translating_errors,
)
from app.db.models import Base
from app.db.types import new_id, utcnow
from app.repositories import queries

ModelT = TypeVar("ModelT", bound=Base)

Data = Mapping[str, Any] | BaseModel

DEFAULT_BATCH_SIZE = 1000

# Columns the data layer owns: callers never write them directly.
_MANAGED_ON_CREATE = frozenset({"version"})
_MANAGED_ON_UPDATE = frozenset({"id", "version", "created_at", "updated_at"})


class Repository(Generic[ModelT]):
    """CRUD for `model`, bound to a session; adds and flushes, never commits."""

    model: type[ModelT]
    # Fields callers may filter and sort by; None means every column.
    filterable_fields: ClassVar[frozenset[str] | None] = None
    sortable_fields: ClassVar[frozenset[str] | None] = None

    def __init__(self, session: Session) -> None:
        self.session = session

    # -- reading ---------------------------------------------------------------------------

    def get(self, id: uuid.UUID | str) -> ModelT | None:
        """The row with this primary key, or None."""
        with translating_errors(model=self.model):
            return self.session.get(self.model, queries.as_uuid(id))

    def get_one(self, id: uuid.UUID | str) -> ModelT:
        """The row with this primary key, or `NotFoundError`."""
        found = self.get(id)
        if found is None:
            raise NotFoundError(f"no {self._entity} with id {str(id)!r}")
        return found

    def list(
        self,
        *,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] | str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[ModelT]:
        """One page of rows matching `where`, in a total order (the primary key breaks ties)."""
        statement = queries.select_page(
            self.model,
            where=self._checked_where(where),
            order_by=order_by,
            limit=limit,
            offset=offset,
            filterable=self._filterable,
            sortable=self._sortable,
        )
        with translating_errors(model=self.model):
            return list(self.session.scalars(statement))

    def count(self, *, where: Mapping[str, Any] | None = None) -> int:
        """How many rows match `where`."""
        statement = queries.select_count(
            self.model, where=self._checked_where(where), filterable=self._filterable
        )
        with translating_errors(model=self.model):
            return int(self.session.scalar(statement) or 0)

    def exists(self, *, where: Mapping[str, Any] | None = None) -> bool:
        """Whether any row matches `where`."""
        statement = queries.select_exists(
            self.model, where=self._checked_where(where), filterable=self._filterable
        )
        with translating_errors(model=self.model):
            return bool(self.session.scalar(statement))

    # -- writing ---------------------------------------------------------------------------

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
        self._flush({})

    def create_many(self, rows: Iterable[Data], *, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
        """Insert rows in bulk, one COPY or executemany per batch; returns how many were inserted.

        Rows are streamed: only one batch is held in memory. Ids and timestamps are filled
        in Python as `create` does. The rows skip the ORM: objects already in the session
        are not refreshed, and `updated_at` is the same for a whole batch.
        """
        if batch_size < 1:
            raise InvalidQueryError(f"batch_size must be at least 1, got {batch_size!r}")
        table: Table = self.model.__table__  # type: ignore[assignment]
        columns = tuple(table.columns.keys())
        inserted = 0
        with translating_errors(model=self.model):
            self.session.flush()
        for batch in _batches(rows, batch_size):
            template = self._row_template(table, utcnow())
            values = []
            for row in batch:
                # Every row gets every column, so the batch is one COPY or executemany.
                complete = {**template, **self._values(row, writable=self._creatable)}
                if complete["id"] is None:
                    complete["id"] = new_id()
                values.append(tuple(complete[name] for name in columns))
            single = dict(zip(columns, values[0], strict=True)) if len(values) == 1 else None
            with translating_errors(model=self.model, values=single):
                bulk_insert(self.session.connection(), table, columns, values)
            inserted += len(values)
        return inserted

    # -- hooks and helpers -----------------------------------------------------------------

    def prepare(self, values: dict[str, Any]) -> dict[str, Any]:
        """Normalise incoming values before they are written (subclasses override)."""
        return values

    @property
    def _entity(self) -> str:
        return self.model.__name__.lower()

    @property
    def _columns(self) -> frozenset[str]:
        return queries.column_names(self.model)

    @property
    def _filterable(self) -> frozenset[str]:
        return self.filterable_fields if self.filterable_fields is not None else self._columns

    @property
    def _sortable(self) -> frozenset[str]:
        return self.sortable_fields if self.sortable_fields is not None else self._columns

    @property
    def _creatable(self) -> frozenset[str]:
        return self._columns - _MANAGED_ON_CREATE

    @property
    def _updatable(self) -> frozenset[str]:
        return self._columns - _MANAGED_ON_UPDATE

    def _values(self, data: Data, *, writable: frozenset[str]) -> dict[str, Any]:
        if isinstance(data, BaseModel):
            values = data.model_dump(exclude_unset=True)
        elif isinstance(data, Mapping):
            values = dict(data)
        else:
            raise InvalidQueryError(
                f"{self._entity} data must be a mapping or a pydantic model, "
                f"not {type(data).__name__}"
            )
        unknown = [name for name in values if name not in writable]
        if unknown:
            raise InvalidQueryError(
                f"{self.model.__name__} has no writable field {', '.join(map(repr, unknown))}; "
                f"writable fields: {', '.join(sorted(writable))}"
            )
        for name in queries.uuid_columns(self.model).intersection(values):
            values[name] = queries.coerce(self.model, name, values[name])
        return self.prepare(values)

    def _checked_where(self, where: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        if where is None:
            return None
        if not isinstance(where, Mapping):
            raise InvalidQueryError(f"where must be a mapping, not {type(where).__name__}")
        return where

    def _row_template(self, table: Table, now: dt.datetime) -> dict[str, Any]:
        """Values for the columns a bulk row leaves out: what `create` would have filled in."""
        template: dict[str, Any] = {}
        for column in table.columns:
            if column.key in ("created_at", "updated_at"):
                template[column.key] = now
            elif column.key == "version":
                template[column.key] = 1
            elif column.default is not None and column.default.is_scalar:
                template[column.key] = column.default.arg  # type: ignore[attr-defined]
            else:
                template[column.key] = None
        return template

    def _flush(self, values: Mapping[str, Any]) -> None:
        with translating_errors(model=self.model, values=values):
            self.session.flush()


def _batches(rows: Iterable[Data], size: int) -> Iterator[list[Data]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch
