"""aiosqlite with one trip to its thread per statement.

aiosqlite runs each call of a connection on the connection's own thread, and SQLAlchemy's
asyncio face makes four such calls per statement: open a cursor, execute, fetch, close. Each
is a hand-off to that thread and back to the event loop, which costs more than SQLite's own
work for a point read. The cursor here runs the statement, fetches its first rows and closes
in one call; a result longer than `PREFETCH` rows keeps its cursor open and is fetched on
demand (a streamed read stays streamed).
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Sequence
from threading import Thread
from typing import Any

import aiosqlite

PREFETCH = 500  # rows fetched with the statement; the rest of a longer result on demand


async def connect(*args: Any, **kwargs: Any) -> OneTripConnection:
    """`aiosqlite.connect(*args, **kwargs)`, its cursors making one trip per statement."""
    connection = aiosqlite.connect(*args, **kwargs)
    # A pooled connection left open must not keep the interpreter from exiting (as
    # SQLAlchemy's own aiosqlite connect has it): before 0.22 the connection was its thread.
    thread = connection if isinstance(connection, Thread) else connection._thread
    thread.daemon = True
    return OneTripConnection(await connection)


class OneTripConnection:
    """An aiosqlite connection whose `cursor()` is a `OneTripCursor`; everything else is
    aiosqlite's own."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._inner = connection

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def cursor(self) -> OneTripCursor:
        return OneTripCursor(self._inner)

    # sqlite3 does nothing for a COMMIT or ROLLBACK outside a transaction (a unit that only
    # read began none): known without the trip to find out.

    async def commit(self) -> None:
        if self._inner.in_transaction:
            await self._inner.commit()

    async def rollback(self) -> None:
        if self._inner.in_transaction:
            await self._inner.rollback()


class OneTripCursor:
    """aiosqlite's cursor interface; a statement and its first rows are one trip."""

    arraysize = 1

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection
        self._open: sqlite3.Cursor | None = None  # while rows are left past the prefetched
        self._rows: deque[Any] = deque()
        self.description: Any = None
        self._rowcount = -1
        self.lastrowid: int | None = None

    @property
    def rowcount(self) -> int:
        return self._open.rowcount if self._open is not None else self._rowcount

    async def __aenter__(self) -> OneTripCursor:
        return self  # the driver's cursor is opened with the statement

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Any = None) -> OneTripCursor:
        await self._on_thread(self._execute, sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Any) -> OneTripCursor:
        await self._on_thread(self._executemany, sql, parameters)
        return self

    async def fetchone(self) -> Any:
        if self._rows:
            return self._rows.popleft()
        if self._open is None:
            return None
        return await self._on_thread(self._open.fetchone)

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        wanted = self.arraysize if size is None else size
        rows = [self._rows.popleft() for _ in range(min(wanted, len(self._rows)))]
        if len(rows) < wanted and self._open is not None:
            rows += await self._on_thread(self._open.fetchmany, wanted - len(rows))
        return rows

    async def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        if self._open is not None:
            rows += await self._on_thread(self._fetch_rest)
        return rows

    def __aiter__(self) -> OneTripCursor:
        return self

    async def __anext__(self) -> Any:
        row = await self.fetchone()
        if row is None:
            raise StopAsyncIteration
        return row

    async def close(self) -> None:
        self._rows.clear()
        if self._open is not None:
            await self._on_thread(self._close_open)

    async def _on_thread(self, fn: Any, *args: Any) -> Any:
        run: Any = self._connection._execute  # aiosqlite's hand-off, as its own cursor's
        return await run(fn, *args)

    # Run on the connection's thread:

    def _execute(self, sql: str, parameters: Any) -> None:
        self._close_open()
        cursor = self._connection._conn.cursor()
        try:
            if parameters is None:
                cursor.execute(sql)
            else:
                cursor.execute(sql, parameters)
            self.description = cursor.description
            self.lastrowid = cursor.lastrowid
            if cursor.description is not None:
                self._rows = deque(cursor.fetchmany(PREFETCH))
                if len(self._rows) == PREFETCH:
                    self._open = cursor
                    return
            self._rowcount = cursor.rowcount  # after the rows: RETURNING counts as it steps
        except BaseException:
            cursor.close()
            raise
        cursor.close()

    def _executemany(self, sql: str, parameters: Sequence[Any]) -> None:
        self._close_open()
        cursor = self._connection._conn.cursor()
        try:
            cursor.executemany(sql, parameters)
            self.description = cursor.description
            self.lastrowid = cursor.lastrowid
            self._rowcount = cursor.rowcount
        finally:
            cursor.close()

    def _fetch_rest(self) -> list[Any]:
        assert self._open is not None
        rows = self._open.fetchall()
        self._close_open()
        return rows

    def _close_open(self) -> None:
        if self._open is not None:
            self._rowcount = self._open.rowcount
            self._open.close()
            self._open = None
