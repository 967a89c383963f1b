"""MariaDB servers and Galera clusters: which server a new connection goes to, and what a
session on a Galera node needs.

A URL may name several servers (`?host=a:3306&host=b:3306`, the nodes of one cluster): a new
connection goes to the first that accepts it and, on a Galera node, is ready (synced and in the
cluster's primary component). A dead node refuses at once, so the pool's pre-ping and this order
move the application to the next node within the connect timeout.

On a Galera node every session asks for causal reads (`wsrep_sync_wait`): the first statement of
each transaction waits until the node has applied every commit the cluster certified before it.
Galera applies other nodes' commits asynchronously; without the wait, a unit of work may miss
a commit made a moment ago elsewhere. DB_CAUSAL_READS=false turns it off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import URL

from app.config import mysql_servers

# Reads (and BEGIN), updates and deletes, inserts and replaces: whichever statement opens the
# transaction waits; the rest of the transaction runs on what that wait made visible.
CAUSAL_SYNC_WAIT = 1 | 2 | 4
# The key, in a pooled connection's info, saying whether it is a session on a Galera node.
GALERA_INFO_KEY = "app_galera"
# MariaDB's error for a node outside the primary component (ER_UNKNOWN_COM_ERROR with WSREP).
NODE_NOT_READY_ERRNO = 1047

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


def install_server_choice(engine: Engine, url: URL, *, causal_reads: bool) -> None:
    """Connect `engine` to the first server of `url` that is up (and ready, for a Galera node),
    and set up causal reads on Galera sessions when `causal_reads`."""
    servers = mysql_servers(url)

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        dbapi = dialect.loaded_dbapi
        failure: BaseException | None = None
        for host, port in servers:
            try:
                connection = dialect.connect(*cargs, **{**cparams, "host": host, "port": port})
            except dbapi.Error as exc:
                failure = exc
                continue
            try:
                state = _state(connection)
                if state is not None and not state.ready:
                    failure = dbapi.OperationalError(
                        NODE_NOT_READY_ERRNO, f"Galera node {host}:{port} is not ready"
                    )
                    connection.close()
                    continue
                if state is not None and causal_reads:
                    _execute(connection, f"SET SESSION wsrep_sync_wait = {CAUSAL_SYNC_WAIT}")
            except dbapi.Error as exc:
                failure = exc
                connection.close()
                continue
            record.info[GALERA_INFO_KEY] = state is not None
            return connection
        assert failure is not None  # servers is never empty
        raise failure


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


def is_galera(connection: Connection) -> bool:
    """Whether `connection` is a session on a Galera node."""
    return bool(connection.connection.info.get(GALERA_INFO_KEY))


def cluster_state(connection: Connection) -> ClusterState | None:
    """The cluster state seen from `connection`'s node, or None when it is not a Galera node."""
    if connection.dialect.name != "mysql":
        return None
    return _state(connection.connection.dbapi_connection)
