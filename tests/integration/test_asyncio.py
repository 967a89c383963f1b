"""What only the asyncio face can get wrong: many tasks on one pool, contended retries,
cancellation in the middle of a unit of work."""

from __future__ import annotations

import asyncio
import gc
import random
import uuid
import weakref
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.errors import InvalidQueryError, RetryableError
from app.db.runtime import Runtime, use_runtime
from app.db.session import (
    make_async_engine,
    make_async_session_factory,
    make_engine,
    make_session_factory,
)
from app.repositories import (
    AsyncUnitOfWork,
    UnitOfWork,
    run_in_transaction_async,
    transactional_async,
)
from app.repositories._async_calls import COMMITTED


def _scalar(engine: Engine, sql: str) -> object:
    with engine.connect() as connection:
        return connection.execute(text(sql)).scalar()


async def _new_user(engine: AsyncEngine, email: str) -> uuid.UUID:
    async with AsyncUnitOfWork(make_async_session_factory(engine)) as uow:
        user = await uow.users.create({"email": email, "hashed_password": "h", "full_name": "0"})
        await uow.commit()
    return user.id


@pytest.mark.backends("postgresql", "mariadb")
def test_forty_tasks_of_five_contended_increments_lose_nothing(
    committed_url: str, committed_engine: Engine
) -> None:
    async def scenario() -> None:
        engine = make_async_engine(committed_url, pool_size=10, max_overflow=30)
        factory = make_async_session_factory(engine)
        user_id = await _new_user(engine, "counter@example.com")

        @transactional_async(session_factory=factory, retries=100, backoff=0.002)
        async def increment(uow: AsyncUnitOfWork) -> None:
            user = await uow.users.get_one(user_id)
            await uow.users.update(user_id, {"full_name": str(int(user.full_name or "0") + 1)})

        async def task() -> None:
            for _ in range(5):
                await increment()

        await asyncio.gather(*(task() for _ in range(40)))
        assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        await engine.dispose()

    asyncio.run(scenario())
    assert _scalar(committed_engine, "SELECT full_name FROM users") == "200"


def test_a_task_cancelled_inside_a_unit_leaves_no_row_and_no_connection_behind(
    committed_url: str, committed_engine: Engine
) -> None:
    async def scenario() -> None:
        engine = make_async_engine(committed_url, pool_size=2, max_overflow=0)
        factory = make_async_session_factory(engine)
        written = asyncio.Event()

        async def sign_up() -> None:
            async with AsyncUnitOfWork(factory) as uow:
                await uow.users.create({"email": "cancelled@example.com", "hashed_password": "h"})
                written.set()
                await asyncio.sleep(30)  # a client that went away while the unit waited
                await uow.commit()

        task = asyncio.create_task(sign_up())
        await written.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        # The pool is whole: both connections can be had at once.
        async with AsyncUnitOfWork(factory) as first, AsyncUnitOfWork(factory) as second:
            assert await first.users.count() == await second.users.count() == 0
        await engine.dispose()

    asyncio.run(scenario())
    assert _scalar(committed_engine, "SELECT count(*) FROM users") == 0


def test_a_task_cancelled_at_any_moment_of_its_unit_ends_cancelled_and_says_if_it_committed(
    committed_url: str, committed_engine: Engine
) -> None:
    """Cancelled at a random moment, a task ends cancelled: never the statement's answer taken
    and the unit run on to commit (asyncio.wait_for, which asyncmy bounds its reads with, does
    that on Python 3.11 when the answer and the cancel come in the same turn of the loop). A
    cancellation that came once commit() was called waited for the commit, and says so: the
    rows stored are those of the units that finished or say they committed."""
    chooser = random.Random(5)

    async def scenario() -> tuple[int, int]:
        engine = make_async_engine(committed_url, pool_size=4, max_overflow=0)
        factory = make_async_session_factory(engine)
        committed = cancelled = 0

        async def sign_up(n: int) -> None:
            async with AsyncUnitOfWork(factory) as uow:
                for _ in range(8):
                    await uow.users.count()
                await uow.users.create({"email": f"c{n}@example.com", "hashed_password": "h"})
                await uow.commit()

        for n in range(120):
            task = asyncio.create_task(sign_up(n))
            await asyncio.sleep(chooser.uniform(0, 0.01))
            if task.done():
                committed += 1
                continue
            task.cancel()
            try:
                await task
            except asyncio.CancelledError as exc:
                if COMMITTED in getattr(exc, "__notes__", []):
                    committed += 1
                else:
                    cancelled += 1
        assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        await engine.dispose()
        return committed, cancelled

    committed, cancelled = asyncio.run(scenario())
    assert committed + cancelled == 120
    assert _scalar(committed_engine, "SELECT count(*) FROM users") == committed


@pytest.mark.backends("postgresql", "mariadb")
def test_a_timeout_during_a_blocked_statement_rolls_back_and_frees_the_connection(
    committed_url: str, committed_engine: Engine
) -> None:
    async def scenario() -> None:
        engine = make_async_engine(committed_url, pool_size=1, max_overflow=0)
        factory = make_async_session_factory(engine)
        user_id = await _new_user(engine, "locked@example.com")
        with committed_engine.connect() as holder:
            holder.execute(text("SELECT * FROM users FOR UPDATE")).all()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5), AsyncUnitOfWork(factory) as uow:
                    await uow.users.create({"email": "new@example.com", "hashed_password": "h"})
                    await uow.users.update(user_id, {"full_name": "blocked"})
                    await uow.commit()
            holder.rollback()
        assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        async with AsyncUnitOfWork(factory) as uow:  # the only connection works again
            assert await uow.users.count() == 1
        await engine.dispose()

    asyncio.run(scenario())
    assert _scalar(committed_engine, "SELECT count(*) FROM users") == 1
    assert _scalar(committed_engine, "SELECT full_name FROM users") == "0"


def test_two_hundred_tasks_share_a_pool_of_five_and_give_every_connection_back(
    committed_url: str,
) -> None:
    async def scenario() -> None:
        engine = make_async_engine(committed_url, pool_size=5, max_overflow=0, pool_timeout=60)
        factory = make_async_session_factory(engine)
        await _new_user(engine, "shared@example.com")
        most = 0

        async def read(n: int) -> int:
            nonlocal most
            async with AsyncUnitOfWork(factory) as uow:
                most = max(most, engine.sync_engine.pool.checkedout())  # type: ignore[attr-defined]
                found = await uow.users.get_by_email("shared@example.com")
                await asyncio.sleep(0.001 * (n % 3))
                return 1 if found is not None else 0

        results = await asyncio.gather(*(read(n) for n in range(200)))
        assert sum(results) == 200
        assert most <= 5
        assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        await engine.dispose()

    asyncio.run(scenario())


def test_run_in_transaction_async_retries_then_commits_once(
    committed_url: str, committed_engine: Engine
) -> None:
    attempts: list[int] = []

    async def scenario() -> str:
        engine = make_async_engine(committed_url)

        async def flaky(uow: AsyncUnitOfWork) -> str:
            attempts.append(1)
            await uow.users.create({"email": f"try{len(attempts)}@example.com",
                                    "hashed_password": "h"})  # fmt: skip
            if len(attempts) < 3:
                raise RetryableError("simulated serialization failure")
            return "done"

        try:
            return await run_in_transaction_async(
                flaky, session_factory=make_async_session_factory(engine), backoff=0.001
            )
        finally:
            await engine.dispose()

    assert asyncio.run(scenario()) == "done"
    assert len(attempts) == 3
    assert _scalar(committed_engine, "SELECT email FROM users") == "try3@example.com"


def test_the_asyncio_engine_has_the_same_session_settings(committed_url: str, backend: str) -> None:
    async def scenario() -> None:
        engine = make_async_engine(committed_url, statement_timeout=7)
        try:
            async with engine.connect() as connection:
                if backend == "sqlite":
                    settings = [
                        (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar()
                        for name in ("foreign_keys", "journal_mode", "busy_timeout")
                    ]
                    assert settings == [1, "wal", 5000]
                elif backend == "postgresql":
                    timeout = (await connection.exec_driver_sql("SHOW statement_timeout")).scalar()
                    assert timeout == "7s"
                else:
                    mode, timeout = (
                        await connection.exec_driver_sql(
                            "SELECT @@SESSION.sql_mode, @@SESSION.max_statement_time"
                        )
                    ).one()
                    assert "STRICT_ALL_TABLES" in mode
                    assert timeout == 7
        finally:
            await engine.dispose()

    asyncio.run(scenario())


def test_the_default_asyncio_unit_of_work_comes_from_settings_in_every_event_loop(
    monkeypatch: pytest.MonkeyPatch, committed_url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", committed_url)

    async def sign_up(email: str) -> int:
        async with AsyncUnitOfWork() as uow:
            await uow.users.create({"email": email, "hashed_password": "h"})
            await uow.commit()
            return await uow.users.count()

    with use_runtime(Runtime()):
        # Two event loops one after the other, as two scripts or two tests would run.
        assert asyncio.run(sign_up("first@example.com")) == 1
        assert asyncio.run(sign_up("second@example.com")) == 2


def test_tasks_that_each_read_then_update_their_own_row_all_commit(
    committed_url: str, committed_engine: Engine
) -> None:
    # Each unit reads before any of them writes: on SQLite a unit that held its first read's
    # snapshot to its write would find it stale once another had committed (a busy error for
    # a row nobody else touched). There, as elsewhere, each commits.
    async def scenario() -> None:
        engine = make_async_engine(committed_url, pool_size=6)
        factory = make_async_session_factory(engine)
        ids = [await _new_user(engine, f"own{n}@example.com") for n in range(6)]
        everyone_read = asyncio.Barrier(len(ids))

        async def rename(user_id: uuid.UUID) -> None:
            async with AsyncUnitOfWork(factory) as uow:
                await uow.users.get_one(user_id)
                await everyone_read.wait()
                await uow.users.update(user_id, {"full_name": "renamed"})
                await uow.commit()

        await asyncio.gather(*(rename(user_id) for user_id in ids))
        await engine.dispose()

    asyncio.run(scenario())
    assert _scalar(committed_engine, "SELECT count(*) FROM users WHERE version = 2") == 6


@pytest.mark.backends("sqlite")
def test_sixty_four_tasks_writing_at_once_all_commit_in_turn(
    committed_url: str, committed_engine: Engine
) -> None:
    # SQLite's one writer: waiters polling for its lock starved some past the busy timeout
    # (a RetryableError for a unit nobody conflicted with). In turn, every unit commits.
    async def scenario() -> None:
        engine = make_async_engine(committed_url, pool_size=64, max_overflow=0)
        factory = make_async_session_factory(engine)

        async def writer(task: int) -> None:
            for n in range(20):
                async with AsyncUnitOfWork(factory) as uow:
                    user = await uow.users.create(
                        {"email": f"w{task}-{n}@example.com", "hashed_password": "h"}
                    )
                    await uow.items.create({"title": "a", "owner_id": user.id})
                    await uow.items.create({"title": "b", "owner_id": user.id})
                    await uow.commit()

        await asyncio.gather(*(writer(task) for task in range(64)))
        await engine.dispose()

    asyncio.run(scenario())
    assert _scalar(committed_engine, "SELECT count(*) FROM items") == 64 * 20 * 2


def test_a_finished_unit_is_freed_at_once_with_its_sessions_on_both_faces(
    committed_url: str,
) -> None:
    """A unit holds no reference that only the garbage collector could free: once the caller
    lets go of it, its sessions and repositories are gone, with the collector off. (Kept for
    the collector, each asyncio unit's session graph made it run every few dozen units, and
    each run walks what they hold: about a tenth of an asyncio read under 8 tasks.)"""

    def left(held: dict[str, weakref.ref[object]]) -> list[str]:
        return [name for name, ref in held.items() if ref() is not None]

    async def asyncio_face() -> list[str]:
        engine = make_async_engine(committed_url)
        uow = AsyncUnitOfWork(make_async_session_factory(engine))
        async with uow:
            await uow.users.count()
            parts = {"unit": uow, "blocking unit": uow.sync, "session": uow.async_session}
            parts |= {"its blocking session": uow.sync.session, "repository": uow.users}
            parts |= {"blocking repository": uow.sync.users}
            held = {name: weakref.ref(part) for name, part in parts.items()}
            del parts
        del uow
        still = left(held)
        await engine.dispose()
        return still

    engine = make_engine(committed_url)
    gc.collect()
    gc.disable()
    try:
        assert asyncio.run(asyncio_face()) == []
        uow = UnitOfWork(make_session_factory(engine))
        with uow:
            uow.users.count()
            held = {"unit": weakref.ref(uow), "session": weakref.ref(uow.session)}
            held["repository"] = weakref.ref(uow.users)
        del uow
        assert left(held) == []
    finally:
        gc.enable()
        engine.dispose()


def test_calls_of_one_unit_from_several_tasks_run_one_at_a_time(
    committed_url: str, committed_engine: Engine
) -> None:
    """A unit's session does one thing at a time: calls from several tasks each run whole, in
    turn, and every one of them is what the commit stores. A call made from inside another
    call of the same unit (an async iterable of rows that reads through the unit it feeds)
    would wait for itself: refused."""

    async def scenario() -> None:
        engine = make_async_engine(committed_url)
        factory = make_async_session_factory(engine)
        async with AsyncUnitOfWork(factory) as uow:
            created = await asyncio.gather(
                *(uow.users.create({"email": f"p{n}@example.com", "hashed_password": "h"})
                  for n in range(6)),
                uow.users.count(),
            )  # fmt: skip
            await uow.commit()
        assert len({user.id for user in created[:6]}) == 6

        async def rows_reading_their_unit(unit: AsyncUnitOfWork) -> AsyncIterator[dict[str, str]]:
            await unit.users.count()
            yield {"email": "inner@example.com", "hashed_password": "h"}

        async with AsyncUnitOfWork(factory) as uow:
            with pytest.raises(InvalidQueryError, match="inside another of its calls"):
                await uow.users.create_many(rows_reading_their_unit(uow))
        await engine.dispose()

    asyncio.run(scenario())
    assert _scalar(committed_engine, "SELECT count(*) FROM users") == 6


def test_a_bulk_write_cancelled_midway_ends_cancelled_and_stores_nothing(
    committed_url: str, committed_engine: Engine
) -> None:
    """`asyncio.timeout` around a long `create_many` of a plain list: a TimeoutError, as for any
    call, never the error its savepoint's rollback met on a connection the cancellation closed
    (PostgreSQL's COPY); nothing of it is stored."""
    rows = [{"email": f"b{n}@example.com", "hashed_password": "h"} for n in range(60_000)]

    async def scenario() -> None:
        engine = make_async_engine(committed_url)
        factory = make_async_session_factory(engine)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05), AsyncUnitOfWork(factory) as uow:
                await uow.users.create_many(rows)
                await uow.commit()
        assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        await engine.dispose()

    asyncio.run(scenario())
    assert _scalar(committed_engine, "SELECT count(*) FROM users") == 0


def test_a_stream_left_early_does_not_stop_the_next_call(
    committed_url: str, committed_engine: Engine
) -> None:
    """`break` out of `async for ... in iterate()`: the stream is closed by the event loop a
    turn later, not at once as a blocking generator is; the unit's next call (which MariaDB
    would refuse while the stream holds the connection) is made once it is."""

    async def scenario() -> None:
        engine = make_async_engine(committed_url)
        factory = make_async_session_factory(engine)
        async with AsyncUnitOfWork(factory) as uow:
            await uow.users.create_many(
                {"email": f"s{n}@example.com", "hashed_password": "h"} for n in range(50)
            )
            await uow.commit()
        async with AsyncUnitOfWork(factory) as uow:
            async for _row in uow.users.iterate(batch_size=10):
                break
            assert await uow.users.count() == 50
            await uow.users.create({"email": "after@example.com", "hashed_password": "h"})
            await uow.commit()
        await engine.dispose()

    asyncio.run(scenario())
    assert _scalar(committed_engine, "SELECT count(*) FROM users") == 51
