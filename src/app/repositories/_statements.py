"""Every statement a repository sends, built here from the model's rules, the caller's checked
arguments and the backend's own forms (`app.dialects`); run by `Repository` on both faces."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from functools import partial
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Insert,
    Integer,
    Select,
    Table,
    Update,
    bindparam,
    func,
    literal_column,
    over,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.interfaces import LoaderOption

from app.db.errors import InvalidQueryError
from app.dialects import Backend
from app.dialects.base import UpsertPlan
from app.repositories._filters import Filter, Where, prepared
from app.repositories._ordering import SortKey, after, after_parameters, order_terms
from app.repositories._shapes import kept
from app.repositories._values import Rules


def loader_options(model: type[Any], load: Sequence[str] | None) -> list[LoaderOption]:
    """selectin loading of the named relationships (checked against the model's)."""
    if load is None:
        return []
    if isinstance(load, str):
        load = [load]
    if not isinstance(load, Sequence) or not all(isinstance(name, str) for name in load):
        raise InvalidQueryError("load names relationships: a list of their names")
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
    rules: Rules,
    backend: Backend,
    *,
    where: Where,
    keys: Sequence[SortKey],
    filterable: Collection[str],
    load: Sequence[str] | None = None,
    plain: bool = False,
    paged: Paging = None,
    counted: bool = False,
) -> tuple[Select[Any], dict[str, Any]]:
    """SELECT of `model` rows matching `where`, in the order of `keys`; with `plain`, of the
    table's columns only (rows, not instances); `paged`, with a LIMIT (and OFFSET) whose
    values `page_parameters` gives; `counted`, each row with the count of all matching rows
    (one scan, a window count). And the parameters of its filter."""

    def build() -> Select[Any]:
        statement = _ordered_rows(model, rules, backend, keys, load, plain)
        if counted:
            statement = statement.add_columns(over(func.count()).label("total_count"))
        return _paged(statement, paged)

    shape = (model, _load_names(model, load), tuple(keys), plain, paged, counted, type(backend))
    found = prepared(rules, where, allowed=filterable, backend=backend)
    return _filtered(("rows", shape), lambda: kept(_ordered, shape, build), found)


# A page's LIMIT and OFFSET are parameters of a statement built once per shape: a statement
# built anew, even one `.limit()` away from a kept one, is a new object whose cache key
# SQLAlchemy derives again, which cost a tenth of a page.
Paging = Literal["limit", "offset"] | None
_LIMIT, _OFFSET = "app_limit", "app_offset"


def _paged(statement: Select[Any], paged: Paging) -> Select[Any]:
    if paged is None:
        return statement
    statement = statement.limit(bindparam(_LIMIT, type_=Integer()))
    if paged == "offset":
        statement = statement.offset(bindparam(_OFFSET, type_=BigInteger()))
    return statement


def page_parameters(limit: int, offset: int | None = None) -> dict[str, int]:
    """The values of a `paged` statement's LIMIT and OFFSET."""
    return {_LIMIT: limit} if offset is None else {_LIMIT: limit, _OFFSET: offset}


def select_after(
    model: type[Any],
    rules: Rules,
    backend: Backend,
    *,
    where: Where,
    keys: Sequence[SortKey],
    values: Sequence[Any],
    filterable: Collection[str],
    load: Sequence[str] | None = None,
) -> tuple[Select[Any], dict[str, Any]]:
    """SELECT of at most `page_parameters`' limit of the `model` rows matching `where` that
    come after the row whose sort values are `values`, in the order of `keys`; and the row's
    parameters. A keyset page is a web request's commonest list, and building its statement
    again each time cost about a tenth of one: it is built once per shape (model, order,
    loads, which values are NULL), the row's values parameters (`_ordering.after`)."""
    nulls = tuple(value is None for value in values)

    def build() -> Select[Any]:
        statement = _ordered_rows(model, rules, backend, keys, load, plain=False)
        return _paged(statement.where(after(rules, keys, nulls, backend)), "limit")

    shape = (model, _load_names(model, load), tuple(keys), nulls, type(backend))
    found = prepared(rules, where, allowed=filterable, backend=backend)
    statement, parameters = _filtered(
        ("after", shape), lambda: kept(_ordered_after, shape, build), found
    )
    return statement, {**parameters, **after_parameters(values)}


_ordered: dict[tuple[Any, ...], Select[Any]] = {}
_ordered_after: dict[tuple[Any, ...], Select[Any]] = {}


def _load_names(model: type[Any], load: Sequence[str] | None) -> tuple[str, ...]:
    loader_options(model, load)  # checked before it becomes part of a cache key
    return (load,) if isinstance(load, str) else tuple(load or ())


def _ordered_rows(
    model: type[Any],
    rules: Rules,
    backend: Backend,
    keys: Sequence[SortKey],
    load: Sequence[str] | None,
    plain: bool,
) -> Select[Any]:
    if plain:
        statement = select(*rules.table.columns)
    else:
        statement = select(model).options(*loader_options(model, load))
    return statement.order_by(*order_terms(rules, keys, backend))


def _filtered(
    shape: tuple[Any, ...], unfiltered: Callable[[], Select[Any]], found: Filter
) -> tuple[Select[Any], dict[str, Any]]:
    """The statement of `shape` with the condition of filter `found`, and its parameters:
    built once per shape of statement and filter (SQLAlchemy derives a new statement's cache
    key again, a tenth of a filtered list), or, for a filter of no shape, with its values."""
    if found.shape is None:
        condition = found.condition()
        return unfiltered().where(condition) if condition is not None else unfiltered(), {}
    if not found.shape:
        return unfiltered(), {}

    def build() -> Select[Any]:
        condition = found.condition()
        assert condition is not None  # a filter of a shape has terms
        return unfiltered().where(condition)

    return kept(_filtered_statements, (shape, found.shape), build), dict(found.parameters)


_filtered_statements: dict[tuple[Any, ...], Any] = {}


def select_by_key(
    model: type[Any], rules: Rules, key: Any, *, load: Sequence[str] | None
) -> tuple[Select[Any], dict[str, Any]]:
    """SELECT of the `model` row with primary key `key` (a tuple for a key of several columns),
    loading the named relationships; and its parameters. Built once per model and loads: a
    point read is a web request's commonest query, and `Session.get` builds its SELECT, and
    derives that statement's cache key, again on every call."""
    statement = kept(
        _by_key, (model, _load_names(model, load)), lambda: _select_by_key(model, rules, load)
    )
    values = key if len(rules.primary_key) > 1 else (key,)
    return statement, {_PK + str(i): value for i, value in enumerate(values)}


_PK = "app_pk_"
_by_key: dict[tuple[Any, ...], Select[Any]] = {}


def _select_by_key(model: type[Any], rules: Rules, load: Sequence[str] | None) -> Select[Any]:
    columns = [rules.table.c[name] for name in rules.primary_key]
    condition = [
        column == bindparam(_PK + str(i), type_=column.type) for i, column in enumerate(columns)
    ]
    return select(model).options(*loader_options(model, load)).where(*condition)


def update_at_version(
    model: type[Any],
    rules: Rules,
    key: Any,
    version: int,
    values: Mapping[str, Any],
    *,
    returning: bool = True,
) -> tuple[Update, dict[str, Any]]:
    """UPDATE of the `model` row with primary key `key`, only while it is at `version`, that
    returns the row (unless not `returning`): the given values, and the version advanced (the
    timestamps marked `onupdate` move with it); and its parameters. The statement is built
    once per model, set of columns and form, its values all parameters: an update is a web
    request's commonest write, and building it again each time cost about a tenth of one."""
    names = tuple(values)
    statement = kept(
        _updates_at_version,
        (model, names, returning),
        lambda: _update_at_version(model, rules, names, returning=returning),
    )
    parameters = {_SET + name: value for name, value in values.items()}
    parameters[_KEY] = key
    parameters[_VERSION] = version
    return statement, parameters


_KEY, _VERSION, _SET = "app_key", "app_version", "app_set_"
_updates_at_version: dict[tuple[type[Any], tuple[str, ...], bool], Update] = {}


def _update_at_version(
    model: type[Any], rules: Rules, names: tuple[str, ...], *, returning: bool
) -> Update:
    table = rules.table
    counter = table.c[str(rules.version)]
    key = table.c[rules.primary_key[0]]
    changes: dict[str, Any] = {
        name: bindparam(_SET + name, type_=table.c[name].type) for name in names
    }
    changes[counter.key] = counter + 1
    statement = (
        update(model)
        .where(
            key == bindparam(_KEY, type_=key.type),
            counter == bindparam(_VERSION, type_=counter.type),
        )
        .values(changes)
    )
    return statement.returning(model) if returning else statement


def select_count(
    rules: Rules,
    backend: Backend,
    *,
    where: Where,
    filterable: Collection[str],
) -> tuple[Select[Any], dict[str, Any]]:
    """SELECT COUNT(*) of the rows matching `where`; and its parameters."""
    found = prepared(rules, where, allowed=filterable, backend=backend)
    counted = partial(_count, rules.table)
    return _filtered(("count", rules.table), counted, found)


def _count(table: Table) -> Select[Any]:
    return select(func.count()).select_from(table)


def select_exists(
    rules: Rules,
    backend: Backend,
    *,
    where: Where,
    filterable: Collection[str],
) -> tuple[Select[Any], dict[str, Any]]:
    """SELECT EXISTS(...) of the rows matching `where`; and its parameters."""
    found = prepared(rules, where, allowed=filterable, backend=backend)
    inner, parameters = _filtered(
        ("exists", rules.table), partial(select, rules.table.c[rules.primary_key[0]]), found
    )
    if found.shape is None:
        return select(inner.exists()), parameters
    shape = ("exists of", rules.table, found.shape)
    return kept(_filtered_statements, shape, lambda: select(inner.exists())), parameters


def select_where_equal(
    model: type[Any], rules: Rules, values: Mapping[str, Any]
) -> tuple[Select[Any], dict[str, Any]]:
    """SELECT of the `model` row whose columns hold `values` (a unique key's), and its
    parameters; kept per model and columns (a None matches with IS NULL, built each time)."""
    table = rules.table
    if any(value is None for value in values.values()):
        return select(model).where(*(table.c[name] == value for name, value in values.items())), {}
    names = tuple(values)

    def build() -> Select[Any]:
        equal = [
            table.c[name] == bindparam(_EQUAL + name, type_=table.c[name].type) for name in names
        ]
        return select(model).where(*equal)

    statement = kept(_where_equal, (model, names), build)
    return statement, {_EQUAL + name: value for name, value in values.items()}


_EQUAL = "app_equal_"
_where_equal: dict[tuple[Any, ...], Select[Any]] = {}


def select_by_keys(
    model: type[Any], rules: Rules, backend: Backend, keys: Sequence[tuple[Any, ...]]
) -> Select[Any]:
    """SELECT of the `model` rows whose primary keys are `keys` (tuples, in the key's order)."""
    columns = [rules.table.c[name] for name in rules.primary_key]
    if len(columns) == 1:
        return select(model).where(backend.in_values(columns[0], [key[0] for key in keys]))
    return select(model).where(tuple_(*columns).in_(list(keys)))


# -- upserts --------------------------------------------------------------------------------------
#
# INSERT-or-UPDATE in one statement, with each database's own syntax, so concurrent callers never
# race. Only the fields a caller gave are updated, with the version advanced and the `updated`
# timestamps set from the new row; the primary key, the conflict target and the `created`
# timestamps stay as stored, and a field left out keeps its stored value.
#
# When rows also give values for another unique key (an upsert by id that names an email, or by
# email that names an id), the statement alone cannot be trusted: MariaDB's has no conflict target
# and updates whichever row any unique key matched, and PostgreSQL and SQLite update the target's
# row without looking at the other key. `conflicting_key` then checks the outcome, so the caller
# can undo it and report a conflict.


def upsert_statement(
    rules: Rules,
    backend: Backend,
    target: Sequence[str],
    given: Collection[str],
    *,
    source: Select[Any] | None = None,
) -> Insert:
    """The upsert of rows of `rules.table` that give the fields `given`, on conflict on
    `target`; the rows are parameters (the statement kept per table, target and fields), or
    the result of `source` (where the backend can)."""
    if source is not None:
        return _upsert(rules, backend, target, given, source)
    shape = (rules.table, type(backend), tuple(target), frozenset(given))
    return kept(_upserts, shape, lambda: _upsert(rules, backend, target, given, None))


_upserts: dict[tuple[Any, ...], Insert] = {}


def _upsert(
    rules: Rules,
    backend: Backend,
    target: Sequence[str],
    given: Collection[str],
    source: Select[Any] | None,
) -> Insert:
    stays = set(rules.primary_key) | set(target) | rules.created | {rules.version}
    from_new_row = [
        name for name in rules.table.columns.keys()  # noqa: SIM118 - a ColumnCollection
        if (name in given and name not in stays) or name in rules.updated
    ]  # fmt: skip
    computed: dict[str, ColumnElement[Any]] = {}
    if rules.version is not None:
        # A literal 1, not a bound parameter: PyMySQL's executemany cannot fill a parameter
        # that sits in the ON DUPLICATE KEY UPDATE clause rather than in the VALUES rows.
        computed[rules.version] = rules.table.c[rules.version] + literal_column("1")
    if not from_new_row and not computed:
        # Nothing to change on a conflict (the rows give only their key): the stored row stays,
        # said as one column set to itself, which every backend's upsert takes.
        computed[target[0]] = rules.table.c[target[0]]
    return backend.upsert(rules.table, UpsertPlan(target, from_new_row, computed, source))


def select_stored_keys(
    rules: Rules, rows: Sequence[Mapping[str, Any]], target: Sequence[str], names: Sequence[str]
) -> Select[Any]:
    """SELECT of the columns `names` (the target's first) of the rows an upsert of `rows` on
    `target` wrote."""
    table = rules.table
    sent_targets = [tuple(row[name] for name in target) for row in rows]
    return select(*(table.c[name] for name in names)).where(
        tuple_(*(table.c[name] for name in target)).in_(sent_targets)
    )


def conflicting_key(
    stored: Sequence[Sequence[Any]],
    rows: Sequence[Mapping[str, Any]],
    target: Sequence[str],
    others: Sequence[tuple[str, ...]],
    names: Sequence[str],
) -> tuple[tuple[str, ...], Mapping[str, Any]] | None:
    """The first of the `others` keys on which an upsert of `rows` met a different row, and the
    sent row: the row with a sent row's `target` values is missing, or holds other values for
    that key. `stored` are the rows `select_stored_keys` found."""
    width = len(target)
    found_by_key = {tuple(found[:width]): dict(zip(names, found, strict=True)) for found in stored}
    for row in rows:
        found = found_by_key.get(tuple(row[name] for name in target))
        for key in others:
            if found is None or any(found[name] != row[name] for name in key):
                return key, row
    return None


def select_holding(rules: Rules, values: Mapping[str, Any]) -> Select[Any]:
    """SELECT EXISTS of a row whose columns hold `values` (none of them None)."""
    table = rules.table
    return select(select(table).where(*(table.c[n] == v for n, v in values.items())).exists())
