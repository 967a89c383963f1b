"""Pages deep in a large table: keyset against offset, first page against the last."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, func, select

from app.config import Settings
from app.db.models import Item
from app.db.session import make_session_factory
from app.repositories import ItemRepository
from app.repositories.cursors import encode_cursor, query_fingerprint
from app.repositories.ordering import sort_keys
from app.seed import SeedOptions, seed_database
from bench.harness import Measurement, measure
from bench.ingest import reset

PAGE = 50
RATIOS = [
    ("pages", "keyset, last page", "keyset, first page", "target: time <= 1.5x (ratio >= 0.67x)"),
    ("pages", "offset, last page", "offset, first page", "reference"),
]


def _cursor_before_last_page(repository: ItemRepository, total: int) -> str:
    """The cursor a client would hold after paging to just before the last page."""
    keys = sort_keys(Item, None, allowed={"id"})
    with repository.session as session:
        last_id = session.scalars(
            select(Item.id).order_by(Item.id).offset(total - PAGE - 1).limit(1)
        ).one()
    fingerprint = query_fingerprint(Item, [key.spec for key in keys], None)
    return encode_cursor([str(last_id)], fingerprint=fingerprint, key=repository.cursor_key)


def run_pagination(backend: str, engine: Engine, *, items: int, repeat: int) -> list[Measurement]:
    """Fetch pages of PAGE items from a table of `items` items, 200 times per measurement."""
    reset(engine)
    users = max(items // 10, 1)
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False))
    seed_database(engine, settings, SeedOptions(users=users, items_per_user=items // users))
    factory = make_session_factory(engine)
    with factory() as session:
        total = session.scalar(select(func.count()).select_from(Item)) or 0
    cursor = _cursor_before_last_page(ItemRepository(factory()), total)

    def pages(fetch: Callable[[ItemRepository], list[Item]], times: int = 200) -> Callable[[], int]:
        def run() -> int:
            with factory() as session:
                repository = ItemRepository(session)
                for _ in range(times):
                    assert len(fetch(repository)) == PAGE
                    session.expunge_all()
            return times

        return run

    contenders = {
        "keyset, first page": pages(lambda r: r.paginate(limit=PAGE).items),
        "keyset, last page": pages(lambda r: r.paginate(limit=PAGE, cursor=cursor).items),
        "offset, first page": pages(lambda r: r.list(limit=PAGE)),
        "offset, last page": pages(lambda r: r.list(limit=PAGE, offset=total - PAGE), times=20),
    }
    return [
        measure(backend, "pages", name, run, reset=lambda: None, repeat=repeat, unit="pages")
        for name, run in contenders.items()
    ]
