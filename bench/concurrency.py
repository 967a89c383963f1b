"""The asyncio face at concurrency 1, 16 and 64: point reads and three-write units against the
raw asyncio driver, AsyncSession, advanced-alchemy's async repository, and the blocking
repository in a thread pool; and create_many, asyncio against blocking."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any

import aiosqlite
import asyncmy
import psycopg
from sqlalchemy import Engine, select

from app.db.models import User
from app.db.session import (
    make_async_engine,
    make_async_session_factory,
    make_engine,
    make_session_factory,
)
from app.repositories import AsyncUnitOfWork, UnitOfWork
from bench import peer
from bench.harness import Measurement, measure
from bench.ingest import caller_inputs, core_executemany, reset, sample_rows

USERS = User.__table__
Run = Callable[[], int]
LEVELS = (1, 16, 64)
_SPAN = 100  # reads per unit of work, so the identity map never answers for the database
RATIOS = [
    *(
        row
        for c in LEVELS
        for row in (
            ("async", f"AsyncRepository.get x{c}", f"AsyncSession.get x{c}", "target >= 0.9x"),
            (
                "async",
                f"AsyncRepository.get x{c}",
                f"advanced-alchemy async get x{c}",
                "target >= 1.05x",
            ),
            ("async", f"AsyncRepository.get x{c}", f"raw async driver x{c}", "reference"),
            (
                "async",
                f"AsyncRepository.get x{c}",
                f"Repository.get in threads x{c}",
                "reference",
            ),
            (
                "async",
                f"AsyncUnitOfWork 3 writes x{c}",
                f"UnitOfWork 3 writes in threads x{c}",
                "reference",
            ),
        )
    ),
    ("async", "AsyncRepository.create_many", "Repository.create_many", "target >= 0.9x"),
    ("async", "AsyncSession.get x1", "greenlet hop x1", "reference"),
]


def _split(items: list[Any], parts: int) -> list[list[Any]]:
    return [items[n::parts] for n in range(parts)]


class Pools:
    """Engines and raw connections for one concurrency level, opened once and reused, so the
    runs measure steady-state work rather than connecting."""

    def __init__(self, engine: Engine, concurrency: int) -> None:
        self.url = engine.url
        self.backend = engine.dialect.name
        self.concurrency = concurrency
        self.async_engine = make_async_engine(self.url, pool_size=concurrency, max_overflow=0)
        self.async_factory = make_async_session_factory(self.async_engine)
        self.engine = make_engine(self.url, pool_size=concurrency, max_overflow=0)
        self.factory = make_session_factory(self.engine)
        self.raw: list[Any] = []

    async def open_raw(self) -> None:
        self.raw = [await self._connect() for _ in range(self.concurrency)]

    async def close_raw(self) -> None:
        for conn in self.raw:
            result = conn.close()
            if isinstance(result, Awaitable):
                await result
        self.raw = []

    async def _connect(self) -> Any:
        url = self.url
        if self.backend == "postgresql":
            conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
            return await psycopg.AsyncConnection.connect(conninfo)
        if self.backend == "sqlite":
            return await aiosqlite.connect(str(url.database))
        return await asyncmy.connect(
            host=url.host,
            port=url.port or 3306,
            user=url.username,
            password=url.password or "",
            database=url.database,
        )

    async def close(self) -> None:
        await self.close_raw()
        await self.async_engine.dispose()
        self.engine.dispose()


async def _raw_reads(pools: Pools, ids: list[Any]) -> None:
    # Ids as each driver stores them: UUID on PostgreSQL, CHAR(32) hex elsewhere.
    native = pools.backend == "postgresql"
    mark = "?" if pools.backend == "sqlite" else "%s"
    query = f"SELECT * FROM users WHERE id = {mark}"

    async def worker(conn: Any, mine: list[Any]) -> None:
        cursor = conn.cursor()
        if isinstance(cursor, Awaitable):
            cursor = await cursor
        for user_id in mine:
            await cursor.execute(query, (user_id if native else user_id.hex,))
            assert await cursor.fetchone() is not None
        closed = cursor.close()
        if isinstance(closed, Awaitable):
            await closed

    parts = _split(ids, pools.concurrency)
    await asyncio.gather(*(worker(conn, part) for conn, part in zip(pools.raw, parts, strict=True)))


async def _in_units(
    pools: Pools, ids: list[Any], read: Callable[[AsyncUnitOfWork, Any], Awaitable[Any]]
) -> None:
    """`read(uow, id)` over `ids` in `concurrency` tasks, a fresh unit of work per span."""

    async def worker(mine: list[Any]) -> None:
        for start in range(0, len(mine), _SPAN):
            async with AsyncUnitOfWork(pools.async_factory) as uow:
                for user_id in mine[start : start + _SPAN]:
                    assert await read(uow, user_id) is not None

    await asyncio.gather(*(worker(part) for part in _split(ids, pools.concurrency)))


def _peer_get(uow: AsyncUnitOfWork, user_id: Any) -> Awaitable[Any]:
    return peer.async_user_repository(uow.async_session).get(user_id)


def _in_threads(pools: Pools, ids: list[Any]) -> int:
    def worker(mine: list[Any]) -> None:
        for start in range(0, len(mine), _SPAN):
            with UnitOfWork(pools.factory) as uow:
                for user_id in mine[start : start + _SPAN]:
                    assert uow.users.get(user_id) is not None

    with ThreadPoolExecutor(pools.concurrency) as pool:
        list(pool.map(worker, _split(ids, pools.concurrency)))
    return len(ids)


async def _async_units(pools: Pools, count: int) -> None:
    async def worker(numbers: list[int]) -> None:
        for n in numbers:
            async with AsyncUnitOfWork(pools.async_factory) as uow:
                email = f"a{n}@example.com"
                user = await uow.users.create({"email": email, "hashed_password": "h"})
                await uow.items.create({"title": "a", "owner_id": user.id})
                await uow.items.create({"title": "b", "owner_id": user.id})
                await uow.commit()

    numbers = _split(list(range(count)), pools.concurrency)
    await asyncio.gather(*(worker(part) for part in numbers))


def _threaded_units(pools: Pools, count: int) -> int:
    def worker(numbers: list[int]) -> None:
        for n in numbers:
            with UnitOfWork(pools.factory) as uow:
                user = uow.users.create({"email": f"t{n}@example.com", "hashed_password": "h"})
                uow.items.create({"title": "a", "owner_id": user.id})
                uow.items.create({"title": "b", "owner_id": user.id})
                uow.commit()

    with ThreadPoolExecutor(pools.concurrency) as pool:
        list(pool.map(worker, _split(list(range(count)), pools.concurrency)))
    return count


async def _greenlet_hops(pools: Pools, count: int) -> None:
    """The asyncio face's own cost per call: entering SQLAlchemy's greenlet, no query."""
    async with pools.async_factory() as session:
        for _ in range(count):
            await session.run_sync(lambda _s: None)


async def _async_create_many(pools: Pools, rows: list[dict[str, Any]]) -> None:
    async with AsyncUnitOfWork(pools.async_factory) as uow:
        await uow.users.create_many(rows, batch_size=1000)
        await uow.commit()


def _sync_create_many(pools: Pools, rows: list[dict[str, Any]]) -> int:
    with UnitOfWork(pools.factory) as uow:
        uow.users.create_many(rows, batch_size=1000)
        uow.commit()
    return len(rows)


@contextmanager
def _opened(runner: asyncio.Runner, engine: Engine, concurrency: int) -> Iterator[Pools]:
    pools = Pools(engine, concurrency)
    try:
        yield pools
    finally:
        runner.run(pools.close())


def _session_get(uow: AsyncUnitOfWork, user_id: Any) -> Awaitable[Any]:
    return uow.async_session.get(User, user_id)


def _repository_get(uow: AsyncUnitOfWork, user_id: Any) -> Awaitable[Any]:
    return uow.users.get(user_id)


def run_concurrency(
    backend: str, engine: Engine, *, reads: int, units: int, rows: int, repeat: int
) -> list[Measurement]:
    """Reads of `reads` random users, `units` three-write units, `rows` bulk rows."""
    reset(engine)
    core_executemany(engine, [dict(r) for r in sample_rows(reads * 10)])()
    with engine.connect() as connection:
        all_ids = list(connection.scalars(select(USERS.c.id)))
    ids = random.Random(11).sample(all_ids, reads)
    bulk = caller_inputs([dict(r) for r in sample_rows(rows)])
    emptied = partial(reset, engine)
    results: list[Measurement] = []
    with asyncio.Runner() as runner:

        def awaiting(make: Callable[[], Coroutine[Any, Any, None]], count: int) -> Run:
            def run() -> int:
                runner.run(make())
                return count

            return run

        def timed(path: str, run: Run, unit: str, reset_with: Callable[[], None] | None) -> None:
            results.append(
                measure(
                    backend,
                    "async",
                    path,
                    run,
                    reset=reset_with or (lambda: None),
                    repeat=repeat,
                    unit=unit,
                )
            )

        # Reads first, on the loaded table; then the writes, which empty it between runs.
        for c in LEVELS:
            with _opened(runner, engine, c) as pools:
                if c == 1:
                    timed(
                        "greenlet hop x1",
                        awaiting(partial(_greenlet_hops, pools, reads), reads),
                        "calls",
                        None,
                    )
                # One kind of connection open at a time: a server allows only so many.
                runner.run(pools.open_raw())
                timed(
                    f"raw async driver x{c}",
                    awaiting(partial(_raw_reads, pools, ids), reads),
                    "reads",
                    None,
                )
                runner.run(pools.close_raw())
                timed(
                    f"AsyncSession.get x{c}",
                    awaiting(partial(_in_units, pools, ids, _session_get), reads),
                    "reads",
                    None,
                )
                timed(
                    f"AsyncRepository.get x{c}",
                    awaiting(partial(_in_units, pools, ids, _repository_get), reads),
                    "reads",
                    None,
                )
                if peer.async_available():
                    timed(
                        f"advanced-alchemy async get x{c}",
                        awaiting(partial(_in_units, pools, ids, _peer_get), reads),
                        "reads",
                        None,
                    )
                runner.run(pools.async_engine.dispose())
                timed(
                    f"Repository.get in threads x{c}",
                    partial(_in_threads, pools, ids),
                    "reads",
                    None,
                )
        for c in LEVELS:
            with _opened(runner, engine, c) as pools:
                timed(
                    f"AsyncUnitOfWork 3 writes x{c}",
                    awaiting(partial(_async_units, pools, units), units),
                    "tx",
                    emptied,
                )
                if c == 1:
                    timed(
                        "Repository.create_many",
                        partial(_sync_create_many, pools, bulk),
                        "rows",
                        emptied,
                    )
                    timed(
                        "AsyncRepository.create_many",
                        awaiting(partial(_async_create_many, pools, bulk), rows),
                        "rows",
                        emptied,
                    )
                runner.run(pools.async_engine.dispose())
                timed(
                    f"UnitOfWork 3 writes in threads x{c}",
                    partial(_threaded_units, pools, units),
                    "tx",
                    emptied,
                )
    return results
