"""`create_many` checks and completes a uniform batch column by column and other batches row by
row; PostgreSQL streams every batch into one COPY. Whichever way a batch goes, what is stored
and what is refused are the same."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Any

import pytest
from sqlalchemy import Connection, bindparam, text
from sqlalchemy.orm import Session, sessionmaker

from app.db.errors import ConflictError, InvalidQueryError
from app.db.models import Item
from app.dialects import postgresql_upserts
from app.repositories import ItemRepository, UserRepository

FIELDS = ("email", "full_name", "is_active", "is_superuser", "version")


def stored_users(connection: Connection) -> dict[str, tuple[Any, ...]]:
    rows = connection.execute(
        text("SELECT email, full_name, is_active, is_superuser, version FROM users")
    ).all()
    return {row[0]: tuple(row) for row in rows}


def test_uniform_and_mixed_batches_store_the_same_rows(
    session: Session, connection: Connection
) -> None:
    users = UserRepository(session)
    uniform = [
        {"email": f" Uniform{n}@Example.com ", "full_name": None if n % 3 else f"U {n}",
         "hashed_password": "x"}
        for n in range(250)
    ]  # fmt: skip
    mixed = [
        {"email": f" Mixed{n}@Example.com ", "hashed_password": "x",
         **({"full_name": f"U {n}"} if n % 3 == 0 else {})}
        for n in range(250)
    ]  # fmt: skip
    assert users.create_many(uniform, batch_size=100) == 250
    assert users.create_many(mixed, batch_size=100) == 250

    stored = stored_users(connection)
    for n in range(250):
        one = stored[f"uniform{n}@example.com"]
        other = stored[f"mixed{n}@example.com"]
        assert one[1:] == other[1:]  # the same name, defaults and version either way
        assert bool(one[2]) is True
        assert bool(one[3]) is False
        assert one[4] == 1


def test_generated_ids_are_time_ordered_uuid7_and_timestamps_aware(session: Session) -> None:
    users = UserRepository(session)
    before = dt.datetime.now(dt.UTC)
    users.create_many(
        ({"email": f"t{n}@example.com", "hashed_password": "x"} for n in range(300)),
        batch_size=128,
    )
    rows = users.list(order_by=["created_at"], limit=300)
    ids = [row.id for row in rows]
    assert all(isinstance(i, uuid.UUID) and i.version == 7 for i in ids)
    assert len(set(ids)) == 300
    assert all(row.created_at >= before - dt.timedelta(seconds=1) for row in rows)
    assert all(row.created_at.utcoffset() == dt.timedelta(0) for row in rows)
    # Within a batch the ids keep their order; across batches they only grow.
    created = [(row.created_at, row.id) for row in rows]
    assert created == sorted(created)


@pytest.mark.parametrize(
    ("bad", "complaint"),
    [
        ({"full_name": "x" * 256}, "full_name is longer than 255"),
        ({"full_name": "nul\x00"}, "NUL"),
        ({"email": None}, "email cannot be null"),
        ({"is_active": 1}, "is_active must be bool"),
        ({"created_at": dt.datetime(2026, 1, 1)}, "timezone-aware"),
    ],
)
def test_a_bad_value_in_an_otherwise_uniform_batch_gets_the_row_by_row_error(
    session: Session, bad: dict[str, Any], complaint: str
) -> None:
    field = next(iter(bad))
    good = {"full_name": "fine", "is_active": True, "created_at": dt.datetime.now(dt.UTC)}
    rows = [
        {"email": f"b{n}@example.com", "hashed_password": "x"}
        | ({field: good[field]} if field in good else {})
        for n in range(50)
    ]  # uniform: every row gives the same fields, values of the right types
    rows[37] = rows[37] | bad
    with pytest.raises(InvalidQueryError, match=complaint):
        UserRepository(session).create_many(rows, batch_size=20)


def test_ids_given_as_text_are_taken_as_uuids(session: Session, connection: Connection) -> None:
    given = [uuid.uuid4() for _ in range(30)]
    UserRepository(session).create_many(
        {"id": str(key), "email": f"g{n}@example.com", "hashed_password": "x"}
        for n, key in enumerate(given)
    )
    found = {row.id for row in UserRepository(session).list(limit=100)}
    assert set(given) <= found


def test_a_conflict_in_a_later_batch_is_a_conflict_error_without_the_other_rows(
    session: Session,
) -> None:
    users = UserRepository(session)
    users.create({"email": "taken@example.com", "hashed_password": "x"})
    rows = [{"email": f"c{n}@example.com", "hashed_password": "x"} for n in range(90)]
    rows[75] = {"email": "TAKEN@example.com", "hashed_password": "x"}
    with pytest.raises(ConflictError, match="email") as raised:
        users.create_many(rows, batch_size=25)
    chain, error = [], raised.value.__cause__
    while error is not None:
        chain.append(str(error))
        error = error.__cause__
    assert chain, "the driver's error stays chained for the log"
    # ...but not the other rows: no statement with the batch's values in it.
    assert not any("c74@example.com" in text or "c76@example.com" in text for text in chain)


def test_items_in_bulk_keep_text_exactly(session: Session, connection: Connection) -> None:
    owner = UserRepository(session).create({"email": "o@example.com", "hashed_password": "x"})
    titles = ["tab\there", "new\nline", "back\\slash", "cr\rhere", "ünï 😀", " padded "]
    ItemRepository(session).create_many(
        {"title": title, "description": title, "owner_id": owner.id} for title in titles
    )
    stored = connection.execute(text("SELECT title, description FROM items")).all()
    assert sorted(row[0] for row in stored) == sorted(titles)
    assert all(row[0] == row[1] for row in stored)


def _state(connection: Connection, emails: list[str]) -> list[tuple[Any, ...]]:
    rows = connection.execute(
        text(
            "SELECT email, full_name, is_active, version, id, created_at FROM users "
            "WHERE email IN :emails ORDER BY email"
        ).bindparams(bindparam("emails", expanding=True)),
        {"emails": emails},
    ).all()
    return [tuple(row) for row in rows]


def test_a_uniform_upsert_batch_ends_as_one_upsert_a_row_would(
    session: Session, connection: Connection
) -> None:
    users = UserRepository(session)
    for prefix in ("batch", "single"):  # half of each set exists already
        users.create_many(
            {"email": f"{prefix}{n}@example.com", "hashed_password": "x", "full_name": "old"}
            for n in range(0, 60, 2)
        )
    before = {
        email: row
        for email, *row in _state(connection, [f"batch{n}@example.com" for n in range(60)])
    }

    def rows(prefix: str) -> list[dict[str, Any]]:
        return [
            {"email": f"{prefix}{n}@example.com", "hashed_password": "y", "is_active": n % 3 > 0}
            for n in range(60)
        ]

    assert users.upsert_many(rows("batch"), batch_size=25) == 60
    for row in rows("single"):
        users.upsert(row)

    batch = _state(connection, [f"batch{n}@example.com" for n in range(60)])
    single = _state(connection, [f"single{n}@example.com" for n in range(60)])
    assert [row[1:4] for row in batch] == [row[1:4] for row in single]
    for email, full_name, _active, version, key, created in batch:
        if email in before:  # updated: the name was not given, so it stays; identity stays
            assert (full_name, version) == ("old", 2)
            assert (key, created) == (before[email][3], before[email][4])
        else:
            assert (full_name, version) == (None, 1)


def test_a_batch_that_names_one_key_twice_applies_both_in_order(
    session: Session, connection: Connection
) -> None:
    users = UserRepository(session)
    rows = [
        {"email": "twice@example.com", "hashed_password": "x", "full_name": "first"},
        {"email": "other@example.com", "hashed_password": "x", "full_name": "other"},
        {"email": "twice@example.com", "hashed_password": "x", "full_name": "second"},
    ]
    assert users.upsert_many(rows) == 3
    (twice,) = _state(connection, ["twice@example.com"])
    assert twice[1] == "second"
    assert twice[3] == 2  # inserted, then updated


def test_a_batch_larger_than_one_statement_may_carry_is_split(
    session: Session, connection: Connection
) -> None:
    # 2,000 rows of 10 kB: 20 MB in one batch, more than MariaDB's default max_allowed_packet.
    owner = UserRepository(session).create({"email": "big@example.com", "hashed_password": "x"})
    written = ItemRepository(session).create_many(
        (
            {"title": f"big {n}", "description": "x" * 10_000, "owner_id": owner.id}
            for n in range(2_000)
        ),
        batch_size=2_000,
    )
    assert written == 2_000
    stored = connection.execute(text("SELECT count(*), sum(length(description)) FROM items")).one()
    assert tuple(stored) == (2_000, 20_000_000)


@pytest.fixture
def small_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL's upsert rounds of 60 rows, so a few batches make several rounds."""
    monkeypatch.setattr(postgresql_upserts, "ROUND_ROWS", 60)


@pytest.mark.usefixtures("small_rounds")
def test_upserts_over_many_rounds_end_as_rows_upserted_one_by_one(
    session: Session, connection: Connection
) -> None:
    users = UserRepository(session)
    # New rows first (written straight into the table); stored ones from row 160 on, in the
    # second batch of a round whose first batch is new (PostgreSQL, rounds of rows 25-74,
    # 75-124, 125-174: the third round's COPY is refused and it goes the general way, as does
    # the rest); a key named twice in one batch; a batch of another shape.
    stored = [n for n in range(300) if n >= 160 and n % 4 == 0]
    for prefix in ("batch", "single"):
        users.create_many(
            {"email": f"{prefix}{n}@example.com", "hashed_password": "x", "full_name": "old"}
            for n in stored
        )

    def rows(prefix: str) -> list[dict[str, Any]]:
        made: list[dict[str, Any]] = [
            {"email": f"{prefix}{n}@example.com", "hashed_password": f"h{n}"} for n in range(300)
        ]
        made[20] = {"email": f"{prefix}5@example.com", "hashed_password": "again"}
        for n in range(200, 225):  # a batch that gives a name too: another shape
            made[n] = {**made[n], "full_name": f"named {n}"}
        return made

    assert users.upsert_many(rows("batch"), batch_size=25) == 300
    for row in rows("single"):
        users.upsert(row)

    batch = _state(connection, [f"batch{n}@example.com" for n in range(300)])
    single = _state(connection, [f"single{n}@example.com" for n in range(300)])
    assert len(batch) == len(single) == 299  # row 20 named row 5 again
    assert [row[1:4] for row in batch] == [row[1:4] for row in single]
    hashes = connection.execute(
        text("SELECT email, hashed_password FROM users WHERE email LIKE 'batch%'")
    ).all()
    passwords = {str(row[0]): str(row[1]) for row in hashes}
    assert passwords["batch5@example.com"] == "again"  # the later row won
    assert passwords["batch164@example.com"] == "h164"
    versions = {row[0]: row[3] for row in batch}
    assert versions["batch164@example.com"] == 2  # stored, then updated
    assert versions["batch5@example.com"] == 2  # inserted, then updated by row 20
    assert versions["batch165@example.com"] == 1


def test_an_upsert_meeting_a_row_committed_meanwhile_updates_it(
    committing_factory: sessionmaker[Session],
) -> None:
    with committing_factory() as holder:
        # Inserted, not yet committed: the upsert's write of the same key waits for it.
        UserRepository(holder).create(
            {"email": "race@example.com", "hashed_password": "first", "full_name": "kept"}
        )
        holder.flush()
        outcome: list[BaseException | int] = []

        def upsert() -> None:
            try:
                with committing_factory() as session:
                    rows = [
                        {"email": f"race{n}@example.com".replace("race0@", "race@"),
                         "hashed_password": "second"}
                        for n in range(100)
                    ]  # fmt: skip
                    outcome.append(UserRepository(session).upsert_many(rows))
                    session.commit()
            except BaseException as exc:  # reported below, in the test's thread
                outcome.append(exc)

        worker = threading.Thread(target=upsert)
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive(), "the upsert waits for the uncommitted row"
        holder.commit()
        worker.join(timeout=30)
    assert outcome == [100]
    with committing_factory() as session:
        found = UserRepository(session).get_by_email("race@example.com")
        assert found is not None
        assert (found.hashed_password, found.full_name, found.version) == ("second", "kept", 2)
        assert UserRepository(session).count() == 100


@pytest.mark.backends("mariadb")
def test_rows_written_together_reach_mariadb_in_a_few_statements(
    session: Session, connection: Connection
) -> None:
    """A bulk load and an ORM flush of many new rows (the driver's executemany, tags and all)
    each send a handful of statements, not one a row."""

    def statements_sent() -> int:
        status = connection.execute(text("SHOW SESSION STATUS LIKE 'Questions'")).one()
        return int(status[1])

    before = statements_sent()
    UserRepository(session).create_many(
        {"email": f"many{n}@example.com", "hashed_password": "x"} for n in range(2_000)
    )
    owner = UserRepository(session).get_by_email("many1@example.com")
    assert owner is not None
    session.add_all(Item(title=f"flushed {n}", owner_id=owner.id) for n in range(500))
    session.flush()
    assert statements_sent() - before < 40
    assert connection.execute(text("SELECT count(*) FROM items")).scalar() == 500
