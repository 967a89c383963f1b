"""Column types shared by the models."""

from __future__ import annotations

import datetime as dt
import enum
import os
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import DateTime, Dialect, String, Text, Uuid
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.types import TypeDecorator, TypeEngine
from uuid6 import uuid7


def utcnow() -> dt.datetime:
    """The current time, timezone-aware, in UTC."""
    return dt.datetime.now(dt.UTC)


def new_id() -> uuid.UUID:
    """A fresh UUIDv7: time-ordered, so new rows land at the right edge of the index."""
    value: uuid.UUID = uuid7()
    return value


_VARIANT = 0b10 << 62


def new_hex_ids(count: int) -> list[str]:
    """`count` fresh UUIDv7s as 32 hex digits (the storage form of an id on every backend but
    PostgreSQL, which reads it too), in increasing order, for bulk inserts.

    The layout of RFC 9562: 48 bits of Unix milliseconds, the version, 12 random bits shared by
    the batch, the variant and 62 random bits per id, drawn in one call and sorted so that the
    batch keeps its time order.
    """
    millis = time.time_ns() // 1_000_000
    high = f"{(millis << 16) | (0x7 << 12) | secrets.randbits(12):016x}"
    randoms = sorted(memoryview(os.urandom(8 * count)).cast("Q"))
    return [high + f"{_VARIANT | (r >> 2):016x}" for r in randoms]


def _sqlite_utc(value: str | None) -> dt.datetime | None:
    """SQLite's stored UTC wall time (`2026-11-27 12:00:00.000000`) as an aware datetime."""
    # Parsing the offset is cheaper than replace() afterwards; "+00:00" gives datetime.UTC.
    return None if value is None else dt.datetime.fromisoformat(value + "+00:00")


_new_object = object.__new__
_set_slot = object.__setattr__
_SAFETY_UNKNOWN = uuid.SafeUUID.unknown


def uuid_from_hex(value: str) -> uuid.UUID:
    """The UUID written as 32 hex digits, made without `UUID.__init__`'s general parsing, which
    costs more than fetching the row it belongs to; anything else goes through it."""
    try:
        raw = bytes.fromhex(value)  # strict: no 0x, sign or underscores, unlike int(value, 16)
    except ValueError:
        raw = b""
    if len(raw) != 16:
        return uuid.UUID(value)  # the dashed form, or its error for anything malformed
    made = _new_object(uuid.UUID)
    _set_slot(made, "int", int.from_bytes(raw))  # UUID is immutable: its slots are set directly
    _set_slot(made, "is_safe", _SAFETY_UNKNOWN)
    return made


def _uuid_from_text(value: Any) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    return uuid_from_hex(value)


class UUIDColumn(Uuid[uuid.UUID]):
    """`sqlalchemy.Uuid`, read faster where it is stored as hex text (SQLite, MariaDB)."""

    cache_ok = True

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        if self.native_uuid and dialect.supports_native_uuid:
            native: Callable[[Any], Any] | None = super().result_processor(  # type: ignore[no-untyped-call]
                dialect, coltype
            )
            return native
        return _uuid_from_text


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp that is stored and returned as aware UTC on every backend.

    Naive datetimes are refused: their meaning depends on the machine that made them.
    SQLite and MariaDB keep no zone, so those store the UTC wall time and get the zone back on read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[dt.datetime]:
        return dt.datetime

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[dt.datetime]:
        if dialect.name in ("mysql", "mariadb"):
            # Microseconds: without fsp MariaDB truncates to whole seconds.
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.__class__ is dt.datetime and value.tzinfo is dt.UTC:
            # The common case (utcnow, seeds) without the conversions below.
            return value if dialect.name == "postgresql" else value.replace(tzinfo=None)
        if not isinstance(value, dt.datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            # The value stays out of the message: the error reaches logs and callers.
            raise ValueError(
                "a naive datetime refused: give it a timezone (for example datetime.UTC)"
            )
        value = value.astimezone(dt.UTC)
        if dialect.name == "postgresql":
            return value
        return value.replace(tzinfo=None)

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        if dialect.name == "sqlite":
            return _sqlite_utc  # one step from the stored text (a faster read of many rows)
        return super().result_processor(dialect, coltype)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is dt.UTC:
            return value  # PostgreSQL sessions run in UTC (app.db.session)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


# Code-point order, exact equality, no trailing-space padding: what SQLite's BINARY does. Declared
# on every text column so no server or database default can change what `==`, LIKE and ORDER BY
# mean (MariaDB's usual utf8mb4_general_ci would equate 'Lamp' with 'LAMP', and every PAD SPACE
# collation, utf8mb4_bin included, 'pad' with 'pad ').
MARIADB_TEXT_COLLATION = "utf8mb4_nopad_bin"
POSTGRESQL_TEXT_COLLATION = "C"


def exact_version_of(column_type: TypeEngine[Any]) -> TypeEngine[Any] | None:
    """The exact-text form (`exact_text`) of a plain text type that names no collation of its
    own; None for any other type (an enum, a text type with a collation or per-backend
    variants: the author's choice)."""
    if not isinstance(column_type, String) or isinstance(column_type, sa.Enum):
        return None
    if column_type.collation is not None or column_type._variant_mapping:
        return None
    length = None if isinstance(column_type, Text) else column_type.length
    return exact_text(length)


def double_version_of(column_type: TypeEngine[Any]) -> TypeEngine[Any] | None:
    """A plain `Float` (no precision, no per-backend variants) as double precision on MariaDB
    too, as it is on PostgreSQL and SQLite (MariaDB's bare FLOAT holds 4 bytes); None for any
    other type."""
    if type(column_type) is not sa.Float or column_type.precision is not None:
        return None
    if column_type._variant_mapping:
        return None
    double = mysql.DOUBLE(asdecimal=column_type.asdecimal)
    return column_type.with_variant(double, "mysql", "mariadb")


def _not_a_member(owner: str) -> Exception:
    return LookupError(f"the database holds a value of {owner} that this code does not know")


# What a read of a value no member stands for raises: `app.db.errors` makes it its
# SchemaMismatchError as it is imported (it depends on the models, which depend on this module).
unknown_member: Callable[[str], Exception] = _not_a_member


class StoredEnum(sa.Enum):
    """`sqlalchemy.Enum` (what every enum column of a model becomes) whose read of a stored
    value that is none of its members (written by newer code, or by hand) raises
    `unknown_member` naming the column's enum, not the value: SQLAlchemy's LookupError quotes
    the value."""

    def plain(self) -> sa.Enum:
        """The same column as a plain `sqlalchemy.Enum` of its stored values, as a migration
        writes it (an adapted type's own repr would carry what adapting set, such as not
        creating a native type)."""
        return sa.Enum(
            *self.enums,
            name=self.name,
            native_enum=self.native_enum,
            create_constraint=self.create_constraint,
            length=self.length,
            schema=self.schema,
            inherit_schema=self.inherit_schema,
        )

    def _object_value_for_elem(self, elem: str) -> str | enum.Enum:
        # Looked up without a KeyError: one would stay in the chain as the error's context.
        found = self._object_lookup.get(elem, _NOT_A_MEMBER)
        if found is not _NOT_A_MEMBER:
            return found  # type: ignore[return-value]
        owner = self.enum_class.__name__ if self.enum_class is not None else str(self.name)
        raise unknown_member(owner)


_NOT_A_MEMBER = object()


def enum_values(enum_class: type[enum.Enum]) -> list[str]:
    """What an enum column stores: its members' values (not their names)."""
    return [str(member.value) for member in enum_class]


def exact_text(length: int | None = None) -> TypeEngine[str]:
    """A text column (VARCHAR(length), or unbounded TEXT) with binary, no-pad comparison on
    every backend."""
    if length is None:
        return (
            Text()
            .with_variant(
                mysql.TEXT(charset="utf8mb4", collation=MARIADB_TEXT_COLLATION), "mysql", "mariadb"
            )
            .with_variant(postgresql.TEXT(collation=POSTGRESQL_TEXT_COLLATION), "postgresql")
        )
    return (
        String(length)
        .with_variant(
            mysql.VARCHAR(length, charset="utf8mb4", collation=MARIADB_TEXT_COLLATION),
            "mysql",
            "mariadb",
        )
        .with_variant(postgresql.VARCHAR(length, collation=POSTGRESQL_TEXT_COLLATION), "postgresql")
    )


class MicrosecondInterval(sa.Interval):
    """`sqlalchemy.Interval` whose emulated form (the epoch plus the interval, a DATETIME)
    keeps microseconds on MariaDB as on SQLite; PostgreSQL's INTERVAL is native."""

    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return super().load_dialect_impl(dialect)


def microsecond_version_of(column_type: TypeEngine[Any]) -> TypeEngine[Any] | None:
    """A plain `Time`, `DateTime` or `Interval` (no per-backend variants) that keeps
    microseconds on MariaDB too, as on PostgreSQL and SQLite (MariaDB's bare TIME and DATETIME
    keep whole seconds, and drop the rest without a word); a `DateTime(timezone=True)` is
    `UTCDateTime`, aware UTC on every backend (SQLite and MariaDB keep no offset: the wall
    time of any zone would be stored as given, and compared and ordered as if it were UTC's).
    None for any other type."""
    if column_type._variant_mapping:
        return None
    kind = type(column_type)
    if kind is sa.Time:
        return column_type.with_variant(mysql.TIME(fsp=6), "mysql", "mariadb")
    if kind is sa.DateTime and column_type.timezone:  # type: ignore[attr-defined]
        return UTCDateTime()
    if kind is sa.DateTime:
        return column_type.with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    if kind is sa.Interval:
        interval: Any = column_type
        return MicrosecondInterval(
            native=interval.native,
            second_precision=interval.second_precision,
            day_precision=interval.day_precision,
        )
    return None
