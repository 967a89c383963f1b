"""asyncmy connections that send no ROLLBACK right after a COMMIT or ROLLBACK.

SQLAlchemy ends a unit with a ROLLBACK (or a COMMIT), then resets the connection as the pool
takes it back: a second ROLLBACK, which asyncmy always sends, one more round trip per unit of
work (`pymysql_connection` does the same for PyMySQL). A connection here remembers that its
last command was a COMMIT or ROLLBACK: nothing since can have opened a transaction, so the
next ROLLBACK is a no-op and is not sent. Every command, a ping included, goes through
`_execute_command`, which forgets it.

It also tells `app.db.liveness` whether the server spoke to it while it sat in the pool: the
event loop reads its socket as data comes, so the socket alone cannot say.

And its wait for the server is bounded by `asyncio.timeout`, not by the `asyncio.wait_for`
asyncmy uses: on Python 3.11, `wait_for` hands the answer to a task cancelled in the same turn
of the loop as the answer came, and the cancellation is lost (the cancelled unit went on to
commit).
"""

from __future__ import annotations

import asyncio
from typing import Any

from asyncmy.connection import Connection
from asyncmy.constants.COMMAND import COM_QUERY
from asyncmy.constants.CR import CR_SERVER_LOST
from asyncmy.errors import OperationalError

from app.db.liveness import readable
from app.dialects import mariadb_packets

_LOST = "Lost connection to MySQL server during query"
_READ_TIMED_OUT = f"{_LOST} (read timeout)"


class EndAwareAsyncConnection(Connection):
    """An asyncmy connection whose ROLLBACK right after a COMMIT or ROLLBACK sends nothing."""

    _ended = False
    _packet_limit: int | None = None  # the server's max_allowed_packet, once asked

    async def _execute_command(self, command: int, sql: Any) -> None:
        if mariadb_packets.needs_measuring(command, sql, COM_QUERY):
            await self._refuse_if_too_large(sql)
        self._ended = False
        await super()._execute_command(command, sql)  # type: ignore[misc]  # not in its stubs

    async def _refuse_if_too_large(self, sql: bytes | str) -> None:
        """The server's refusal of a statement over its `max_allowed_packet`, before it is
        sent (`app.dialects.mariadb_packets`)."""
        if self._packet_limit is None:
            async with self.cursor() as cursor:
                await cursor.execute(mariadb_packets.LIMIT_QUERY)
                (limit,) = await cursor.fetchone()
            self._packet_limit = int(limit)
        if mariadb_packets.over_limit(sql, self._packet_limit):
            errno, message = mariadb_packets.TOO_LARGE_ERRNO, mariadb_packets.TOO_LARGE_MESSAGE
            raise OperationalError(errno, message)

    async def _fill_buffer(self, need: int) -> None:
        """asyncmy's wait until `need` bytes of the answer are in, bounded by its read timeout
        through `asyncio.timeout` (see the module)."""
        bound = self._read_timeout  # type: ignore[attr-defined]  # not in its stubs
        received: Any = getattr(self, "_proto", None)
        if not bound or received is None:
            await super()._fill_buffer(need)  # type: ignore[misc]  # not in its stubs
            return
        while received.length - received.pos < need:
            if received.exc is not None or received.eof:
                await super()._fill_buffer(need)  # type: ignore[misc]  # raises the loss
                return
            try:
                async with asyncio.timeout(bound):
                    await received.wait_for_data(need)
            except TimeoutError:
                await self.ensure_closed()
                raise OperationalError(CR_SERVER_LOST, _READ_TIMED_OUT) from None
            except asyncio.CancelledError:
                # Cancelled mid-answer: the connection's packets are out of step for good.
                self._close_on_cancel()  # type: ignore[attr-defined]  # not in its stubs
                raise
            except OSError as exc:
                raise OperationalError(CR_SERVER_LOST, f"{_LOST} ({exc})") from None

    async def commit(self) -> None:
        await super().commit()
        self._ended = True

    async def rollback(self) -> None:
        if self._ended:
            return
        await super().rollback()
        self._ended = True

    def spoke_while_idle(self) -> bool:
        """Whether the server sent anything, or ended the connection, since the last answer
        was read: bytes the event loop took in for it and nothing read yet, the end of the
        stream, or bytes still on the socket. True where this asyncmy keeps its input
        elsewhere."""
        transport: Any = getattr(self, "_transport", None)
        received: Any = getattr(self, "_proto", None)
        if transport is None or received is None or transport.is_closing():
            return True
        try:
            unread = received.length > received.pos or received.eof or received.exc is not None
        except AttributeError:  # an asyncmy that buffers its input otherwise (before 0.2.18)
            return True
        sock = transport.get_extra_info("socket")
        return bool(unread) or sock is None or readable(sock.fileno())


async def connect(**kwargs: Any) -> EndAwareAsyncConnection:
    """`asyncmy.connect(**kwargs)`, made an `EndAwareAsyncConnection`."""
    made: Any = EndAwareAsyncConnection  # its __init__ is untyped in asyncmy's stubs
    connection: EndAwareAsyncConnection = made(**kwargs)
    await connection.connect()
    return connection
