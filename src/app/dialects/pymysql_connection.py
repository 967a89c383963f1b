"""PyMySQL connections that wait for no ROLLBACK.

SQLAlchemy ends a unit with a ROLLBACK (or a COMMIT), then resets the connection as the pool
takes it back: a second ROLLBACK, which PyMySQL always sends, one more round trip per unit of
work. libpq and sqlite3 skip a rollback outside a transaction on their own. Here a connection
remembers that its last command was a COMMIT or ROLLBACK: nothing since can have opened a
transaction, so the next ROLLBACK is a no-op and is not sent. Every command goes through
`_execute_command`, PyMySQL's one way to the server, which forgets it.

The ROLLBACK of a transaction that only read, without a failure, is not waited for either:
the unit has its result, and undoing nothing takes the server no time; if it fails, the
connection is gone and the transaction with it. The server answers commands in the order they
came, so the answer is read after the connection's next command is sent, just before that
command's own: a unit that only reads waits for its SELECT alone, even when it follows the last
unit at once. When the pool hands the connection out, an answer that has arrived is read
(`settle`), so that what is left on the socket is the server's own word, as `app.db.liveness`
expects. A transaction that wrote or saw a command fail is rolled back and waited for as
before: its ROLLBACK has work to do, and a connection the server closed after a failure is
found there, not by the next unit. A COMMIT is always waited for: its answer is the unit's
outcome.
"""

from __future__ import annotations

import socket
from contextlib import suppress
from typing import Any

from pymysql.connections import Connection
from pymysql.constants import COMMAND
from pymysql.err import OperationalError
from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError

from app.db.liveness import ANSWER_IN_FLIGHT, readable
from app.dialects import mariadb_packets


class EndAwareConnection(Connection):  # type: ignore[misc]  # PyMySQL is untyped
    """A PyMySQL connection whose ROLLBACK right after a COMMIT or ROLLBACK sends nothing, and
    whose ROLLBACK's answer is read later."""

    _ended = False
    _unread = False  # a ROLLBACK was sent and its answer not read yet
    _only_read = True  # the transaction so far sent SELECTs alone, none of which failed
    _next_seq_id: int  # PyMySQL's: the number the next packet read must carry
    _packet_limit: int | None = None  # the server's max_allowed_packet, once asked
    _sock: Any  # PyMySQL's: the connection's socket, None once closed

    def query(self, sql: Any, unbuffered: bool = False) -> int:
        try:
            affected: int = super().query(sql, unbuffered)
        except BaseException:
            self._only_read = False
            raise
        return affected

    def _execute_command(self, command: int, sql: Any) -> None:
        if mariadb_packets.needs_measuring(command, sql, COMMAND.COM_QUERY):
            self._refuse_if_too_large(sql)
        self._ended = False
        if command == COMMAND.COM_QUERY and not _is_select(sql):
            self._only_read = False
        super()._execute_command(command, sql)
        if self._unread:
            # The ROLLBACK's answer comes first, numbered as the first packet of an answer;
            # the numbering then goes on from where sending this command left it.
            self._unread = False
            sent = self._next_seq_id
            self._next_seq_id = 1
            self._read_ok_packet()
            self._next_seq_id = sent

    def write_packet(self, payload: bytes) -> None:
        try:
            super().write_packet(payload)
        except BaseException as exc:
            if not isinstance(exc, Exception) and self._sock is not None:
                # Interrupted (Ctrl-C) with the packet perhaps half sent, as in the middle of
                # a bulk load's file: the server would wait for the rest until its read
                # timeout, and the driver for the server's answer. Cut now, the waits end at
                # once, and the interruption goes on (`app.db.error_events`).
                with suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)
            raise

    def _refuse_if_too_large(self, sql: bytes | str) -> None:
        """The server's refusal of a statement over its `max_allowed_packet`, before it is
        sent (`app.dialects.mariadb_packets`)."""
        if self._packet_limit is None:
            cursor = self.cursor()
            try:
                cursor.execute(mariadb_packets.LIMIT_QUERY)
                (limit,) = cursor.fetchone()
            finally:
                cursor.close()
            self._packet_limit = int(limit)
        if mariadb_packets.over_limit(sql, self._packet_limit):
            errno, message = mariadb_packets.TOO_LARGE_ERRNO, mariadb_packets.TOO_LARGE_MESSAGE
            raise OperationalError(errno, message)

    def settle(self) -> None:
        """Read the answer to the ROLLBACK sent last if it has arrived (its failure, the
        connection gone, is raised here); else leave it for the next command."""
        sock = self._sock
        if self._unread and sock is not None and readable(sock.fileno()):
            self._unread = False
            self._read_ok_packet()

    @property
    def answer_in_flight(self) -> bool:
        """Whether the answer to the ROLLBACK sent last is still to be read."""
        return self._unread

    def commit(self) -> None:
        super().commit()
        self._ended, self._only_read = True, True

    def rollback(self) -> None:
        if self._ended:
            return
        if self._only_read:
            self._execute_command(COMMAND.COM_QUERY, "ROLLBACK")
            self._unread = True
        else:
            super().rollback()
        self._ended, self._only_read = True, True


def settle_at_checkout(engine: Engine) -> None:
    """As the pool hands out one of `engine`'s connections, read the answer to its last
    ROLLBACK if it came (`EndAwareConnection.settle`), ahead of `app.db.liveness`, which reads
    anything left on the socket as the server's own word."""

    @event.listens_for(engine, "checkout", insert=True)
    def _settled(dbapi_connection: Any, record: Any, *_args: Any) -> None:
        if isinstance(dbapi_connection, EndAwareConnection):
            try:
                dbapi_connection.settle()
            except Exception:  # the connection is gone: the pool makes another
                raise DisconnectionError("the pooled connection is gone") from None
            if dbapi_connection.answer_in_flight:
                # Arriving after this, it is the ROLLBACK's answer, not the server's word.
                record.info[ANSWER_IN_FLIGHT] = True


def _is_select(sql: Any) -> bool:
    start = sql.lstrip()[:6]
    return bool(start.upper() == (b"SELECT" if isinstance(sql, bytes) else "SELECT"))
