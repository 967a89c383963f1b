"""`where` filters: `{"field": v}` or `{"field__op": v}`, combined with AND.

Field names and operators are checked against what the repository allows; values are made fit
for their column (`_values`) and bound as parameters, text matched as the backend can
(`Backend.text_match`: LIKE, its `%` and `_` escaped to match themselves), and a long `in`
list is one parameter where the backend needs it (`Backend.in_values`). A filter of plain
comparisons, null tests and `in` lists a parameter per value is `prepared` for a statement kept
per shape, its values named parameters; any other is built with its values each time.
`canonical` gives the filter in one form whatever the form of its values, for what a cursor is
bound to. A filter used twice in one call (a keyset page's statement and its cursor) is
`checked` once and handed on as `Checked`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, not_, or_

from app.db.errors import InvalidQueryError
from app.dialects import Backend
from app.repositories._column_rules import to_json
from app.repositories._values import Rules, coerce, field_column, shown_name


def _text(op: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidQueryError(f"{op} needs a string, got {type(value).__name__}")
    if "\x00" in value:
        raise InvalidQueryError(f"{op} cannot match NUL characters")
    if not _encodes(value):
        raise InvalidQueryError(f"{op} cannot match a lone surrogate")
    return str.__str__(value)


def _encodes(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _many(op: str, value: Any) -> list[Any]:
    # A mapping would filter on its keys, a string on its characters: neither is meant.
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Collection):
        raise InvalidQueryError(f"{op} needs a list of values, got {type(value).__name__}")
    return list(value)


def _is_null(column: Any, value: Any) -> ColumnElement[bool]:
    if not isinstance(value, bool):
        raise InvalidQueryError(f"is_null needs true or false, got a {type(value).__name__}")
    condition: ColumnElement[bool] = column.is_(None) if value else column.is_not(None)
    return condition


def _listed(values: list[Any]) -> tuple[list[Any], bool]:
    """An `in` list's values other than None, and whether it held None."""
    present = [value for value in values if value is not None]
    return present, len(present) < len(values)


def _in(column: Any, inside: Any, with_null: bool) -> ColumnElement[bool]:
    # As Python's `in`: a None in the list matches NULL, which SQL's IN never does.
    return or_(inside, column.is_(None)) if with_null else inside


def _not_in(column: Any, inside: Any, with_null: bool) -> ColumnElement[bool]:
    # As Python's `not in`: NULL is outside a list without None, inside one with it.
    if with_null:
        return and_(not_(inside), column.is_not(None))
    return or_(not_(inside), column.is_(None))


def _in_values(column: Any, values: list[Any], backend: Backend) -> ColumnElement[bool]:
    present, with_null = _listed(values)
    return _in(column, backend.in_values(column, present), with_null)


def _not_in_values(column: Any, values: list[Any], backend: Backend) -> ColumnElement[bool]:
    present, with_null = _listed(values)
    return _not_in(column, backend.in_values(column, present), with_null)


Operator = Callable[[Any, Any, Backend], ColumnElement[bool]]

OPERATORS: dict[str, Operator] = {
    "eq": lambda c, v, _: c.is_(None) if v is None else c == v,
    "ne": lambda c, v, _: c.is_not(None) if v is None else (c != v) | c.is_(None),
    "lt": lambda c, v, _: c < v,
    "le": lambda c, v, _: c <= v,
    "gt": lambda c, v, _: c > v,
    "ge": lambda c, v, _: c >= v,
    "in": _in_values,
    "not_in": _not_in_values,
    "is_null": lambda c, v, _: _is_null(c, v),
    "contains": lambda c, v, b: b.text_match(c, "contains", v),
    "icontains": lambda c, v, b: b.text_match(c, "icontains", v),
    "startswith": lambda c, v, b: b.text_match(c, "startswith", v),
    "istartswith": lambda c, v, b: b.text_match(c, "istartswith", v),
}
# Comparisons with NULL are never true in SQL; refusing them beats a silently empty result.
_NEEDS_VALUE = {"lt", "le", "gt", "ge"}
_TAKES_MANY = {"in", "not_in"}
_TAKES_TEXT = {"contains", "icontains", "startswith", "istartswith"}


def split_key(key: str) -> tuple[str, str]:
    """`"title__icontains"` -> `("title", "icontains")`; a bare field means `eq`."""
    if not isinstance(key, str):
        raise InvalidQueryError(f"filter keys are strings, got a {type(key).__name__}")
    name, sep, op = key.rpartition("__")
    return (name, op) if sep else (key, "eq")


def _terms(
    rules: Rules, where: Mapping[str, Any] | None, allowed: Collection[str]
) -> list[tuple[str, str, Any]]:
    """Each condition of `where` as (field, operator, value made fit for the field)."""
    if where is None:
        return []
    if not isinstance(where, Mapping):
        raise InvalidQueryError(f"where must be a mapping, not {type(where).__name__}")
    terms = []
    for key, value in where.items():
        name, op = split_key(key)
        if op not in OPERATORS and name not in rules.columns:
            # Not `field__operator` (a related model's field, say): the whole key is no field.
            field_column(rules, key, allowed, "filter")
        if op not in OPERATORS:
            raise InvalidQueryError(
                f"unknown operator {shown_name(op)} in a filter; operators: {', '.join(OPERATORS)}"
            )
        field_column(rules, name, allowed, "filter")
        if op in _TAKES_TEXT and rules.rule(name).kind != "text":
            raise InvalidQueryError(f"{op} works on text fields; {name!r} is not one")
        if op in _NEEDS_VALUE and value is None:
            raise InvalidQueryError(f"{name}__{op} needs a value, not None (use {name}__is_null)")
        if op in _TAKES_MANY:
            value = [coerce(rules, name, item, check_length=False) for item in _many(op, value)]
        elif op in _TAKES_TEXT:
            value = _text(op, value)
        elif op != "is_null":
            value = coerce(rules, name, value, check_length=False)
        terms.append((name, op, value))
    return terms


@dataclass(frozen=True)
class Checked:
    """A `where` already checked and made fit for its fields (`checked`): each term as
    (field, operator, value)."""

    terms: tuple[tuple[str, str, Any], ...]


def checked(rules: Rules, where: Mapping[str, Any] | None, *, allowed: Collection[str]) -> Checked:
    """`where`, checked once for the several uses of one call."""
    return Checked(tuple(_terms(rules, where, allowed)))


Where = Mapping[str, Any] | Checked | None


def _terms_of(rules: Rules, where: Where, allowed: Collection[str]) -> list[tuple[str, str, Any]]:
    if isinstance(where, Checked):
        return list(where.terms)
    return _terms(rules, where, allowed)


def where_clause(
    rules: Rules, where: Mapping[str, Any] | None, *, allowed: Collection[str], backend: Backend
) -> ColumnElement[bool] | None:
    """The AND of every condition in `where`, or None when there is none."""
    return _with_values(rules, _terms(rules, where, allowed), backend)


def _with_values(
    rules: Rules, terms: list[tuple[str, str, Any]], backend: Backend
) -> ColumnElement[bool] | None:
    conditions = [OPERATORS[op](rules.table.c[name], value, backend) for name, op, value in terms]
    return and_(*conditions) if conditions else None


@dataclass(frozen=True)
class Filter:
    """`where` made ready for a statement kept per shape: its `condition` built from
    parameters named in `parameters`, the same for every filter of its `shape` (fields,
    operators, which values are None). A filter no shape holds (a text match, an `in` list in
    the backend's own form) has the shape None and its condition carries its values."""

    shape: tuple[Any, ...] | None
    parameters: dict[str, Any]
    condition: Callable[[], ColumnElement[bool] | None]


_WHERE = "app_where_"
# The comparisons a kept statement's condition takes a parameter for; `eq` and `ne` with None,
# and `is_null`, take none (their shape says which form); an `in` list is one expanding
# parameter of its values other than None (its shape says whether it held None).
_PARAMETERS: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "eq": lambda c, p: c == p,
    "ne": lambda c, p: (c != p) | c.is_(None),
    "lt": lambda c, p: c < p,
    "le": lambda c, p: c <= p,
    "gt": lambda c, p: c > p,
    "ge": lambda c, p: c >= p,
}


def prepared(rules: Rules, where: Where, *, allowed: Collection[str], backend: Backend) -> Filter:
    """`where`, checked, as a `Filter`."""
    terms = _terms_of(rules, where, allowed)
    if not all(_takes_a_shape(op, value, backend) for _, op, value in terms):
        condition = _with_values(rules, terms, backend)
        return Filter(None, {}, lambda: condition)
    terms.sort(key=lambda term: (term[0], term[1]))  # the same shape in any order given
    shape = tuple((name, op, _form(op, value)) for name, op, value in terms)
    parameters = {
        f"{_WHERE}{position}": _listed(value)[0] if op in _TAKES_MANY else value
        for position, (_, op, value) in enumerate(terms)
        if _form(op, value) != "null" and op != "is_null"
    }
    return Filter(shape, parameters, partial(_with_parameters, rules, shape))


def _takes_a_shape(op: str, value: Any, backend: Backend) -> bool:
    if op in _TAKES_MANY:
        return backend.lists_values(len(value))
    if op == "is_null":
        return type(value) is bool  # anything else is refused, where it is built with values
    return op in _PARAMETERS


def _form(op: str, value: Any) -> Any:
    """What of a term's value its statement depends on: nothing ("value": a parameter), or
    that it is None, or whether a list holds None, or (`is_null`) the value itself."""
    if op == "is_null":
        return value
    if op in _TAKES_MANY:
        return "values and null" if _listed(value)[1] else "values"
    return "null" if value is None else "value"


def _with_parameters(rules: Rules, shape: tuple[Any, ...]) -> ColumnElement[bool] | None:
    conditions = []
    for position, (name, op, form) in enumerate(shape):
        column = rules.table.c[name]
        if op in _TAKES_MANY:
            inside = column.in_(bindparam(f"{_WHERE}{position}", type_=column.type, expanding=True))
            with_null = form == "values and null"
            listed = _in if op == "in" else _not_in
            conditions.append(listed(column, inside, with_null))
        elif form == "value":
            parameter = bindparam(f"{_WHERE}{position}", type_=column.type)
            conditions.append(_PARAMETERS[op](column, parameter))
        elif op == "is_null":
            conditions.append(_is_null(column, form))
        else:  # eq or ne with None
            conditions.append(column.is_(None) if op == "eq" else column.is_not(None))
    return and_(*conditions) if conditions else None


def canonical(rules: Rules, where: Where, *, allowed: Collection[str]) -> list[Any]:
    """`where` in one form: sorted conditions, each value as its column holds it, a list's
    values sorted; the same for a UUID given as text or as a UUID, for a set or a list."""
    found = []
    for name, op, value in _terms_of(rules, where, allowed):
        if isinstance(value, list):
            shown: Any = sorted((to_json(item) for item in value), key=repr)
        else:
            shown = to_json(value)
        found.append([name, op, shown])
    return sorted(found, key=repr)
