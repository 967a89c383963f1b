"""MariaDB Galera clusters: the MariaDB backend, plus what a node of a cluster needs.

A new connection goes to the first server of the URL that accepts it and is ready (synced and
in the cluster's primary component); a dead node refuses at once, so the pool's pre-ping and
this order move the application to the next node within the connect timeout.

Every session on a node asks for causal reads (`wsrep_sync_wait`): the first statement of each
transaction waits until the node has applied every commit the cluster certified before it.
Galera applies other nodes' commits asynchronously; without the wait, a unit of work may miss a
commit made a moment ago elsewhere. DB_CAUSAL_READS=false turns it off.

GET_LOCK holds on one node only, so the migration lock is a lease: a row of
`app_migration_lock` that the cluster certifies like any write (of two nodes inserting it at
once, one commit fails) and that its holder renews while it runs; a holder that died without
releasing it loses it when the lease runs out.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy import exc as sa_exc

from app.db.errors import ConflictError, DataLayerError, MigrationLockedError, RetryableError
from app.dialects.mariadb import MariaDB

# Reads (and BEGIN), updates and deletes, inserts and replaces: whichever statement opens the
# transaction waits; the rest of the transaction runs on what that wait made visible.
CAUSAL_SYNC_WAIT = 1 | 2 | 4
# The key, in a pooled connection's info, saying whether it is a session on a Galera node.
GALERA_INFO_KEY = "app_galera"
# MariaDB's error for a node outside the primary component (ER_UNKNOWN_COM_ERROR with WSREP).
NODE_NOT_READY_ERRNO = 1047
# The migration lease: its table (left out of schema comparisons), how long a lease lasts
# unless renewed, and how often its holder renews it.
LOCK_TABLE = "app_migration_lock"  # (spelled out in the statements below)
LOCK_NAME = "app:migrations"
LEASE_SECONDS = 30
RENEW_EVERY_SECONDS = 5

_STATE_QUERY = (
    "SHOW GLOBAL STATUS WHERE Variable_name IN "
    "('wsrep_ready', 'wsrep_cluster_status', 'wsrep_cluster_size', 'wsrep_local_state_comment')"
)


@dataclass(frozen=True)
class ClusterState:
    """What a Galera node says of itself and its cluster."""

    size: int
    status: str  # Primary, non-Primary, Disconnected
    local_state: str  # Synced, Donor/Desynced, Joining, ...
    ready: bool


class Galera(MariaDB):
    """A MariaDB server that may be a node of a Galera cluster; see the module's docstring."""

    def accept_server(
        self, dbapi: Any, dbapi_connection: Any, info: dict[str, Any], server: str, causal: bool
    ) -> None:
        state = _state(dbapi_connection)
        if state is not None and not state.ready:
            raise dbapi.OperationalError(NODE_NOT_READY_ERRNO, f"Galera node {server} is not ready")
        if state is not None and causal:
            _execute(dbapi_connection, f"SET SESSION wsrep_sync_wait = {CAUSAL_SYNC_WAIT}")
        info[GALERA_INFO_KEY] = state is not None

    @contextmanager
    def migration_lock(self, connection: Connection, *, wait_seconds: float) -> Iterator[None]:
        """The cluster-wide lease, on a connection of its own (the migrations' connection
        commits as they go), renewed by a thread until the block ends."""
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:200]
        with connection.engine.connect() as leasing:
            leasing.exec_driver_sql(
                "CREATE TABLE IF NOT EXISTS app_migration_lock (name VARCHAR(64) NOT NULL "
                "PRIMARY KEY, holder VARCHAR(200) NOT NULL, expires_at DATETIME(6) NOT NULL) "
                "ENGINE=InnoDB"
            )
            _take_lease(leasing, holder, wait_seconds)
            stop = threading.Event()
            renewer = threading.Thread(
                target=_renew_lease, args=(leasing, holder, stop), name="lease", daemon=True
            )
            renewer.start()
            try:
                yield
            finally:
                stop.set()
                renewer.join()
                _end_lease(leasing, holder)


GALERA = Galera()


def is_galera(connection: Connection) -> bool:
    """Whether `connection` is a session on a Galera node."""
    return bool(connection.connection.info.get(GALERA_INFO_KEY))


def cluster_state(connection: Connection) -> ClusterState | None:
    """The cluster state seen from `connection`'s node; None when it is not a Galera node (or
    not MariaDB at all)."""
    if connection.dialect.name != MariaDB.name:
        return None
    return _state(connection.connection.dbapi_connection)


def _execute(dbapi_connection: Any, statement: str) -> list[Any]:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(statement)
        return list(cursor.fetchall() or ())
    finally:
        cursor.close()


def _state(dbapi_connection: Any) -> ClusterState | None:
    """The node's cluster state, or None when the server is not a Galera node (a plain MariaDB
    reports its wsrep status as Disconnected; MySQL reports none)."""
    values = {str(name): str(value) for name, value in _execute(dbapi_connection, _STATE_QUERY)}
    status = values.get("wsrep_cluster_status", "Disconnected")
    if status == "Disconnected":
        return None
    return ClusterState(
        size=int(values.get("wsrep_cluster_size", "0") or 0),
        status=status,
        local_state=values.get("wsrep_local_state_comment", ""),
        ready=values.get("wsrep_ready") == "ON",
    )


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
        except (ConflictError, RetryableError):
            # Held by another (a duplicate key), or lost a race for it (a certification failure).
            with suppress(sa_exc.SQLAlchemyError, DataLayerError):
                connection.rollback()
        if time.monotonic() + pause > deadline:
            raise MigrationLockedError.after(wait_seconds)
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
        except (sa_exc.SQLAlchemyError, DataLayerError):
            # A failed renewal is tried again on the next tick; the lease outlasts several.
            with suppress(sa_exc.SQLAlchemyError, DataLayerError):
                connection.rollback()


def _end_lease(connection: Connection, holder: str) -> None:
    try:
        connection.execute(
            text("DELETE FROM app_migration_lock WHERE name = :name AND holder = :holder"),
            {"name": LOCK_NAME, "holder": holder},
        )
        connection.commit()
    except (sa_exc.SQLAlchemyError, DataLayerError):
        # Left behind, the lease runs out on its own within LEASE_SECONDS.
        connection.invalidate()
