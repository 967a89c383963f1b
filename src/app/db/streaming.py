"""Connections that are streaming a result from a server-side cursor (`iterate`).

Such a cursor holds its connection until the last row is read, and the backends differ in what
else that connection may do meanwhile:

- PostgreSQL runs other statements between the cursor's fetches, but not while a COPY is open:
  a bulk write whose rows come from the stream must not pull them from inside its COPY (the
  fetch would wait for the COPY, which waits for the rows). `is_streaming` tells the bulk paths
  to take a batch at a time instead.
- MariaDB runs nothing else on a connection whose unbuffered result is unfinished: the driver
  throws the rest of the result away, and the iteration would end early without an error.
  `refuse_statements_while_streaming` makes such a statement an `InvalidQueryError` instead.
- SQLite steps its cursor in the process: anything may run between rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import ResourceClosedError

from app.db.errors import InvalidQueryError

_STREAMS = "app_open_streams"
STREAM_CUT_SHORT = (
    "this unit of work is still streaming rows from iterate(), which holds its MariaDB "
    "connection until the last row is read: finish or close the iteration first, or write "
    "through another unit of work"
)


@contextmanager
def streaming(connection: Connection, close: Callable[[], None]) -> Iterator[None]:
    """Mark `connection` as streaming a result while the block runs; `close` ends the result
    (see `refuse_statements_while_streaming`)."""
    streams: list[Callable[[], None]] = connection.info.setdefault(_STREAMS, [])
    streams.append(close)
    try:
        yield
    finally:
        if close in streams:
            streams.remove(close)


def is_streaming(connection: Connection) -> bool:
    """Whether a result is being streamed from `connection`."""
    return bool(connection.info.get(_STREAMS))


def refuse_statements_while_streaming(engine: Engine) -> None:
    """MariaDB: a statement on a connection that streams a result is refused, not run, and the
    stream is closed: reading on from it is an error too, never a silently shorter result, and
    the connection serves the next statement (also when the iteration is never resumed)."""

    @event.listens_for(engine, "before_cursor_execute")
    def _refuse(connection: Connection, *_args: Any) -> None:
        streams = connection.info.get(_STREAMS)
        if not streams:
            return
        connection.info[_STREAMS] = []
        for close in streams:
            close()
        raise InvalidQueryError(STREAM_CUT_SHORT)


@contextmanager
def cut_short_is_an_error() -> Iterator[None]:
    """Reading on from a stream that a refused statement closed is `InvalidQueryError`."""
    try:
        yield
    except ResourceClosedError as exc:
        raise InvalidQueryError(STREAM_CUT_SHORT) from exc
