"""A team's own model: the tasks of examples/todo (a big-integer key the database numbers, an
enum, a date, a decimal, JSON), read by key and written in bulk, against the same baselines as
users: the raw driver's bulk load, Core, Session.get."""

from __future__ import annotations

import datetime as dt
import json
import random
import sys
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, insert, select

from app.db.models import Base
from app.db.session import make_session_factory
from app.repositories import Repository, UserRepository
from bench.harness import Measurement, measure
from bench.ingest import bare_bulk_load

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "todo"
RATIOS = [
    ("team", "Repository.create_many", "raw bulk load", "target >= 0.7x (as for users)"),
    ("team", "Repository.create_many", "core executemany", "target >= 0.9x"),
    ("team", "Repository.get", "Session.get", "target >= 0.95x"),
]
COLUMNS = ("project_id", "title", "state", "due_on", "estimate", "meta")
_SESSION_SPAN = 100  # reads per session, so the identity map never answers for the database


def _todo() -> Any:
    """The example's models, on `Base.metadata` (as APP_EXTENSIONS=todo would have them)."""
    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    import todo.models

    return todo.models


def _tables(models: Any) -> list[Table]:
    return [Base.metadata.tables[name] for name in
            ("todo_projects", "todo_tasks", "todo_labels", "todo_task_labels")]  # fmt: skip


def _rows(models: Any, project_id: uuid.UUID, count: int) -> list[dict[str, Any]]:
    states = list(models.State)
    return [
        {
            "project_id": project_id,
            "title": f"task {n}",
            "state": states[n % 3],
            "due_on": dt.date(2027, 1, 1) + dt.timedelta(days=n % 365),
            "estimate": Decimal(n % 400) / 4,
            "meta": {"n": n, "tags": ["a", "b"]},
        }
        for n in range(count)
    ]


def _stored(row: dict[str, Any], backend: str) -> list[Any]:
    """A row as the raw driver is handed it."""
    values = [row[name] for name in COLUMNS]
    values[0] = values[0] if backend == "postgresql" else values[0].hex
    values[2] = values[2].value
    values[5] = json.dumps(values[5])
    if backend != "postgresql":
        values[3] = values[3].isoformat()
        values[4] = str(values[4])
    return values


def _reset(engine: Engine) -> None:
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("TRUNCATE todo_task_labels, todo_tasks")
        elif engine.dialect.name == "sqlite":
            connection.exec_driver_sql("DELETE FROM todo_tasks")
        else:
            connection.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
            connection.exec_driver_sql("TRUNCATE todo_tasks")
            connection.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")


def _raw_bulk_load(engine: Engine, rows: list[dict[str, Any]]) -> Callable[[], int]:
    stored = [_stored(row, engine.dialect.name) for row in rows]
    return bare_bulk_load(engine, "todo_tasks", COLUMNS, stored)


def run_team(backend: str, engine: Engine, *, rows: int, repeat: int) -> list[Measurement]:
    """`create_many` of `rows` tasks and point reads of a tenth as many, with their baselines."""
    models = _todo()
    Base.metadata.create_all(engine, tables=_tables(models))
    with make_session_factory(engine)() as session:
        owner = UserRepository(session).create(
            {"email": "team@example.com", "hashed_password": "x"}
        )
        project = (
            Repository.of(models.Project)(session)
            .create({"owner_id": owner.id, "name": "bench", "slug": "bench"})
            .id
        )
        session.commit()
    data = _rows(models, project, rows)
    tasks = models.Task.__table__
    factory = make_session_factory(engine)

    def core() -> int:
        with engine.begin() as connection:
            connection.execute(insert(tasks), data)
        return len(data)

    def create_many() -> int:
        with factory() as session:
            written = Repository.of(models.Task)(session).create_many(data)
            session.commit()
        return written

    results = [
        measure(backend, "team", name, run, reset=lambda: _reset(engine), repeat=repeat)
        for name, run in (
            ("raw bulk load", _raw_bulk_load(engine, data)),
            ("core executemany", core),
            ("Repository.create_many", create_many),
        )
    ]
    _reset(engine)
    core()
    with engine.connect() as connection:
        ids = list(connection.scalars(select(tasks.c.id)))
    chosen = random.Random(7).sample(ids, max(len(ids) // 10, 1))

    def reads(read: Callable[[Any, int], object]) -> Callable[[], int]:
        def run() -> int:
            for start in range(0, len(chosen), _SESSION_SPAN):
                with factory() as session:
                    for task_id in chosen[start : start + _SESSION_SPAN]:
                        assert read(session, task_id) is not None
            return len(chosen)

        return run

    repository = Repository.of(models.Task)
    for name, run in (
        ("Session.get", reads(lambda s, i: s.get(models.Task, i))),
        ("Repository.get", reads(lambda s, i: repository(s).get(i))),
    ):
        results.append(
            measure(backend, "team", name, run, reset=lambda: None, repeat=repeat, unit="reads")
        )
    return results
