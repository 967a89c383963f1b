"""The column types and the rules of `Base`, without a database."""

from __future__ import annotations

import datetime as dt
import enum
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import CheckConstraint, String, Text
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base
from app.db.types import UTCDateTime, new_hex_ids, new_id, uuid_from_hex
from app.migrations.compare import declared_collation

PARIS = dt.timezone(dt.timedelta(hours=1))


def test_naive_datetimes_are_refused_without_quoting_them() -> None:
    with pytest.raises(ValueError, match="naive datetime") as refused:
        UTCDateTime().process_bind_param(dt.datetime(2026, 1, 1, 12), sqlite.dialect())
    assert "2026" not in str(refused.value)


@pytest.mark.parametrize("dialect", [sqlite.dialect(), mysql.dialect()])
def test_zoneless_backends_store_the_utc_wall_time(dialect: object) -> None:
    stored = UTCDateTime().process_bind_param(
        dt.datetime(2026, 1, 1, 13, tzinfo=PARIS),
        dialect,  # type: ignore[arg-type]
    )
    assert stored == dt.datetime(2026, 1, 1, 12)


def test_postgresql_gets_an_aware_utc_value() -> None:
    stored = UTCDateTime().process_bind_param(
        dt.datetime(2026, 1, 1, 13, tzinfo=PARIS), postgresql.dialect()
    )
    assert stored == dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    assert stored is not None
    assert stored.tzinfo == dt.UTC


def test_values_read_back_are_aware_utc() -> None:
    loaded = UTCDateTime().process_result_value(dt.datetime(2026, 1, 1, 12), sqlite.dialect())
    assert loaded == dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)


def test_new_ids_are_version_7_and_increase() -> None:
    ids = [new_id() for _ in range(1000)]
    assert {value.version for value in ids} == {7}
    assert ids == sorted(ids)


def test_bulk_ids_are_uuid7_in_increasing_order_stamped_now() -> None:
    before = time.time_ns() // 1_000_000
    ids = new_hex_ids(2_000)
    after = time.time_ns() // 1_000_000
    parsed = [uuid.UUID(value) for value in ids]
    assert ids == sorted(ids)
    assert len(set(ids)) == 2_000
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert all(before <= u.int >> 80 <= after for u in parsed)
    assert all(len(value) == 32 and value == u.hex for value, u in zip(ids, parsed, strict=True))


def test_ids_read_from_hex_text_are_ordinary_uuids() -> None:
    for _ in range(200):
        original = uuid.uuid4()
        made = uuid_from_hex(original.hex)
        assert made == original
        assert hash(made) == hash(original)
        assert (str(made), made.version, made.is_safe) == (str(original), 4, uuid.SafeUUID.unknown)
        assert {made: 1}[original] == 1
    assert uuid_from_hex(str(original)) == original  # the dashed form takes the general path
    for odd in ("z" * 32, "0x" + "1" * 30, "-" + "1" * 31, "1_" * 16, "ab " * 10 + "ab"):
        assert _outcome(uuid_from_hex, odd) == _outcome(uuid.UUID, odd)  # as the class does


def _outcome(make: Any, text: str) -> object:
    try:
        return make(text)
    except ValueError:
        return ValueError


def test_every_text_column_a_model_declares_compares_exactly_unless_it_names_a_collation() -> None:
    class Note(Base):
        __tablename__ = "notes_exactness"
        id: Mapped[int] = mapped_column(primary_key=True)
        short: Mapped[str]
        sized: Mapped[str] = mapped_column(String(64))
        body: Mapped[str | None] = mapped_column(Text)
        own: Mapped[str] = mapped_column(String(64, collation="utf8mb4_general_ci"))

    try:
        columns = Note.__table__.c
        for name, length in (("short", 255), ("sized", 64), ("body", None)):
            kind = columns[name].type
            assert getattr(kind, "length", None) == length, name
            assert declared_collation(kind, postgresql.dialect()) == "C", name
            assert declared_collation(kind, mysql.dialect()) == "utf8mb4_nopad_bin", name
        assert declared_collation(columns.own.type, mysql.dialect()) == "utf8mb4_general_ci"
    finally:
        Base.metadata.remove(Note.__table__)  # the mapper stays, harmless without its table


class Mood(enum.Enum):
    HAPPY = "happy"
    SAD = "sad"


def test_two_enum_columns_of_one_enum_have_checks_named_by_their_columns() -> None:
    class Day(Base):
        __tablename__ = "days_enum_checks"
        id: Mapped[int] = mapped_column(primary_key=True)
        morning: Mapped[Mood]
        evening: Mapped[Mood | None]

    try:
        names = {c.name for c in Day.__table__.constraints if isinstance(c, CheckConstraint)}
        assert names == {"ck_days_enum_checks_morning", "ck_days_enum_checks_evening"}
        assert Day.__table__.c.morning.type.enums == ["happy", "sad"]
    finally:
        Base.metadata.remove(Day.__table__)


def test_a_big_integer_key_may_name_its_own_sqlite_variant() -> None:
    """SQLAlchemy's documented form for a BIGINT key SQLite numbers: the model's own variant
    stays, where the one the data layer adds would be refused as a second."""
    from sqlalchemy import BigInteger, Integer
    from sqlalchemy.dialects import sqlite

    class Counter(Base):
        __tablename__ = "counters_own_variant"
        id: Mapped[int] = mapped_column(
            BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
        )

    try:
        key = Counter.__table__.c.id.type
        assert str(key.compile(dialect=sqlite.dialect())) == "INTEGER"
        assert str(key.compile(dialect=postgresql.dialect())) == "BIGINT"
    finally:
        Base.metadata.remove(Counter.__table__)
