"""`where` filters: `{"field": v}` or `{"field__op": v}`, combined with AND.

Field names and operators are checked against what the repository allows; values are bound
parameters, and LIKE patterns are escaped so `%` and `_` match themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from sqlalchemy import ColumnElement, and_, not_

from app.db.errors import InvalidQueryError
from app.repositories._values import Rules, coerce, field


def _text(op: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidQueryError(f"{op} needs a string, got {type(value).__name__}")
    if "\x00" in value:
        raise InvalidQueryError(f"{op} cannot match NUL characters")
    return value


def _many(op: str, value: Any) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Collection):
        raise InvalidQueryError(f"{op} needs a list of values, got {type(value).__name__}")
    return list(value)


def _is_null(column: Any, value: Any) -> ColumnElement[bool]:
    if not isinstance(value, bool):
        raise InvalidQueryError(f"is_null needs true or false, got {value!r}")
    condition: ColumnElement[bool] = column.is_(None) if value else column.is_not(None)
    return condition


Operator = Callable[[Any, Any], ColumnElement[bool]]

OPERATORS: dict[str, Operator] = {
    "eq": lambda c, v: c.is_(None) if v is None else c == v,
    "ne": lambda c, v: c.is_not(None) if v is None else (c != v) | c.is_(None),
    "lt": lambda c, v: c < v,
    "le": lambda c, v: c <= v,
    "gt": lambda c, v: c > v,
    "ge": lambda c, v: c >= v,
    "in": lambda c, v: c.in_(_many("in", v)),
    "not_in": lambda c, v: not_(c.in_(_many("not_in", v))) | c.is_(None),
    "is_null": _is_null,
    "contains": lambda c, v: c.contains(_text("contains", v), autoescape=True),
    "icontains": lambda c, v: c.icontains(_text("icontains", v), autoescape=True),
    "startswith": lambda c, v: c.startswith(_text("startswith", v), autoescape=True),
    "istartswith": lambda c, v: c.istartswith(_text("istartswith", v), autoescape=True),
}
# Comparisons with NULL are never true in SQL; refusing them beats a silently empty result.
_NEEDS_VALUE = {"lt", "le", "gt", "ge"}
_TAKES_MANY = {"in", "not_in"}
_TAKES_TEXT = {"contains", "icontains", "startswith", "istartswith"}


def split_key(key: str) -> tuple[str, str]:
    """`"title__icontains"` -> `("title", "icontains")`; a bare field means `eq`."""
    if not isinstance(key, str):
        raise InvalidQueryError(f"filter keys are strings, got {key!r}")
    name, sep, op = key.rpartition("__")
    return (name, op) if sep else (key, "eq")


def where_clause(
    rules: Rules, where: Mapping[str, Any] | None, *, allowed: Collection[str]
) -> ColumnElement[bool] | None:
    """The AND of every condition in `where`, or None when there is none."""
    if where is None:
        return None
    if not isinstance(where, Mapping):
        raise InvalidQueryError(f"where must be a mapping, not {type(where).__name__}")
    conditions = []
    for key, value in where.items():
        name, op = split_key(key)
        if op not in OPERATORS:
            raise InvalidQueryError(
                f"unknown operator {op!r} in {key!r}; operators: {', '.join(OPERATORS)}"
            )
        column = field(rules, name, allowed, "filter")
        if op in _TAKES_TEXT and rules.kind(name) is not str:
            raise InvalidQueryError(f"{op} works on text fields; {name!r} is not one")
        if op in _NEEDS_VALUE and value is None:
            raise InvalidQueryError(f"{key!r} needs a value, not None (use {name}__is_null)")
        if op in _TAKES_MANY:
            value = [coerce(rules, name, item, check_length=False) for item in _many(op, value)]
        elif op not in _TAKES_TEXT and op != "is_null":
            value = coerce(rules, name, value, check_length=False)
        conditions.append(OPERATORS[op](column, value))
    return and_(*conditions) if conditions else None
