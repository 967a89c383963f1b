"""Whether a pooled connection is still alive, told without a round trip where possible.

SQLAlchemy's `pool_pre_ping` sends a statement on every checkout: a round trip on every unit of
work, a fifth of a point read's time. Here a connection is asked only when there is a reason:

- its socket became readable while it sat in the pool: a server says something when it ends a
  connection (PostgreSQL's termination notice, MariaDB's or the kernel's end of stream), and
  says nothing to an idle connection otherwise;
- or it sat idle longer than `PING_AFTER_IDLE_SECONDS`: a firewall or NAT between here and the
  server may have forgotten it without a word;
- or the backend cannot tell what its driver received: every checkout, as before.

An asyncio driver whose event loop reads the socket as data comes (asyncmy) is asked what it
received and did not read yet.

A connection whose last answer is still on its way (MariaDB's unwaited ROLLBACK, marked
`ANSWER_IN_FLIGHT` at checkout) is not asked for what its socket holds: that is the answer. A
connection that fails the question is replaced by a fresh one within the same checkout, as
`pool_pre_ping` did. An in-process database (SQLite) is never asked.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

PING_AFTER_IDLE_SECONDS = 10.0
_IDLE_SINCE = "app_idle_since"
# Set on a pool record at checkout, ahead of `install`'s check, by a driver connection that
# still waits for the answer to its last command.
ANSWER_IN_FLIGHT = "app_answer_in_flight"

SpokeWhileIdle = Callable[[Any], bool]


def install(engine: Engine, spoke_while_idle: SpokeWhileIdle | None) -> None:
    """Check `engine`'s pooled connections at checkout as the module says. `spoke_while_idle`
    tells whether the server sent a driver connection anything, or ended it, while it sat in
    the pool (True where it cannot tell); None for an in-process database."""
    if spoke_while_idle is None:
        return
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _idle_from_now(_dbapi: Any, record: ConnectionPoolEntry) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _alive(dbapi: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection) -> None:
        idle_since = record.info.pop(_IDLE_SINCE, None)
        if idle_since is None:  # just connected
            return
        idle_for = time.monotonic() - idle_since
        expected = record.info.pop(ANSWER_IN_FLIGHT, False)
        quiet = expected or not spoke_while_idle(record.driver_connection)
        if quiet and idle_for < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi)
        except Exception:  # any failure: this connection is not to be used
            raise DisconnectionError("the pooled connection is gone; connecting again") from None


def readable(fd: int) -> bool:
    """Whether the socket `fd` has something to read, or was closed, now (no waiting)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))
