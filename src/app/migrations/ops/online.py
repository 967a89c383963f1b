"""What every online operation needs: its own short transactions, short lock waits, retries.

A DDL statement that waits for a table lock queues every later reader and writer of the table
behind it, so the wait must be short and the statement retried, not left to wait for seconds.
On PostgreSQL and MariaDB each operation runs outside the migration's transaction (Alembic's
autocommit block): a batch commits when it ends and a lock is held only as long as its statement.
SQLite runs the whole migration as one write transaction (see migrations/env.py) and has no
concurrent writers to protect; there the helpers run inside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TypeVar

from alembic import op
from sqlalchemy import Connection
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from app.db.errors import RetryableError
from app.dialects import backend_for, backend_of
from app.dialects.mariadb import ddl_wait
from app.migrations.progress import PROGRESS, Progress

T = TypeVar("T")

# How long one attempt may wait for a lock, and how many attempts an operation gets. Traffic
# queued behind a waiting ALTER waits at most this long.
LOCK_TIMEOUT = 0.5
ATTEMPTS = 60


def dialect_name() -> str:
    return op.get_context().dialect.name


def offline() -> bool:
    """True while Alembic writes SQL (`--sql`) instead of running it."""
    return op.get_context().as_sql


def quote(name: str) -> str:
    """`name` as an identifier of the migration's dialect."""
    return op.get_context().dialect.identifier_preparer.quote(name)


def mariadb_wait(seconds: float = LOCK_TIMEOUT) -> str:
    """The clause that bounds a MariaDB DDL statement's wait for its table's metadata lock."""
    return ddl_wait(seconds)


@contextmanager
def outside_transaction() -> Iterator[None]:
    """Run the block in autocommit, outside the migration's transaction (not where the whole
    run is one transaction: SQLite)."""
    if backend_for(dialect_name()).one_transaction_per_run:
        yield
        return
    context = op.get_context()
    progress: Progress | None = context.opts.get(PROGRESS)
    with context.autocommit_block():
        if progress is not None:  # what came before was committed as the block began
            progress.committed()
        try:
            yield
        finally:
            if progress is not None:  # and each step in it as it went
                progress.committed()


def _lock_wait_ended(exc: BaseException) -> bool:
    return isinstance(exc, RetryableError)


def retrying_lock_waits(action: Callable[[], T], *, attempts: int = ATTEMPTS) -> T:
    """Run `action`, again after a pause each time it gave up waiting for a lock."""
    retrying = Retrying(
        retry=retry_if_exception(_lock_wait_ended),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(min=0.05, max=2.0) + wait_random(0, 0.1),
        reraise=True,
    )
    return retrying(action)


def locked_briefly(action: Callable[[], object]) -> None:
    """Run one DDL step that holds a table lock for an instant: wait for the lock only briefly
    and try again after a pause each time it could not get it. Writing SQL (`--sql`), just run
    it: it emits its statement."""
    if offline():
        action()
        return
    with short_lock_waits(op.get_bind()):
        retrying_lock_waits(action)


def short_lock_waits(
    connection: Connection, seconds: float = LOCK_TIMEOUT
) -> AbstractContextManager[None]:
    """Lock waits of at most `seconds` and no statement timeout, restored afterwards.

    The statement timeout is lifted because an online operation (an index build, a VALIDATE)
    may rightly run for minutes while the table stays usable.
    """
    if offline():
        return nullcontext()
    return backend_of(connection).short_lock_waits(connection, seconds)
