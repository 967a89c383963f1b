"""What every repository method shares: the model, the session, and the rules for fields."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cache
from itertools import islice
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import Table
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db.errors import InvalidQueryError, translating_errors
from app.db.models import Base
from app.db.types import new_id
from app.repositories.columns import coerce, column_names
from app.repositories.routing import refuse_writes_when_read_only

ModelT = TypeVar("ModelT", bound=Base)

Data = Mapping[str, Any] | BaseModel

# Columns the data layer owns: callers never write them directly.
_MANAGED_ON_CREATE = frozenset({"version"})
_MANAGED_ON_UPDATE = frozenset({"id", "version", "created_at", "updated_at"})


class RepositoryCore(Generic[ModelT]):
    """A model, a session, and which fields callers may write, filter and sort by."""

    model: type[ModelT]
    # Fields callers may filter and sort by; None means every column.
    filterable_fields: ClassVar[frozenset[str] | None] = None
    sortable_fields: ClassVar[frozenset[str] | None] = None

    def __init__(self, session: Session, *, cursor_key: bytes | None = None) -> None:
        self.session = session
        self._cursor_key = cursor_key

    def prepare(self, values: dict[str, Any]) -> dict[str, Any]:
        """Normalise incoming values before they are written (subclasses override)."""
        return values

    def prepare_columns(self, columns: dict[str, list[Any]]) -> bool:
        """`prepare` for a batch given column by column (create_many's fast path), in place.

        A subclass that overrides `prepare` overrides this too, or its batches go row by row
        (returning False says so).
        """
        return type(self).prepare is RepositoryCore.prepare

    @property
    def cursor_key(self) -> bytes:
        """The key that signs pagination cursors (SECRET_KEY unless given)."""
        if self._cursor_key is None:
            self._cursor_key = get_settings().secret_key.get_secret_value().encode()
        return self._cursor_key

    @property
    def _entity(self) -> str:
        return self.model.__name__.lower()

    @property
    def _dialect(self) -> str:
        """The session's database: `postgresql`, `mysql` (MariaDB) or `sqlite`."""
        return str(self.session.get_bind().dialect.name)

    @property
    def _table(self) -> Table:
        table: Table = self.model.__table__  # type: ignore[assignment]
        return table

    @property
    def _columns(self) -> frozenset[str]:
        return column_names(self.model)

    @property
    def _filterable(self) -> frozenset[str]:
        return self.filterable_fields if self.filterable_fields is not None else self._columns

    @property
    def _sortable(self) -> frozenset[str]:
        return self.sortable_fields if self.sortable_fields is not None else self._columns

    @property
    def _required_columns(self) -> frozenset[str]:
        return _required(self._table)

    @property
    def _creatable(self) -> frozenset[str]:
        return _writable(self._table, _MANAGED_ON_CREATE)

    @property
    def _updatable(self) -> frozenset[str]:
        return _writable(self._table, _MANAGED_ON_UPDATE)

    def _new_row_values(self, data: Data) -> dict[str, Any]:
        """The values of a new row, checked; every column without a default must be given."""
        values = self._values(data, writable=self._creatable)
        required = _required(self._table)
        if not required <= values.keys():
            absent = required - values.keys()
            missing = [column.key for column in self._table.columns if column.key in absent]
            raise InvalidQueryError(
                f"a new {self._entity} needs {', '.join(missing)}; "
                f"given: {', '.join(sorted(values)) or 'nothing'}"
            )
        return values

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
        required = _not_nullable(self._table)
        for name, value in values.items():
            if value is None and name in required:
                raise InvalidQueryError(f"{self.model.__name__}.{name} cannot be null")
            values[name] = coerce(self.model, name, value)
        return self.prepare(values)

    def _complete_rows(
        self, checked: Sequence[Mapping[str, Any]], columns: tuple[str, ...], now: dt.datetime
    ) -> list[tuple[Any, ...]]:
        """Whole rows, as `create` would write them: every column, ids and timestamps filled.

        `checked` are values that `_new_row_values` returned.
        """
        template = self._row_template(now)
        rows = []
        for values in checked:
            complete = {**template, **values}
            if complete["id"] is None:
                complete["id"] = new_id()
            rows.append(tuple(complete[name] for name in columns))
        return rows

    def _row_template(self, now: dt.datetime) -> dict[str, Any]:
        """Values for the columns a bulk row leaves out: what `create` would have filled in."""
        template: dict[str, Any] = {}
        for column in self._table.columns:
            if column.key in ("created_at", "updated_at"):
                template[column.key] = now
            elif column.key == "version":
                template[column.key] = 1
            elif column.default is not None and column.default.is_scalar:
                template[column.key] = column.default.arg  # type: ignore[attr-defined]
            else:
                template[column.key] = None
        return template

    def _flush(self) -> None:
        # Every write starts here, bulk ones included: the read-only guard holds for them all.
        refuse_writes_when_read_only(self.session)
        with translating_errors(model=self.model):
            self.session.flush()


@cache
def _not_nullable(table: Table) -> frozenset[str]:
    return frozenset(column.key for column in table.columns if not column.nullable)


@cache
def _required(table: Table) -> frozenset[str]:
    """Columns a new row must be given: NOT NULL, with no default of ours or the database's."""
    return frozenset(
        column.key
        for column in table.columns
        if not column.nullable and column.default is None and column.server_default is None
    )


@cache
def _writable(table: Table, managed: frozenset[str]) -> frozenset[str]:
    return frozenset(table.columns.keys()) - managed


def check_batch_size(size: int) -> None:
    """Refuse batch sizes that are not a whole number of at least 1."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidQueryError(f"batch_size must be an integer of at least 1, got {size!r}")


def batches(rows: Iterable[Data], size: int) -> Iterator[list[Data]]:
    """`rows` in lists of at most `size`, pulled lazily."""
    check_batch_size(size)
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch
