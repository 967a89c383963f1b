"""A lock that serialises migrations on one database, held for the whole run.

PostgreSQL: a session advisory lock (advisory locks belong to one database), tried until
`wait_seconds` have passed. MariaDB: GET_LOCK with a timeout, on a name derived from the
database's (GET_LOCK names are server-wide: one name would make migrating staging block
production). A Galera node: GET_LOCK holds on that node only, so the lock is a lease, a row of
`app_migration_lock` that the cluster certifies like any write (of two nodes inserting it at
once, one commit fails) and that its holder renews while it runs; a holder that died without
releasing it loses it when the lease runs out. SQLite: its own write lock, taken up front with
BEGIN IMMEDIATE and waited for under `busy_timeout`. A second migrator waits up to
`wait_seconds`, then fails with `MigrationLockedError`; once it has the lock it finds the
migrations applied and does nothing.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from sqlalchemy import Connection, text
from sqlalchemy import exc as sa_exc

from app.db.errors import ConflictError, DataLayerError, RetryableError, translate
from app.db.galera import is_galera
from app.db.session import SQLITE_BEGIN_OPTION, SQLITE_BUSY_TIMEOUT_MS

LOCK_NAME = "app:migrations"
# The Galera lease: its table (left out of schema comparisons), how long a lease lasts unless
# renewed, and how often its holder renews it.
LOCK_TABLE = "app_migration_lock"  # (spelled out in the statements below)
LEASE_SECONDS = 30
RENEW_EVERY_SECONDS = 5
# pg_advisory_lock takes a bigint: a stable number derived from the name.
_PG_LOCK_KEY = zlib.crc32(LOCK_NAME.encode())


def compared_with_models(name: str | None, type_: str, _parent_names: object) -> bool:
    """Autogenerate's `include_name`: the lease table is the lock's, not the models'."""
    return not (type_ == "table" and name == LOCK_TABLE)


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
    if dialect == "mysql" and is_galera(connection):
        with _galera_lease(connection, wait_seconds):
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


@contextmanager
def _galera_lease(migrating: Connection, wait_seconds: float) -> Iterator[None]:
    """Hold the cluster-wide lease inside the block, on a connection of its own (the migrations'
    connection commits as they go), renewed by a thread until the block ends."""
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:200]
    with migrating.engine.connect() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS app_migration_lock (name VARCHAR(64) NOT NULL PRIMARY KEY, "
            "holder VARCHAR(200) NOT NULL, expires_at DATETIME(6) NOT NULL) ENGINE=InnoDB"
        )
        _take_lease(connection, holder, wait_seconds)
        stop = threading.Event()
        renewer = threading.Thread(
            target=_renew_lease, args=(connection, holder, stop), name="lease", daemon=True
        )
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            _end_lease(connection, holder)


def _take_lease(connection: Connection, holder: str, wait_seconds: float) -> None:
    """Insert the lease row, after removing an expired one; while another holds it, try again
    until `wait_seconds` have passed."""
    deadline = time.monotonic() + wait_seconds
    pause = 0.05
    params = {"name": LOCK_NAME, "holder": holder, "lease": LEASE_SECONDS}
    while True:
        try:
            connection.execute(
                text(
                    "DELETE FROM app_migration_lock WHERE name = :name "
                    "AND expires_at < UTC_TIMESTAMP(6)"
                ),
                params,
            )
            connection.execute(
                text(
                    "INSERT INTO app_migration_lock (name, holder, expires_at) VALUES "
                    "(:name, :holder, UTC_TIMESTAMP(6) + INTERVAL :lease SECOND)"
                ),
                params,
            )
            connection.commit()
            return
        except sa_exc.DBAPIError as exc:
            with suppress(sa_exc.DBAPIError):
                connection.rollback()
            # Held by another (a duplicate key), or lost a race for it (a certification failure).
            if not isinstance(translate(exc), ConflictError | RetryableError):
                raise
        if time.monotonic() + pause > deadline:
            raise _locked(wait_seconds)
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def _renew_lease(connection: Connection, holder: str, stop: threading.Event) -> None:
    while not stop.wait(RENEW_EVERY_SECONDS):
        try:
            connection.execute(
                text(
                    "UPDATE app_migration_lock SET expires_at = UTC_TIMESTAMP(6) + INTERVAL :lease "
                    "SECOND WHERE name = :name AND holder = :holder"
                ),
                {"name": LOCK_NAME, "holder": holder, "lease": LEASE_SECONDS},
            )
            connection.commit()
        except sa_exc.DBAPIError:
            # A failed renewal is tried again on the next tick; the lease outlasts several.
            with suppress(sa_exc.DBAPIError):
                connection.rollback()


def _end_lease(connection: Connection, holder: str) -> None:
    try:
        connection.execute(
            text("DELETE FROM app_migration_lock WHERE name = :name AND holder = :holder"),
            {"name": LOCK_NAME, "holder": holder},
        )
        connection.commit()
    except sa_exc.DBAPIError:
        # Left behind, the lease runs out on its own within LEASE_SECONDS.
        connection.invalidate()
