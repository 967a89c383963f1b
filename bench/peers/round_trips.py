"""Round trips per unit: a read unit and a write unit of this project, Django's ORM and
SQLModel, each through a proxy that holds every message 50 ms each way. A unit's time is then
about 100 ms per round trip it waits for, whatever the machine's speed: what a service that is
a continent away from its database pays, and what pipelining saves."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.table import Table
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session
from tests.faults import DelayingProxy

from app.db.session import make_engine, make_session_factory
from app.db.types import utcnow
from app.repositories import UnitOfWork
from bench.harness import Measurement, console
from bench.peers import django_side

WORKLOAD = "peers, 100 ms round trip"
ONE_WAY = 0.05
TIMED = 3
READ, DJANGO_READ, SQLMODEL_READ = "read unit", "Django read", "SQLModel read"
WRITE, KNOWN, DJANGO_WRITE, DJANGO_KNOWN, SQLMODEL_WRITE = (
    "versioned update unit",
    "update unit, known version",
    "Django read + update in atomic()",
    "Django filter(pk, version).update()",
    "SQLModel version_id_col update",
)
GOAL = "goal >= 1.0x"
RATIOS = [
    (WORKLOAD, READ, DJANGO_READ, GOAL),
    (WORKLOAD, READ, SQLMODEL_READ, GOAL),
    (WORKLOAD, WRITE, SQLMODEL_WRITE, GOAL),
    (WORKLOAD, WRITE, DJANGO_WRITE, GOAL),
    (WORKLOAD, KNOWN, DJANGO_KNOWN, GOAL),
]


def run_round_trips(
    backend: str, engine: Engine, user_row: Any, item_row: Any, user_id: Any, item_id: Any
) -> list[Measurement]:
    """Each unit's time through the proxy (the least of a few, after one that makes the
    connection): one Measurement per path, and a table of round trips per unit."""
    url = engine.url
    port = url.port or (5432 if url.get_backend_name() == "postgresql" else 3306)
    proxy = DelayingProxy((str(url.host), port), ONE_WAY)
    far = url.set(host="127.0.0.1", port=proxy.port)
    ours_engine = make_engine(far)
    factory = make_session_factory(ours_engine)
    theirs = create_engine(far)
    alias = django_side.setup(far, alias=f"far_{backend}")
    try:
        near = make_session_factory(engine)
        current: dict[str, int] = {}

        def learn_version() -> None:  # off the clock: the caller knows it already
            with UnitOfWork(near) as uow:
                current["version"] = int(uow.items.get_one(item_id).version)

        paths = _paths(factory, theirs, alias, user_row, item_row, user_id, item_id, current)
        results = [
            _timed(backend, name, unit, learn_version if name in _KNOWING else None)
            for name, unit in paths
        ]
    finally:
        django_side.close(alias)
        theirs.dispose()
        ours_engine.dispose()
        proxy.close()
    table = Table("backend", "unit", "round trips (at 100 ms each)")
    for measured in results:
        table.add_row(backend, measured.path, f"{min(measured.seconds) / (2 * ONE_WAY):.1f}")
    console.print(table)
    return results


_KNOWING = {KNOWN, DJANGO_KNOWN}


def _timed(
    backend: str, name: str, unit: Callable[[], None], prepare: Callable[[], None] | None
) -> Measurement:
    measured = Measurement(backend, WORKLOAD, name, units=1, unit="units")
    for n in range(TIMED + 1):
        if prepare is not None:
            prepare()
        started = time.perf_counter()
        unit()
        if n:  # the first made the connection, and pooled it
            measured.seconds.append(time.perf_counter() - started)
    return measured


def _paths(
    factory: Any, theirs: Engine, alias: str, user_row: Any, item_row: Any, user_id: Any,
    item_id: Any, current: dict[str, int],
) -> list[tuple[str, Callable[[], None]]]:  # fmt: skip
    from django.db import transaction
    from django.db.models import F

    django_users = django_side.model("User").objects.using(alias)
    django_items = django_side.model("Item").objects.using(alias)

    def read() -> None:
        with UnitOfWork(factory) as uow:
            assert uow.users.get(user_id) is not None

    def django_read() -> None:
        django_users.get(pk=user_id)

    def sqlmodel_read() -> None:
        with Session(theirs) as session:
            assert session.get(user_row, user_id) is not None

    def write() -> None:
        with UnitOfWork(factory) as uow:
            item = uow.items.get_one(item_id)
            uow.items.update(item.id, {"description": f"far {time.time_ns()}"})
            uow.commit()

    def known() -> None:
        with UnitOfWork(factory) as uow:
            uow.items.update(item_id, {"description": "known"}, expected_version=current["version"])
            uow.commit()

    def django_write() -> None:
        with transaction.atomic(using=alias):
            item = django_items.get(pk=item_id)
            changed = django_items.filter(pk=item_id, version=item.version).update(
                description="django", version=F("version") + 1, updated_at=django_side.now()
            )
            assert changed == 1

    def django_known() -> None:
        changed = django_items.filter(pk=item_id, version=current["version"]).update(
            description="django known", version=F("version") + 1, updated_at=django_side.now()
        )
        assert changed == 1

    def sqlmodel_write() -> None:
        with Session(theirs) as session:
            item = session.get(item_row, item_id)
            item.description, item.updated_at = f"sqlmodel {time.time_ns()}", utcnow()
            session.commit()

    return [(READ, read), (DJANGO_READ, django_read), (SQLMODEL_READ, sqlmodel_read),
            (WRITE, write), (KNOWN, known), (DJANGO_WRITE, django_write),
            (DJANGO_KNOWN, django_known), (SQLMODEL_WRITE, sqlmodel_write)]  # fmt: skip


def proxied(url: URL) -> bool:
    """Whether `url` is a server the proxy can stand in front of (not an embedded file)."""
    return url.get_backend_name() != "sqlite"
