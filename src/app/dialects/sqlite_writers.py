"""SQLite: the writers of one database file in this process let in one at a time, in turn.

SQLite has one writer at a time, and a connection that finds the write lock taken polls for it,
sleeping between tries (its busy handler). Many writers polling at once starve some of them:
with 64 asyncio tasks each writing units of three rows, throughput fell to a quarter of one
task's, and some units waited past the busy timeout and failed. So a unit's first write first
waits for its turn in this process's queue for the file: blocked on a lock (a thread) or
suspended on one (an asyncio task, which leaves the event loop free), and woken as soon as the
unit before it ends. A turn is bounded by the busy timeout like the lock itself; it ends when
its unit's transaction does, or when its connection goes back to the pool or is closed.
Writers in other processes still meet at SQLite's own lock.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, MutableMapping
from typing import Any

from sqlalchemy.util import await_only

from app.db.errors import RetryableError

_TURN = "app_sqlite_turn"
_blocking: dict[str, threading.Lock] = {}
_asyncio: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)
_made = threading.Lock()

TIMED_OUT = (
    "the database is busy: another unit of work held SQLite's write lock for longer than the "
    "busy timeout; run it again"
)


def wait_for_turn(
    info: MutableMapping[str, Any], path: str, *, is_async: bool, timeout: float
) -> None:
    """Wait until the writers before this connection's unit (`info`, its connection's) have
    ended, then hold the turn; a `RetryableError` after `timeout` seconds."""
    if info.get(_TURN) is not None:
        return
    if is_async:
        lock = _asyncio_lock(path)
        try:
            await_only(_acquired(lock, timeout))
        except TimeoutError:
            raise RetryableError(TIMED_OUT) from None
        info[_TURN] = _Turn(lock.release)
    else:
        held = _blocking_lock(path)
        if not held.acquire(timeout=timeout):
            raise RetryableError(TIMED_OUT)
        info[_TURN] = _Turn(held.release)


def end_turn(info: MutableMapping[str, Any]) -> None:
    """Let the next writer in, if this connection (`info`) holds the turn."""
    turn: _Turn | None = info.pop(_TURN, None)
    if turn is not None:
        turn.end()


class _Turn:
    """A held turn, ended once: a detached connection's copy of its `info` holds it too."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def end(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


async def _acquired(lock: asyncio.Lock, timeout: float) -> None:
    # Not asyncio.wait_for: on Python 3.11 it returns the lock to a task cancelled in the
    # same turn of the loop as the lock was granted, and the cancelled unit went on to commit.
    async with asyncio.timeout(timeout):
        await lock.acquire()


def _blocking_lock(path: str) -> threading.Lock:
    with _made:
        return _blocking.setdefault(path, threading.Lock())


def _asyncio_lock(path: str) -> asyncio.Lock:
    # An asyncio lock belongs to one event loop: one per loop (a script's second asyncio.run()).
    loop = asyncio.get_running_loop()
    with _made:
        return _asyncio.setdefault(loop, {}).setdefault(path, asyncio.Lock())
