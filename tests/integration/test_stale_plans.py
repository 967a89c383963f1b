"""A statement psycopg prepared before a migration changed a column's type, run after it.

The server refuses such a statement ("cached plan must not change result type"): the result
it described when it was prepared is not what it returns now. The data layer plans it anew:
invisibly when it is the first statement of its transaction, through `run_in_transaction`
(a `RetryableError`) when work done before it in the transaction was aborted with it. MariaDB
and SQLite keep no prepared statements across calls: nothing to go stale there.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import URL, Engine, create_engine, text
from sqlalchemy.pool import NullPool

from app.db.errors import RetryableError
from app.db.session import (
    make_async_engine,
    make_async_session_factory,
    make_engine,
    make_session_factory,
)
from app.migrations import upgrade
from app.repositories import AsyncUnitOfWork, UnitOfWork, run_in_transaction
from app.repositories.aio import run_in_transaction_async

pytestmark = pytest.mark.backends("postgresql")

# Runs that make psycopg prepare a statement (it prepares from the sixth on).
PREPARING_RUNS = 8
# A statement that begins the unit's transaction (text SQL does; a plain SELECT of ours would
# run before the BEGIN, `app.dialects.deferred_begin`), so that the next one is later in it.
OPENS_THE_TRANSACTION = text("SELECT 1")


@pytest.fixture
def engine(fresh_url: str) -> Iterator[Engine]:
    engine = make_engine(fresh_url, pool_size=1, max_overflow=0)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def item_id(engine: Engine) -> uuid.UUID:
    with UnitOfWork(make_session_factory(engine)) as uow:
        owner = uow.users.create({"email": "owner@example.com", "hashed_password": "x"})
        item = uow.items.create({"title": "kept", "owner_id": owner.id})
        uow.commit()
        return item.id


def retype_version(url: str | URL, new_type: str = "bigint") -> None:
    """What a migration does: `items.version` changes type, from another connection (psycopg
    forgets its prepared statements when its own connection alters a table)."""
    other = create_engine(url, poolclass=NullPool)
    with other.begin() as connection:
        connection.execute(text(f"ALTER TABLE items ALTER COLUMN version TYPE {new_type}"))
    other.dispose()


def prepared_statements(engine: Engine) -> int:
    """How many statements the pooled connection holds prepared on the server (asked outside
    a transaction: a rollback would make psycopg forget them)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        return int(connection.scalar(text("SELECT count(*) FROM pg_prepared_statements")) or 0)


def read_version(engine: Engine, item_id: uuid.UUID, *, after_another: bool = False) -> int:
    """One unit reading the item and committing: always the same statement text (its tag
    names the unit)."""
    with UnitOfWork(make_session_factory(engine), name="stale_plans.read") as uow:
        if after_another:
            uow.session.execute(OPENS_THE_TRANSACTION)
        item = uow.items.get(item_id)
        assert item is not None
        uow.commit()  # a rollback would make psycopg forget what it prepared
        return item.version


def test_the_first_statement_of_a_unit_is_planned_anew_unseen(
    engine: Engine, item_id: uuid.UUID
) -> None:
    for _ in range(PREPARING_RUNS):
        read_version(engine, item_id)
    assert prepared_statements(engine) >= 1, "the read was prepared before the type change"

    retype_version(engine.url)

    assert read_version(engine, item_id) == 1
    assert read_version(engine, item_id) == 1


def update_at_version(engine: Engine, item_id: uuid.UUID, version: int) -> int:
    """One unit whose first statement is a write (its BEGIN goes with it, in one pipeline):
    an update at a known version, always the same statement text."""
    with UnitOfWork(make_session_factory(engine), name="stale_plans.update") as uow:
        item = uow.items.update(item_id, {"title": f"v{version}"}, expected_version=version)
        uow.commit()
        return item.version


def test_a_first_write_sent_with_its_begin_is_planned_anew_unseen(
    engine: Engine, item_id: uuid.UUID
) -> None:
    version = 1
    for _ in range(PREPARING_RUNS):
        version = update_at_version(engine, item_id, version)
    assert prepared_statements(engine) >= 1, "the update was prepared before the type change"

    retype_version(engine.url)

    assert update_at_version(engine, item_id, version) == version + 1


def test_a_later_statement_aborts_the_unit_retryably_and_run_in_transaction_absorbs_it(
    engine: Engine, item_id: uuid.UUID
) -> None:
    for _ in range(PREPARING_RUNS):
        read_version(engine, item_id, after_another=True)
    assert prepared_statements(engine) >= 1
    retype_version(engine.url)

    with pytest.raises(RetryableError, match="run it again"):
        read_version(engine, item_id, after_another=True)

    for _ in range(PREPARING_RUNS):
        read_version(engine, item_id, after_another=True)
    retype_version(engine.url, "integer")
    attempts: list[int] = []

    def unit(uow: UnitOfWork) -> int:
        attempts.append(uow.attempt)
        uow.session.execute(OPENS_THE_TRANSACTION)
        item = uow.items.get(item_id)
        assert item is not None
        return item.version

    factory = make_session_factory(engine)
    for _ in range(PREPARING_RUNS):
        run_in_transaction(unit, session_factory=factory, name="stale_plans.unit")
    retype_version(engine.url)
    attempts.clear()

    assert run_in_transaction(unit, session_factory=factory, name="stale_plans.unit") == 1
    assert attempts == [1, 2]


def test_a_statement_in_autocommit_is_planned_anew_unseen(
    engine: Engine, item_id: uuid.UUID
) -> None:
    statement = text("SELECT version FROM items WHERE id = :id")
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as connection:
        for _ in range(PREPARING_RUNS):
            connection.execute(statement, {"id": item_id}).scalar_one()
        retype_version(engine.url)

        assert connection.execute(statement, {"id": item_id}).scalar_one() == 1


def test_the_asyncio_face_plans_anew_the_same_way(fresh_url: str, item_id: uuid.UUID) -> None:
    async def scenario() -> tuple[int, type[BaseException] | None, int, list[int]]:
        engine = make_async_engine(fresh_url, pool_size=1, max_overflow=0)
        factory = make_async_session_factory(engine)

        async def read(*, after_another: bool = False) -> int:
            async with AsyncUnitOfWork(factory, name="stale_plans.read") as uow:
                if after_another:
                    await uow.async_session.execute(OPENS_THE_TRANSACTION)
                item = await uow.items.get(item_id)
                assert item is not None
                await uow.commit()
                return item.version

        try:
            for _ in range(PREPARING_RUNS):
                await read()
            await asyncio.to_thread(retype_version, fresh_url)
            first = await read()

            for _ in range(PREPARING_RUNS):
                await read(after_another=True)
            await asyncio.to_thread(retype_version, fresh_url, "integer")
            refused: type[BaseException] | None = None
            try:
                await read(after_another=True)
            except RetryableError as exc:
                refused = type(exc)

            attempts: list[int] = []

            async def unit(uow: AsyncUnitOfWork) -> int:
                attempts.append(uow.sync.attempt)
                await uow.async_session.execute(OPENS_THE_TRANSACTION)
                item = await uow.items.get(item_id)
                assert item is not None
                return item.version

            for _ in range(PREPARING_RUNS):
                await run_in_transaction_async(
                    unit, session_factory=factory, name="stale_plans.unit"
                )
            await asyncio.to_thread(retype_version, fresh_url)
            attempts.clear()
            retried = await run_in_transaction_async(
                unit, session_factory=factory, name="stale_plans.unit"
            )
            return first, refused, retried, attempts
        finally:
            await engine.dispose()

    first, refused, retried, attempts = asyncio.run(scenario())

    assert first == 1
    assert refused is RetryableError
    assert retried == 1
    assert attempts == [1, 2]


def test_the_asyncio_face_plans_a_first_write_anew_unseen(
    fresh_url: str, item_id: uuid.UUID
) -> None:
    async def scenario() -> int:
        engine = make_async_engine(fresh_url, pool_size=1, max_overflow=0)
        factory = make_async_session_factory(engine)

        async def update(version: int) -> int:
            async with AsyncUnitOfWork(factory, name="stale_plans.update") as uow:
                changes = {"title": f"v{version}"}
                item = await uow.items.update(item_id, changes, expected_version=version)
                await uow.commit()
                return item.version

        try:
            version = 1
            for _ in range(PREPARING_RUNS):
                version = await update(version)
            await asyncio.to_thread(retype_version, fresh_url)
            return await update(version) - version
        finally:
            await engine.dispose()

    assert asyncio.run(scenario()) == 1
