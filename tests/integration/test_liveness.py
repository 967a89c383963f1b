"""Pooled connections are asked whether they are alive only when there is a reason to doubt it
(`app.db.liveness`): one the server ended while it sat in the pool is replaced at checkout
without an error, on both faces; one used again at once costs no round trip."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.engine import URL

from app.db import liveness
from app.db.errors import ConnectionLostError
from app.db.session import make_async_engine, make_engine, make_session_factory
from app.dialects.pymysql_connection import EndAwareConnection
from app.repositories import UnitOfWork, run_in_transaction

pytestmark = pytest.mark.backends("postgresql", "mariadb")
WHO_AM_I = {"postgresql": "SELECT pg_backend_pid()", "mariadb": "SELECT CONNECTION_ID()"}


def _end(admin: Engine, backend: str, session_id: int) -> None:
    """End session `session_id` from the server's side, and wait until it is gone."""
    with admin.connect() as connection:
        if backend == "postgresql":
            connection.execute(text("SELECT pg_terminate_backend(:id)"), {"id": session_id})
            alive = "SELECT count(*) FROM pg_stat_activity WHERE pid = :id"
        else:
            connection.exec_driver_sql(f"KILL CONNECTION {int(session_id)}")
            alive = "SELECT count(*) FROM information_schema.processlist WHERE id = :id"
        deadline = time.monotonic() + 10
        while connection.execute(text(alive), {"id": session_id}).scalar():
            assert time.monotonic() < deadline, "the server did not end the session"
            time.sleep(0.02)
            connection.rollback()


@pytest.fixture
def url(engine: Engine) -> URL:
    return engine.url


@pytest.fixture
def admin(url: URL) -> Iterator[Engine]:
    built = make_engine(url, pool_size=1)
    yield built
    built.dispose()


def test_a_connection_the_server_ended_in_the_pool_is_replaced_without_an_error(
    backend: str, url: URL, admin: Engine
) -> None:
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            first = connection.exec_driver_sql(WHO_AM_I[backend]).scalar()
        _end(admin, backend, int(first or 0))
        with engine.connect() as connection:  # well within PING_AFTER_IDLE_SECONDS
            second = connection.exec_driver_sql(WHO_AM_I[backend]).scalar()
        assert second != first
    finally:
        engine.dispose()


def test_the_asyncio_face_replaces_it_the_same_way(backend: str, url: URL, admin: Engine) -> None:
    async def scenario() -> tuple[object, object]:
        engine = make_async_engine(url, pool_size=1, max_overflow=0)
        try:
            async with engine.connect() as connection:
                first = (await connection.exec_driver_sql(WHO_AM_I[backend])).scalar()
            await asyncio.to_thread(_end, admin, backend, int(first or 0))
            async with engine.connect() as connection:
                second = (await connection.exec_driver_sql(WHO_AM_I[backend])).scalar()
            return first, second
        finally:
            await engine.dispose()

    first, second = asyncio.run(scenario())
    assert second != first


def _counted_pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The connections `engine` pings from now on, each as it is pinged."""
    pings: list[object] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection: object) -> bool:
        pings.append(dbapi_connection)
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return pings


@pytest.mark.backends("mariadb")
def test_the_answer_to_a_rollback_not_waited_for_is_not_taken_for_the_servers_word(
    url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read unit's ROLLBACK answer that arrives after the checkout looked for it (here: never
    looked for) is what the socket holds when liveness looks: no ping for it, and the next
    statement reads it in order."""
    engine = make_engine(url, pool_size=1, max_overflow=0)
    pings = _counted_pings(engine, monkeypatch)
    monkeypatch.setattr(EndAwareConnection, "settle", lambda _self: None)
    try:
        for n in range(3):
            with engine.connect() as connection:
                assert connection.exec_driver_sql(f"SELECT {n}").scalar() == n
            time.sleep(0.05)  # the ROLLBACK's answer has arrived on the socket
        assert pings == []
    finally:
        engine.dispose()


def test_a_connection_used_again_at_once_is_not_pinged_and_one_left_idle_is(
    url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(url, pool_size=1, max_overflow=0)
    pings = _counted_pings(engine, monkeypatch)
    try:
        for _ in range(3):
            with engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        assert pings == []
        monkeypatch.setattr(liveness, "PING_AFTER_IDLE_SECONDS", 0.05)
        time.sleep(0.1)
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        assert len(pings) == 1
    finally:
        engine.dispose()


def test_the_asyncio_face_pings_only_a_connection_left_idle_too(
    url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its driver's socket is read by the event loop as data comes (asyncmy): what it received
    and did not read yet tells instead."""

    async def scenario() -> None:
        engine = make_async_engine(url, pool_size=1, max_overflow=0)
        pings = _counted_pings(engine.sync_engine, monkeypatch)
        try:
            for _ in range(3):
                async with engine.connect() as connection:
                    await connection.exec_driver_sql("SELECT 1")
            assert pings == []
            monkeypatch.setattr(liveness, "PING_AFTER_IDLE_SECONDS", 0.05)
            await asyncio.sleep(0.1)
            async with engine.connect() as connection:
                await connection.exec_driver_sql("SELECT 1")
            assert len(pings) == 1
        finally:
            await engine.dispose()

    asyncio.run(scenario())


@pytest.mark.backends("postgresql")
def test_a_connection_lost_as_a_pooled_transaction_begins_is_a_lost_connection(
    url: URL, admin: Engine
) -> None:
    """Behind a transaction pooler our settings go with each BEGIN, below SQLAlchemy's
    execution. A connection that died after its checkout (the pooler restarted) fails there:
    a ConnectionLostError, as at any statement, which `run_in_transaction` runs again on a new
    connection, and never the driver's own error."""
    engine = make_engine(url, pool_size=1, max_overflow=0, pooler="transaction")
    doomed = [True, True]  # the next two checkouts' connections die before their BEGIN

    @event.listens_for(engine, "checkout")
    def _dies(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if doomed:
            doomed.pop()
            _end(admin, "postgresql", dbapi_connection.info.backend_pid)

    attempts: list[int] = []

    def unit(uow: UnitOfWork) -> Any:
        attempts.append(1)
        return uow.session.execute(text(WHO_AM_I["postgresql"])).scalar_one()

    try:
        with engine.connect() as connection, pytest.raises(ConnectionLostError):
            connection.exec_driver_sql("SELECT 1")
        assert run_in_transaction(unit, session_factory=make_session_factory(engine)) > 0
        assert len(attempts) == 2
    finally:
        engine.dispose()


@pytest.mark.backends("postgresql")
def test_a_connection_ended_in_the_middle_of_a_copy_is_told_as_lost(
    url: URL, admin: Engine
) -> None:
    """The server ends the session while `create_many` streams its COPY: a lost connection,
    and nothing in the error's chain says the database could not be reached at all."""
    engine = make_engine(url, pool_size=1, max_overflow=0)

    def rows(unit: UnitOfWork) -> Iterator[dict[str, str]]:
        for n in range(3000):
            if n == 1500:
                pid = unit.session.connection().connection.driver_connection.info.backend_pid
                _end(admin, "postgresql", pid)
            yield {"email": f"copy{n}@example.com", "hashed_password": "h"}

    try:
        with (
            pytest.raises(ConnectionLostError) as lost,
            UnitOfWork(make_session_factory(engine)) as uow,
        ):
            uow.users.create_many(rows(uow), batch_size=100)
        chain = []
        error: BaseException | None = lost.value
        while error is not None:
            chain.append(str(error))
            error = error.__cause__ or error.__context__
        assert not [said for said in chain if "cannot connect" in said], chain
    finally:
        engine.dispose()


class _InterruptedMidPacket:
    """A socket whose next large send stops half-way with a KeyboardInterrupt, as Ctrl-C in the
    middle of a bulk load's file does; everything else goes to the real socket."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.armed = True

    def sendall(self, data: bytes) -> None:
        if self.armed and len(data) > 4096:
            self.armed = False
            self.real.sendall(data[: len(data) // 2])
            raise KeyboardInterrupt
        self.real.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.mark.backends("mariadb")
def test_ctrl_c_in_the_middle_of_a_bulk_load_ends_it_at_once_and_stores_nothing(
    url: URL,
) -> None:
    """PyMySQL waits for the server's answer after an interrupted LOAD DATA file, and the
    server for the rest of the half-sent packet until its read timeout (a minute): the
    interruption now cuts the connection, and comes out as itself, at once."""
    engine = make_engine(url, pool_size=1, max_overflow=0)
    rows = [{"email": f"load{n}@example.com", "hashed_password": "h" * 60} for n in range(5000)]
    try:
        with UnitOfWork(make_session_factory(engine)) as uow:
            driver: Any = uow.session.connection().connection.driver_connection
            driver._sock = _InterruptedMidPacket(driver._sock)
            started = time.monotonic()
            with pytest.raises(KeyboardInterrupt):
                uow.users.create_many(rows)
        assert time.monotonic() - started < 10
        with UnitOfWork(make_session_factory(engine)) as uow:
            assert uow.users.count() == 0
    finally:
        engine.dispose()
