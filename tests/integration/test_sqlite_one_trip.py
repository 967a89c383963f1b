"""On SQLite's asyncio face a statement is one trip to aiosqlite's thread
(app.dialects.sqlite_one_trip): a unit that reads one row makes one, and a result longer than
what comes with its statement arrives whole and in order, fetched at once or streamed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import User
from app.db.session import make_async_engine, make_async_session_factory
from app.dialects.sqlite_one_trip import PREFETCH
from app.repositories import AsyncUnitOfWork, UserRepository

pytestmark = pytest.mark.backends("sqlite")

ROWS = 2 * PREFETCH + 200  # past two prefetches


def _in_loop(
    committed_url: str, scenario: Callable[[async_sessionmaker[Any]], Awaitable[None]]
) -> None:
    async def run() -> None:
        engine: AsyncEngine = make_async_engine(committed_url)
        try:
            await scenario(make_async_session_factory(engine))
        finally:
            await engine.dispose()

    asyncio.run(run())


def _emails(committing_factory: sessionmaker[Session], count: int) -> list[str]:
    emails = [f"t{n:05}@example.com" for n in range(count)]
    with committing_factory() as session:
        UserRepository(session).create_many(
            {"email": email, "hashed_password": "h"} for email in emails
        )
        session.commit()
    return emails


def test_a_unit_that_reads_one_row_makes_one_trip_to_the_drivers_thread(
    committed_url: str,
    committing_factory: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _emails(committing_factory, 1)
    with committing_factory() as session:
        user_id = session.scalars(select(User.id)).one()

    async def scenario(factory: async_sessionmaker[Any]) -> None:
        async with AsyncUnitOfWork(factory) as uow:  # the pool's connection, made
            await uow.users.get(user_id)
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="aiosqlite"):
            async with AsyncUnitOfWork(factory) as uow:
                assert await uow.users.get(user_id) is not None
        trips = [r for r in caplog.records if r.name == "aiosqlite" and "executing" in r.msg]
        assert len(trips) == 1, [r.getMessage() for r in trips]

    _in_loop(committed_url, scenario)


def test_a_result_longer_than_its_prefetch_arrives_whole_and_in_order(
    committed_url: str, committing_factory: sessionmaker[Session]
) -> None:
    emails = _emails(committing_factory, ROWS)

    async def scenario(factory: async_sessionmaker[Any]) -> None:
        async with AsyncUnitOfWork(factory) as uow:
            session = uow.async_session
            fetched = await session.scalars(text("SELECT email FROM users ORDER BY email"))
            assert fetched.all() == emails
            streamed = await session.stream_scalars(select(User.email).order_by(User.email))
            assert [email async for email in streamed] == emails
            partitions = await session.stream(select(User.email).order_by(User.email))
            sizes = [len(part) async for part in partitions.partitions(333)]
            assert sum(sizes) == ROWS
            assert set(sizes[:-1]) == {333}
            changed = await session.scalars(
                update(User).values(full_name="Changed").returning(User.email)
            )
            assert sorted(changed.all()) == emails
            counted = await session.execute(update(User).values(full_name="Again"))
            assert counted.rowcount == ROWS  # type: ignore[attr-defined]
            await uow.rollback()
            assert await uow.users.count(where={"full_name": "Changed"}) == 0

    _in_loop(committed_url, scenario)
