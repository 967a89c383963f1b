"""What a unit of work sends beyond its own statements, counted by the server: on MariaDB one
ROLLBACK or COMMIT ends it on either face (the pool's reset after it sends nothing,
`app.dialects.pymysql_connection` and `asyncmy_connection`; on SQLite the reset skips a
ROLLBACK outside a transaction), and a transaction that anything opened since is still rolled
back. And how many times a unit waits for a server that is far away: a unit that reads waits
for its SELECT alone, one that writes for its statement and its COMMIT."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from app.db.session import (
    make_async_engine,
    make_async_session_factory,
    make_engine,
    make_session_factory,
)
from app.repositories import AsyncUnitOfWork, UnitOfWork
from tests.faults import DelayingProxy

# A write on the driver's own connection (MariaDB's opens a transaction; SQLite's driver is in
# autocommit, so the test begins one by hand there).
_INSERT = (
    "INSERT INTO users (id, email, hashed_password, is_active, created_at, updated_at, version)"
    " VALUES ({key}, 'undone@example.com', 'h', 1, '2026-01-01', '2026-01-01', 1)"
)


_ENDED = "SHOW SESSION STATUS WHERE Variable_name IN ('Com_rollback', 'Com_commit')"


@pytest.fixture
def one_connection(
    committed_engine: Engine, committing_factory: sessionmaker[Session]
) -> Iterator[Engine]:
    """An engine whose units all run on one pooled connection, on the committing database."""
    built = make_engine(committed_engine.url, pool_size=1, max_overflow=0)
    yield built
    built.dispose()


def _ended_so_far(factory: sessionmaker[Session]) -> tuple[int, int]:
    """The ROLLBACKs and COMMITs the pooled connection's session has run, read in a unit of
    its own (which ends with one more ROLLBACK, after the reading)."""
    with UnitOfWork(factory) as uow:
        rows = dict(uow.session.execute(text(_ENDED)).all())
    return int(rows["Com_rollback"]), int(rows["Com_commit"])


@pytest.mark.backends("mariadb")
def test_a_unit_that_reads_ends_with_one_rollback(one_connection: Engine) -> None:
    factory = make_session_factory(one_connection)
    rollbacks, commits = _ended_so_far(factory)
    with UnitOfWork(factory) as uow:
        assert uow.users.get(uuid.uuid4()) is None
    # The reading unit's ROLLBACK, and the read's: none from the pool's resets.
    assert _ended_so_far(factory) == (rollbacks + 2, commits)


@pytest.mark.backends("mariadb")
def test_a_unit_that_commits_sends_no_rollback(one_connection: Engine) -> None:
    factory = make_session_factory(one_connection)
    rollbacks, commits = _ended_so_far(factory)
    with UnitOfWork(factory) as uow:
        uow.users.create({"email": "once@example.com", "hashed_password": "h"})
        uow.commit()
    assert _ended_so_far(factory) == (rollbacks + 1, commits + 1)


@pytest.mark.backends("mariadb", "sqlite")
def test_a_transaction_opened_after_a_commit_is_still_rolled_back(
    backend: str, one_connection: Engine, committed_engine: Engine
) -> None:
    """Straight on the driver: a COMMIT, then a write in a transaction, then the ROLLBACK the
    pool sends when the connection comes back: the write is undone, and the next unit on that
    connection, which commits, does not commit it too."""
    raw = one_connection.raw_connection()
    try:
        cursor = raw.cursor()
        raw.commit()
        if backend == "sqlite":
            cursor.execute("BEGIN")
        cursor.execute(_INSERT.format(key="%s" if backend == "mariadb" else "?"),
                       (uuid.uuid4().hex,))  # fmt: skip
        cursor.close()
    finally:
        raw.close()  # the pool's reset
    with UnitOfWork(make_session_factory(one_connection)) as uow:
        uow.users.create({"email": "kept@example.com", "hashed_password": "h"})
        uow.commit()
    with committed_engine.connect() as connection:
        left = connection.execute(
            text("SELECT count(*) FROM users WHERE email = 'undone@example.com'")
        ).scalar()
    assert left == 0


@pytest.mark.backends("mariadb")
def test_an_asyncio_unit_ends_with_one_rollback_or_commit(committed_url: str) -> None:
    """As on the blocking face (asyncmy's connection, `app.dialects.asyncmy_connection`)."""

    async def scenario() -> None:
        engine = make_async_engine(committed_url, pool_size=1, max_overflow=0)
        factory = make_async_session_factory(engine)

        async def ended_so_far() -> tuple[int, int]:
            async with AsyncUnitOfWork(factory) as uow:
                rows = dict((await uow.async_session.execute(text(_ENDED))).all())
            return int(rows["Com_rollback"]), int(rows["Com_commit"])

        try:
            rollbacks, commits = await ended_so_far()
            async with AsyncUnitOfWork(factory) as uow:
                assert await uow.users.get(uuid.uuid4()) is None
            assert await ended_so_far() == (rollbacks + 2, commits)
            async with AsyncUnitOfWork(factory) as uow:
                await uow.users.create({"email": "async@example.com", "hashed_password": "h"})
                await uow.commit()
            assert await ended_so_far() == (rollbacks + 3, commits + 1)
        finally:
            await engine.dispose()

    asyncio.run(scenario())


@pytest.mark.backends("mariadb")
def test_an_asyncio_transaction_opened_after_a_commit_is_still_rolled_back(
    committed_url: str, committed_engine: Engine
) -> None:
    """Straight on asyncmy's connection: a COMMIT, then a write, then the pool's reset."""

    async def scenario() -> None:
        engine = make_async_engine(committed_url, pool_size=1, max_overflow=0)
        try:
            async with engine.connect() as connection:
                driver = (await connection.get_raw_connection()).driver_connection
                await driver.commit()
                async with driver.cursor() as cursor:
                    await cursor.execute(_INSERT.format(key="%s"), (uuid.uuid4().hex,))
            async with AsyncUnitOfWork(make_async_session_factory(engine)) as uow:
                await uow.users.create({"email": "kept@example.com", "hashed_password": "h"})
                await uow.commit()
        finally:
            await engine.dispose()

    asyncio.run(scenario())
    with committed_engine.connect() as connection:
        left = connection.execute(
            text("SELECT count(*) FROM users WHERE email = 'undone@example.com'")
        ).scalar()
    assert left == 0


ONE_WAY = 0.05  # seconds each message is late: 100 ms a round trip


@pytest.fixture
def far(committing_factory: sessionmaker[Session]) -> Iterator[sessionmaker[Session]]:
    """Units on one pooled connection to the committing database (emptied afterwards), through
    a proxy that makes each round trip 100 ms long."""
    url = committing_factory.kw["bind"].url
    port = url.port or (5432 if url.get_backend_name() == "postgresql" else 3306)
    proxy = DelayingProxy((str(url.host), port), ONE_WAY)
    engine = make_engine(url.set(host="127.0.0.1", port=proxy.port), pool_size=1, max_overflow=0)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()
        proxy.close()


def _waits(unit: Callable[[], object]) -> int:
    """How many round trips `unit` waited for, from its time (on a connection already made)."""
    unit()
    started = time.perf_counter()
    unit()
    return round((time.perf_counter() - started) / (2 * ONE_WAY))


@pytest.mark.backends("postgresql", "mariadb")
def test_a_unit_that_reads_waits_for_its_select_alone(far: sessionmaker[Session]) -> None:
    """No BEGIN before it on PostgreSQL (`app.dialects.deferred_begin`), and a ROLLBACK after it
    that is not waited for on MariaDB (`app.dialects.pymysql_connection`)."""

    def read() -> None:
        with UnitOfWork(far) as uow:
            assert uow.users.get(uuid.uuid4()) is None

    assert _waits(read) == 1


@pytest.mark.backends("postgresql", "mariadb")
def test_a_unit_that_writes_waits_for_its_statement_and_its_commit(
    far: sessionmaker[Session],
) -> None:
    """On PostgreSQL the BEGIN goes with the INSERT, in one round trip; MariaDB's driver
    begins a transaction without a BEGIN of its own."""

    def write() -> None:
        with UnitOfWork(far) as uow:
            uow.users.create({"email": f"{uuid.uuid4().hex}@example.com", "hashed_password": "h"})
            uow.commit()

    assert _waits(write) == 2


@pytest.mark.backends("postgresql", "mariadb")
def test_a_unit_that_wrote_and_did_not_commit_waits_for_its_rollback(
    far: sessionmaker[Session],
) -> None:
    """Undoing a write is work, and a connection the server closed after a failure is found
    there, by the unit that failed: that ROLLBACK is waited for on MariaDB too."""

    def undone() -> None:
        with UnitOfWork(far) as uow:
            uow.users.create({"email": f"{uuid.uuid4().hex}@example.com", "hashed_password": "h"})

    assert _waits(undone) == 2


@pytest.mark.backends("postgresql")
def test_an_asyncio_unit_that_writes_waits_for_its_statement_and_its_commit(
    committing_factory: sessionmaker[Session],
) -> None:
    """The asyncio face's BEGIN goes with the INSERT too, in one pipeline."""
    url = committing_factory.kw["bind"].url
    proxy = DelayingProxy((str(url.host), url.port or 5432), ONE_WAY)
    far_url = url.set(host="127.0.0.1", port=proxy.port)

    async def scenario() -> int:
        engine = make_async_engine(far_url, pool_size=1, max_overflow=0)
        factory = make_async_session_factory(engine)

        async def write() -> None:
            async with AsyncUnitOfWork(factory) as uow:
                email = f"{uuid.uuid4().hex}@example.com"
                await uow.users.create({"email": email, "hashed_password": "h"})
                await uow.commit()

        try:
            await write()  # the connection, made
            started = time.perf_counter()
            await write()
            return round((time.perf_counter() - started) / (2 * ONE_WAY))
        finally:
            await engine.dispose()

    try:
        assert asyncio.run(scenario()) == 2
    finally:
        proxy.close()
