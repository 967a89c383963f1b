"""Statement builders, kept apart from execution so sync and async repositories share them.

Field names that come from callers are checked against the columns a repository allows;
values only ever travel as bound parameters.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, and_, func, inspect, select
from sqlalchemy.orm import InstrumentedAttribute

from app.db.errors import InvalidQueryError

MAX_LIMIT = 1000


@cache
def column_names(model: type[Any]) -> frozenset[str]:
    """The mapped column attribute names of `model`."""
    return frozenset(attr.key for attr in inspect(model).column_attrs)


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


def coerce(model: type[Any], name: str, value: Any) -> Any:
    """A caller's value made fit for the column: ids given as text become UUIDs."""
    if value is not None and name in uuid_columns(model):
        return as_uuid(value)
    return value


def uuid_columns(model: type[Any]) -> frozenset[str]:
    """The names of `model`'s UUID columns."""
    return _uuid_columns(model.__table__)


@cache
def _uuid_columns(table: Table) -> frozenset[str]:
    return frozenset(column.key for column in table.columns if _python_type(column) is uuid.UUID)


def _python_type(column: Any) -> type | None:
    try:
        python_type: type = column.type.python_type
    except NotImplementedError:
        return None
    return python_type


def _column(model: type[Any], name: str, allowed: Collection[str], purpose: str) -> Any:
    if not isinstance(name, str) or name not in allowed:
        raise InvalidQueryError(
            f"cannot {purpose} {model.__name__} by {name!r}; allowed fields: "
            + ", ".join(sorted(allowed))
        )
    attribute: InstrumentedAttribute[Any] = getattr(model, name)
    return attribute


def where_clause(
    model: type[Any], where: Mapping[str, Any] | None, *, allowed: Collection[str]
) -> ColumnElement[bool] | None:
    """AND of `column = value` for each entry (`None` matches IS NULL)."""
    if not where:
        return None
    conditions: list[ColumnElement[bool]] = []
    for name, value in where.items():
        column = _column(model, name, allowed, "filter")
        value = coerce(model, name, value)
        conditions.append(column.is_(None) if value is None else column == value)
    return and_(*conditions)


def order_clauses(
    model: type[Any], order_by: Sequence[str] | str | None, *, allowed: Collection[str]
) -> list[ColumnElement[Any]]:
    """ORDER BY terms for `["-created_at", "title"]`, ended by the primary key for a total order."""
    if isinstance(order_by, str):
        order_by = [order_by]
    terms: list[ColumnElement[Any]] = []
    seen: set[str] = set()
    for spec in order_by or ():
        if not isinstance(spec, str) or not spec:
            raise InvalidQueryError(f"cannot sort {model.__name__} by {spec!r}")
        descending = spec.startswith("-")
        name = spec[1:] if descending else spec
        column = _column(model, name, allowed, "sort")
        seen.add(name)
        terms.append(column.desc() if descending else column.asc())
    for key_column in inspect(model).primary_key:
        if key_column.key not in seen:
            terms.append(getattr(model, key_column.key).asc())
    return terms


def check_page(limit: int, offset: int = 0) -> None:
    """Refuse limits outside 1..MAX_LIMIT and negative offsets."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidQueryError(f"limit must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidQueryError(f"offset must be an integer of 0 or more, got {offset!r}")


def select_page(
    model: type[Any],
    *,
    where: Mapping[str, Any] | None,
    order_by: Sequence[str] | str | None,
    limit: int,
    offset: int,
    filterable: Collection[str],
    sortable: Collection[str],
) -> Select[Any]:
    """SELECT of one offset page of `model` rows."""
    check_page(limit, offset)
    statement = select(model)
    condition = where_clause(model, where, allowed=filterable)
    if condition is not None:
        statement = statement.where(condition)
    return (
        statement.order_by(*order_clauses(model, order_by, allowed=sortable))
        .limit(limit)
        .offset(offset)
    )


def select_count(
    model: type[Any], *, where: Mapping[str, Any] | None, filterable: Collection[str]
) -> Select[int]:
    """SELECT COUNT(*) of the `model` rows matching `where`."""
    statement = select(func.count()).select_from(model)
    condition = where_clause(model, where, allowed=filterable)
    return statement if condition is None else statement.where(condition)


def select_exists(
    model: type[Any], *, where: Mapping[str, Any] | None, filterable: Collection[str]
) -> Select[bool]:
    """SELECT EXISTS(...) of the `model` rows matching `where`."""
    inner = select(inspect(model).primary_key[0])
    condition = where_clause(model, where, allowed=filterable)
    if condition is not None:
        inner = inner.where(condition)
    return select(inner.exists())
