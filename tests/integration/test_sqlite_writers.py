"""SQLite's writers in one process take turns (app.dialects.sqlite_writers): a turn ends with its
unit however the unit ends (cancelled, timed out, its connection invalidated or detached), the
next writer is let in at once, and a task cancelled while waiting for its turn never writes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from app.db.session import make_async_engine, make_async_session_factory
from app.repositories import AsyncUnitOfWork, UnitOfWork

pytestmark = pytest.mark.backends("sqlite")


def _row() -> dict[str, str]:
    return {"email": f"u{uuid.uuid4().hex[:12]}@example.com", "hashed_password": "h"}


def _next_writer_goes_at_once(factory: sessionmaker[Session]) -> None:
    started = time.monotonic()
    with UnitOfWork(factory) as uow:
        uow.users.create(_row())
        uow.commit()
    assert time.monotonic() - started < 1


def _in_loop(committed_url: str, scenario: Callable[..., Awaitable[None]]) -> None:
    async def run() -> None:
        engine = make_async_engine(committed_url)
        try:
            await scenario(engine, make_async_session_factory(engine))
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_a_task_cancelled_or_timed_out_while_waiting_for_its_turn_says_so_and_writes_nothing(
    committed_url: str, committing_factory: sessionmaker[Session], committed_engine: Engine
) -> None:
    async def scenario(engine: object, factory: object) -> None:
        wrote = asyncio.Event()

        async def holder() -> None:
            async with AsyncUnitOfWork(factory) as uow:  # type: ignore[arg-type]
                await uow.users.create(_row())
                wrote.set()
                await asyncio.sleep(0.4)
                await uow.commit()

        async def waiter() -> None:
            async with AsyncUnitOfWork(factory) as uow:  # type: ignore[arg-type]
                await uow.users.create({**_row(), "full_name": "never"})
                await uow.commit()

        held = asyncio.create_task(holder())
        await wrote.wait()
        waiting = asyncio.create_task(waiter())
        await asyncio.sleep(0.1)  # waiting for its turn
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await waiter()
        await held

    _in_loop(committed_url, scenario)
    with committed_engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM users WHERE full_name = 'never'")) == 0
    _next_writer_goes_at_once(committing_factory)


def test_a_task_cancelled_as_its_turn_comes_does_not_go_on_to_commit(
    committed_url: str, committed_engine: Engine
) -> None:
    # The cancel arrives in the loop turn in which the lock is handed over (asyncio.wait_for
    # on Python 3.11 gave the lock all the same, and the cancelled unit committed).
    async def scenario(engine: object, factory: object) -> None:
        wrote = asyncio.Event()
        to_cancel: list[asyncio.Task[None]] = []

        async def holder() -> None:
            async with AsyncUnitOfWork(factory) as uow:  # type: ignore[arg-type]
                await uow.users.create(_row())
                wrote.set()
                await asyncio.sleep(0.3)
                await uow.commit()

        async def waiter() -> None:
            async with AsyncUnitOfWork(factory) as uow:  # type: ignore[arg-type]
                await uow.users.create({**_row(), "full_name": "cancelled"})
                await uow.commit()

        def cancel_at_commit(_connection: object) -> None:
            if to_cancel:
                to_cancel.pop().cancel()

        sync_engine = engine.sync_engine  # type: ignore[attr-defined]
        event.listen(sync_engine, "commit", cancel_at_commit)
        held = asyncio.create_task(holder())
        await wrote.wait()
        waiting = asyncio.create_task(waiter())
        await asyncio.sleep(0.1)
        to_cancel.append(waiting)
        await held
        with pytest.raises(asyncio.CancelledError):
            await waiting
        event.remove(sync_engine, "commit", cancel_at_commit)

    _in_loop(committed_url, scenario)
    with committed_engine.connect() as connection:
        assert (
            connection.scalar(text("SELECT count(*) FROM users WHERE full_name = 'cancelled'")) == 0
        )


def test_a_unit_whose_connection_was_invalidated_ends_cleanly_and_lets_the_next_writer_in(
    committing_factory: sessionmaker[Session],
) -> None:
    with UnitOfWork(committing_factory) as uow:
        uow.users.create(_row())
        uow.session.connection().invalidate()
    _next_writer_goes_at_once(committing_factory)


def test_a_detached_connection_commits_and_closes_and_lets_the_next_writer_in(
    committed_engine: Engine, committing_factory: sessionmaker[Session]
) -> None:
    connection = committed_engine.connect()
    driver = connection.connection.dbapi_connection
    connection.execute(text("UPDATE users SET full_name = 'x' WHERE 1 = 0"))  # its first write
    connection.detach()
    connection.commit()
    _next_writer_goes_at_once(committing_factory)
    connection.execute(text("UPDATE users SET full_name = 'x' WHERE 1 = 0"))
    connection.close()  # rolled back and closed, as a detached connection is
    with pytest.raises(Exception, match="closed"):
        driver.execute("SELECT 1")  # type: ignore[union-attr]
    _next_writer_goes_at_once(committing_factory)
