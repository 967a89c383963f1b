"""Pages deep in a large table: every documented order at depth against the primary-key page 1,
keyset against offset, and a streaming read of the whole table against the raw driver."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, func, select

from app.config import Settings
from app.db.models import Item
from app.db.session import make_session_factory
from app.repositories import ItemRepository
from app.seed import SeedOptions, seed_database
from bench.harness import Measurement, console, measure, measure_interleaved
from bench.ingest import reset

PAGE = 50
DEPTH = 100_000
# The item orders README documents; the same indexes serve the users' ones.
ORDERS = [["-created_at"], ["created_at"], ["title"], ["-title"]]
TARGET = "target: time <= 1.5x (ratio >= 0.67x)"
RATIOS = [
    ("pages", "keyset, last page", "keyset, first page", TARGET),
    *[("pages", f"{' '.join(o)} at depth", "keyset, first page", TARGET) for o in ORDERS],
    *[
        ("pages", f"{' '.join(o)} at depth", f"{' '.join(o)} first page", "depth costs")
        for o in ORDERS
    ],
    ("pages", "one owner, -created_at, deep", "keyset, first page", TARGET),
    ("pages", "offset, last page", "offset, first page", "reference"),
    ("stream", "iterate()", "raw driver fetch", "target: >= 0.5x"),
]


def _cursor_at(repository: ItemRepository, order: list[str] | None, depth: int, where: Any) -> str:
    """The cursor a client would hold after paging `depth` rows into `order`."""
    row = repository.list(where=where, order_by=order, limit=1, offset=depth)[0]
    return repository.cursor_after(row, where=where, order_by=order)


def run_pagination(backend: str, engine: Engine, *, items: int, repeat: int) -> list[Measurement]:
    """Fetch pages of PAGE items from a table of `items` items, 200 times per measurement."""
    reset(engine)
    users = max(items // 10, 1)
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False))
    seed_database(engine, settings, SeedOptions(users=users, items_per_user=items // users))
    factory = make_session_factory(engine)
    with factory() as session:
        total = session.scalar(select(func.count()).select_from(Item)) or 0
        owner = session.scalar(select(Item.owner_id).limit(1))
        repository = ItemRepository(session)
        depth = min(DEPTH, total - PAGE - 1)
        last = _cursor_at(repository, None, total - PAGE - 1, None)
        deep = {tuple(o): _cursor_at(repository, o, depth, None) for o in ORDERS}
        mine = {"owner_id": owner}
        own = _cursor_at(repository, ["-created_at"], (items // users) // 2, mine)

    def pages(fetch: Callable[[ItemRepository], list[Item]], times: int = 200) -> Callable[[], int]:
        def run() -> int:
            with factory() as session:
                repository = ItemRepository(session)
                for _ in range(times):
                    assert fetch(repository)
                    session.expunge_all()
            return times

        return run

    def keyset(order: list[str] | None, cursor: str | None, where: Any = None) -> Callable[[], int]:
        return pages(
            lambda r: r.paginate(where=where, order_by=order, limit=PAGE, cursor=cursor).items
        )

    contenders = {
        "keyset, first page": keyset(None, None),
        "keyset, last page": keyset(None, last),
        **{f"{' '.join(o)} first page": keyset(o, None) for o in ORDERS},
        **{f"{' '.join(o)} at depth": keyset(o, deep[tuple(o)]) for o in ORDERS},
        "one owner, -created_at, deep": keyset(["-created_at"], own, mine),
        "offset, first page": pages(lambda r: r.list(limit=PAGE)),
        "offset, last page": pages(lambda r: r.list(limit=PAGE, offset=total - PAGE), times=20),
    }
    # In rounds: the ratios compare paths a few tenths of a millisecond apart, which drift
    # between one path's runs and the next path's would swamp.
    results = measure_interleaved(
        backend,
        "pages",
        [(name, run, _nothing) for name, run in contenders.items()],
        repeat=repeat,
        unit="pages",
    )
    return results + run_stream(backend, engine, total=total, repeat=max(repeat // 2, 1))


def run_stream(backend: str, engine: Engine, *, total: int, repeat: int) -> list[Measurement]:
    """Every item, in primary-key order: `iterate()` against the raw driver's fetch."""
    factory = make_session_factory(engine)

    def ours() -> int:
        with factory() as session, session.begin():
            return sum(1 for _ in ItemRepository(session).iterate(batch_size=1000))

    def raw() -> int:
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT * FROM items ORDER BY id")
            count = 0
            while rows := cursor.fetchmany(1000):
                count += len(rows)
            cursor.close()
            connection.rollback()
            return count
        finally:
            connection.close()

    results = [
        measure(backend, "stream", "raw driver fetch", raw, reset=lambda: None, repeat=repeat),
        measure(backend, "stream", "iterate()", ours, reset=lambda: None, repeat=repeat),
    ]
    url = engine.url.render_as_string(hide_password=False)
    for rows in sorted({min(100_000, total), total}):
        console.print(
            f"  {backend:<10} stream   peak RSS of a process that iterates {rows:,} rows: "
            f"{peak_rss_of_iterating(url, rows):,.0f} MiB"
        )
    return results


def peak_rss_of_iterating(url: str, rows: int) -> float:
    """MiB at the peak of a fresh process that reads `rows` items with `iterate()`."""
    script = (
        "import sys\n"
        "from app.db.session import make_engine, make_session_factory\n"
        "from app.repositories import ItemRepository\n"
        "factory = make_session_factory(make_engine(sys.argv[1]))\n"
        "with factory() as session, session.begin():\n"
        "    for n, _ in enumerate(ItemRepository(session).iterate(), 1):\n"
        "        if n == int(sys.argv[2]):\n"
        "            break\n"
        # VmHWM: this process's own peak (ru_maxrss would carry the parent's over exec).
        "status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
        "print(int(status.split()[0]) / 1024)\n"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script, url, str(rows)], capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip())


def _nothing() -> None:
    """No reset: pages only read."""
