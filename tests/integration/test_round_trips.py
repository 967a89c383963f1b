"""What a unit of work sends beyond its own statements, counted by the server: on MariaDB one
ROLLBACK or COMMIT ends it (the pool's reset after it sends nothing, `app.dialects.
pymysql_connection`; on SQLite the reset skips a ROLLBACK outside a transaction), and a
transaction that anything opened since is still rolled back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from app.db.session import make_engine, make_session_factory
from app.repositories import UnitOfWork

# A write on the driver's own connection (MariaDB's opens a transaction; SQLite's driver is in
# autocommit, so the test begins one by hand there).
_INSERT = (
    "INSERT INTO users (id, email, hashed_password, is_active, created_at, updated_at, version)"
    " VALUES ({key}, 'undone@example.com', 'h', 1, '2026-01-01', '2026-01-01', 1)"
)


@pytest.fixture
def one_connection(
    committed_engine: Engine, committing_factory: sessionmaker[Session]
) -> Iterator[Engine]:
    """An engine whose units all run on one pooled connection, on the committing database."""
    built = make_engine(committed_engine.url, pool_size=1, max_overflow=0)
    yield built
    built.dispose()


def _ended_so_far(factory: sessionmaker[Session]) -> tuple[int, int]:
    """The ROLLBACKs and COMMITs the pooled connection's session has run, read in a unit of
    its own (which ends with one more ROLLBACK, after the reading)."""
    with UnitOfWork(factory) as uow:
        statement = text(
            "SHOW SESSION STATUS WHERE Variable_name IN ('Com_rollback', 'Com_commit')"
        )
        rows = dict(uow.session.execute(statement).all())
    return int(rows["Com_rollback"]), int(rows["Com_commit"])


@pytest.mark.backends("mariadb")
def test_a_unit_that_reads_ends_with_one_rollback(one_connection: Engine) -> None:
    factory = make_session_factory(one_connection)
    rollbacks, commits = _ended_so_far(factory)
    with UnitOfWork(factory) as uow:
        assert uow.users.get(uuid.uuid4()) is None
    # The reading unit's ROLLBACK, and the read's: none from the pool's resets.
    assert _ended_so_far(factory) == (rollbacks + 2, commits)


@pytest.mark.backends("mariadb")
def test_a_unit_that_commits_sends_no_rollback(one_connection: Engine) -> None:
    factory = make_session_factory(one_connection)
    rollbacks, commits = _ended_so_far(factory)
    with UnitOfWork(factory) as uow:
        uow.users.create({"email": "once@example.com", "hashed_password": "h"})
        uow.commit()
    assert _ended_so_far(factory) == (rollbacks + 1, commits + 1)


@pytest.mark.backends("mariadb", "sqlite")
def test_a_transaction_opened_after_a_commit_is_still_rolled_back(
    backend: str, one_connection: Engine, committed_engine: Engine
) -> None:
    """Straight on the driver: a COMMIT, then a write in a transaction, then the ROLLBACK the
    pool sends when the connection comes back: the write is undone, and the next unit on that
    connection, which commits, does not commit it too."""
    raw = one_connection.raw_connection()
    try:
        cursor = raw.cursor()
        raw.commit()
        if backend == "sqlite":
            cursor.execute("BEGIN")
        cursor.execute(_INSERT.format(key="%s" if backend == "mariadb" else "?"),
                       (uuid.uuid4().hex,))  # fmt: skip
        cursor.close()
    finally:
        raw.close()  # the pool's reset
    with UnitOfWork(make_session_factory(one_connection)) as uow:
        uow.users.create({"email": "kept@example.com", "hashed_password": "h"})
        uow.commit()
    with committed_engine.connect() as connection:
        left = connection.execute(
            text("SELECT count(*) FROM users WHERE email = 'undone@example.com'")
        ).scalar()
    assert left == 0
