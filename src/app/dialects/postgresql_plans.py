"""PostgreSQL: statements psycopg prepared before a migration changed a column's type.

psycopg prepares a statement it has run five times on a connection. When a column the statement
returns then changes type, the server refuses it ("cached plan must not change result type"):
the cursors here run it again, planned anew, where that is invisible to the caller (the first
statement of its transaction, or one in autocommit); `app.dialects.deferred_begin` does the
same for a first write sent with its BEGIN.
"""

from __future__ import annotations

from typing import Any, Self

import psycopg
from psycopg import pq
from psycopg.abc import Params, QueryNoTemplate


def stale_plan(exc: BaseException) -> bool:
    """Whether the server refused a prepared statement because a column it returns changed type
    since it was prepared (a migration): psycopg prepares what it has run five times on a
    connection. Told by the server function that says so, whatever the server's language."""
    return (
        isinstance(exc, psycopg.errors.FeatureNotSupported)
        and exc.diag.source_function == "RevalidateCachedQuery"
    )


class Replanning(psycopg.Cursor[Any]):
    """The blocking face's cursor: a statement refused for a stale plan (`stale_plan`) as the
    first of its transaction is run again, planned anew, as if nothing happened. Later in a
    transaction the refusal has aborted work already done: it is a `RetryableError`, which
    `run_in_transaction` absorbs. (Only psycopg's query forms SQLAlchemy sends: no templates.)"""

    def execute(  # type: ignore[override]
        self,
        query: QueryNoTemplate,
        params: Params | None = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> Self:
        first = self.connection.info.transaction_status == pq.TransactionStatus.IDLE
        try:
            return super().execute(query, params, prepare=prepare, binary=binary)
        except psycopg.errors.FeatureNotSupported as exc:
            if not (first and stale_plan(exc)):
                raise
        if self.connection.info.transaction_status == pq.TransactionStatus.INERROR:
            self.connection.rollback()  # forgets every prepared statement, here and there
        else:  # autocommit: psycopg forgets its prepared statements when it sees this one
            super().execute("DEALLOCATE ALL")
        return super().execute(query, params, prepare=prepare, binary=binary)


class AsyncReplanning(psycopg.AsyncCursor[Any]):
    """`Replanning` for the asyncio face."""

    async def execute(  # type: ignore[override]
        self,
        query: QueryNoTemplate,
        params: Params | None = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> Self:
        first = self.connection.info.transaction_status == pq.TransactionStatus.IDLE
        try:
            return await super().execute(query, params, prepare=prepare, binary=binary)
        except psycopg.errors.FeatureNotSupported as exc:
            if not (first and stale_plan(exc)):
                raise
        if self.connection.info.transaction_status == pq.TransactionStatus.INERROR:
            await self.connection.rollback()
        else:
            await super().execute("DEALLOCATE ALL")
        return await super().execute(query, params, prepare=prepare, binary=binary)
