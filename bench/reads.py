"""Point reads by primary key: the raw driver, Core, Session.get, Repository.get, the peer."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable

import psycopg
import pymysql
from sqlalchemy import Engine, select

from app.db.models import User
from app.db.session import make_engine, make_session_factory
from app.repositories import UnitOfWork, UserRepository
from bench import peer
from bench.harness import Measurement, measure, measure_interleaved
from bench.ingest import core_executemany, reset, sample_rows

USERS = User.__table__
RATIOS = [
    ("reads", "Repository.get", "Session.get", "target >= 0.95x"),
    ("reads", "Repository.get", "advanced-alchemy get", "target >= 1.05x"),
    ("reads", "Session.get", "raw driver", "reference"),
    ("reads", "core select", "raw driver", "reference"),
    ("tags", "Repository.get, tags on", "Repository.get, tags off", "target >= 0.97x"),
]
_SESSION_SPAN = 100  # reads per session, so the identity map never answers for the database


def _raw_driver(engine: Engine, ids: list[object]) -> Callable[[], int]:
    url = engine.url
    if engine.dialect.name == "postgresql":
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)

        def run_pg() -> int:
            with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
                for user_id in ids:
                    cur.execute("SELECT * FROM users WHERE id = %s", (user_id,), prepare=True)
                    cur.fetchone()
            return len(ids)

        return run_pg
    if engine.dialect.name == "sqlite":
        hex_ids = [user_id.hex for user_id in ids]  # type: ignore[attr-defined]

        def run_sqlite() -> int:
            conn = sqlite3.connect(str(url.database))
            try:
                for user_id in hex_ids:
                    conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
            finally:
                conn.close()
            return len(ids)

        return run_sqlite
    text_ids = [user_id.hex for user_id in ids]  # type: ignore[attr-defined]  # CHAR(32) there

    def run_mariadb() -> int:
        conn = pymysql.connect(host=url.host, port=url.port or 3306, user=url.username,
                               password=url.password or "", database=url.database)  # fmt: skip
        try:
            with conn.cursor() as cur:
                for user_id in text_ids:
                    cur.execute("SELECT * FROM users WHERE id = %s", (user_id,))
                    assert cur.fetchone() is not None
        finally:
            conn.close()
        return len(ids)

    return run_mariadb


def _in_sessions(
    engine: Engine, ids: list[object], read: Callable[..., object]
) -> Callable[[], int]:
    factory = make_session_factory(engine)

    def run() -> int:
        for start in range(0, len(ids), _SESSION_SPAN):
            with factory() as session:
                for user_id in ids[start : start + _SESSION_SPAN]:
                    assert read(session, user_id) is not None
        return len(ids)

    return run


def _core(engine: Engine, ids: list[object]) -> Callable[[], int]:
    def run() -> int:
        with engine.connect() as connection:
            for user_id in ids:
                connection.execute(select(USERS).where(USERS.c.id == user_id)).one()
        return len(ids)

    return run


def run_reads(backend: str, engine: Engine, *, rows: int, repeat: int) -> list[Measurement]:
    """Point reads of `rows` random users from a table of 10 times as many."""
    reset(engine)
    core_executemany(engine, [dict(r) for r in sample_rows(rows * 10)])()
    with engine.connect() as connection:
        all_ids = list(connection.scalars(select(USERS.c.id)))
    ids = random.Random(7).sample(all_ids, rows)
    contenders: dict[str, Callable[[], int]] = {
        "raw driver": _raw_driver(engine, ids),
        "core select": _core(engine, ids),
        "Session.get": _in_sessions(engine, ids, lambda s, i: s.get(User, i)),
        "Repository.get": _in_sessions(engine, ids, lambda s, i: UserRepository(s).get(i)),
    }
    if peer.available():
        contenders["advanced-alchemy get"] = _in_sessions(
            engine, ids, lambda s, i: peer.user_repository(s).get(i)
        )
    return [
        measure(backend, "reads", name, run, reset=lambda: None, repeat=repeat, unit="reads")
        for name, run in contenders.items()
    ]


def _units_of_one_get(engine: Engine, ids: list[object]) -> Callable[[], int]:
    """A unit of work per read, as a web request makes one (its statements tagged or not)."""
    factory = make_session_factory(engine)

    def run() -> int:
        for user_id in ids:
            with UnitOfWork(factory, name="GET /users/{user_id}") as uow:
                assert uow.users.get(user_id) is not None
        return len(ids)

    return run


def run_tags(backend: str, engine: Engine, *, rows: int, repeat: int) -> list[Measurement]:
    """Point reads in units of work with query tags on (the default) and off, in rounds."""
    reset(engine)
    core_executemany(engine, [dict(r) for r in sample_rows(rows * 10)])()
    with engine.connect() as connection:
        all_ids = list(connection.scalars(select(USERS.c.id)))
    ids = random.Random(11).sample(all_ids, rows)
    untagged = make_engine(engine.url, query_tags=False)
    tagged = make_engine(engine.url, query_tags=True)
    try:
        paths = [
            ("Repository.get, tags on", _units_of_one_get(tagged, ids), lambda: None),
            ("Repository.get, tags off", _units_of_one_get(untagged, ids), lambda: None),
        ]
        return measure_interleaved(backend, "tags", paths, repeat=max(repeat, 5), unit="reads")
    finally:
        untagged.dispose()
        tagged.dispose()
