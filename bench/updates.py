"""Versioned updates, each its own transaction: `Repository.update` at a version the caller
knows (one statement), the same change read first and then flushed (what it did before, and
still does for a model with validators), and the UPDATE written by hand in SQLAlchemy Core."""

from __future__ import annotations

import random

from sqlalchemy import Engine, Table, select, update

from app.db.models import Item
from app.db.session import make_session_factory
from app.db.types import utcnow
from app.repositories import UnitOfWork
from bench.harness import Measurement, measure_interleaved
from bench.ingest import reset

KNOWN, READ_FIRST, CORE = (
    "Repository.update, known version",
    "read, then update",
    "Core UPDATE ... RETURNING by hand",
)
RATIOS = [
    ("updates", KNOWN, READ_FIRST, "reference (the statement saved)"),
    ("updates", KNOWN, CORE, "target >= 0.8x"),
]
ITEMS: Table = Item.__table__  # type: ignore[assignment]


def _items(engine: Engine, count: int) -> dict[object, int]:
    """`count` items (of one owner), by id, each at version 1."""
    reset(engine)
    factory = make_session_factory(engine)
    with UnitOfWork(factory) as uow:
        owner = uow.users.create({"email": "updates@example.com", "hashed_password": "h"})
        uow.items.create_many({"title": f"item {n}", "owner_id": owner.id} for n in range(count))
        uow.commit()
    with engine.connect() as connection:
        return dict.fromkeys(connection.scalars(select(Item.id)), 1)


def run_updates(backend: str, engine: Engine, *, count: int, repeat: int) -> list[Measurement]:
    """`count` one-update transactions a path, on items whose versions every path keeps."""
    versions = _items(engine, 200)
    ids = list(versions)
    chooser = random.Random(7)
    factory = make_session_factory(engine)

    def known() -> int:
        for n in range(count):
            item_id = chooser.choice(ids)
            with UnitOfWork(factory) as uow:
                changed = {"description": f"known {n}"}
                uow.items.update(item_id, changed, expected_version=versions[item_id])
                uow.commit()
            versions[item_id] += 1
        return count

    def read_first() -> int:
        for n in range(count):
            item_id = chooser.choice(ids)
            with UnitOfWork(factory) as uow:
                item = uow.items.get_one(item_id)
                assert item.version == versions[item_id]
                uow.items.update(item_id, {"description": f"read {n}"})
                uow.commit()
            versions[item_id] += 1
        return count

    def core() -> int:
        returning = engine.dialect.update_returning
        for n in range(count):
            item_id = chooser.choice(ids)
            statement = (
                update(ITEMS)
                .where(ITEMS.c.id == item_id, ITEMS.c.version == versions[item_id])
                .values(description=f"core {n}", version=ITEMS.c.version + 1, updated_at=utcnow())
            )
            with engine.begin() as connection:
                if returning:
                    connection.execute(statement.returning(*ITEMS.c)).one()
                else:
                    connection.execute(statement)
                    connection.execute(select(ITEMS).where(ITEMS.c.id == item_id)).one()
            versions[item_id] += 1
        return count

    def nothing() -> None:
        """Between rounds the rows stay: their versions go on."""

    return measure_interleaved(
        backend,
        "updates",
        [(KNOWN, known, nothing), (READ_FIRST, read_first, nothing), (CORE, core, nothing)],
        repeat=repeat,
        unit="tx",
    )
