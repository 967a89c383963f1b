"""`peers`: the paths a web request takes, this project against Django's ORM, SQLModel and
Tortoise ORM on the same tables and rows, in interleaved rounds (a machine that drifts weighs on
every contender alike)."""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from sqlalchemy import Engine, and_, create_engine, or_, select, tuple_
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session

from app.db.models import Item, User
from app.db.session import make_async_engine, make_async_session_factory, make_session_factory
from app.db.types import utcnow
from app.repositories import AsyncUnitOfWork, UnitOfWork
from bench.harness import Measurement, console, measure_interleaved
from bench.ingest import reset
from bench.peers import django_side, round_trips, sqlmodel_side, tortoise_side

PAGE = 50
DEPTH = 10_000
TASKS = 16
OURS_READ, DJANGO_READ, SQLMODEL_READ = (
    "unit of work get",
    "Django get(pk=)",
    "SQLModel session.get",
)
OURS_UPDATE, OURS_KNOWN, SQLMODEL_UPDATE, DJANGO_UPDATE, DJANGO_KNOWN = (
    "unit of work versioned update",
    "unit of work update, known version",
    "SQLModel version_id_col update",
    "Django read + update in atomic()",
    "Django filter(pk, version).update()",
)
OURS_FIRST, SQLMODEL_FIRST, OURS_DEEP, HAND_DEEP, DJANGO_DEEP = (
    "first page, keyset",
    "SQLModel first page, offset",
    "page at depth, keyset",
    "hand-written keyset at depth",
    "Django keyset at depth",
)
OURS_ASYNC, SQLMODEL_ASYNC, TORTOISE_ASYNC = (
    f"AsyncUnitOfWork get x{TASKS}",
    f"SQLModel AsyncSession.get x{TASKS}",
    f"Tortoise get x{TASKS}",
)
GOAL = "goal >= 1.0x"
RATIOS = [
    ("peers", OURS_READ, DJANGO_READ, GOAL),
    ("peers", OURS_READ, SQLMODEL_READ, GOAL),
    ("peers", OURS_UPDATE, SQLMODEL_UPDATE, GOAL),
    ("peers", OURS_UPDATE, DJANGO_UPDATE, GOAL),
    ("peers", OURS_KNOWN, DJANGO_KNOWN, GOAL),
    ("peers", OURS_FIRST, SQLMODEL_FIRST, GOAL),
    ("peers", OURS_DEEP, HAND_DEEP, GOAL),
    ("peers", OURS_DEEP, DJANGO_DEEP, GOAL),
    ("peers", OURS_ASYNC, SQLMODEL_ASYNC, GOAL),
    ("peers", OURS_ASYNC, TORTOISE_ASYNC, "goal >= 0.7x"),
    *round_trips.RATIOS,
]
Path = tuple[str, Callable[[], int], Callable[[], None]]


def available() -> bool:
    return django_side.available() and sqlmodel_side.available() and tortoise_side.available()


def _rows(engine: Engine, users: int, items: int) -> tuple[list[uuid.UUID], dict[Any, int]]:
    """`users` users and `items` items spread over them; the users' ids, and 200 items by id
    at their version (1)."""
    reset(engine)
    factory = make_session_factory(engine)
    with UnitOfWork(factory) as uow:
        uow.users.create_many(
            {"email": f"peer{n}@example.com", "hashed_password": "h"} for n in range(users)
        )
        user_ids = list(uow.session.scalars(select(User.id)))
        uow.items.create_many(
            {"title": f"item {n}", "owner_id": user_ids[n % users]} for n in range(items)
        )
        uow.commit()
    with engine.connect() as connection:
        item_ids = list(connection.scalars(select(Item.id).limit(200)))
    return user_ids, dict.fromkeys(item_ids, 1)


def _nothing() -> None:
    """Between rounds the rows stay: versions go on."""


def run_peers(
    backend: str, engine: Engine, *, reads: int, items: int, repeat: int
) -> list[Measurement]:
    """Every path of the peers, `reads` operations a run (pages: a tenth of that)."""
    if not available():
        console.print("peers: Django, SQLModel or Tortoise ORM missing (the bench extra), skipped")
        return []
    user_ids, versions = _rows(engine, users=max(reads // 10, 100), items=items)
    chooser = random.Random(7)
    ids = [chooser.choice(user_ids) for _ in range(reads)]
    repeat = max(repeat, 5)
    factory = make_session_factory(engine)
    alias = django_side.setup(engine.url)
    UserRow, ItemRow = sqlmodel_side.MODELS  # noqa: N806 - classes
    theirs = create_engine(engine.url)
    try:
        results = measure_interleaved(
            backend, "peers", _reads(factory, alias, theirs, UserRow, ids),
            repeat=repeat, unit="reads",
        )  # fmt: skip
        results += measure_interleaved(
            backend, "peers", _updates(factory, alias, theirs, ItemRow, versions, reads // 2),
            repeat=repeat, unit="tx",
        )  # fmt: skip
        results += measure_interleaved(
            backend, "peers", _pages(engine, factory, alias, theirs, ItemRow, reads // 10),
            repeat=repeat, unit="pages",
        )  # fmt: skip
        results += _asyncio_reads(backend, engine, UserRow, ids, repeat)
        if round_trips.proxied(engine.url):
            item_id = next(iter(versions))
            results += round_trips.run_round_trips(
                backend, engine, UserRow, ItemRow, user_ids[0], item_id
            )
    finally:
        theirs.dispose()
        django_side.close(alias)
    return results


def _reads(factory: Any, alias: str, theirs: Engine, user_row: Any, ids: list[Any]) -> list[Path]:
    django_users = django_side.model("User").objects.using(alias)

    def ours() -> int:
        for user_id in ids:
            with UnitOfWork(factory) as uow:
                assert uow.users.get(user_id) is not None
        return len(ids)

    def django() -> int:
        for user_id in ids:
            django_users.get(pk=user_id)
        return len(ids)

    def sqlmodel() -> int:
        for user_id in ids:
            with Session(theirs) as session:
                assert session.get(user_row, user_id) is not None
        return len(ids)

    return [(OURS_READ, ours, _nothing), (DJANGO_READ, django, _nothing),
            (SQLMODEL_READ, sqlmodel, _nothing)]  # fmt: skip


def _updates(
    factory: Any,
    alias: str,
    theirs: Engine,
    item_row: Any,
    versions: dict[Any, int],
    count: int,
) -> list[Path]:
    from django.db import transaction
    from django.db.models import F

    django_items = django_side.model("Item").objects.using(alias)
    item_ids = list(versions)
    chooser = random.Random(11)

    numbers = itertools.count()  # every change writes a new value: an equal one changes nothing

    def each(change: Callable[[Any, int], None]) -> Callable[[], int]:
        def run() -> int:
            for _ in range(count):
                item_id = chooser.choice(item_ids)
                change(item_id, next(numbers))
                versions[item_id] += 1
            return count

        return run

    def ours(item_id: Any, n: int) -> None:
        with UnitOfWork(factory) as uow:
            item = uow.items.get_one(item_id)  # held, as the peers hold theirs
            uow.items.update(item.id, {"description": f"ours {n}"})
            uow.commit()

    def ours_known(item_id: Any, n: int) -> None:
        with UnitOfWork(factory) as uow:
            uow.items.update(item_id, {"description": f"known {n}"},
                             expected_version=versions[item_id])  # fmt: skip
            uow.commit()

    def sqlmodel(item_id: Any, n: int) -> None:
        with Session(theirs) as session:
            item = session.get(item_row, item_id)
            item.description, item.updated_at = f"sqlmodel {n}", utcnow()
            session.commit()

    def django_atomic(item_id: Any, n: int) -> None:
        with transaction.atomic(using=alias):
            item = django_items.get(pk=item_id)
            changed = django_items.filter(pk=item_id, version=item.version).update(
                description=f"django {n}", version=F("version") + 1, updated_at=django_side.now()
            )
            assert changed == 1

    def django_known(item_id: Any, n: int) -> None:
        changed = django_items.filter(pk=item_id, version=versions[item_id]).update(
            description=f"known {n}", version=F("version") + 1, updated_at=django_side.now()
        )
        assert changed == 1

    return [(OURS_UPDATE, each(ours), _nothing), (OURS_KNOWN, each(ours_known), _nothing),
            (SQLMODEL_UPDATE, each(sqlmodel), _nothing),
            (DJANGO_UPDATE, each(django_atomic), _nothing),
            (DJANGO_KNOWN, each(django_known), _nothing)]  # fmt: skip


def _pages(
    engine: Engine, factory: Any, alias: str, theirs: Engine, item_row: Any, times: int
) -> list[Path]:
    from django.db.models import Q

    django_items = django_side.model("Item").objects.using(alias)
    newest_first = ["-created_at"]
    with UnitOfWork(factory) as uow:
        (row,) = uow.items.list(order_by=newest_first, limit=1, offset=DEPTH)
        cursor = uow.items.cursor_after(row, order_by=newest_first)
        at, last_id = row.created_at, row.id

    def repeated(fetch: Callable[[], list[Any]]) -> Callable[[], int]:
        def run() -> int:
            for _ in range(times):
                assert len(fetch()) == PAGE
            return times

        return run

    def ours(after: str | None) -> Callable[[], list[Any]]:
        def fetch() -> list[Any]:
            with UnitOfWork(factory) as uow:
                return uow.items.paginate(order_by=newest_first, limit=PAGE, cursor=after).items

        return fetch

    def sqlmodel_first() -> list[Any]:
        order = (item_row.created_at.desc(), item_row.id.desc())
        with Session(theirs) as session:
            return list(session.scalars(select(item_row).order_by(*order).offset(0).limit(PAGE)))

    hand_factory = make_session_factory(engine)

    if engine.dialect.name == "postgresql" or engine.dialect.name == "sqlite":
        deeper = tuple_(Item.created_at, Item.id) < tuple_(at, last_id)
    else:  # MariaDB ranges an index by a row value only on its first column
        newer = or_(Item.created_at < at, and_(Item.created_at == at, Item.id < last_id))
        deeper = and_(Item.created_at <= at, newer)

    def hand_keyset() -> list[Any]:
        statement = (
            select(Item).where(deeper).order_by(Item.created_at.desc(), Item.id.desc()).limit(PAGE)
        )
        with hand_factory() as session:
            return list(session.scalars(statement))

    def django_keyset() -> list[Any]:
        deeper = Q(created_at__lt=at) | Q(created_at=at, id__lt=last_id)
        return list(django_items.filter(deeper).order_by("-created_at", "-id")[:PAGE])

    return [(OURS_FIRST, repeated(ours(None)), _nothing),
            (SQLMODEL_FIRST, repeated(sqlmodel_first), _nothing),
            (OURS_DEEP, repeated(ours(cursor)), _nothing),
            (HAND_DEEP, repeated(hand_keyset), _nothing),
            (DJANGO_DEEP, repeated(django_keyset), _nothing)]  # fmt: skip


def _asyncio_reads(
    backend: str, engine: Engine, user_row: Any, ids: list[Any], repeat: int
) -> list[Measurement]:
    """Point reads in TASKS tasks on one event loop, each contender with a pool of TASKS."""
    from sqlmodel.ext.asyncio.session import AsyncSession as SQLModelAsyncSession

    loop = asyncio.new_event_loop()
    ours_engine = make_async_engine(engine.url, pool_size=TASKS, max_overflow=0)
    ours_factory = make_async_session_factory(ours_engine)
    async_url = make_async_engine(engine.url).url  # the same driver as ours
    theirs = create_async_engine(async_url, pool_size=TASKS, max_overflow=0)
    tortoise_user = loop.run_until_complete(tortoise_side.start(engine.url, TASKS))
    native = backend == "postgresql"
    parts = [ids[n::TASKS] for n in range(TASKS)]

    def in_tasks(read: Callable[[Any], Coroutine[Any, Any, Any]]) -> Callable[[], int]:
        async def worker(mine: list[Any]) -> None:
            for user_id in mine:
                assert await read(user_id) is not None

        async def all_of_them() -> None:
            await asyncio.gather(*(worker(part) for part in parts))

        def run() -> int:
            loop.run_until_complete(all_of_them())
            return len(ids)

        return run

    async def ours(user_id: Any) -> Any:
        async with AsyncUnitOfWork(ours_factory) as uow:
            return await uow.users.get(user_id)

    async def sqlmodel(user_id: Any) -> Any:
        async with SQLModelAsyncSession(theirs) as session:
            return await session.get(user_row, user_id)

    async def tortoise(user_id: Any) -> Any:
        return await tortoise_user.get(id=user_id if native else user_id.hex)

    try:
        return measure_interleaved(
            backend, "peers",
            [(OURS_ASYNC, in_tasks(ours), _nothing), (SQLMODEL_ASYNC, in_tasks(sqlmodel), _nothing),
             (TORTOISE_ASYNC, in_tasks(tortoise), _nothing)],
            repeat=repeat, unit="reads",
        )  # fmt: skip
    finally:
        loop.run_until_complete(tortoise_side.stop())
        loop.run_until_complete(ours_engine.dispose())
        loop.run_until_complete(theirs.dispose())
        loop.close()
