"""Which columns a model has, and caller values made fit for them."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection
from functools import cache
from typing import Any

from sqlalchemy import Table, UniqueConstraint, inspect

from app.db.errors import InvalidQueryError


def column_names(model: type[Any]) -> frozenset[str]:
    """The mapped column attribute names of `model`."""
    return _column_names(model.__table__)


@cache
def _column_names(table: Table) -> frozenset[str]:
    return frozenset(column.key for column in table.columns)


def attribute(model: type[Any], name: str, allowed: Collection[str], purpose: str) -> Any:
    """The mapped attribute `name` of `model`, if callers may `purpose` by it."""
    if not isinstance(name, str) or name not in allowed:
        raise InvalidQueryError(
            f"cannot {purpose} {model.__name__} by {name!r}; allowed fields: "
            + ", ".join(sorted(allowed))
        )
    return table_column(model, name)


def table_column(model: type[Any], name: str) -> Any:
    """The table column behind field `name`: conditions and orders built from table columns
    serve ORM queries and plain row queries (`iterate`) alike, and the latter stay plain."""
    return model.__table__.c[name]


def as_uuid(value: object) -> uuid.UUID:
    """`value` as a UUID, or `InvalidQueryError` when it is not one."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise InvalidQueryError(f"{value!r} is not a valid id (a UUID)")


# Every integer column of the models is a 32-bit INTEGER on all three backends.
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def coerce(model: type[Any], name: str, value: Any, *, check_length: bool = True) -> Any:
    """A caller's value made fit for the column, or `InvalidQueryError` saying why it is not.

    Ids given as text become UUIDs. Everything else must already be of the column's type, and
    text must hold no NUL character and (when written) fit the column: the same rules on every
    backend, even where the database itself would accept more (SQLite ignores VARCHAR lengths)
    or fail less clearly (PostgreSQL cannot store NUL at all).
    """
    if value is None:
        return None
    kind, length = column_specs(model.__table__)[name]
    if kind is uuid.UUID:
        return as_uuid(value)
    if kind is bool or kind is int:
        if type(value) is not kind:
            raise InvalidQueryError(f"{name} must be {kind.__name__}, got {type(value).__name__}")
        if kind is int and not INT32_MIN <= value <= INT32_MAX:
            raise InvalidQueryError(f"{name} is out of range (a 32-bit integer)")
    elif kind is str:
        if not isinstance(value, str):
            raise InvalidQueryError(f"{name} must be text, got {type(value).__name__}")
        if "\x00" in value:
            raise InvalidQueryError(f"{name} cannot contain NUL characters")
        if check_length and length is not None and len(value) > length:
            raise InvalidQueryError(f"{name} is longer than {length} characters ({len(value)})")
    elif kind is dt.datetime:
        if not isinstance(value, dt.datetime):
            raise InvalidQueryError(f"{name} must be a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidQueryError(f"{name} must be timezone-aware (for example datetime.UTC)")
    return value


def column_kind(model: type[Any], name: str) -> type | None:
    """The Python type of the column `name` of `model`."""
    return column_specs(model.__table__)[name][0]


@cache
def column_specs(table: Table) -> dict[str, tuple[type | None, int | None]]:
    return {
        column.key: (python_type(column), getattr(column.type, "length", None))
        for column in table.columns
    }


def python_type(column: Any) -> type | None:
    """The Python type a column's values come back as, where SQLAlchemy knows it."""
    try:
        found: type = column.type.python_type
    except NotImplementedError:
        return None
    return found


def nullable(model: type[Any], name: str) -> bool:
    """Whether the column `name` of `model` may hold NULL."""
    return bool(model.__table__.columns[name].nullable)


def unique_and_required(model: type[Any], name: str) -> bool:
    """Whether column `name` alone is a unique key that holds no NULL: no two rows tie on it."""
    return name in _unique_required(model.__table__)


@cache
def _unique_required(table: Table) -> frozenset[str]:
    keys = [c.columns for c in table.constraints if isinstance(c, UniqueConstraint)]
    keys += [index.columns for index in table.indexes if index.unique]
    return frozenset(
        next(iter(columns)).key
        for columns in keys
        if len(columns) == 1 and not next(iter(columns)).nullable
    )


def primary_key(model: type[Any]) -> list[str]:
    """The attribute names of `model`'s primary key columns."""
    return [column.key for column in inspect(model).primary_key]


def from_json(model: type[Any], name: str, value: Any) -> Any:
    """A value read back from a cursor's JSON, as the column's Python type."""
    if value is None:
        return None
    kind = python_type(model.__table__.columns[name])
    if kind is uuid.UUID:
        return as_uuid(value)
    if kind is dt.datetime and isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    if kind is not None and not isinstance(value, kind):
        raise InvalidQueryError(f"cursor value for {name!r} has the wrong type")
    return value


def to_json(value: Any) -> Any:
    """A column value as something JSON can carry (and `from_json` can read back)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value
