"""Ingest: the same users written by the raw bulk load, Core, the ORM, create_many and the seed."""

from __future__ import annotations

import datetime as dt
import sqlite3
import tempfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pymysql
from sqlalchemy import Engine, insert

from app.config import Settings
from app.db.models import User
from app.db.session import make_session_factory
from app.repositories import UserRepository
from app.seed import SeedOptions, seed_database
from app.seed.data import USER_COLUMNS, SeedPlan
from bench import peer
from bench.harness import Measurement, measure

USERS = User.__table__
RATIOS = [
    ("ingest", "Repository.create_many", "raw bulk load", "target >= 0.7x (SQLite: ahead of Core)"),
    ("ingest", "Repository.create_many", "core executemany", "target >= 0.9x"),
    ("ingest", "Repository.upsert_many", "Repository.create_many", "target >= 0.5x"),
    ("ingest", "upsert_many, all updates", "Repository.create_many", "reference"),
    ("ingest", "seed", "raw bulk load", "target >= 0.7x (PostgreSQL, 1M users)"),
    ("ingest", "seed", "core executemany", "target >= 0.8x (SQLite, MariaDB)"),
    ("ingest", "orm add_all", "core executemany", "reference"),
    ("ingest", "Repository.create_many", "advanced-alchemy add_many", "peer"),
]


def sample_tuples(count: int) -> list[tuple[Any, ...]]:
    """`count` distinct users, in USER_COLUMNS order."""
    plan = SeedPlan(users=count, items_per_user=0, seed=1, hashed_password="$argon2id$x")
    return [plan.user_row(n) for n in range(1, count + 1)]


def sample_rows(count: int) -> list[dict[str, Any]]:
    """The same users as `sample_tuples`, as dicts."""
    return [dict(zip(USER_COLUMNS, row, strict=True)) for row in sample_tuples(count)]


def reset(engine: Engine) -> None:
    """Empty the tables, as fresh as the backend's cheapest way allows."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("TRUNCATE items, users")
        elif engine.dialect.name == "sqlite":
            connection.exec_driver_sql("DELETE FROM items")
            connection.exec_driver_sql("DELETE FROM users")
        else:
            connection.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
            connection.exec_driver_sql("TRUNCATE items")
            connection.exec_driver_sql("TRUNCATE users")
            connection.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")


def raw_bulk_load(engine: Engine, rows: list[tuple[Any, ...]]) -> Callable[[], int]:
    """The database's own fastest path for the users, through the bare driver."""
    backend = engine.dialect.name
    storage = {"sqlite": _sqlite_storage, "mysql": _mariadb_storage}.get(backend, tuple)
    return bare_bulk_load(engine, "users", USER_COLUMNS, [storage(row) for row in rows])


def bare_bulk_load(
    engine: Engine, table: str, columns: Sequence[str], stored: list[Sequence[Any]]
) -> Callable[[], int]:
    """Rows already in the driver's form into `table`, the fastest way the database has: COPY
    (PostgreSQL), one executemany (SQLite), LOAD DATA from a tab-separated file (MariaDB, where
    None is written `\\N`)."""
    url = engine.url
    names = ", ".join(columns)
    if engine.dialect.name == "postgresql":
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)

        def copy() -> int:
            with (
                psycopg.connect(conninfo) as conn,
                conn.cursor() as cur,
                cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy,
            ):
                for row in stored:
                    copy.write_row(row)
            return len(stored)

        return copy
    if engine.dialect.name == "sqlite":
        marks = ", ".join("?" * len(columns))

        def executemany() -> int:
            conn = sqlite3.connect(str(url.database))
            try:
                conn.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", stored)
                conn.commit()
            finally:
                conn.close()
            return len(stored)

        return executemany

    def load_data() -> int:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "rows.tsv"
            path.write_text("".join(_load_data_line(row) for row in stored), encoding="utf-8")
            conn = pymysql.connect(host=url.host, port=url.port or 3306, user=url.username,
                                   password=url.password or "", database=url.database,
                                   local_infile=True, charset="utf8mb4")  # fmt: skip
            try:
                with conn.cursor() as cur:
                    loaded = cur.execute(
                        f"LOAD DATA LOCAL INFILE %s INTO TABLE {table} ({names})", (str(path),)
                    )
                    # LOCAL turns refused rows into warnings: a baseline that skipped rows
                    # would look faster than it is.
                    if loaded != len(stored) or cur.warning_count:
                        raise RuntimeError(f"raw LOAD DATA stored {loaded} of {len(stored)} rows")
                conn.commit()
            finally:
                conn.close()
        return len(stored)

    return load_data


def _load_data_line(row: Sequence[Any]) -> str:
    """One line of LOAD DATA's default format: tab-separated, backslash escapes, NULL as `\\N`."""
    return "\t".join(_load_data_field(value) for value in row) + "\n"


def _load_data_field(value: Any) -> str:
    if value is None or value == "\\N":
        return "\\N"
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _sqlite_storage(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # What SQLAlchemy stores on SQLite: UUIDs as 32 hex digits, datetimes as ISO text.
    return tuple(_sqlite_value(value) for value in row)


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None).isoformat(sep=" ")
    return value


def _mariadb_storage(row: tuple[Any, ...]) -> list[Any]:
    out: list[Any] = []
    for value in row:
        if value is None:
            out.append("\\N")
        elif isinstance(value, bool):
            out.append(int(value))
        elif isinstance(value, dt.datetime):
            out.append(value.replace(tzinfo=None).isoformat(sep=" "))
        else:
            out.append(value)
    return out


def core_executemany(engine: Engine, dicts: list[dict[str, Any]]) -> Callable[[], int]:
    def run() -> int:
        with engine.begin() as connection:
            connection.execute(insert(USERS), dicts)
        return len(dicts)

    return run


def orm_add_all(engine: Engine, dicts: list[dict[str, Any]]) -> Callable[[], int]:
    factory = make_session_factory(engine)

    def run() -> int:
        with factory() as session:
            session.add_all([User(**row) for row in dicts])
            session.commit()
        return len(dicts)

    return run


def caller_inputs(dicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a caller hands a repository: the fields it knows; ids and timestamps are filled in."""
    return [
        {"email": d["email"], "full_name": d["full_name"], "hashed_password": d["hashed_password"]}
        for d in dicts
    ]


def repository_create_many(engine: Engine, dicts: list[dict[str, Any]]) -> Callable[[], int]:
    factory = make_session_factory(engine)
    inputs = caller_inputs(dicts)

    def run() -> int:
        with factory() as session:
            inserted = UserRepository(session).create_many(inputs)
            session.commit()
        return inserted

    return run


def repository_upsert_many(engine: Engine, dicts: list[dict[str, Any]]) -> Callable[[], int]:
    """The same rows as upserts by email, into an emptied table: every row goes through the
    upsert statement and its conflict checks."""
    factory = make_session_factory(engine)
    inputs = caller_inputs(dicts)

    def run() -> int:
        with factory() as session:
            written = UserRepository(session).upsert_many(inputs, conflict=("email",))
            session.commit()
        return written

    return run


def peer_add_many(engine: Engine, dicts: list[dict[str, Any]]) -> Callable[[], int]:
    factory = make_session_factory(engine)
    inputs = caller_inputs(dicts)

    def run() -> int:
        with factory() as session:
            added = peer.user_repository(session).add_many([User(**row) for row in inputs])
            session.commit()
        return len(added)

    return run


def seed_path(engine: Engine, count: int) -> Callable[[], int]:
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False))

    def run() -> int:
        summary = seed_database(engine, settings, SeedOptions(users=count - 1, items_per_user=0))
        return summary.inserted

    return run


def run_ingest(
    backend: str, engine: Engine, *, rows: int, repeat: int, paths: set[str] | None = None
) -> list[Measurement]:
    """The ingest contenders (all, or those named in `paths`) on the same `rows` users."""
    tuples = sample_tuples(rows)
    dicts = [dict(zip(USER_COLUMNS, row, strict=True)) for row in tuples]
    contenders: dict[str, Callable[[], int]] = {
        "raw bulk load": raw_bulk_load(engine, tuples),
        "core executemany": core_executemany(engine, dicts),
        "orm add_all": orm_add_all(engine, dicts),
        "Repository.create_many": repository_create_many(engine, dicts),
        "Repository.upsert_many": repository_upsert_many(engine, dicts),
        "seed": seed_path(engine, rows),
    }
    if peer.available():
        contenders["advanced-alchemy add_many"] = peer_add_many(engine, dicts)
    results = [
        measure(backend, "ingest", name, run, reset=lambda: reset(engine), repeat=repeat)
        for name, run in contenders.items()
        if paths is None or name in paths
    ]
    name = "upsert_many, all updates"
    if paths is None or name in paths:
        fill = repository_create_many(engine, dicts)
        update = repository_upsert_many(engine, dicts)

        def refill() -> None:
            reset(engine)
            fill()

        results.append(
            measure(
                backend,
                "ingest",
                name,
                update,
                reset=refill,
                repeat=repeat,
            )
        )
    return results
