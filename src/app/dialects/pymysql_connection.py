"""PyMySQL connections that wait for no ROLLBACK.

SQLAlchemy ends a unit with a ROLLBACK (or a COMMIT), then resets the connection as the pool
takes it back: a second ROLLBACK, which PyMySQL always sends, one more round trip per unit of
work. libpq and sqlite3 skip a rollback outside a transaction on their own. Here a connection
remembers that its last command was a COMMIT or ROLLBACK: nothing since can have opened a
transaction, so the next ROLLBACK is a no-op and is not sent. Every command goes through
`_execute_command`, PyMySQL's one way to the server, which forgets it.

A ROLLBACK's answer is not waited for either: a unit that only read has its result, and
nothing the ROLLBACK could say changes it (if it fails, the connection is gone and the server
rolls the transaction back itself). The server answers commands in the order they came, so the
answer is read after the connection's next command is sent, just before that command's own:
a unit that only reads waits for its SELECT alone, even when it follows the last unit at once.
When the pool hands the connection out, an answer that has arrived is read (`settle`), so that
what is left on the socket is the server's own word, as `app.db.liveness` expects. A COMMIT is
always waited for: its answer is the unit's outcome.
"""

from __future__ import annotations

import select
from typing import Any

from pymysql.connections import Connection
from pymysql.constants import COMMAND


class EndAwareConnection(Connection):  # type: ignore[misc]  # PyMySQL is untyped
    """A PyMySQL connection whose ROLLBACK right after a COMMIT or ROLLBACK sends nothing, and
    whose ROLLBACK's answer is read later."""

    _ended = False
    _unread = False  # a ROLLBACK was sent and its answer not read yet
    _next_seq_id: int  # PyMySQL's: the number the next packet read must carry

    def _execute_command(self, command: int, sql: Any) -> None:
        self._ended = False
        super()._execute_command(command, sql)
        if self._unread:
            # The ROLLBACK's answer comes first, numbered as the first packet of an answer;
            # the numbering then goes on from where sending this command left it.
            self._unread = False
            sent = self._next_seq_id
            self._next_seq_id = 1
            self._read_ok_packet()
            self._next_seq_id = sent

    def settle(self) -> None:
        """Read the answer to the ROLLBACK sent last if it has arrived (its failure, the
        connection gone, is raised here); else leave it for the next command."""
        sock = self._sock
        if self._unread and sock is not None and _readable(sock.fileno()):
            self._unread = False
            self._read_ok_packet()

    def commit(self) -> None:
        super().commit()
        self._ended = True

    def rollback(self) -> None:
        if self._ended:
            return
        self._execute_command(COMMAND.COM_QUERY, "ROLLBACK")
        self._unread = True
        self._ended = True


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))
