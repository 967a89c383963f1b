"""Statement builders, kept apart from execution so sync and async repositories share them."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, func, over, select
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.interfaces import LoaderOption

from app.db.errors import InvalidQueryError
from app.repositories.columns import primary_key
from app.repositories.filters import where_clause
from app.repositories.ordering import SortKey, after, order_terms

MAX_LIMIT = 1000


def check_limit(limit: int) -> None:
    """Refuse limits outside 1..MAX_LIMIT."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidQueryError(f"limit must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")


def check_offset(offset: int) -> None:
    """Refuse negative offsets."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidQueryError(f"offset must be an integer of 0 or more, got {offset!r}")


def loader_options(model: type[Any], load: Sequence[str] | None) -> list[LoaderOption]:
    """selectin loading of the named relationships (checked against the model's)."""
    if not load:
        return []
    if isinstance(load, str):
        load = [load]
    relationships = model.__mapper__.relationships
    unknown = [name for name in load if name not in relationships]
    if unknown:
        raise InvalidQueryError(
            f"{model.__name__} has no relationship {', '.join(map(repr, unknown))}; "
            f"relationships: {', '.join(sorted(relationships.keys())) or 'none'}"
        )
    return [selectinload(getattr(model, name)) for name in load]


def select_rows(
    model: type[Any],
    *,
    where: Mapping[str, Any] | None,
    keys: Sequence[SortKey],
    filterable: Collection[str],
    dialect: str,
    load: Sequence[str] | None = None,
    after_values: Sequence[Any] | None = None,
    plain: bool = False,
) -> Select[Any]:
    """SELECT of `model` rows matching `where`, in the order of `keys`, optionally after a row;
    with `plain`, of the table's columns only (rows, not instances)."""
    if plain:
        statement = select(*model.__table__.columns)
    else:
        statement = select(model).options(*loader_options(model, load))
    condition = where_clause(model, where, allowed=filterable)
    if condition is not None:
        statement = statement.where(condition)
    if after_values is not None:
        statement = statement.where(after(model, keys, after_values, dialect))
    return statement.order_by(*order_terms(model, keys, dialect))


def select_by_key(model: type[Any], key: Any, *, load: Sequence[str] | None) -> Select[Any]:
    """SELECT of the `model` row with primary key `key`, loading the named relationships."""
    column = getattr(model, primary_key(model)[0])
    return select(model).options(*loader_options(model, load)).where(column == key)


def with_total(statement: Select[Any]) -> Select[Any]:
    """The same SELECT, each row also carrying the count of all matching rows (one scan)."""
    return statement.add_columns(over(func.count()).label("total_count"))


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
    inner = select(getattr(model, primary_key(model)[0]))
    condition: ColumnElement[bool] | None = where_clause(model, where, allowed=filterable)
    if condition is not None:
        inner = inner.where(condition)
    return select(inner.exists())
