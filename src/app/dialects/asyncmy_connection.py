"""asyncmy connections that send no ROLLBACK right after a COMMIT or ROLLBACK.

SQLAlchemy ends a unit with a ROLLBACK (or a COMMIT), then resets the connection as the pool
takes it back: a second ROLLBACK, which asyncmy always sends, one more round trip per unit of
work (`pymysql_connection` does the same for PyMySQL). A connection here remembers that its
last command was a COMMIT or ROLLBACK: nothing since can have opened a transaction, so the
next ROLLBACK is a no-op and is not sent. Every command, a ping included, goes through
`_execute_command`, which forgets it.
"""

from __future__ import annotations

from typing import Any

from asyncmy.connection import Connection


class EndAwareAsyncConnection(Connection):
    """An asyncmy connection whose ROLLBACK right after a COMMIT or ROLLBACK sends nothing."""

    _ended = False

    async def _execute_command(self, command: int, sql: Any) -> None:
        self._ended = False
        await super()._execute_command(command, sql)  # type: ignore[misc]  # not in its stubs

    async def commit(self) -> None:
        await super().commit()
        self._ended = True

    async def rollback(self) -> None:
        if self._ended:
            return
        await super().rollback()
        self._ended = True


async def connect(**kwargs: Any) -> EndAwareAsyncConnection:
    """`asyncmy.connect(**kwargs)`, made an `EndAwareAsyncConnection`."""
    made: Any = EndAwareAsyncConnection  # its __init__ is untyped in asyncmy's stubs
    connection: EndAwareAsyncConnection = made(**kwargs)
    await connection.connect()
    return connection
