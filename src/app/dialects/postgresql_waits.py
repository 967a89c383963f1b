"""How long a PostgreSQL connection waits for its server, on both faces.

A server that keeps the connection open and never answers (its process stopped, its host
paused, a middlebox that takes the bytes and passes nothing on) is not noticed by TCP: the
kernel acknowledges what is sent, and keepalives are answered. With a statement timeout set,
no statement may take longer than it, so a wait longer than that timeout plus the connect
timeout (the time the network gets to answer) is a server that is gone: the connection is
closed, and the call fails as a lost connection does. Without a statement timeout, waits are
left unbounded, as statements are.

An asyncio wait whose task is cancelled (`asyncio.timeout`) asks the server to stop the
statement for at most CANCEL_REQUEST_SECONDS, then closes the connection (the pool replaces
it) and lets the cancellation go on. psycopg's own waits up to 10 s more: 5 to send the cancel
request, 5 for the statement to end, through a network that may be gone.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from typing import Any, TypeVar

import psycopg
from psycopg import pq, waiting
from psycopg.abc import PQGen

from app.dialects.base import ConnectOptions

RV = TypeVar("RV")
# How long a cancelled asyncio call waits for the server to take its cancel request.
CANCEL_REQUEST_SECONDS = 0.5
# psycopg's own pause between checks of a connection that is waiting.
_INTERVAL = 0.1


def answer_bound(options: ConnectOptions) -> float | None:
    """How long a connection made with `options` waits for an answer (None: for ever)."""
    if not options.statement_timeout:
        return None
    return options.statement_timeout + options.connect_timeout


def _no_answer(connection: Any, bound: float) -> psycopg.OperationalError:
    connection.pgconn.finish()  # mid-conversation: never to be used again
    return psycopg.OperationalError(
        f"the server sent no answer within {bound:g} s (the statement timeout plus the "
        "connect timeout): the connection was closed"
    )


class BoundedWaits(psycopg.Connection[Any]):
    """The blocking face's connection: its waits end after `answer_bound` seconds."""

    answer_bound: float | None = None

    def wait(self, gen: PQGen[RV], interval: float = _INTERVAL, timeout: float | None = None) -> RV:
        bound = self.answer_bound if timeout is None else None
        deadline = time.monotonic() + bound if bound is not None else None
        try:
            return super().wait(gen, interval, timeout if bound is None else bound)
        except psycopg.OperationalError:
            if deadline is not None and bound is not None and time.monotonic() >= deadline:
                raise _no_answer(self, bound) from None
            raise

    @classmethod
    def bounded(cls, bound: float | None, *args: Any, **kwargs: Any) -> BoundedWaits:
        connection = cls.connect(*args, **kwargs)
        connection.answer_bound = bound
        return connection


class PromptlyCancelled(psycopg.AsyncConnection[Any]):
    """The asyncio face's connection: its waits end after `answer_bound` seconds, and a
    cancelled one ends the statement promptly (see the module)."""

    answer_bound: float | None = None

    async def wait(
        self, gen: PQGen[RV], interval: float = _INTERVAL, timeout: float | None = None
    ) -> RV:
        bound = self.answer_bound if timeout is None else None
        deadline = time.monotonic() + bound if bound is not None else None
        try:
            return await waiting.wait_async(
                gen, self.pgconn.socket, interval, timeout if bound is None else bound
            )
        except asyncio.CancelledError:
            if self.pgconn.transaction_status == pq.TransactionStatus.ACTIVE:
                try:
                    with suppress(Exception):  # unreachable or slow: closed all the same
                        await self.cancel_safe(timeout=CANCEL_REQUEST_SECONDS)
                finally:
                    self.pgconn.finish()
            raise
        except psycopg.OperationalError:
            if deadline is not None and bound is not None and time.monotonic() >= deadline:
                raise _no_answer(self, bound) from None
            raise

    @classmethod
    async def bounded(cls, bound: float | None, *args: Any, **kwargs: Any) -> PromptlyCancelled:
        connection = await cls.connect(*args, **kwargs)
        connection.answer_bound = bound
        return connection
