"""Engine settings that every backend must honour."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, Engine, text

from app.db.session import make_engine


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
