"""Where a unit of work runs: read-only units on a replica that is healthy and, given a commit
token, has replayed that commit; everything else on the primary. Also the read-only guard and
the commit token (see app.db.replicas)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from app.db.errors import READ_ONLY_MESSAGE, ReadOnlyError, translating_errors
from app.db.replicas import ANY_POSITION, ReplicaSet, has_replayed, position

# Set in a read-only unit's session.info; repositories refuse to write when it is.
READ_ONLY_KEY = "app_read_only"
# The token of a commit whose position could not be read: only the primary satisfies it.
PRIMARY_ONLY = "FFFFFFFF/FFFFFFFF"


def open_session(
    primary: Callable[[], Session],
    *,
    read_only: bool,
    after: str | None,
    replicas: ReplicaSet | None,
    isolation_level: str | None,
) -> Session:
    """A session for a new unit of work, its transaction begun with the options it needs."""
    options: dict[str, Any] = {}
    if isolation_level is not None:
        options["isolation_level"] = isolation_level
    if read_only:
        if after:
            position(after)  # a malformed token is refused whatever serves the unit
        if replicas is not None:
            session = _on_replica(replicas, after, options)
            if session is not None:
                return session
    session = primary()
    if read_only:
        _guard(session)
        bind = session.get_bind()
        # The database refuses writes too (raw SQL included), where the transaction is ours to
        # begin: not for a session joined to a caller's open transaction (a test's, say).
        if bind.dialect.name == "postgresql" and not (
            isinstance(bind, Connection) and bind.in_transaction()
        ):
            options["postgresql_readonly"] = True
    if options:
        # Must be the first thing the transaction does.
        with translating_errors():
            session.connection(execution_options=options)
    return session


def _on_replica(replicas: ReplicaSet, after: str | None, options: dict[str, Any]) -> Session | None:
    replica, must_ask = replicas.choose(after)
    if replica is None:
        return None
    session = replica.session_factory()
    _guard(session)
    try:
        connection = session.connection(execution_options=options)
        if not must_ask or has_replayed(connection, after or ANY_POSITION):
            return session
    except sa_exc.DBAPIError as exc:
        # Down since the last check: the primary serves this unit, the next check decides.
        replicas.mark_down(replica, type(exc.orig or exc).__name__)
    session.close()
    return None


def _guard(session: Session) -> None:
    session.info[READ_ONLY_KEY] = True
    event.listen(session, "before_flush", _refuse_flush)


def _refuse_flush(session: Session, _context: object, _instances: object) -> None:
    raise ReadOnlyError(READ_ONLY_MESSAGE)


def refuse_writes_when_read_only(session: Session) -> None:
    """Raise ReadOnlyError in a read-only unit (for writes that do not go through a flush)."""
    if session.info.get(READ_ONLY_KEY):
        raise ReadOnlyError(READ_ONLY_MESSAGE)


def commit_returning_token(session: Session, replicas: ReplicaSet | None) -> str:
    """Commit `session`; the token of the commit (ANY_POSITION when no replica needs one)."""
    if replicas is None or session.info.get(READ_ONLY_KEY):
        session.commit()
        return ANY_POSITION
    connection = session.connection()
    found: list[str] = []

    def read_position(_session: Session) -> None:
        # After the commit, while the connection is still this session's.
        found.append(_position_now(connection))

    event.listen(session, "after_commit", read_position, once=True)
    session.commit()
    return found[0] if found else PRIMARY_ONLY


def _position_now(connection: Connection) -> str:
    dbapi_connection: Any = connection.connection.dbapi_connection
    try:
        # Outside a transaction (a client-side switch), so the query leaves none open behind it.
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        try:
            cursor = dbapi_connection.cursor()  # (the asyncio driver's adapter has only cursors)
            try:
                cursor.execute("SELECT pg_current_wal_lsn()::text")
                return str(cursor.fetchone()[0])
            finally:
                cursor.close()
        finally:
            dbapi_connection.autocommit = autocommit
    except Exception:
        return PRIMARY_ONLY
