"""PyMySQL connections that send no ROLLBACK when there is nothing to roll back.

SQLAlchemy ends a unit with a ROLLBACK (or a COMMIT), then resets the connection as the pool
takes it back: a second ROLLBACK, which PyMySQL always sends, one more round trip per unit of
work. libpq and sqlite3 skip a rollback outside a transaction on their own. Here a connection
remembers that its last command was a COMMIT or ROLLBACK the server accepted: nothing since
can have opened a transaction, so the next ROLLBACK is a no-op and is not sent. Every command
goes through `_execute_command`, PyMySQL's one way to the server, which forgets it.
"""

from __future__ import annotations

from typing import Any

from pymysql.connections import Connection


class EndAwareConnection(Connection):  # type: ignore[misc]  # PyMySQL is untyped
    """A PyMySQL connection whose ROLLBACK right after a COMMIT or ROLLBACK sends nothing."""

    _ended = False

    def _execute_command(self, command: int, sql: Any) -> None:
        self._ended = False
        super()._execute_command(command, sql)

    def commit(self) -> None:
        super().commit()
        self._ended = True

    def rollback(self) -> None:
        if self._ended:
            return
        super().rollback()
        self._ended = True
