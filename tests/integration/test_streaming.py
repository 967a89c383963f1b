"""`iterate` streams from a server-side cursor on PostgreSQL and MariaDB, which holds the unit of
work's connection until the last row: writing from the stream in the same unit of work either
works (SQLite, PostgreSQL) or is refused with a clear error (MariaDB); it never hangs, and never
ends the stream early without a word."""

from __future__ import annotations

import asyncio
import warnings

import pytest
from sqlalchemy import Connection
from sqlalchemy.orm import Session, sessionmaker

from app.db.errors import InvalidQueryError
from app.db.session import (
    make_async_engine,
    make_async_session_factory,
    make_engine,
    make_session_factory,
)
from app.repositories import AsyncUnitOfWork, ItemRepository, UnitOfWork, UserRepository
from tests.backends import is_mariadb
from tests.integration.helpers import count_rows

USERS = 1_200  # more than two batches of the stream and of the writes


@pytest.fixture
def users(session: Session) -> UserRepository:
    repository = UserRepository(session)
    repository.create_many(
        {"email": f"s{n:04}@example.com", "hashed_password": "x"} for n in range(USERS)
    )
    return repository


def test_bulk_writes_fed_by_a_stream_of_the_same_unit_of_work(
    backend: str, users: UserRepository, session: Session, connection: Connection
) -> None:
    items = ItemRepository(session)

    def from_stream() -> int:
        return items.create_many(
            ({"title": row.email, "owner_id": row.id} for row in users.iterate(batch_size=500)),
            batch_size=700,
        )

    def upserts_from_stream() -> int:
        return users.upsert_many(
            ({"email": row.email, "hashed_password": "y"} for row in users.iterate(batch_size=500)),
            batch_size=700,
        )

    if is_mariadb(backend):
        with pytest.raises(InvalidQueryError, match="streaming rows from iterate"):
            from_stream()
        with pytest.raises(InvalidQueryError, match="streaming rows from iterate"):
            upserts_from_stream()
        assert count_rows(connection, "items") == 0  # the failed calls stored nothing
        return
    assert from_stream() == USERS
    assert upserts_from_stream() == USERS
    assert count_rows(connection, "items") == USERS
    assert count_rows(connection, "users", "hashed_password = :h", h="y") == USERS


def test_a_statement_inside_a_stream_never_ends_it_early(
    backend: str, users: UserRepository
) -> None:
    seen = 0
    if is_mariadb(backend):
        with pytest.raises(InvalidQueryError, match="finish or close the iteration first"):
            for row in users.iterate(batch_size=500):
                users.get(row.id)
    else:
        for row in users.iterate(batch_size=500):
            assert users.get(row.id) is not None
            seen += 1
        assert seen == USERS
    # A stream left early, or read to its end, frees the connection again.
    for _ in users.iterate(batch_size=500):
        break
    assert sum(1 for _ in users.iterate(batch_size=500)) == USERS
    assert users.count() == USERS


@pytest.mark.backends("mariadb")
def test_reading_on_from_a_stream_a_statement_cut_short_is_an_error(
    users: UserRepository,
) -> None:
    rows = users.iterate(batch_size=500)
    first = next(rows)
    with pytest.raises(InvalidQueryError, match="streaming rows from iterate"):
        users.get(first.id)
    with pytest.raises(InvalidQueryError, match="streaming rows from iterate"):
        for _ in rows:  # the rest of the batch in hand, then the error: never a short result
            pass
    assert users.count() == USERS


def test_the_asyncio_stream_holds_its_connection_the_same_way(
    backend: str, committed_url: str, committing_factory: sessionmaker[Session]
) -> None:
    with committing_factory() as session:
        UserRepository(session).create_many(
            {"email": f"a{n:04}@example.com", "hashed_password": "x"} for n in range(USERS)
        )
        session.commit()

    async def stream() -> int:
        engine = make_async_engine(committed_url)
        try:
            async with AsyncUnitOfWork(make_async_session_factory(engine)) as uow:
                seen = 0
                async for row in uow.users.iterate(batch_size=500):
                    await uow.users.get(row.id)
                    seen += 1
                return seen
        finally:
            await engine.dispose()

    if is_mariadb(backend):
        with pytest.raises(InvalidQueryError, match="streaming rows from iterate"):
            asyncio.run(stream())
    else:
        assert asyncio.run(stream()) == USERS


def test_a_stream_kept_past_its_unit_neither_stops_the_next_unit_nor_ends_short(
    committing_factory: sessionmaker[Session],
) -> None:
    """An `iterate()` generator kept after its unit of work ended: the next unit on that
    connection runs as usual, and the generator, resumed, is refused past the rows it holds."""
    engine = make_engine(committing_factory.kw["bind"].url, pool_size=1, max_overflow=0)
    factory = make_session_factory(engine)
    try:
        with UnitOfWork(factory) as uow:
            uow.users.create_many(
                {"email": f"kept{n}@example.com", "hashed_password": "x"} for n in range(300)
            )
            uow.commit()
        with UnitOfWork(factory) as uow:
            rows = uow.users.iterate(batch_size=100)
            next(rows)
        with UnitOfWork(factory) as uow:
            assert uow.users.count() == 300
        with pytest.raises(InvalidQueryError, match="iterate"):
            for _ in rows:
                pass
    finally:
        engine.dispose()


@pytest.mark.parametrize("end", ["commit", "rollback"])
def test_a_stream_open_when_its_unit_ends_is_ended_first_and_refused_after(
    committing_factory: sessionmaker[Session], end: str
) -> None:
    """The unit's COMMIT or ROLLBACK goes through as if no stream were open (MariaDB's driver
    does not read the rest of it into nothing, nor warn of it), and the generator, resumed,
    says that its unit ended, on every backend."""
    engine = make_engine(committing_factory.kw["bind"].url, pool_size=1, max_overflow=0)
    factory = make_session_factory(engine)
    try:
        with UnitOfWork(factory) as uow:
            uow.users.create_many(
                {"email": f"end{n}@example.com", "hashed_password": "x"} for n in range(300)
            )
            changed = uow.users.list(limit=1)[0].id
            uow.commit()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with UnitOfWork(factory) as uow:
                uow.users.update(changed, {"full_name": "Ended"})
                rows = uow.users.iterate(batch_size=100)
                next(rows)
                getattr(uow, end)()
        assert [str(warning.message) for warning in caught] == []
        with pytest.raises(InvalidQueryError, match="ended with its unit of work's transaction"):
            for _ in rows:
                pass
        with UnitOfWork(factory) as uow:
            stored = uow.users.get_one(changed)
            assert stored.full_name == ("Ended" if end == "commit" else None)
    finally:
        engine.dispose()


@pytest.mark.backends("sqlite", "postgresql")
def test_a_stream_does_not_see_the_rows_its_unit_writes_while_it_runs(
    users: UserRepository,
) -> None:
    """As PostgreSQL's cursor keeps to the rows as they were when it opened, so does SQLite's
    stream: a row written for each row read is not read in turn (the loop would not end)."""
    seen = 0
    for row in users.iterate(batch_size=100, order_by=["email"]):
        users.create({"email": "z" + row.email, "hashed_password": "x"})
        seen += 1
        if seen > USERS:
            break
    assert seen == USERS
    assert users.count() == 2 * USERS


@pytest.mark.backends("sqlite", "postgresql")
def test_the_asyncio_stream_does_not_see_them_either(committed_url: str) -> None:
    async def stream() -> tuple[int, int]:
        engine = make_async_engine(committed_url)
        try:
            async with AsyncUnitOfWork(make_async_session_factory(engine)) as uow:
                await uow.users.create_many(
                    {"email": f"a{n:03}@example.com", "hashed_password": "x"} for n in range(250)
                )
                seen = 0
                async for row in uow.users.iterate(batch_size=100, order_by=["email"]):
                    await uow.users.create({"email": "z" + row.email, "hashed_password": "x"})
                    seen += 1
                    if seen > 250:
                        break
                return seen, await uow.users.count()
        finally:
            await engine.dispose()

    assert asyncio.run(stream()) == (250, 500)
