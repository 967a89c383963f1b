"""Engine settings that every backend must honour."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from app.config import Settings
from app.db.session import engine_from_settings, make_async_engine, make_engine
from app.dialects.galera import cluster_state, is_galera


@pytest.mark.backends("sqlite")
def test_sqlite_enforces_foreign_keys_and_uses_wal(connection: Connection) -> None:
    assert connection.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
    assert connection.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
    assert connection.execute(text("PRAGMA busy_timeout")).scalar_one() == 5000


@pytest.mark.backends("sqlite")
def test_sqlite_in_memory_databases_are_shared_by_the_engine() -> None:
    engine = make_engine("sqlite://")
    with engine.begin() as first:
        first.execute(text("CREATE TABLE t (x INTEGER)"))
    with engine.connect() as second:
        assert second.execute(text("SELECT count(*) FROM t")).scalar_one() == 0


def test_savepoints_roll_back_only_their_own_work(engine: Engine) -> None:
    with engine.connect() as connection:
        outer = connection.begin()
        connection.execute(text("CREATE TEMPORARY TABLE scratch (x INTEGER)"))
        connection.execute(text("INSERT INTO scratch VALUES (1)"))
        savepoint = connection.begin_nested()
        connection.execute(text("INSERT INTO scratch VALUES (2)"))
        savepoint.rollback()
        assert connection.execute(text("SELECT x FROM scratch")).scalars().all() == [1]
        outer.rollback()


def test_rollback_really_undoes_writes(engine: Engine) -> None:
    with engine.connect() as connection:
        with connection.begin() as transaction:
            connection.execute(
                text(
                    "INSERT INTO users (id, email, hashed_password, created_at, updated_at) "
                    "VALUES ('0190a0a0000070008000000000000009', 'gone@example.com', 'x', "
                    "'2026-01-01', '2026-01-01')"
                )
            )
            transaction.rollback()
        assert connection.execute(text("SELECT count(*) FROM users")).scalar_one() == 0


@pytest.mark.backends("mariadb")
def test_mariadb_sessions_are_strict_and_utf8mb4(connection: Connection) -> None:
    sql_mode = connection.execute(text("SELECT @@SESSION.sql_mode")).scalar_one()
    assert "STRICT_ALL_TABLES" in sql_mode
    assert connection.execute(text("SELECT @@character_set_client")).scalar_one() == "utf8mb4"


def test_a_single_server_is_not_taken_for_a_galera_node(connection: Connection) -> None:
    # A plain MariaDB (compiled with wsrep, reporting itself Disconnected), PostgreSQL, SQLite:
    # no causal-read setting, no cluster line in `app db info`, the ordinary migration lock.
    assert cluster_state(connection) is None
    assert not is_galera(connection)


def test_echo_logs_statements_but_not_their_parameters(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    echoing = make_engine(engine.url, echo=True, poolclass=NullPool)
    with caplog.at_level(logging.INFO, logger="sqlalchemy.engine"), echoing.connect() as conn:
        conn.execute(text("SELECT :secret AS s"), {"secret": "argon2-hash-of-someone"}).all()
    echoing.dispose()
    assert "SELECT" in caplog.text
    assert "argon2-hash-of-someone" not in caplog.text


def test_no_log_of_either_face_shows_a_parameter_even_at_debug(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    async def on_the_asyncio_face() -> None:
        async_engine = make_async_engine(engine.url, echo=True, poolclass=NullPool)
        async with async_engine.connect() as conn:
            await conn.execute(text("SELECT :secret AS s"), {"secret": "argon2-hash-of-someone"})
        await async_engine.dispose()

    blocking = make_engine(engine.url, echo=True, poolclass=NullPool)
    with caplog.at_level(logging.DEBUG):  # every logger: ours, SQLAlchemy's, the drivers'
        asyncio.run(on_the_asyncio_face())
        with blocking.connect() as conn:
            conn.execute(text("SELECT :secret AS s"), {"secret": "argon2-hash-of-someone"}).all()
    blocking.dispose()
    assert "SELECT" in caplog.text
    assert "argon2-hash-of-someone" not in caplog.text


def test_a_raw_database_error_does_not_carry_the_parameters(engine: Engine) -> None:
    """An error the data layer leaves as the driver's (a syntax error: MariaDB's quotes the
    statement with its values in it)."""
    with engine.connect() as conn, pytest.raises(DBAPIError) as caught:
        conn.execute(text("INSERT INTO users VALUES (:secret"), {"secret": "hash-xyz"})
    assert "hash-xyz" not in str(caught.value)


def test_parameters_are_logged_only_when_asked_for(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False),
                        db_echo=True, db_echo_parameters=True)  # fmt: skip
    echoing = engine_from_settings(settings, poolclass=NullPool)
    with caplog.at_level(logging.INFO, logger="sqlalchemy.engine"), echoing.connect() as conn:
        conn.execute(text("SELECT :value AS v"), {"value": "shown-on-purpose"}).all()
    echoing.dispose()
    assert "shown-on-purpose" in caplog.text
