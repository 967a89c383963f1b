"""Streams: a result read row by row from the server holds its connection until its last row.

Marks a connection as streaming while an `iterate()` runs, ends its streams before the
transaction they belong to ends (or, failing that, when the connection goes back to the pool),
and turns reading on from a stream ended that way into an `InvalidQueryError` that says why."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import ResourceClosedError, SQLAlchemyError
from sqlalchemy.pool import PoolResetState

from app.db.errors import InvalidQueryError

_STREAMS = "app_open_streams"
STREAM_CUT_SHORT = (
    "this unit of work is still streaming rows from iterate(), which holds its MariaDB "
    "connection until the last row is read: finish or close the iteration first, or write "
    "through another unit of work"
)
STREAM_ENDED_WITH_ITS_UNIT = (
    "this iterate() stream ended with its unit of work's transaction (a commit, a rollback or "
    "the end of its block) before its last row was read: read the rows inside the unit, or "
    "iterate again in a new one"
)


class _Stream:
    """A result being streamed, and why it was ended early, once it has been."""

    def __init__(self, close: Callable[[], None], keep_rest: Callable[[], None] | None) -> None:
        self.close = close
        self.keep_rest = keep_rest
        self.ended_because = STREAM_CUT_SHORT

    def end(self, because: str) -> None:
        self.ended_because = because
        self.close()


@contextmanager
def streaming(
    connection: Connection,
    close: Callable[[], None],
    keep_rest: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Mark `connection` as streaming a result while the block runs; `close` ends the result
    (a backend whose connection can do nothing else meanwhile calls it, and every stream ends
    with its transaction), and reading on from a stream ended that way is an
    `InvalidQueryError` that says why, never a silently shorter result. `keep_rest` reads the
    rest of the result into memory, for a backend whose stream would otherwise see the writes
    made after it began (`keep_streams`)."""
    streams: list[_Stream] = connection.info.setdefault(_STREAMS, [])
    stream = _Stream(close, keep_rest)
    streams.append(stream)
    try:
        yield
    except ResourceClosedError as exc:
        raise InvalidQueryError(stream.ended_because) from exc
    finally:
        if stream in streams:
            streams.remove(stream)


def keep_streams(connection: Connection) -> None:
    """Read the rest of every stream of `connection` into memory, now: the statement about to
    run writes, and the streams go on with the rows as they were before it."""
    streams: list[_Stream] = connection.info.get(_STREAMS) or []
    for stream in list(streams):
        if stream.keep_rest is not None:
            stream.keep_rest()
            streams.remove(stream)  # it holds no cursor any more


def is_streaming(connection: Connection) -> bool:
    """Whether a result is being streamed from `connection`."""
    return bool(connection.info.get(_STREAMS))


def close_streams(connection: Connection) -> bool:
    """End every stream of `connection` (a statement is about to be sent that would throw the
    rest of them away); whether there was one."""
    streams: list[_Stream] | None = connection.info.get(_STREAMS)
    if not streams:
        return False
    connection.info[_STREAMS] = []
    for stream in streams:
        stream.end(STREAM_CUT_SHORT)
    return True


def end_streams_with_their_unit(engine: Engine) -> None:
    """End the streams left open on a connection when its transaction ends, or, failing that,
    when it goes back to the pool (an `iterate()` generator kept past its unit): the COMMIT or
    ROLLBACK and the next unit there do not find them, and the generator, resumed, gets
    `InvalidQueryError` rather than a silently shorter result."""

    def _end(streams: list[_Stream] | None) -> None:
        for stream in streams or ():
            with suppress(SQLAlchemyError):  # its connection failed: ended all the same
                stream.end(STREAM_ENDED_WITH_ITS_UNIT)

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _end_with_transaction(connection: Connection) -> None:
        # Before the driver's COMMIT or ROLLBACK, which would otherwise read the rest of a
        # MariaDB stream into nothing (and PyMySQL warn of it).
        if not connection.invalidated:
            _end(connection.info.pop(_STREAMS, None))

    @event.listens_for(engine, "reset")
    def _end_streams(_dbapi: Any, record: Any, state: PoolResetState) -> None:
        if state.asyncio_safe and record is not None:  # a detached connection has none
            _end(record.info.pop(_STREAMS, None))
