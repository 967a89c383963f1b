"""Every documented sort order is served by an index: the plan of its first page and of a page
deep in the table reads an index in order, with no sort of the rows.

The plans are the database's own (EXPLAIN of the statements `paginate` really sends), on a table
large enough, and analysed, for a planner to prefer an index only where one helps.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from sqlalchemy import Engine, event, select

from app.db.models import User
from app.db.session import (
    make_async_engine,
    make_async_session_factory,
    make_engine,
    make_session_factory,
)
from app.migrations import upgrade
from app.repositories import AsyncUnitOfWork, ItemRepository, UserRepository
from tests.integration.helpers import load_items

ROWS = 20_000
BUSY_OWNER_ITEMS = 3_000
DEPTH_PAGES = 10  # pages of 1,000 walked before the deep page
OWNER = "owner"

# (repository, order, filter on one owner, the index that must serve it)
DOCUMENTED = [
    ("users", ["-created_at"], False, "ix_users_created_at"),
    ("users", ["created_at"], False, "ix_users_created_at"),
    ("users", ["email"], False, "uq_users_email"),
    ("users", ["-email"], False, "uq_users_email"),
    ("items", ["-created_at"], False, "ix_items_created_at"),
    ("items", ["created_at"], False, "ix_items_created_at"),
    ("items", ["title"], False, "ix_items_title"),
    ("items", ["-title"], False, "ix_items_title"),
    ("items", ["-created_at"], True, "ix_items_owner_id_created_at"),
    ("items", ["created_at"], True, "ix_items_owner_id_created_at"),
]


@pytest.fixture
def large(fresh_url: str) -> Iterator[Engine]:
    engine = make_engine(fresh_url)
    upgrade(engine)
    load_items(engine, ROWS, owners=ROWS // 2)
    with make_session_factory(engine)() as session:  # one owner of many items
        owner = UserRepository(session).create(
            {"email": "busy@example.com", "hashed_password": "x"}
        )
        ItemRepository(session).create_many(
            {"title": f"b{n}", "owner_id": owner.id} for n in range(BUSY_OWNER_ITEMS)
        )
        session.commit()
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("ANALYZE")
        elif engine.dialect.name == "mysql":
            connection.exec_driver_sql("ANALYZE TABLE users, items")
        else:
            connection.exec_driver_sql("ANALYZE")
    yield engine
    engine.dispose()


def test_every_documented_order_reads_an_index_with_no_sort(large: Engine) -> None:
    factory = make_session_factory(large)
    with large.connect() as connection:
        busiest = connection.scalar(select(User.id).where(User.email == "busy@example.com"))
    problems = []
    for table, order, per_owner, index in DOCUMENTED:
        where = {"owner_id": busiest} if per_owner else None
        with factory() as session:
            repository: Any = (UserRepository if table == "users" else ItemRepository)(session)
            cursor = None
            for _ in range(DEPTH_PAGES if not per_owner else 2):
                cursor = repository.paginate(
                    where=where, order_by=order, limit=1000, cursor=cursor
                ).next_cursor
            for depth, at in (("first", None), ("deep", cursor)):
                page = partial(
                    repository.paginate, where=where, order_by=order, limit=50, cursor=at
                )
                statement, parameters = last_select(large, page)
                plan = explain(large, statement, parameters)
                # A deep page, or one owner's, must start inside the index, not read up to it.
                ranged = at is not None or per_owner
                problem = judge(large.dialect.name, plan, index, ranged=ranged)
                if problem:
                    problems.append(
                        f"{table} {order} {'of one owner ' * per_owner}{depth} page: {problem}"
                    )
    assert problems == []


def last_select(engine: Engine, action: Any) -> tuple[str, Any]:
    """The last SELECT `action` sent, with its parameters."""
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        action()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return sent[-1]


def explain(engine: Engine, statement: str, parameters: Any) -> str:
    prefix = {
        "postgresql": "EXPLAIN (FORMAT JSON) ",
        "mysql": "EXPLAIN FORMAT=JSON ",
        "sqlite": "EXPLAIN QUERY PLAN ",
    }[engine.dialect.name]
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(prefix + statement, parameters).all()
    if engine.dialect.name == "sqlite":
        return "\n".join(str(row[-1]) for row in rows)
    value = rows[0][0]
    return value if isinstance(value, str) else json.dumps(value)


def judge(dialect: str, plan: str, index: str, *, ranged: bool) -> str | None:
    """What is wrong with `plan` (None: it reads `index` in order, from where the page starts
    when `ranged`, and sorts nothing)."""
    if dialect == "postgresql":
        nodes = list(_nodes(json.loads(plan)[0]["Plan"]))
        sorts = [n["Node Type"] for n in nodes if "Sort" in n["Node Type"]]
        scans = [n["Node Type"] for n in nodes if n["Node Type"] == "Seq Scan"]
        reads = [n for n in nodes if n.get("Index Name") == index]
        starts = any("Index Cond" in n for n in reads)
        if sorts or scans or not reads or (ranged and not starts):
            return f"sorts {sorts}, scans {scans}, reads {index}: {bool(reads)}, from: {starts}"
        return None
    if dialect == "mysql":
        access = json.loads(plan)["query_block"]["nested_loop"][0]["table"]
        kind, key = access.get("access_type"), access.get("key")
        if "filesort" in plan or key != index or (ranged and kind not in ("range", "ref")):
            return f"access {kind} on {key}, filesort: {'filesort' in plan}"
        return None
    # SQLite names a unique constraint's index itself (sqlite_autoindex_users_2).
    named = index in plan or (index.startswith("uq_") and "sqlite_autoindex" in plan)
    if "TEMP B-TREE" in plan or not named or (ranged and "SEARCH" not in plan):
        return plan.replace("\n", "; ")
    return None


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def test_iterate_streams_every_row_in_order_in_batches(large: Engine) -> None:
    factory = make_session_factory(large)
    with factory() as session, session.begin():
        repository = ItemRepository(session)
        streamed = [
            item.id for item in repository.iterate(order_by=["-created_at"], batch_size=700)
        ]
        paged: list[Any] = []
        cursor = None
        while True:
            page = repository.paginate(order_by=["-created_at"], limit=1000, cursor=cursor)
            paged += [item.id for item in page.items]
            if (cursor := page.next_cursor) is None:
                break
    assert len(streamed) == ROWS + BUSY_OWNER_ITEMS
    assert streamed == paged


def test_iterate_streams_the_same_rows_on_the_asyncio_face(large: Engine) -> None:
    url = large.url.render_as_string(hide_password=False)

    async def stream() -> list[Any]:
        engine = make_async_engine(url)
        try:
            async with AsyncUnitOfWork(make_async_session_factory(engine)) as uow:
                rows = uow.items.iterate(where={"title__startswith": "b"}, order_by=["title"])
                return [(row.title, row.id) async for row in rows]
        finally:
            await engine.dispose()

    streamed = asyncio.run(stream())
    with make_session_factory(large)() as session, session.begin():
        blocking = [
            (row.title, row.id)
            for row in ItemRepository(session).iterate(
                where={"title__startswith": "b"}, order_by=["title"], batch_size=100
            )
        ]
    assert len(streamed) == BUSY_OWNER_ITEMS
    assert streamed == blocking == sorted(blocking)
