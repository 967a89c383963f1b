"""Sort orders that are total and the same on every backend, and keyset conditions on them.

NULL sorts as the largest value everywhere (PostgreSQL's own rule): last when ascending, first
when descending. SQLite and MariaDB order NULL the other way, so there nullable columns sort by
`col IS NULL` first (`Backend.nulls_sort_largest`); PostgreSQL needs no such term, which keeps
its indexes usable. An order
ends with the primary key, in the direction of the key before it, so that no two rows tie and
one index on `(col, id)` serves `col` both ways; an order that already reaches a unique NOT NULL
column (a user's email) is total there and ends with it.

A page after a row is a row-value comparison `(a, b, id) > (:a, :b, :id)` when every key runs
the same way and none holds NULL: the form PostgreSQL and SQLite turn into one index range.
Otherwise, and where the backend's planner reads the whole index for a row value (MariaDB:
`Backend.row_value_keyset`), the lexicographic rule is spelled out, with a bound on the first key
that an index range starts from.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, false, or_, tuple_

from app.db.errors import InvalidQueryError
from app.dialects import Backend
from app.repositories._shapes import kept
from app.repositories._values import Rules, field_column


@dataclass(frozen=True)
class SortKey:
    """One column of a sort order."""

    name: str
    descending: bool
    nullable: bool

    @property
    def spec(self) -> str:
        return f"-{self.name}" if self.descending else self.name


def sort_keys(
    rules: Rules, order_by: Sequence[str] | str | None, *, allowed: Collection[str]
) -> tuple[SortKey, ...]:
    """`["-created_at", "title"]` as sort keys, completed to a total order; worked out once
    per table, order and allowed fields (every page of a list asks again)."""
    if isinstance(order_by, str):
        order_by = (order_by,)
    specs = () if order_by is None else order_by
    if (
        isinstance(specs, list | tuple)
        and all(type(spec) is str for spec in specs)
        and isinstance(allowed, frozenset)
    ):
        # Only a valid order is kept: a refused one raises from `build`, every time.
        shape = (rules.table, tuple(specs), allowed)
        return kept(_total_orders, shape, lambda: _total_order(rules, specs, allowed))
    return _total_order(rules, order_by, allowed)


_total_orders: dict[tuple[Any, ...], tuple[SortKey, ...]] = {}


def _total_order(
    rules: Rules, order_by: Sequence[str] | None, allowed: Collection[str]
) -> tuple[SortKey, ...]:
    if order_by is not None and not isinstance(order_by, Sequence):
        raise InvalidQueryError(
            f"order_by must be a list of field names, not {type(order_by).__name__}"
        )
    keys: list[SortKey] = []
    for spec in order_by or ():
        if not isinstance(spec, str) or not spec:
            raise InvalidQueryError(f"cannot sort {rules.name} by a {type(spec).__name__}")
        descending = spec.startswith("-")
        name = spec[1:] if descending else spec
        field_column(rules, name, allowed, "sort")
        if any(key.name == name for key in keys):
            raise InvalidQueryError(f"{name!r} appears twice in order_by")
        keys.append(SortKey(name, descending, name in rules.nullable))
        if name in rules.unique_single:
            return tuple(keys)  # total already: later keys could never break a tie
    descending = keys[-1].descending if keys else False
    for name in rules.primary_key:
        if all(key.name != name for key in keys):
            keys.append(SortKey(name, descending, nullable=False))
    return tuple(keys)


def order_terms(rules: Rules, keys: Sequence[SortKey], backend: Backend) -> list[Any]:
    """ORDER BY terms for `keys`, with NULL the largest value on every backend."""
    terms: list[Any] = []
    for key in keys:
        column = rules.table.c[key.name]
        if key.nullable and not backend.nulls_sort_largest:
            is_null = column.is_(None)
            terms.append(is_null.desc() if key.descending else is_null.asc())
        terms.append(column.desc() if key.descending else column.asc())
    return terms


def after(
    rules: Rules, keys: Sequence[SortKey], nulls: Sequence[bool], backend: Backend
) -> ColumnElement[bool]:
    """Rows that come strictly after a row whose sort values are the parameters
    `after_parameters` names; `nulls` says which of those values are NULL (a NULL is compared
    with IS, so it changes the condition's form, never its parameters)."""
    columns = [rules.table.c[key.name] for key in keys]
    bounds = [_bound(column, i) for i, column in enumerate(columns)]
    one_way = len({key.descending for key in keys}) == 1
    if (
        backend.row_value_keyset
        and one_way
        and not any(key.nullable for key in keys)
        and not any(nulls)
    ):
        row, at = tuple_(*columns), tuple_(*bounds)
        return row < at if keys[0].descending else row > at
    condition = _lexicographic(columns, keys, bounds, nulls)
    first = keys[0]
    if first.nullable or nulls[0]:
        return condition
    # Redundant, but it gives the planner the start of an index range on the first key.
    bound = columns[0] <= bounds[0] if first.descending else columns[0] >= bounds[0]
    return and_(bound, condition)


def after_parameters(values: Sequence[Any]) -> dict[str, Any]:
    """The parameters of `after` for the row whose sort values are `values`."""
    return {_PARAMETER + str(i): value for i, value in enumerate(values) if value is not None}


_PARAMETER = "app_after_"


def _bound(column: Any, position: int) -> Any:
    # A parameter of the column's type, so each value is bound as its column's (an enum member
    # as its stored text; a bare True or False would otherwise become SQL's constant, which
    # SQLAlchemy compares with `=` and `!=` only).
    return bindparam(_PARAMETER + str(position), type_=column.type)


def _lexicographic(
    columns: Sequence[Any], keys: Sequence[SortKey], bounds: Sequence[Any], nulls: Sequence[bool]
) -> ColumnElement[bool]:
    """Equal on the first i keys and after on key i, for some i."""
    alternatives = []
    for i, key in enumerate(keys):
        equal_before = [
            column.is_(None) if null else column == bound
            for column, bound, null in zip(columns[:i], bounds[:i], nulls[:i], strict=True)
        ]
        alternatives.append(and_(*equal_before, _beyond(columns[i], key, bounds[i], nulls[i])))
    return or_(*alternatives)


def _beyond(column: Any, key: SortKey, bound: Any, null: bool) -> ColumnElement[bool]:
    condition: ColumnElement[bool]
    if key.descending:
        # Descending: NULLs come first, then values from high to low.
        condition = column.is_not(None) if null else column < bound
        return condition
    # Ascending: values from low to high, then NULLs (nothing comes after a NULL).
    if null:
        return false()
    after_value = column > bound
    return or_(after_value, column.is_(None)) if key.nullable else after_value
