"""Where a unit of work runs, for both faces: a read-only unit on a replica that is healthy and,
given a commit token, has replayed that commit; everything else on the primary. Also the
read-only guard and the token a commit returns (see `app.topology.replicas`).

`route` decides (it costs no round trip: the replica monitor keeps the health); the face opens
a session on the chosen server and `begin` starts the unit's transaction there, which on a
replica may find that it cannot serve after all: the face then opens one on the primary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.db.errors import READ_ONLY_MESSAGE, READ_ONLY_UNIT, DataLayerError, ReadOnlyError
from app.dialects import backend_of
from app.topology.replicas import ANY_POSITION, Replica, ReplicaSet, has_replayed, position

# Set in a read-only unit's session.info; repositories refuse to write when it is.
READ_ONLY_KEY = "app_read_only"
# The token of a commit whose position could not be read: only the primary satisfies it.
PRIMARY_ONLY = "FFFFFFFF/FFFFFFFF"


@dataclass(frozen=True)
class Route:
    """Where a new unit of work runs, and what its transaction needs there."""

    read_only: bool
    isolation_level: str | None = None
    replicas: ReplicaSet | None = None
    replica: Replica | None = None  # None: the primary
    after: str | None = None  # the commit the replica must have replayed
    must_confirm: bool = False  # the last check does not show it: ask the replica

    def to_primary(self) -> Route:
        """The same unit, on the primary."""
        return Route(self.read_only, self.isolation_level, self.replicas)


def route(
    replicas: ReplicaSet | None,
    *,
    read_only: bool,
    after: str | None,
    isolation_level: str | None,
) -> Route:
    """Choose where a new unit of work runs. A malformed token is refused whatever serves it."""
    if read_only and after is not None:
        position(after)
    primary = Route(read_only, isolation_level, replicas)
    if not read_only or replicas is None:
        return primary
    replica, must_confirm = replicas.choose(after)
    if replica is None:
        return primary
    return Route(read_only, isolation_level, replicas, replica, after, must_confirm)


def needs_connection(chosen: Route) -> bool:
    """Whether `begin` for `chosen` checks out a connection (a replica to confirm, an isolation
    level or a read-only transaction to set). When it does not, nothing is sent: the unit's
    first statement begins its transaction, and the asyncio face calls `begin` without a trip
    into SQLAlchemy's greenlet."""
    return chosen.replica is not None or chosen.isolation_level is not None or chosen.read_only


def begin(session: Session, chosen: Route) -> bool:
    """Begin the unit's transaction on `session`, a session of the chosen server. False when a
    replica cannot serve it after all (down since its last check, or behind the token): the
    caller closes `session` and begins on the primary instead (`chosen.to_primary()`)."""
    options: dict[str, Any] = {}
    if chosen.isolation_level is not None:
        options["isolation_level"] = chosen.isolation_level
    if chosen.read_only:
        _guard(session)
        options[READ_ONLY_UNIT] = True  # the database's refusals are told as the unit's
    if chosen.replica is not None:
        assert chosen.replicas is not None
        try:
            connection = session.connection(execution_options=options)
            if not chosen.must_confirm or has_replayed(connection, chosen.after or ANY_POSITION):
                return True
        except (SQLAlchemyError, DataLayerError) as exc:
            # Down since the last check: the primary serves this unit, the next check decides.
            chosen.replicas.mark_down(chosen.replica, type(exc).__name__)
        return False
    if chosen.read_only:
        bind = session.get_bind()
        # The database refuses writes too (raw SQL included), where the transaction is ours to
        # begin: not for a session joined to a caller's open transaction (a test's, say).
        if not (isinstance(bind, Connection) and bind.in_transaction()):
            options.update(backend_of(bind).read_only_options())
    if options:
        session.connection(execution_options=options)  # the transaction's first act
    return True


def _guard(session: Session) -> None:
    session.info[READ_ONLY_KEY] = True
    event.listen(session, "before_flush", _refuse_flush)


def _refuse_flush(session: Session, _context: object, _instances: object) -> None:
    raise ReadOnlyError(READ_ONLY_MESSAGE)


def commit_returning_token(session: Session, replicas: ReplicaSet | None) -> str:
    """Commit `session`; the token of the commit (ANY_POSITION when no replica needs one)."""
    if replicas is None or session.info.get(READ_ONLY_KEY):
        session.commit()
        return ANY_POSITION
    connection = session.connection()
    backend = backend_of(connection)
    found: list[str | None] = []

    def read_position(_session: Session) -> None:
        # After the commit, while the connection is still this session's.
        try:
            found.append(backend.commit_position(connection))
        except Exception:  # the driver's own errors too: then only the primary can tell
            found.append(PRIMARY_ONLY)

    event.listen(session, "after_commit", read_position, once=True)
    session.commit()
    return (found[0] or ANY_POSITION) if found else PRIMARY_ONLY
