"""Telling whether a transaction whose COMMIT got no answer was applied, where the server
cannot be asked about a transaction by its id (MariaDB and Galera): a marker row.

Just before COMMIT the transaction inserts a row keyed by a fresh UUIDv7 into
`app_commit_markers`; the row exists once the transaction is committed and never otherwise.
After the connection was lost, a fresh connection inserts the same key and commits it (the
fence). If that is refused as a duplicate, the transaction was applied. If it succeeds, the
transaction was not applied and can no longer be: its own insert of the key would now be a
duplicate, and while it still held the key the fence waited for it to end (Galera certifies the
two writes of one key against each other the same way).

Markers older than an hour are removed now and then, after a commit that wrote one: the key
starts with its time (UUIDv7), so that is a range of the primary key, and the table needs no
other column or index.
"""

from __future__ import annotations

import secrets
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Connection, Engine, MetaData, String, Table, event
from sqlalchemy import exc as sa_exc

from app.db.errors import ConflictError, DataLayerError
from app.db.types import new_id
from app.dialects.driver import driver_value

MARKERS = Table("app_commit_markers", MetaData(), Column("id", String(32), primary_key=True))
MARKER_TABLE = str(MARKERS.name)
_INSERT = "INSERT INTO app_commit_markers (id) VALUES (%s)"  # the marker goes as a parameter
KEPT_FOR_SECONDS = 3600
PRUNE_ONE_IN = 1_000  # commits; at any rate about as many markers go as come
_RECHECK_MISSING_AFTER = 60.0  # seconds: a database migrated after the engine was made


@dataclass(frozen=True)
class CommitReceipt:
    """What a transaction left, before its COMMIT, to tell later whether it was applied:
    `mark` (the backend's: a marker id, a transaction id; None when the transaction wrote
    nothing, so that applying it or not is the same) and `session`, what identifies the
    server's session that ran it, to end it if it is still open."""

    engine: Engine
    mark: Any
    session: tuple[Any, ...] = field(default=())


# In a connection's info: its transaction ran a statement other than a SELECT.
_WROTE = "app_wrote"


def note_writes(engine: Engine) -> None:
    """Keep count, per transaction of `engine`'s connections, of whether it ran anything but a
    SELECT (`wrote`). A transaction that did not leaves no commit receipt: it saves a statement
    (on Galera, a write set every node certifies), and a read's lost COMMIT answer is told
    unknown rather than guessed applied (a SELECT may call a function that writes)."""

    @event.listens_for(engine, "before_cursor_execute")
    def _note_writes(connection: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        if not connection.info.get(_WROTE) and statement.lstrip()[:6].upper() != "SELECT":
            connection.info[_WROTE] = True

    @event.listens_for(engine, "begin")
    def _nothing_written_yet(connection: Connection) -> None:
        connection.info.pop(_WROTE, None)


def wrote(connection: Connection) -> bool:
    """Whether the transaction on `connection` ran anything but a SELECT (`note_writes`)."""
    return bool(connection.info.get(_WROTE))


_missing_since: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()


def write_marker(
    connection: Connection, *, table_missing: Callable[[BaseException], bool]
) -> str | None:
    """Insert a fresh marker into the transaction on `connection`; its id, or None when the
    database has no markers' table (its migration has not run: `table_missing` tells the
    failed insert, which leaves the transaction as it was; the table is tried again a minute
    later)."""
    engine = connection.engine
    since = _missing_since.get(engine)
    if since is not None and time.monotonic() - since < _RECHECK_MISSING_AFTER:
        return None
    mark = new_id().hex
    try:
        driver_value(connection, _INSERT, (mark,))
    except (DataLayerError, sa_exc.DBAPIError) as exc:
        if not table_missing(exc):
            raise
        _missing_since[engine] = time.monotonic()
        return None
    _missing_since.pop(engine, None)
    return mark


def fence(connection: Connection, mark: str) -> bool:
    """Whether the transaction that wrote `mark` was committed, told by inserting the same
    marker and committing it (see the module's docstring)."""
    try:
        connection.execute(MARKERS.insert(), {"id": mark})
        connection.commit()
    except ConflictError:
        connection.rollback()
        return True
    return False


def prune(engine: Engine) -> None:
    """Now and then, remove markers no lost COMMIT can still ask about (a failure is left for
    the next time: the markers only take room)."""
    if secrets.randbelow(PRUNE_ONE_IN):
        return
    try:
        with engine.connect() as connection:
            # The smallest key of the cutoff's millisecond: UUIDv7 starts with 48 bits of them.
            millis = (time.time_ns() // 1_000_000 - KEPT_FOR_SECONDS * 1000) << 80
            cutoff = f"{millis:032x}"
            connection.execute(MARKERS.delete().where(MARKERS.c.id < cutoff))
            connection.commit()
    except (DataLayerError, sa_exc.SQLAlchemyError):
        pass
