"""Which columns a model has, which of them callers may write, and caller values made fit for
them: the same rules on every backend, before anything reaches the database.

`rules_of(table)` reads a table once: a `ColumnRule` per column (its Python type and what the
column can hold: a length, an integer's width, a decimal's precision and scale, an enum's
members), which columns are required, which the data layer manages (the primary key, the
version of optimistic locking, and the timestamps marked `managed` in `app.db.models`), and its
unique keys. A value of the wrong type is converted where its text form is unambiguous (a UUID,
a decimal, a date given as text; an enum's value for its member) and refused otherwise, with an
`InvalidQueryError` that names the field and the rule, never the value.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import math
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import islice
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy import Table, UniqueConstraint, inspect
from sqlalchemy.orm import Mapper
from sqlalchemy.types import TypeDecorator

from app.db.errors import InvalidQueryError
from app.db.models import MANAGED

Data = Mapping[str, Any] | BaseModel
T = TypeVar("T")
# What an unbounded text or binary column holds on every backend: MariaDB's TEXT and BLOB.
UNBOUNDED_BYTES = 65_535
# A number of rows to skip that every backend takes (SQLite's and PostgreSQL's 64-bit limit).
MAX_OFFSET = 2**63 - 1
MAX_LIMIT = 1000


@dataclass(frozen=True)
class ColumnRule:
    """What one column holds, and how a caller's value is made fit for it (`coerce`)."""

    name: str
    kind: str  # text, choice, enum, boolean, integer, float, decimal, timestamp, date, time,
    # interval, uuid, json, binary, other: which rule `coerce` applies
    python: type | None  # the Python type of its values, where known
    nullable: bool
    length: int | None = None  # text: characters
    max_bytes: int | None = None  # text and binary: UTF-8 (or raw) bytes
    bits: int | None = None  # integers: 16, 32 or 64
    digits: tuple[int | None, int | None] | None = None  # decimals: precision and scale
    members: dict[Any, enum.Enum] | None = None  # enums: member, value or stored text -> member
    choices: frozenset[str] | None = None  # an enum of plain strings
    aware: bool | None = None  # timestamps and times: timezone-aware (True) or naive (False)
    comparable: bool = True  # may be filtered and sorted by (not JSON, not binary)

    def coerce(self, value: Any, *, check_length: bool = True) -> Any:
        return None if value is None else _CHECKS[self.kind](self, value, check_length)


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
    unique_keys: tuple[tuple[str, ...], ...]  # the primary key first
    unique_single: frozenset[str]  # columns that alone are a unique key and hold no NULL

    def kind(self, name: str) -> type | None:
        return self.rules[name].python

    def rule(self, name: str) -> ColumnRule:
        return self.rules[name]


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


def _filled_by_the_database(column: sa.Column[Any]) -> bool:
    """A computed or identity column, or an integer primary key the database numbers."""
    if column.computed is not None or column.identity is not None:
        return True
    return column is column.table.autoincrement_column


# -- what a column holds --------------------------------------------------------------------------


def column_rule(column: sa.Column[Any]) -> ColumnRule:
    """The `ColumnRule` of `column`, from its type."""
    kind = column.type
    impl = kind.impl if isinstance(kind, TypeDecorator) else kind
    if isinstance(impl, TypeDecorator):  # a decorator of a decorator
        impl = impl.impl
    base: dict[str, Any] = {"name": column.key, "nullable": bool(column.nullable)}
    if isinstance(kind, sa.Interval):  # a decorator of DateTime where it is not native
        return ColumnRule(kind="interval", python=dt.timedelta, **base)
    if isinstance(impl, sa.Enum):
        if impl.enum_class is not None:
            members: dict[Any, enum.Enum] = {m: m for m in impl.enum_class}
            members.update(zip(impl.enums, impl.enum_class, strict=False))
            members.update((m.value, m) for m in impl.enum_class if isinstance(m.value, str))
            return ColumnRule(kind="enum", python=impl.enum_class, members=members, **base)
        return ColumnRule(kind="choice", python=str, choices=frozenset(impl.enums), **base)
    if isinstance(impl, sa.Boolean):
        return ColumnRule(kind="boolean", python=bool, **base)
    if isinstance(impl, sa.Integer):
        bits = (
            16
            if isinstance(impl, sa.SmallInteger)
            else 64
            if isinstance(impl, sa.BigInteger)
            else 32
        )
        return ColumnRule(kind="integer", python=int, bits=bits, **base)
    if isinstance(impl, sa.Float):
        return ColumnRule(kind="float", python=float, **base)
    if isinstance(impl, sa.Numeric):
        digits = (impl.precision, impl.scale)
        return ColumnRule(kind="decimal", python=decimal.Decimal, digits=digits, **base)
    if isinstance(impl, sa.String):
        length = impl.length
        return ColumnRule(
            kind="text",
            python=str,
            length=length,
            max_bytes=None if length is not None else UNBOUNDED_BYTES,
            **base,
        )
    if isinstance(impl, sa.DateTime):
        return ColumnRule(kind="timestamp", python=dt.datetime, aware=bool(impl.timezone), **base)
    if isinstance(impl, sa.Date):
        return ColumnRule(kind="date", python=dt.date, **base)
    if isinstance(impl, sa.Time):
        return ColumnRule(kind="time", python=dt.time, aware=bool(impl.timezone), **base)
    if isinstance(impl, sa.Uuid):
        return ColumnRule(kind="uuid", python=uuid.UUID, **base)
    if isinstance(impl, sa.JSON):
        return ColumnRule(kind="json", python=None, comparable=False, **base)
    if isinstance(impl, sa.LargeBinary):
        limit = impl.length or UNBOUNDED_BYTES
        return ColumnRule(kind="binary", python=bytes, max_bytes=limit, comparable=False, **base)
    try:
        python: type | None = kind.python_type
    except NotImplementedError:
        python = None
    return ColumnRule(kind="other", python=python, comparable=python is not None, **base)


def _quietly(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """`fn(...)`, or None when it raises. The caller raises its own error after this returns,
    so that error carries no context: the one caught here may quote the value (a parse error,
    a UnicodeEncodeError's `.object`)."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError, KeyError, RecursionError, ArithmeticError):
        return None


def _refused(rule: ColumnRule, what: str) -> InvalidQueryError:
    return InvalidQueryError(f"{rule.name} {what}")


def _wrong_type(rule: ColumnRule, wanted: str, value: Any) -> InvalidQueryError:
    return _refused(rule, f"must be {wanted}, got {type(value).__name__}")


def _as_given(rule: ColumnRule, value: Any, _check_length: bool) -> Any:
    return value


def _exactly(rule: ColumnRule, value: Any, _check_length: bool) -> Any:
    assert rule.python is not None
    if type(value) is not rule.python:
        raise _wrong_type(rule, rule.python.__name__, value)
    return value


def _integer(rule: ColumnRule, value: Any, _check_length: bool) -> Any:
    if type(value) is not int:
        raise _wrong_type(rule, "int", value)
    bits = rule.bits or 64
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise _refused(rule, f"is out of range (a {bits}-bit integer)")
    return value


def _float(rule: ColumnRule, value: Any, _check_length: bool) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | decimal.Decimal):
        raise _wrong_type(rule, "a number", value)
    number = float(value)
    if not math.isfinite(number):
        raise _refused(rule, "must be a finite number")
    return number


def _decimal(rule: ColumnRule, value: Any, _check_length: bool) -> Any:
    number: decimal.Decimal | None
    if isinstance(value, decimal.Decimal):
        number = value
    elif isinstance(value, int) and not isinstance(value, bool):
        number = decimal.Decimal(value)
    elif isinstance(value, float | str):
        number = _quietly(
            decimal.Decimal, repr(value) if isinstance(value, float) else value.strip()
        )
        if number is None:
            raise _refused(rule, "must be a decimal number")
    else:
        raise _wrong_type(rule, "a decimal number", value)
    if not number.is_finite():
        raise _refused(rule, "must be a finite number")
    precision, scale = rule.digits or (None, None)
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    if scale is not None and -exponent > scale:
        raise _refused(rule, f"has more than {scale} decimal places")
    if precision is not None:
        before = number.adjusted() + 1 if number else 0
        if before > precision - (scale or 0):
            raise _refused(rule, f"is out of range (at most {precision - (scale or 0)} digits "
                                 "before the point)")  # fmt: skip
    return number


def _text(rule: ColumnRule, value: Any, check_length: bool) -> Any:
    if not isinstance(value, str):
        raise _wrong_type(rule, "text", value)
    if type(value) is not str:
        value = str.__str__(value)  # the characters themselves, whatever a subclass overrides
    if "\x00" in value:
        raise _refused(rule, "cannot contain NUL characters")
    stored = _quietly(str.encode, value, "utf-8")
    if stored is None:
        raise _refused(rule, "contains a lone surrogate, which no backend can store")
    if check_length:
        if rule.length is not None and len(value) > rule.length:
            raise _refused(rule, f"is longer than {rule.length} characters ({len(value)})")
        if rule.max_bytes is not None and len(stored) > rule.max_bytes:
            raise _refused(rule, f"is longer than {rule.max_bytes} bytes ({len(stored)})")
    return value


def _choice(rule: ColumnRule, value: Any, check_length: bool) -> Any:
    text = _text(rule, value, check_length)
    assert rule.choices is not None
    if text not in rule.choices:
        raise _refused(rule, f"must be one of {', '.join(sorted(rule.choices))}")
    return text


def _enum(rule: ColumnRule, value: Any, _check_length: bool) -> Any:
    assert rule.members is not None
    assert rule.python is not None
    member = _quietly(rule.members.__getitem__, value)
    if member is None:
        values = ", ".join(sorted(str(m.value) for m in rule.python))  # type: ignore[attr-defined]
        raise _refused(rule, f"must be a {rule.python.__name__} ({values})")
    return member


def _parsed(rule: ColumnRule, value: Any, kind: type, parse: Callable[[str], Any]) -> Any:
    if isinstance(value, str):
        parsed = _quietly(parse, value)
        if parsed is None:
            raise _refused(rule, f"must be a {kind.__name__} in ISO 8601 form")
        return parsed
    return value


def _timestamp(rule: ColumnRule, value: Any, _check_length: bool) -> Any:
    value = _parsed(rule, value, dt.datetime, dt.datetime.fromisoformat)
    if not isinstance(value, dt.datetime):
        raise _wrong_type(rule, "a datetime", value)
    aware = value.tzinfo is not None and value.utcoffset() is not None
    if rule.aware and not aware:
        raise _refused(rule, "must be timezone-aware (for example datetime.UTC)")
    if rule.aware is False and aware:
        raise _refused(rule, "must be a naive datetime (the column keeps no timezone)")
    return value


def _date(rule: ColumnRule, value: Any, _check_length: bool) -> Any:
    value = _parsed(rule, value, dt.date, dt.date.fromisoformat)
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise _wrong_type(rule, "a date", value)
    return value


def _time(rule: ColumnRule, value: Any, _check_length: bool) -> Any:
    value = _parsed(rule, value, dt.time, dt.time.fromisoformat)
    if not isinstance(value, dt.time):
        raise _wrong_type(rule, "a time", value)
    if (value.tzinfo is not None) != bool(rule.aware):
        raise _refused(rule, "must be a time " + ("with" if rule.aware else "without") + " a zone")
    return value


# Where an interval is not native (SQLite, MariaDB) it is stored as the epoch plus the interval,
# a DATETIME: only as far back as MariaDB's DATETIME goes (1000-01-01) and as far on as
# 9999-12-31, the same on every backend.
_EPOCH = dt.datetime(1970, 1, 1)
SHORTEST_INTERVAL = dt.datetime(1000, 1, 1) - _EPOCH
LONGEST_INTERVAL = dt.datetime(9999, 12, 31, 23, 59, 59, 999999) - _EPOCH


def _interval(rule: ColumnRule, value: Any, _check_length: bool) -> Any:
    if not isinstance(value, dt.timedelta):
        raise _wrong_type(rule, "a timedelta", value)
    if not SHORTEST_INTERVAL <= value <= LONGEST_INTERVAL:
        raise _refused(
            rule,
            f"is out of the range every backend stores (from {SHORTEST_INTERVAL.days} to "
            f"{LONGEST_INTERVAL.days} days)",
        )
    return value


def _uuid(rule: ColumnRule, value: Any, _check_length: bool) -> Any:
    return as_uuid(value, rule.name)


def as_uuid(value: object, name: str = "id") -> uuid.UUID:
    """`value` as a UUID, or `InvalidQueryError` when it is not one."""
    if isinstance(value, uuid.UUID):
        return value
    parsed = _quietly(uuid.UUID, value) if isinstance(value, str) else None
    if parsed is None:
        raise InvalidQueryError(f"{name} is not a valid id (a UUID)")
    return parsed


def _json(rule: ColumnRule, value: Any, _check_length: bool) -> Any:
    dumped = _quietly(json.dumps, value, ensure_ascii=False, allow_nan=False)
    if dumped is None or _quietly(str.encode, dumped, "utf-8") is None:
        raise _refused(rule, "must be JSON: objects, arrays, text, finite numbers, "
                             "true, false or null")  # fmt: skip
    if "\\u0000" in dumped:
        raise _refused(rule, "cannot contain NUL characters")
    if too_deep(value, dumped):
        raise _refused(
            rule, f"is nested deeper than {DEEPEST_JSON} levels, the most every backend takes"
        )
    return value


# Arrays and objects inside one another: MariaDB's JSON_VALID, which its JSON columns check,
# refuses more than this.
DEEPEST_JSON = 31


def too_deep(value: Any, dumped: str) -> bool:
    """Whether the JSON `value` (whose text is `dumped`) nests arrays and objects deeper than
    DEEPEST_JSON levels."""
    if dumped.count("[") + dumped.count("{") <= DEEPEST_JSON:
        return False  # too few brackets to be that deep, whatever the text holds
    level: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, _CONTAINERS) else []
    while level:
        container, depth = level.pop()
        if depth > DEEPEST_JSON:
            return True
        inner = container.values() if isinstance(container, dict) else container
        level.extend((item, depth + 1) for item in inner if isinstance(item, _CONTAINERS))
    return False


_CONTAINERS = (dict, list, tuple)


def _binary(rule: ColumnRule, value: Any, check_length: bool) -> Any:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise _wrong_type(rule, "bytes", value)
    data = bytes(value)
    if check_length and rule.max_bytes is not None and len(data) > rule.max_bytes:
        raise _refused(rule, f"is longer than {rule.max_bytes} bytes ({len(data)})")
    return data


_CHECKS: dict[str, Callable[[ColumnRule, Any, bool], Any]] = {
    "text": _text,
    "choice": _choice,
    "enum": _enum,
    "boolean": _exactly,
    "integer": _integer,
    "float": _float,
    "decimal": _decimal,
    "timestamp": _timestamp,
    "date": _date,
    "time": _time,
    "interval": _interval,
    "uuid": _uuid,
    "json": _json,
    "binary": _binary,
    "other": _as_given,
}


def coerce(rules: Rules, name: str, value: Any, *, check_length: bool = True) -> Any:
    """A caller's value made fit for column `name`, or `InvalidQueryError` saying why not."""
    return rules.rules[name].coerce(value, check_length=check_length)


def from_json(rules: Rules, name: str, value: Any) -> Any:
    """A value read back from a cursor's JSON, as the column holds it."""
    if value is None and name not in rules.nullable:
        raise InvalidQueryError(f"invalid cursor: {name} cannot be null")
    if rules.rules[name].kind == "interval" and type(value) is int:
        value = _quietly(dt.timedelta, microseconds=value)  # as `to_json` wrote it
        if value is None:
            raise InvalidQueryError(f"invalid cursor: {name} is not an interval")
    return coerce(rules, name, value, check_length=False)


def to_json(value: Any) -> Any:
    """A column value as something JSON carries and `from_json` reads back."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if isinstance(value, dt.date | dt.time):  # dates, times and datetimes
        return value.isoformat()
    if isinstance(value, dt.timedelta):  # exactly, in whole microseconds
        return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    return str(value)  # UUID, Decimal


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


def batches(rows: Iterable[Data], size: int) -> Iterator[list[Data]]:
    """`rows` in lists of at most `size`, pulled lazily."""
    check_batch_size(size)
    if isinstance(rows, str | bytes | Mapping | BaseModel) or not isinstance(rows, Iterable):
        raise InvalidQueryError(
            "rows must be an iterable of rows (mappings or pydantic models), not "
            f"{type(rows).__name__}"
        )
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


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
