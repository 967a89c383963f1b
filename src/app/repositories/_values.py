"""Which columns a model has, which of them callers may write, and caller values made fit for
them: the same rules on every backend, before anything reaches the database.

`rules_of(table)` reads a table once: its columns' Python types and lengths, which columns are
required, which the data layer manages (the primary key, the version of optimistic locking, and
the timestamps marked `managed` in `app.db.models`), and its unique keys.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import islice
from operator import itemgetter, methodcaller
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Table, UniqueConstraint, inspect
from sqlalchemy.orm import Mapper

from app.db.errors import InvalidQueryError
from app.db.models import MANAGED
from app.db.types import new_hex_ids, new_id

Data = Mapping[str, Any] | BaseModel
# Every integer column of the models is a 32-bit INTEGER on all three backends.
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


@dataclass(frozen=True)
class Rules:
    """What one table allows and needs; see the module's docstring."""

    table: Table
    name: str  # the model's name (the table's, for a table without one)
    entity: str  # what messages call a row: the name, lower case
    columns: frozenset[str]
    kinds: dict[str, tuple[type | None, int | None]]  # Python type and length, by column
    nullable: frozenset[str]
    required: frozenset[str]  # NOT NULL, with no default of ours or the database's
    creatable: frozenset[str]
    updatable: frozenset[str]
    primary_key: tuple[str, ...]
    version: str | None  # the optimistic lock's column
    created: frozenset[str]  # set once, on insert (created_at)
    updated: frozenset[str]  # set on insert and on every update (updated_at)
    unique_keys: tuple[tuple[str, ...], ...]  # the primary key first
    unique_single: frozenset[str]  # columns that alone are a unique key and hold no NULL

    def kind(self, name: str) -> type | None:
        return self.kinds[name][0]


@cache
def rules_of(table: Table, mapper: Mapper[Any] | None = None) -> Rules:
    """The rules of `table` (and, for the version column, of its `mapper`)."""
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
    name = mapper.class_.__name__ if mapper is not None else table.name
    return Rules(
        table=table,
        name=name,
        entity=name.lower(),
        columns=everything,
        kinds={
            column.key: (_python_type(column), getattr(column.type, "length", None))
            for column in table.columns
        },
        nullable=frozenset(column.key for column in table.columns if column.nullable),
        required=frozenset(
            column.key
            for column in table.columns
            if not column.nullable and column.default is None and column.server_default is None
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
        unique_keys=tuple(keys),
        unique_single=frozenset(
            next(iter(columns)).key
            for columns in single
            if len(columns) == 1 and not next(iter(columns)).nullable
        ),
    )


def rules_for(model: type[Any]) -> Rules:
    """The rules of a mapped class's table."""
    return rules_of(model.__table__, inspect(model))


def _python_type(column: Any) -> type | None:
    try:
        found: type = column.type.python_type
    except NotImplementedError:
        return None
    return found


# -- single values --------------------------------------------------------------------------------


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


def coerce(rules: Rules, name: str, value: Any, *, check_length: bool = True) -> Any:
    """A caller's value made fit for the column, or `InvalidQueryError` saying why it is not.

    Ids given as text become UUIDs. Everything else must already be of the column's type, and
    text must hold no NUL character and (when written) fit the column: the same rules on every
    backend, even where the database itself would accept more (SQLite ignores VARCHAR lengths)
    or fail less clearly (PostgreSQL cannot store NUL at all).
    """
    if value is None:
        return None
    kind, length = rules.kinds[name]
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


def from_json(rules: Rules, name: str, value: Any) -> Any:
    """A value read back from a cursor's JSON, as the column's Python type."""
    if value is None:
        return None
    kind = rules.kind(name)
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


# -- rows -----------------------------------------------------------------------------------------

Prepare = Callable[[dict[str, Any]], dict[str, Any]]


def row_values(
    rules: Rules, data: Data, *, writable: frozenset[str], prepare: Prepare
) -> dict[str, Any]:
    """The values a caller gave, checked against the columns they may write, made fit for
    them and normalised by `prepare` (the repository's hook)."""
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
        raise InvalidQueryError(
            f"{rules.name} has no writable field {', '.join(map(repr, unknown))}; "
            f"writable fields: {', '.join(sorted(writable))}"
        )
    for name, value in values.items():
        if value is None and name not in rules.nullable:
            raise InvalidQueryError(f"{rules.name}.{name} cannot be null")
        values[name] = coerce(rules, name, value)
    return prepare(values)


def new_row_values(rules: Rules, data: Data, *, prepare: Prepare) -> dict[str, Any]:
    """The values of a new row, checked; every column without a default must be given."""
    values = row_values(rules, data, writable=rules.creatable, prepare=prepare)
    if not rules.required <= values.keys():
        absent = rules.required - values.keys()
        missing = [column.key for column in rules.table.columns if column.key in absent]
        raise InvalidQueryError(
            f"a new {rules.entity} needs {', '.join(missing)}; "
            f"given: {', '.join(sorted(values)) or 'nothing'}"
        )
    return values


def row_template(rules: Rules, now: dt.datetime) -> dict[str, Any]:
    """Values for the columns a bulk row leaves out: what `create` would have filled in."""
    template: dict[str, Any] = {}
    for column in rules.table.columns:
        name = column.key
        if name in rules.created or name in rules.updated:
            template[name] = now
        elif name == rules.version:
            template[name] = 1
        elif column.default is not None and column.default.is_scalar:
            template[name] = column.default.arg  # type: ignore[attr-defined]
        else:
            template[name] = None
    return template


def complete_rows(
    rules: Rules, checked: Sequence[Mapping[str, Any]], now: dt.datetime
) -> dict[str, list[Any]]:
    """Whole rows, as `create` would write them, column by column: every column, ids and
    timestamps filled. `checked` are values that `new_row_values` returned."""
    template = row_template(rules, now)
    columns: dict[str, list[Any]] = {name: [] for name in template}
    generated = _generated_key(rules)
    for values in checked:
        complete = {**template, **values}
        if generated is not None and complete[generated] is None:
            complete[generated] = new_id()
        for name, column in columns.items():
            column.append(complete[name])
    return columns


def _generated_key(rules: Rules) -> str | None:
    """The primary key column whose values are made in Python when left out (a UUID)."""
    if len(rules.primary_key) == 1 and rules.kind(rules.primary_key[0]) is uuid.UUID:
        return rules.primary_key[0]
    return None


# -- the uniform fast path ------------------------------------------------------------------------
#
# Most bulk inputs are uniform: the same fields in every row, values already of the columns'
# types. For such a batch every rule of `new_row_values` is checked per column with C-level
# operations (the set of value types, one `"\x00" in "".join(column)`, the longest length), which
# costs a fraction of checking value by value. Any batch that is not plainly fine (a field missing,
# an id given as text, a value too long, ...) returns None and goes the row-by-row way, which
# converts what may be converted and raises the precise error: the outcome is the same, only slower.

_NONE = type(None)
_UTC_OFFSET = methodcaller("utcoffset")
PrepareColumns = Callable[[dict[str, list[Any]]], bool]


def uniform_columns(
    rules: Rules, batch: Sequence[Any], now: dt.datetime, prepare_columns: PrepareColumns
) -> tuple[dict[str, list[Any]], frozenset[str]] | None:
    """Every column of the new rows of `batch`, by name, and the names of the columns whose
    values are already in storage form (ids generated as hex); None to go row by row."""
    first = batch[0]
    if type(first) is not dict:
        return None
    keys = first.keys()
    if any(type(row) is not dict or row.keys() != keys for row in batch):
        return None
    given = frozenset(keys)
    if not given <= rules.creatable or not rules.required <= given:
        return None
    count = len(batch)
    columns: dict[str, list[Any]] = {}
    for name in keys:
        values = list(map(itemgetter(name), batch))
        kind, length = rules.kinds[name]
        if not _plainly_fine(values, kind, length, nullable=name in rules.nullable):
            return None
        columns[name] = values
    if not prepare_columns(columns):
        return None
    generated: frozenset[str] = frozenset()
    template = row_template(rules, now)
    key = _generated_key(rules)
    complete: dict[str, list[Any]] = {}
    for name in template:
        if name in columns:
            complete[name] = columns[name]
        elif name == key:
            complete[name] = new_hex_ids(count)
            generated = frozenset({name})
        else:
            complete[name] = [template[name]] * count
    return complete, generated


def _plainly_fine(
    values: list[Any], kind: type | None, length: int | None, *, nullable: bool
) -> bool:
    types = set(map(type, values))
    if _NONE in types:
        if not nullable:
            return False
        types.discard(_NONE)
        values = [value for value in values if value is not None]
    if not values:
        return True
    if kind is None or types != {kind}:
        return False
    if kind is str:
        longest: int = max(map(len, values))
        return "\x00" not in "".join(values) and (length is None or longest <= length)
    if kind is int:
        lowest: int = min(values)
        highest: int = max(values)
        return lowest >= INT32_MIN and highest <= INT32_MAX
    if kind is dt.datetime:
        return None not in map(_UTC_OFFSET, values)
    return kind in (bool, uuid.UUID)


# -- arguments ------------------------------------------------------------------------------------


def field(rules: Rules, name: str, allowed: Collection[str], purpose: str) -> Any:
    """The table column behind field `name`, if callers may `purpose` by it. Conditions and
    orders built from table columns serve ORM queries and plain row queries alike."""
    if not isinstance(name, str) or name not in allowed:
        raise InvalidQueryError(
            f"cannot {purpose} {rules.name} by {name!r}; allowed fields: "
            + ", ".join(sorted(allowed))
        )
    return rules.table.c[name]


def conflict_target(rules: Rules, conflict: Sequence[str] | str) -> tuple[str, ...]:
    """`conflict` as a tuple, if it names a unique constraint or the primary key."""
    if isinstance(conflict, str):
        conflict = (conflict,)
    if set(conflict) not in [set(key) for key in rules.unique_keys]:
        described = ", ".join("(" + ", ".join(sorted(key)) + ")" for key in rules.unique_keys)
        raise InvalidQueryError(
            f"conflict={tuple(conflict)!r} is not a unique key of {rules.table.name}; "
            f"unique keys: {described}"
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


MAX_LIMIT = 1000


def check_limit(limit: int) -> None:
    """Refuse limits outside 1..MAX_LIMIT."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidQueryError(f"limit must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")


def check_offset(offset: int) -> None:
    """Refuse negative offsets."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidQueryError(f"offset must be an integer of 0 or more, got {offset!r}")
