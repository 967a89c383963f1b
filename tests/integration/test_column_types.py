"""A team's model with the generic column types the shipped models do not use (Float,
SmallInteger, Time, Interval, a naive DateTime, LargeBinary, Boolean, JSON, an integer key, a
key of two columns): every write path, fast paths included, stores the same values
(microseconds too), and every sortable column pages the same on every backend."""

from __future__ import annotations

import datetime as dt
import enum
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    LargeBinary,
    Numeric,
    SmallInteger,
    String,
    Table,
    literal_column,
    select,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.pool import NullPool

from app.db.errors import (
    InvalidQueryError,
    NotFoundError,
    SchemaMismatchError,
    StaleObjectError,
)
from app.db.models import Base, IdMixin, VersionMixin
from app.db.session import make_engine, make_session_factory
from app.repositories import UnitOfWork


@contextmanager
def defined_again() -> Iterator[None]:
    """Each backend's run defines the module's models anew (their tables leave the metadata
    after it): the declarative registry's notice that a class name comes again is expected."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "This declarative base already contains a class")
        yield


@pytest.fixture(scope="module")
def reading() -> Iterator[type[Any]]:
    """The same columns on a model whose key the repository makes (a UUIDv7)."""

    with defined_again():

        class Reading(IdMixin, Base):
            __tablename__ = "probe_readings"
            code: Mapped[str] = mapped_column(String(32), unique=True)
            ratio: Mapped[float] = mapped_column(Float)
            small: Mapped[int] = mapped_column(SmallInteger)
            at: Mapped[dt.time]
            span: Mapped[dt.timedelta]
            blob: Mapped[bytes] = mapped_column(LargeBinary)
            flag: Mapped[bool]
            noted: Mapped[dt.datetime] = mapped_column(DateTime)

    yield Reading
    Base.metadata.remove(Reading.__table__)


@pytest.fixture(scope="module")
def sample() -> Iterator[type[Any]]:
    """Only columns a bulk path takes column by column, none of them COPY text."""

    with defined_again():

        class Sample(IdMixin, Base):
            __tablename__ = "probe_samples"
            code: Mapped[str] = mapped_column(String(32), unique=True)
            value: Mapped[float | None] = mapped_column(Float)
            raw: Mapped[bytes | None] = mapped_column(LargeBinary)

    yield Sample
    Base.metadata.remove(Sample.__table__)


@pytest.fixture(scope="module")
def gauge() -> Iterator[type[Any]]:
    with defined_again():

        class Gauge(Base):
            __tablename__ = "probe_gauges"
            id: Mapped[int] = mapped_column(primary_key=True)
            code: Mapped[str] = mapped_column(String(32), unique=True)
            ratio: Mapped[float] = mapped_column(Float)
            small: Mapped[int] = mapped_column(SmallInteger)
            at: Mapped[dt.time]
            span: Mapped[dt.timedelta]
            blob: Mapped[bytes] = mapped_column(LargeBinary)
            flag: Mapped[bool]
            noted: Mapped[dt.datetime] = mapped_column(DateTime)

    yield Gauge
    Base.metadata.remove(Gauge.__table__)  # the mapper stays, harmless without its table


@pytest.fixture(scope="module")
def document() -> Iterator[type[Any]]:
    with defined_again():

        class Document(IdMixin, Base):
            __tablename__ = "probe_documents"
            code: Mapped[str] = mapped_column(String(32), unique=True)
            body: Mapped[Any] = mapped_column(JSON)

    yield Document
    Base.metadata.remove(Document.__table__)


@pytest.fixture(scope="module")
def pair() -> Iterator[type[Any]]:
    """A key of two columns, one text and one integer."""
    with defined_again():

        class Pair(VersionMixin, Base):
            __tablename__ = "probe_pairs"
            region: Mapped[str] = mapped_column(String(8), primary_key=True)
            num: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
            note: Mapped[str | None] = mapped_column(String(20))

    yield Pair
    Base.metadata.remove(Pair.__table__)


@pytest.fixture(scope="module")
def stamp() -> Iterator[type[Any]]:
    """A timestamp declared with SQLAlchemy's own aware type, not `Mapped[datetime]`."""
    with defined_again():

        class Stamp(Base):
            __tablename__ = "probe_stamps"
            id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
            at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    yield Stamp
    Base.metadata.remove(Stamp.__table__)


@pytest.fixture(scope="module")
def entry() -> Iterator[type[Any]]:
    """A decimal of a fixed scale."""
    with defined_again():

        class Entry(VersionMixin, Base):
            __tablename__ = "probe_entries"
            id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
            amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))

    yield Entry
    Base.metadata.remove(Entry.__table__)


@pytest.fixture(scope="module")
def tally() -> Iterator[type[Any]]:
    """A column the database computes on every update (an SQL `onupdate`)."""
    with defined_again():

        class Tally(VersionMixin, Base):
            __tablename__ = "probe_tallies"
            id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
            note: Mapped[str] = mapped_column(String(20))
            touched: Mapped[int] = mapped_column(default=0, onupdate=literal_column("touched") + 1)

    yield Tally
    Base.metadata.remove(Tally.__table__)


@pytest.fixture
def factory(
    fresh_url: str,
    entry: type[Any],
    tally: type[Any],
    gauge: type[Any],
    reading: type[Any],
    sample: type[Any],
    document: type[Any],
    pair: type[Any],
    stamp: type[Any],
) -> Iterator[Any]:
    engine = make_engine(fresh_url, poolclass=NullPool)
    tables: list[Table] = [
        gauge.__table__,
        reading.__table__,
        sample.__table__,
        document.__table__,
        pair.__table__,
        stamp.__table__,
        entry.__table__,
        tally.__table__,
    ]
    Base.metadata.create_all(engine, tables=tables)
    yield make_session_factory(engine)
    engine.dispose()


def _row(n: int) -> dict[str, Any]:
    return {
        "id": n + 1,
        "code": f"g{n:03}",
        "ratio": 1 / (n + 3),  # not a float a 4-byte column can hold exactly
        "small": n - 10,
        "at": dt.time(n % 24, n % 60, n % 60, n * 1001 + 7),
        "span": dt.timedelta(days=(n % 7 - 3) * 40_000, microseconds=n * 1001 + 7),
        "blob": bytes([n % 256, 0, 255]),
        "flag": n % 3 == 0,
        "noted": dt.datetime(1999, 12, 31, 23, 59, 59, n * 1001 + 7),
    }


def _stored(factory: Any, model: type[Any]) -> list[dict[str, Any]]:
    with factory() as session:
        rows = session.execute(select(model.__table__).order_by(model.code)).mappings()
        return [dict(row) for row in rows]


def test_every_write_path_stores_each_value_exactly(factory: Any, gauge: type[Any]) -> None:
    rows = [_row(n) for n in range(40)]
    with UnitOfWork(factory) as uow:
        repository = uow.repository(gauge)
        repository.create(rows[0])
        repository.create_many(rows[1:20])
        repository.upsert_many(rows[20:30], conflict="code")
        repository.upsert(rows[30], conflict="code")
        repository.upsert_many(rows[31:], conflict="code")
        uow.commit()
    assert _stored(factory, gauge) == rows
    changed = [{**row, "ratio": row["ratio"] * 2, "flag": not row["flag"]} for row in rows]
    with UnitOfWork(factory) as uow:
        uow.repository(gauge).upsert_many(changed, conflict="code")
        uow.commit()
    assert _stored(factory, gauge) == changed


def test_negative_zero_is_stored_as_zero_on_every_path_and_backend(
    factory: Any, gauge: type[Any]
) -> None:
    """PostgreSQL keeps the sign of -0.0, SQLite and MariaDB do not: stored as 0.0 everywhere,
    the same value comes back on every backend (and -0.0 == 0.0 all the same)."""
    rows = [{**_row(n), "ratio": -0.0} for n in range(5)]
    with UnitOfWork(factory) as uow:
        repository = uow.repository(gauge)
        repository.create(rows[0])
        repository.create_many(rows[1:3])
        repository.upsert(rows[3], conflict="code")
        repository.upsert_many(rows[4:], conflict="code")
        repository.update(rows[0]["id"], {"ratio": -0.0})
        uow.commit()
    signs = [math.copysign(1.0, row["ratio"]) for row in _stored(factory, gauge)]
    assert signs == [1.0] * len(rows)


def test_a_decimal_comes_back_from_every_write_as_it_is_stored(
    factory: Any, entry: type[Any]
) -> None:
    """A decimal given with fewer places than its column's scale (or as an int, or text) is
    what the database stores, at the column's scale, on every path and backend: the returned
    row says what a read would."""
    with UnitOfWork(factory) as uow:
        entries = uow.repository(entry)
        returned = [
            entries.create({"id": 1, "amount": "2"}).amount,
            entries.update(1, {"amount": 3}).amount,
            entries.update(1, {"amount": Decimal("4.5")}, expected_version=2).amount,
            entries.upsert({"id": 2, "amount": Decimal("-0")}).amount,
            entries.upsert({"id": 2, "amount": "1E+1"}).amount,
        ]
        uow.commit()
    assert [str(amount) for amount in returned] == ["2.00", "3.00", "4.50", "0.00", "10.00"]
    with UnitOfWork(factory) as uow:
        stored = [str(uow.repository(entry).get_one(key).amount) for key in (1, 2)]
    assert stored == ["4.50", "10.00"]


def test_json_text_with_an_escaped_backslash_before_u0000_is_stored_and_a_nul_refused(
    factory: Any, document: type[Any]
) -> None:
    """A backslash followed by "u0000" is six characters of text, not a NUL: stored on every
    path. A NUL itself, which PostgreSQL's jsonb cannot hold, is refused on every backend."""
    texts = ["\\u0000", "C:\\u0000dir", "\\\\u0000", {"\\u0000": ["\\u0000"]}]
    with UnitOfWork(factory) as uow:
        documents = uow.repository(document)
        documents.create({"code": "d0", "body": texts[0]})
        documents.create_many([{"code": f"d{n}", "body": body} for n, body in enumerate(texts)][1:])
        for body in ("\x00", ["a\\\x00"], {"k\x00": 1}):
            with pytest.raises(InvalidQueryError, match="body cannot contain NUL characters"):
                documents.create({"code": "nul", "body": body})
            with pytest.raises(InvalidQueryError, match="body cannot contain NUL characters"):
                documents.create_many([{"code": "nul", "body": body}])
        uow.commit()
    with UnitOfWork(factory) as uow:
        stored = [row.body for row in uow.repository(document).list(order_by=["code"])]
    assert stored == texts


def test_an_aware_datetime_that_leaves_the_calendar_in_utc_is_refused_on_every_path(
    factory: Any, stamp: type[Any]
) -> None:
    """9999-12-31 23:00 at UTC-5 is in year 10000 in UTC, where the column stores it: refused
    like any other value the column cannot hold, naming the field, on every write path and in
    a filter; not an OverflowError from the driver."""
    late = dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    early = dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5)))
    refused = "at is outside years 1 to 9999 once in UTC"
    with UnitOfWork(factory) as uow:
        stamps = uow.repository(stamp)
        stamps.create({"id": 1, "at": None})
        for value in (late, early, late.isoformat()):
            for write in (
                partial(stamps.create, {"id": 2, "at": value}),
                partial(stamps.create_many, [{"id": 2, "at": value}]),
                partial(stamps.update, 1, {"at": value}),
                partial(stamps.upsert, {"id": 1, "at": value}),
                partial(stamps.upsert_many, [{"id": 1, "at": value}]),
                partial(stamps.list, where={"at__ge": value}),
            ):
                with pytest.raises(InvalidQueryError, match=refused):
                    write()
        edge = dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(dt.timedelta(hours=1)))
        stamps.create_many([{"id": 3, "at": edge}])
        uow.commit()
    with UnitOfWork(factory) as uow:
        assert uow.repository(stamp).get_one(3).at == edge


def test_a_column_the_database_computes_on_update_comes_back_with_the_row(
    factory: Any, tally: type[Any]
) -> None:
    """An update of a row read already is one UPDATE whose new values the repository knows,
    except where the database computes one (an SQL `onupdate`): that one is read back."""
    with UnitOfWork(factory) as uow:
        tallies = uow.repository(tally)
        tallies.create({"id": 1, "note": "a"})
        updated = tallies.update(1, {"note": "b"})
        assert (updated.note, updated.touched, updated.version) == ("b", 1, 2)
        updated = tallies.update(1, {"note": "c"}, expected_version=2)
        assert (updated.note, updated.touched, updated.version) == ("c", 2, 3)
        uow.commit()
    with UnitOfWork(factory) as uow:
        stored = uow.repository(tally).get_one(1)
        assert (stored.note, stored.touched, stored.version) == ("c", 2, 3)


def test_keys_the_database_numbers_go_on_past_the_ones_given(
    factory: Any, gauge: type[Any]
) -> None:
    """An integer key the database numbers, given by the caller on any write path, moves the
    numbering on past it, on every backend (PostgreSQL's sequence does not move by itself):
    the next row left to the database gets the next number, not a conflict."""

    def numbered(uow: UnitOfWork, n: int) -> int:
        values = {key: value for key, value in _row(n).items() if key != "id"}
        return int(uow.repository(gauge).create(values).id)

    writes = [
        ("create", lambda repository: repository.create(_row(99))),
        ("create_many", lambda repository: repository.create_many([_row(199), _row(149)])),
        ("upsert", lambda repository: repository.upsert(_row(299), conflict="code")),
        ("upsert_many", lambda repository: repository.upsert_many([_row(399)], conflict="code")),
    ]
    with UnitOfWork(factory) as uow:
        assert numbered(uow, 0) == 1
        uow.commit()
    for step, (name, write) in enumerate(writes, start=1):
        with UnitOfWork(factory) as uow:
            write(uow.repository(gauge))
            uow.commit()
        with UnitOfWork(factory) as uow:
            assert numbered(uow, step) == step * 100 + 1, name
            uow.commit()


def test_create_many_numbers_rows_in_their_order_when_some_give_the_key(
    factory: Any, gauge: type[Any]
) -> None:
    """Rows that leave the key to the database and rows that give it, mixed in one call, are
    written in the order given: each row gets the number `create` one by one would give it."""

    def unkeyed(n: int) -> dict[str, Any]:
        return {key: value for key, value in _row(n).items() if key != "id"}

    rows = [unkeyed(0), unkeyed(1), {**_row(2), "id": 9000}, unkeyed(3), {**_row(4), "id": 5}]
    with UnitOfWork(factory) as uow:
        uow.repository(gauge).create_many(rows)
        uow.commit()
    with UnitOfWork(factory) as uow:
        stored = {row.code: row.id for row in uow.repository(gauge).list(order_by=["code"])}
    assert stored == {"g000": 1, "g001": 2, "g002": 9000, "g003": 9001, "g004": 5}


@pytest.mark.parametrize(
    "order", ["flag", "-flag", "ratio", "-ratio", "small", "-at", "span", "-span", "noted"]
)
def test_every_sortable_column_pages_through_each_row_once(
    factory: Any, gauge: type[Any], order: str
) -> None:
    rows = [_row(n) for n in range(25)]
    with UnitOfWork(factory) as uow:
        uow.repository(gauge).create_many(rows)
        uow.commit()
    seen: list[int] = []
    cursor = None
    with UnitOfWork(factory) as uow:
        while True:
            page = uow.repository(gauge).paginate(order_by=[order], limit=4, cursor=cursor)
            seen += [row.id for row in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
    key = order.lstrip("-")
    expected = sorted(rows, key=lambda row: (row[key], row["id"]), reverse=order.startswith("-"))
    if order.startswith("-"):  # the primary key breaks ties in the same direction
        expected = sorted(rows, key=lambda row: (row[key], row["id"]), reverse=True)
    assert seen == [row["id"] for row in expected]


def test_a_model_whose_key_the_repository_makes_upserts_every_type_in_bulk(
    factory: Any, reading: type[Any]
) -> None:
    rows = [{k: v for k, v in _row(n).items() if k != "id"} for n in range(30)]
    with UnitOfWork(factory) as uow:
        uow.repository(reading).upsert_many(rows[:20], conflict="code")
        uow.repository(reading).upsert_many(rows, conflict="code")
        uow.commit()
    stored = _stored(factory, reading)
    assert [{k: v for k, v in row.items() if k != "id"} for row in stored] == rows


def test_floats_and_bytes_upsert_in_bulk(factory: Any, sample: type[Any]) -> None:
    rows = [{"code": f"s{n:02}", "value": n / 7, "raw": bytes([n, 0])} for n in range(12)]
    with UnitOfWork(factory) as uow:
        uow.repository(sample).upsert_many(rows[:6], conflict="code")
        uow.repository(sample).upsert_many([{**row, "value": 0.5} for row in rows], conflict="code")
        uow.commit()
    stored = [{k: v for k, v in row.items() if k != "id"} for row in _stored(factory, sample)]
    assert stored == [{**row, "value": 0.5} for row in rows]


def test_an_integer_beyond_a_floats_range_is_refused_by_name_on_every_path(
    factory: Any, sample: type[Any]
) -> None:
    """10**400 has no float: each write path refuses it naming the field (it was a raw
    OverflowError), a list of several such rows included (checked a column at a time first)."""
    huge = 10**400
    writes = {
        "create": lambda repository: repository.create({"code": "h", "value": huge}),
        "update": lambda repository: repository.update(
            repository.create({"code": "u"}).id, {"value": huge}
        ),
        "create_many": lambda repository: repository.create_many(
            [{"code": f"m{n}", "value": huge} for n in range(3)]
        ),
        "upsert_many": lambda repository: repository.upsert_many(
            [{"code": f"p{n}", "value": huge} for n in range(3)], conflict="code"
        ),
        "list": lambda repository: repository.list(where={"value": huge}),
    }
    for write in writes.values():
        with UnitOfWork(factory) as uow, pytest.raises(InvalidQueryError) as refused:
            write(uow.repository(sample))
        assert str(refused.value).removeprefix("row 0 (counting from 0): ") == (
            "value is out of range (a double-precision floating-point number)"
        )
    assert _stored(factory, sample) == []


def _nested(levels: int) -> Any:
    body: Any = 1
    for level in range(levels):
        body = [body] if level % 2 else {"in": body}
    return body


def test_json_nested_as_deep_as_every_backend_takes_is_stored_and_deeper_refused_alike(
    factory: Any, document: type[Any]
) -> None:
    deepest, too_deep = _nested(31), _nested(32)
    writes = {
        "create": lambda repository, row: repository.create(row),
        "create_many": lambda repository, row: repository.create_many([row]),
        "upsert_many": lambda repository, row: repository.upsert_many([row], conflict="code"),
    }
    with UnitOfWork(factory) as uow:
        repository = uow.repository(document)
        for name, write in writes.items():
            write(repository, {"code": name, "body": deepest})
            with pytest.raises(InvalidQueryError, match="nested deeper than 31 levels"):
                write(repository, {"code": f"{name} deeper", "body": too_deep})
        uow.commit()
    stored = _stored(factory, document)
    assert [(row["code"], row["body"]) for row in stored] == [
        ("create", deepest),
        ("create_many", deepest),
        ("upsert_many", deepest),
    ]


def test_a_key_of_two_columns_is_read_updated_and_deleted_by_its_values(
    factory: Any, pair: type[Any]
) -> None:
    with UnitOfWork(factory) as uow:
        pairs = uow.repository(pair)
        pairs.create_many([{"region": "eu", "num": n, "note": f"n{n}"} for n in range(3)])
        uow.commit()
    with UnitOfWork(factory) as uow:
        pairs = uow.repository(pair)
        assert pairs.get(("eu", 1)).note == "n1"
        assert pairs.get({"num": "2", "region": "eu"}).note == "n2"  # a number as a URL has it
        assert pairs.get(("us", 1)) is None
        updated = pairs.update(("eu", 1), {"note": "one"}, expected_version=1)
        assert (updated.note, updated.version) == ("one", 2)
        with pytest.raises(StaleObjectError):
            pairs.update(["eu", 1], {"note": "uno"}, expected_version=1)
        pairs.delete({"region": "eu", "num": 0})
        with pytest.raises(NotFoundError):
            pairs.get_one(("eu", 0))
        for wrong in ("eu", ("eu",), ("eu", 1, 2), {"region": "eu"}, ("eu", None)):
            with pytest.raises(InvalidQueryError):
                pairs.get(wrong)
        # A number too large for the column says so, given as a number or as its text.
        for too_large in (10**20, str(10**20), str(-(10**30))):
            with pytest.raises(InvalidQueryError, match="num is out of range"):
                pairs.get(("eu", too_large))
        uow.commit()
    with factory() as session:
        stored = session.execute(select(pair.region, pair.num, pair.note).order_by(pair.num)).all()
    assert [tuple(row) for row in stored] == [
        ("eu", 1, "one"),
        ("eu", 2, "n2"),
    ]


def test_an_aware_datetime_column_holds_instants_on_every_backend(
    factory: Any, stamp: type[Any]
) -> None:
    """`DateTime(timezone=True)` on a model: SQLite and MariaDB keep no offset, so the column
    is aware UTC as `Mapped[datetime]` is: values in any zone are the same instants, compared,
    ordered and paged as such, read back in UTC."""
    ten_utc = dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC)
    two_hours_east = dt.timezone(dt.timedelta(hours=2))
    with UnitOfWork(factory) as uow:
        stamps = uow.repository(stamp)
        stamps.create({"id": 1, "at": ten_utc})
        stamps.create({"id": 2, "at": dt.datetime(2024, 1, 1, 11, tzinfo=two_hours_east)})
        stamps.create({"id": 3, "at": dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)})
        uow.commit()
    with UnitOfWork(factory) as uow:
        stamps = uow.repository(stamp)
        assert [s.id for s in stamps.list(order_by=["at"])] == [2, 1, 3]
        assert [s.id for s in stamps.list(where={"at__lt": ten_utc})] == [2]
        nine_utc = dt.datetime(2024, 1, 1, 9, tzinfo=dt.UTC)
        assert stamps.get_one(2).at == nine_utc
        assert stamps.get_one(2).at.utcoffset() == dt.timedelta(0)
        first = stamps.paginate(order_by=["at"], limit=1)
        rest = stamps.paginate(order_by=["at"], limit=5, cursor=first.next_cursor)
        assert [s.id for s in [*first.items, *rest.items]] == [2, 1, 3]


def test_a_cursor_is_refused_by_another_model_of_the_same_name(factory: Any) -> None:
    """Two teams' models may share a class name (in two packages): a cursor one of them made is
    a foreign cursor to the other, refused, never a page of the other table."""
    with defined_again():

        class Twin(Base):
            __tablename__ = "probe_twins_a"
            id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)

        first = Twin

        class Twin(Base):  # type: ignore[no-redef]
            __tablename__ = "probe_twins_b"
            id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)

        second = Twin
    tables = [first.__table__, second.__table__]
    try:
        with factory() as session:
            Base.metadata.create_all(session.connection(), tables=tables)
            session.commit()
        with UnitOfWork(factory) as uow:
            for model in (first, second):
                uow.repository(model).create_many([{"id": n} for n in range(4)])
            page = uow.repository(first).paginate(limit=2)
            assert page.next_cursor is not None
            with pytest.raises(InvalidQueryError, match="invalid cursor"):
                uow.repository(second).paginate(limit=2, cursor=page.next_cursor)
    finally:
        for table in tables:
            Base.metadata.remove(table)


class Mood(enum.Enum):
    HAPPY = "happy"
    SAD = "sad"


def test_a_stored_value_the_codes_enum_lacks_is_a_schema_mismatch_naming_no_value(
    factory: Any,
) -> None:
    """Newer code added a member and stored it (here: the table without its CHECK, written by
    hand); this code reads it. Every read path raises `SchemaMismatchError` naming the enum,
    and the stored value is in no exception of the chain (SQLAlchemy's LookupError quoted it)."""
    with defined_again():

        class Feeling(Base):
            __tablename__ = "probe_feelings"
            id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
            mood: Mapped[Mood]

    try:
        with factory() as session:
            session.execute(
                text("CREATE TABLE probe_feelings (id INTEGER PRIMARY KEY, mood VARCHAR(20))")
            )
            session.execute(text("INSERT INTO probe_feelings VALUES (1, 'zq-ecstatic')"))
            session.commit()
        reads = {
            "get": lambda repository: repository.get(1),
            "list": lambda repository: repository.list(),
            "paginate": lambda repository: repository.paginate(limit=5),
            "iterate": lambda repository: list(repository.iterate()),
        }
        for read in reads.values():
            with UnitOfWork(factory) as uow, pytest.raises(SchemaMismatchError) as refused:
                read(uow.repository(Feeling))
            assert str(refused.value) == (
                "the database holds a value of Mood that this code does not know (one of its "
                "members added by newer code, or a value written by hand)"
            )
            link: BaseException | None = refused.value
            while link is not None:
                assert "ecstatic" not in f"{link!s} {link!r}"
                link = link.__cause__ or link.__context__
    finally:
        Base.metadata.remove(Feeling.__table__)
        with factory() as session:
            session.execute(text("DROP TABLE probe_feelings"))
            session.commit()


def test_an_upsert_on_a_key_the_database_numbers_needs_the_key(
    factory: Any, gauge: type[Any]
) -> None:
    """A row without the key the database numbers can only be inserted, its key unknown until
    then: an upsert on that key refuses it up front, on every path, and writes nothing."""
    row = {key: value for key, value in _row(7).items() if key != "id"}
    with UnitOfWork(factory) as uow:
        gauges = uow.repository(gauge)
        for upsert in (
            lambda: gauges.upsert(row),
            lambda: gauges.upsert_many([row]),
            lambda: gauges.upsert_many([row, {**row, "code": "other"}]),
        ):
            with pytest.raises(InvalidQueryError, match="upsert needs a value for id in every"):
                upsert()
        assert gauges.count() == 0
        assert gauges.upsert(row, conflict="code").code == row["code"]  # another key: fine
