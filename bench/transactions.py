"""A unit of work with three writes: `with session.begin()` by hand against `UnitOfWork`."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine

from app.db.models import Item, User
from app.db.session import make_session_factory
from app.repositories import UnitOfWork
from bench.harness import Measurement, measure
from bench.ingest import reset

RATIOS = [("uow", "UnitOfWork", "session.begin()", "target >= 0.91x (<= 1.1x the time)")]


def _raw(engine: Engine, count: int) -> Callable[[], int]:
    factory = make_session_factory(engine)

    def run() -> int:
        for n in range(count):
            with factory() as session, session.begin():
                # The same statements as the repository's: each write flushed as it is made.
                user = User(email=f"raw{n}@example.com", hashed_password="h")
                session.add(user)
                session.flush()
                for title in ("a", "b"):
                    session.add(Item(title=title, owner_id=user.id))
                    session.flush()
        return count

    return run


def _unit_of_work(engine: Engine, count: int) -> Callable[[], int]:
    factory = make_session_factory(engine)

    def run() -> int:
        for n in range(count):
            with UnitOfWork(factory) as uow:
                user = uow.users.create({"email": f"uow{n}@example.com", "hashed_password": "h"})
                uow.items.create({"title": "a", "owner_id": user.id})
                uow.items.create({"title": "b", "owner_id": user.id})
                uow.commit()
        return count

    return run


def run_transactions(backend: str, engine: Engine, *, count: int, repeat: int) -> list[Measurement]:
    """`count` transactions of three writes each, by hand and through UnitOfWork."""
    return [
        measure(backend, "uow", name, run, reset=lambda: reset(engine), repeat=repeat, unit="tx")
        for name, run in {
            "session.begin()": _raw(engine, count),
            "UnitOfWork": _unit_of_work(engine, count),
        }.items()
    ]
