"""Which columns a model has, which of them callers may write, and caller values made fit for
them: the same rules on every backend, before anything reaches the database.

`rules_of(table)` reads a table once: a `ColumnRule` per column (its Python type and what the
column can hold; `_column_rules` checks a value against it), which columns are required, which
the data layer manages (the primary key, the version of optimistic locking, and the timestamps
marked `managed` in `app.db.models`), and its unique keys. Rows and arguments are checked here,
with an `InvalidQueryError` that names the field and the rule, never the value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import islice
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy import Table, UniqueConstraint, inspect
from sqlalchemy.orm import Mapper

from app.db.errors import InvalidQueryError
from app.db.models import MANAGED
from app.repositories._column_rules import ColumnRule, column_rule, quietly

Data = Mapping[str, Any] | BaseModel
# A number of rows to skip that every backend takes (SQLite's and PostgreSQL's 64-bit limit).
MAX_OFFSET = 2**63 - 1
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Rules:
    """What one table allows and needs; see the module's docstring."""

    table: Table
    name: str  # the model's name (the table's, for a table without one)
    entity: str  # what messages call a row: the name, lower case
    columns: frozenset[str]
    rules: dict[str, ColumnRule]
    nullable: frozenset[str]
    required: frozenset[str]  # NOT NULL, with no default of ours or the database's
    creatable: frozenset[str]
    updatable: frozenset[str]
    primary_key: tuple[str, ...]
    version: str | None  # the optimistic lock's column
    created: frozenset[str]  # set once, on insert (created_at)
    updated: frozenset[str]  # set on insert and on every update (updated_at)
    # Left to the database when a row does not give them: a server default, a computed or an
    # identity column, an autoincrement key.
    database_filled: frozenset[str]
    numbered: str | None  # the integer key the database numbers (autoincrement or identity)
    unique_keys: tuple[tuple[str, ...], ...]  # the primary key first
    unique_single: frozenset[str]  # columns that alone are a unique key and hold no NULL

    def kind(self, name: str) -> type | None:
        return self.rules[name].python

    def rule(self, name: str) -> ColumnRule:
        return self.rules[name]


@cache
def rules_of(table: Table, mapper: Mapper[Any] | None = None) -> Rules:
    """The rules of `table` (and, for the version column, of its `mapper`)."""
    if mapper is not None:
        _refuse_renamed_columns(mapper)
    version_column = mapper.version_id_col if mapper is not None else None
    version = version_column.key if version_column is not None else None
    managed = {column.key: column.info.get(MANAGED) for column in table.columns}
    primary_key = tuple(table.primary_key.columns.keys())
    keys = [primary_key] + [
        tuple(constraint.columns.keys())
        for constraint in table.constraints
        if isinstance(constraint, UniqueConstraint)
    ]
    single = [c.columns for c in table.constraints if isinstance(c, UniqueConstraint)]
    single += [index.columns for index in table.indexes if index.unique]
    everything = frozenset(table.columns.keys())
    not_writable = {version} if version else set()
    not_writable |= {c.key for c in table.columns if c.computed is not None}
    name = mapper.class_.__name__ if mapper is not None else table.name
    return Rules(
        table=table,
        name=name,
        entity=name.lower(),
        columns=everything,
        rules={column.key: column_rule(column) for column in table.columns},
        nullable=frozenset(column.key for column in table.columns if column.nullable),
        required=frozenset(
            column.key
            for column in table.columns
            if not column.nullable
            and column.default is None
            and column.server_default is None
            and not _filled_by_the_database(column)
        ),
        creatable=everything - not_writable,
        updatable=everything
        - not_writable
        - set(primary_key)
        - {name for name, kind in managed.items() if kind},
        primary_key=primary_key,
        version=version,
        created=frozenset(name for name, kind in managed.items() if kind == "created"),
        updated=frozenset(name for name, kind in managed.items() if kind == "updated"),
        database_filled=frozenset(
            column.key
            for column in table.columns
            if column.default is None
            and (column.server_default is not None or _filled_by_the_database(column))
        ),
        numbered=_numbered_key(table),
        unique_keys=tuple(keys),
        unique_single=frozenset(
            next(iter(columns)).key
            for columns in single
            if len(columns) == 1 and not next(iter(columns)).nullable
        ),
    )


def _refuse_renamed_columns(mapper: Mapper[Any]) -> None:
    """A repository names each field by its column: an attribute named otherwise than its
    column (`label = mapped_column("lbl")`) would be a field of two names, which the model's
    constructor and the repository's arguments would each take one of."""
    for attribute in mapper.column_attrs:
        for column in attribute.columns:
            if getattr(column, "table", None) is mapper.local_table and column.key != attribute.key:
                raise TypeError(
                    f"{mapper.class_.__name__}.{attribute.key} is stored in column "
                    f"{column.key}: a repository names each field by its column, so name the "
                    f"attribute {column.key} (or the column {attribute.key})"
                )


def rules_for(model: type[Any]) -> Rules:
    """The rules of a mapped class's table."""
    return rules_of(model.__table__, inspect(model))


def _numbered_key(table: Table) -> str | None:
    counter = table.autoincrement_column
    return counter.key if counter is not None and counter.default is None else None


def _filled_by_the_database(column: sa.Column[Any]) -> bool:
    """A computed or identity column, or an integer primary key the database numbers."""
    if column.computed is not None or column.identity is not None:
        return True
    return column is column.table.autoincrement_column


def coerce(rules: Rules, name: str, value: Any, *, check_length: bool = True) -> Any:
    """A caller's value made fit for column `name`, or `InvalidQueryError` saying why not."""
    return rules.rules[name].coerce(value, check_length=check_length)


def from_json(rules: Rules, name: str, value: Any) -> Any:
    """A value read back from a cursor's JSON, as the column holds it."""
    if value is None and name not in rules.nullable:
        raise InvalidQueryError(f"invalid cursor: {name} cannot be null")
    if rules.rules[name].kind == "interval" and type(value) is int:
        value = quietly(dt.timedelta, microseconds=value)  # as `to_json` wrote it
        if value is None:
            raise InvalidQueryError(f"invalid cursor: {name} is not an interval")
    return coerce(rules, name, value, check_length=False)


# -- rows -----------------------------------------------------------------------------------------

Prepare = Callable[[dict[str, Any]], dict[str, Any]]


def row_values(
    rules: Rules, data: Data, *, writable: frozenset[str], prepare: Prepare
) -> dict[str, Any]:
    """The values a caller gave, checked against the columns they may write, normalised by
    `prepare` (the repository's hook), then made fit for the columns: lengths are those of the
    stored form."""
    if isinstance(data, BaseModel):
        values = data.model_dump(exclude_unset=True)
    elif isinstance(data, Mapping):
        values = dict(data)
    else:
        raise InvalidQueryError(
            f"{rules.entity} data must be a mapping or a pydantic model, not {type(data).__name__}"
        )
    unknown = [name for name in values if name not in writable]
    if unknown:
        shown = ", ".join(shown_name(name) for name in unknown[:_NAMES_SHOWN])
        if len(unknown) > _NAMES_SHOWN:
            shown += f" and {len(unknown) - _NAMES_SHOWN} more"
        raise InvalidQueryError(
            f"{rules.name} has no writable field {shown}; "
            f"writable fields: {', '.join(sorted(writable))}"
        )
    values = prepare(values)
    for name, value in values.items():
        if value is None and name not in rules.nullable:
            raise InvalidQueryError(f"{rules.name}.{name} cannot be null")
        values[name] = coerce(rules, name, value)
    return values


def new_row_values(
    rules: Rules, data: Data, *, prepare: Prepare, upserting: bool = False
) -> dict[str, Any]:
    """The values of a new row, checked; every column without a default must be given (also
    `upserting`: the row may turn out to be new, whatever is stored now)."""
    values = row_values(rules, data, writable=rules.creatable, prepare=prepare)
    if not rules.required <= values.keys():
        absent = rules.required - values.keys()
        missing = ", ".join(column.key for column in rules.table.columns if column.key in absent)
        needs = (
            f"an upsert may insert a new {rules.entity}, which needs {missing}"
            if upserting
            else f"a new {rules.entity} needs {missing}"
        )
        raise InvalidQueryError(f"{needs}; given: {', '.join(sorted(values)) or 'nothing'}")
    return values


def target_given(rules: Rules, name: str) -> bool:
    """Whether every row of an upsert must give column `name` of its conflict target: all but
    a primary key column filled in here (an id made in Python). One the database fills (a key
    it numbers) would be unknown until the row is inserted: such a row can only be created."""
    return name not in rules.primary_key or name in rules.database_filled


# -- arguments ------------------------------------------------------------------------------------


def field_column(rules: Rules, name: str, allowed: Collection[str], purpose: str) -> Any:
    """The table column behind field `name`, if callers may `purpose` by it (JSON and binary
    columns never). Conditions and orders built from table columns serve ORM queries and plain
    row queries alike."""
    if not isinstance(name, str) or name not in allowed:
        shown = shown_name(name)
        raise InvalidQueryError(
            f"cannot {purpose} {rules.name} by {shown}; allowed fields: "
            + ", ".join(sorted(n for n in allowed if rules.rules[n].comparable))
        )
    if not rules.rules[name].comparable:
        raise InvalidQueryError(
            f"cannot {purpose} {rules.name} by {name!r}: a JSON or binary field"
        )
    return rules.table.c[name]


def conflict_target(rules: Rules, conflict: Sequence[str] | str) -> tuple[str, ...]:
    """`conflict` as a tuple, if it names a unique constraint or the primary key, once each."""
    if isinstance(conflict, str):
        conflict = (conflict,)
    described = ", ".join("(" + ", ".join(sorted(key)) + ")" for key in rules.unique_keys)
    if (
        not isinstance(conflict, Sequence)
        or not all(isinstance(name, str) for name in conflict)
        or len(set(conflict)) != len(conflict)
        or set(conflict) not in [set(key) for key in rules.unique_keys]
    ):
        shown = (
            "(" + ", ".join(shown_name(name) for name in conflict[:_NAMES_SHOWN]) + ")"
            if isinstance(conflict, Sequence)
            else f"a {type(conflict).__name__}"
        )
        raise InvalidQueryError(
            f"conflict={shown} is not a unique key of {rules.table.name}; unique keys: {described}"
        )
    return tuple(conflict)


def other_keys_given(
    rules: Rules, given: Collection[str], target: Sequence[str]
) -> list[tuple[str, ...]]:
    """Unique keys besides `target` whose every column the caller gave a value for."""
    return [
        key
        for key in rules.unique_keys
        if set(key) != set(target) and all(name in given for name in key)
    ]


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_batch_size(size: int) -> None:
    """Refuse batch sizes that are not a whole number of at least 1."""
    if not _whole(size) or not 1 <= size <= MAX_OFFSET:
        raise InvalidQueryError(f"batch_size must be an integer of at least 1, got {_shown(size)}")


class BatchOfCall(list[Data]):
    """A batch of a bulk call's rows, and where in the call it starts: the index of its first
    row among the rows given, counting from 0 (a refused row is named by its index)."""

    def __init__(self, rows: Iterable[Data], first: int) -> None:
        super().__init__(rows)
        self.first = first


def batches(rows: Iterable[Data], size: int) -> Iterator[BatchOfCall]:
    """`rows` in lists of at most `size`, pulled lazily."""
    check_batch_size(size)
    if isinstance(rows, str | bytes | Mapping | BaseModel) or not isinstance(rows, Iterable):
        raise InvalidQueryError(
            "rows must be an iterable of rows (mappings or pydantic models), not "
            f"{type(rows).__name__}"
        )
    iterator = iter(rows)
    first = 0
    while batch := BatchOfCall(islice(iterator, size), first):
        yield batch
        first += len(batch)


def new_rows_values(
    rules: Rules, rows: Sequence[Data], *, prepare: Prepare, upserting: bool = False
) -> list[dict[str, Any]]:
    """`new_row_values` of each of `rows`; a refused row of a bulk call's batch is named by its
    index in the call."""
    first = rows.first if isinstance(rows, BatchOfCall) else None
    checked = []
    for offset, data in enumerate(rows):
        try:
            checked.append(new_row_values(rules, data, prepare=prepare, upserting=upserting))
        except InvalidQueryError as refused:
            if first is not None:
                refused.at_row(first + offset)
            raise
    return checked


def check_limit(limit: int, name: str = "limit") -> None:
    """Refuse limits (the argument `name`) outside 1..MAX_LIMIT."""
    if not _whole(limit) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidQueryError(
            f"{name} must be an integer from 1 to {MAX_LIMIT}, got {_shown(limit)}"
        )


def check_offset(offset: int) -> None:
    """Refuse offsets that are not from 0 to the largest every backend takes."""
    if not _whole(offset) or not 0 <= offset <= MAX_OFFSET:
        raise InvalidQueryError(
            f"offset must be an integer from 0 to 2**63 - 1, got {_shown(offset)}"
        )


# How many unknown names one message lists.
_NAMES_SHOWN = 5
_NAME_LENGTH_SHOWN = 64


def shown_name(name: object) -> str:
    """A field or operator name a caller gave, as a message may show it: quoted when it is a
    short identifier, which is all a name of ours can be; anything else (a long text, control
    or bidirectional characters, a value sent where a name goes) is not echoed."""
    if isinstance(name, str) and len(name) <= _NAME_LENGTH_SHOWN and name.isidentifier():
        return repr(name)
    return "(a name not shown)" if isinstance(name, str) else f"(a {type(name).__name__} key)"


def _shown(value: Any) -> str:
    """An argument as a message may show it: a short number as it is, anything else by type."""
    if _whole(value) and abs(value) < 10**12:
        return str(value)
    return "a larger number" if _whole(value) else f"a {type(value).__name__}"
