"""A lock that serialises migrations on one database, held for the whole run.

PostgreSQL: a session advisory lock (advisory locks belong to one database), tried until
`wait_seconds` have passed. MariaDB: GET_LOCK with a timeout, on a name derived from the
database's (GET_LOCK names are server-wide: one name would make migrating staging block
production). SQLite: its own write lock, taken up front with BEGIN IMMEDIATE and waited for
under `busy_timeout`. A second migrator waits up to `wait_seconds`, then fails with
`MigrationLockedError`; once it has the lock it finds the migrations applied and does nothing.
"""

from __future__ import annotations

import hashlib
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text
from sqlalchemy import exc as sa_exc

from app.db.errors import DataLayerError, RetryableError, translate
from app.db.session import SQLITE_BEGIN_OPTION, SQLITE_BUSY_TIMEOUT_MS

LOCK_NAME = "app:migrations"
# pg_advisory_lock takes a bigint: a stable number derived from the name.
_PG_LOCK_KEY = zlib.crc32(LOCK_NAME.encode())


class MigrationLockedError(DataLayerError):
    """Another process held the migration lock for longer than we were willing to wait."""


def _locked(wait_seconds: float) -> MigrationLockedError:
    return MigrationLockedError(
        f"another process is migrating this database; gave up waiting after {wait_seconds:g} s"
    )


@contextmanager
def migration_lock(connection: Connection, *, wait_seconds: float) -> Iterator[None]:
    """Hold the migration lock of this database inside the block."""
    dialect = connection.dialect.name
    if dialect == "sqlite":
        with _sqlite_write_lock(connection, wait_seconds):
            yield
        return
    owned_transaction = not connection.in_transaction()
    name = LOCK_NAME if dialect == "postgresql" else _mariadb_lock_name(connection)
    _acquire(connection, dialect, name, wait_seconds, owned_transaction=owned_transaction)
    if owned_transaction:
        connection.commit()  # the lock belongs to the session and outlives this transaction
    try:
        yield
    except BaseException:
        _release(connection, dialect, name, owned_transaction, failed=True)
        raise
    _release(connection, dialect, name, owned_transaction, failed=False)


def _mariadb_lock_name(connection: Connection) -> str:
    """The lock's name for the connection's database; within GET_LOCK's 64 characters."""
    database = connection.scalar(text("SELECT DATABASE()")) or ""
    return f"{LOCK_NAME}:{hashlib.sha256(database.encode()).hexdigest()[:40]}"


def _acquire(
    connection: Connection, dialect: str, name: str, wait_seconds: float, *, owned_transaction: bool
) -> None:
    try:
        if dialect == "postgresql":
            _poll_postgresql(connection, wait_seconds, owned_transaction=owned_transaction)
        else:
            got = connection.scalar(
                text("SELECT GET_LOCK(:name, :wait)"), {"name": name, "wait": wait_seconds}
            )
            if got != 1:
                raise _locked(wait_seconds)
    except sa_exc.DBAPIError as exc:
        if isinstance(translate(exc), RetryableError):
            raise _locked(wait_seconds) from exc
        raise


def _poll_postgresql(
    connection: Connection, wait_seconds: float, *, owned_transaction: bool
) -> None:
    """Take the advisory lock, trying every so often instead of waiting in one statement.

    A statement blocked on the lock would hold its snapshot, and `CREATE INDEX CONCURRENTLY` in
    the first migrator's run waits for every older snapshot to end: each would wait for the
    other. Between tries this session holds no snapshot (and, when it owns the transaction,
    no transaction).
    """
    deadline = time.monotonic() + wait_seconds
    pause = 0.02
    while not connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": _PG_LOCK_KEY}):
        if owned_transaction:
            connection.commit()
        if time.monotonic() + pause > deadline:
            raise _locked(wait_seconds)
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


def _release(
    connection: Connection, dialect: str, name: str, owned_transaction: bool, *, failed: bool
) -> None:
    try:
        if owned_transaction and connection.in_transaction():
            # Finish what the block left open; after a failure the unlock needs a sound session.
            (connection.rollback if failed else connection.commit)()
        if dialect == "postgresql":
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_LOCK_KEY})
        else:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
        if owned_transaction:
            connection.commit()
    except sa_exc.DBAPIError:
        # A session we cannot unlock must not go back to the pool still holding the lock:
        # closing it releases the lock on the server.
        connection.invalidate()


@contextmanager
def _sqlite_write_lock(connection: Connection, wait_seconds: float) -> Iterator[None]:
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None
    dbapi_connection.execute(f"PRAGMA busy_timeout = {int(wait_seconds * 1000)}")
    connection.execution_options(**{SQLITE_BEGIN_OPTION: "BEGIN IMMEDIATE"})
    try:
        yield
    except sa_exc.OperationalError as exc:
        if isinstance(translate(exc), RetryableError):
            raise _locked(wait_seconds) from exc
        raise
    finally:
        connection.execution_options(**{SQLITE_BEGIN_OPTION: "BEGIN"})
        dbapi_connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
