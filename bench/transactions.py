"""A unit of work with three writes: `with session.begin()` by hand against `UnitOfWork`, and
`run_in_transaction` with its commit receipt (exactly once) against a plain commit."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine

from app.db.models import Item, User
from app.db.session import make_session_factory
from app.repositories import UnitOfWork, run_in_transaction
from bench.harness import Measurement, measure_interleaved
from bench.ingest import reset

EXACTLY_ONCE, PLAIN_COMMIT = "run_in_transaction", "run_in_transaction, plain commit"
RATIOS = [
    ("uow", "UnitOfWork", "session.begin()", "target >= 0.91x (<= 1.1x the time)"),
    ("uow", EXACTLY_ONCE, PLAIN_COMMIT, "target >= 0.95x (the receipt costs <= 5%)"),
]


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


def _in_transaction(engine: Engine, count: int, *, exactly_once: bool) -> Callable[[], int]:
    factory = make_session_factory(engine)

    def run() -> int:
        for n in range(count):

            def write(uow: UnitOfWork, n: int = n) -> None:
                email = f"rit{n}@example.com"
                user = uow.users.create({"email": email, "hashed_password": "h"})
                uow.items.create({"title": "a", "owner_id": user.id})
                uow.items.create({"title": "b", "owner_id": user.id})

            run_in_transaction(write, session_factory=factory, exactly_once=exactly_once)
        return count

    return run


def run_transactions(backend: str, engine: Engine, *, count: int, repeat: int) -> list[Measurement]:
    """`count` transactions of three writes each: by hand, through UnitOfWork, and through
    run_in_transaction with and without its commit receipt; in interleaved rounds."""
    paths = {
        "session.begin()": _raw(engine, count),
        "UnitOfWork": _unit_of_work(engine, count),
        EXACTLY_ONCE: _in_transaction(engine, count, exactly_once=True),
        PLAIN_COMMIT: _in_transaction(engine, count, exactly_once=False),
    }
    return measure_interleaved(
        backend,
        "uow",
        [(name, run, lambda: reset(engine)) for name, run in paths.items()],
        repeat=repeat,
        unit="tx",
    )
