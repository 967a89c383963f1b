"""What one column holds, and how a caller's value is made fit for it: a `ColumnRule` per
column, read from its type (a length, an integer's width, a decimal's precision and scale, an
enum's members), the check of each kind of column, and the JSON form a value takes in a cursor.

A value of the wrong type is converted where its text form is unambiguous (a UUID, a decimal, a
date given as text; an enum's value for its member) and refused otherwise, with an
`InvalidQueryError` that names the field and the rule, never the value.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

from app.db.errors import InvalidQueryError

T = TypeVar("T")
# What an unbounded text or binary column holds on every backend: MariaDB's TEXT and BLOB.
UNBOUNDED_BYTES = 65_535


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


def quietly(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
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
    try:
        number = float(value)
    except OverflowError:  # an integer past every float
        raise _refused(rule, "is out of range (a double-precision floating-point number)") from None
    if not math.isfinite(number):
        raise _refused(rule, "must be a finite number")
    # -0.0 + 0.0 is 0.0: PostgreSQL would keep the sign, SQLite and MariaDB would not.
    return number + 0.0


def _decimal(rule: ColumnRule, value: Any, _check_length: bool) -> Any:
    number: decimal.Decimal | None
    if isinstance(value, decimal.Decimal):
        number = value
    elif isinstance(value, int) and not isinstance(value, bool):
        number = decimal.Decimal(value)
    elif isinstance(value, float | str):
        number = quietly(
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
    if scale is None:
        return number
    # As the column stores it: at its scale (2 is 2.00), and zero without a sign, so what a
    # write returns is what a read gives, whichever path wrote it and on every backend.
    digits = max(number.adjusted() + 1, 1) + scale
    places = decimal.Decimal(1).scaleb(-scale)
    stored = number.quantize(places, context=decimal.Context(prec=max(digits, 1)))
    return stored if stored else abs(stored)


def _text(rule: ColumnRule, value: Any, check_length: bool) -> Any:
    if not isinstance(value, str):
        raise _wrong_type(rule, "text", value)
    if type(value) is not str:
        value = str.__str__(value)  # the characters themselves, whatever a subclass overrides
    if "\x00" in value:
        raise _refused(rule, "cannot contain NUL characters")
    stored = quietly(str.encode, value, "utf-8")
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
    member = quietly(rule.members.__getitem__, value)
    if member is None:
        values = ", ".join(sorted(str(m.value) for m in rule.python))  # type: ignore[attr-defined]
        raise _refused(rule, f"must be one of {rule.python.__name__}: {values}")
    return member


def _parsed(rule: ColumnRule, value: Any, kind: type, parse: Callable[[str], Any]) -> Any:
    if isinstance(value, str):
        parsed = quietly(parse, value)
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
    if aware and leaves_the_calendar(value):
        raise _refused(rule, "is outside years 1 to 9999 once in UTC, as it is stored")
    return value


def leaves_the_calendar(value: dt.datetime) -> bool:
    """Whether an aware datetime, stored in UTC, falls outside Python's years 1 to 9999: only
    one within a day of either end can."""
    return value.year in (dt.MINYEAR, dt.MAXYEAR) and quietly(value.astimezone, dt.UTC) is None


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
    parsed = quietly(uuid.UUID, value) if isinstance(value, str) else None
    if parsed is None:
        raise InvalidQueryError(f"{name} is not a valid id (a UUID)")
    return parsed


def _json(rule: ColumnRule, value: Any, _check_length: bool) -> Any:
    dumped = quietly(json.dumps, value, ensure_ascii=False, allow_nan=False)
    if dumped is None or quietly(str.encode, dumped, "utf-8") is None:
        raise _refused(rule, "must be JSON: objects, arrays, text, finite numbers, "
                             "true, false or null")  # fmt: skip
    if holds_nul(dumped):
        raise _refused(rule, "cannot contain NUL characters")
    if too_deep(value, dumped):
        raise _refused(
            rule, f"is nested deeper than {DEEPEST_JSON} levels, the most every backend takes"
        )
    return value


# A NUL in JSON text: the escape `\u0000` itself, not a backslash the text escaped (`\\`)
# followed by "u0000". PostgreSQL's jsonb refuses it; so does every backend here.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def holds_nul(dumped: str) -> bool:
    """Whether JSON text (`json.dumps`) holds a NUL character."""
    return "\\u0000" in dumped and _NUL_ESCAPE.search(dumped) is not None


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
