"""The instant at the end of an expand/contract change: DDL statements that land together.

Dropping the triggers that keep two columns in step and dropping one of the columns must happen
as one: a write in between would be lost, or refused. PostgreSQL's DDL is transactional, so the
statements run as one transaction. MariaDB's is not; the statements run while this session holds
the table's write lock, so no other session writes between them. Either way the wait for the
table is short and the caller retries it (`locked_briefly`); the lock lasts milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from alembic import op
from sqlalchemy import Connection, text

from app.migrations.ops.online import locked_briefly, offline, outside_transaction, quote

# How long the swap may wait for the table on MariaDB (whole seconds).
_SWAP_WAIT = 1


def in_one_transaction(connection: Connection, statements: list[str]) -> None:
    """Run `statements` as one transaction on an autocommit connection: all or none."""
    connection.exec_driver_sql("BEGIN")
    try:
        for statement in statements:
            connection.exec_driver_sql(statement)
    except BaseException:
        connection.exec_driver_sql("ROLLBACK")
        raise
    connection.exec_driver_sql("COMMIT")


def with_table_locked(connection: Connection, table: str, statements: list[str]) -> None:
    """Run `statements` while this session alone may use `table` (MariaDB)."""
    with short_metadata_waits(connection):
        connection.exec_driver_sql(f"LOCK TABLES {quote(table)} WRITE")
        try:
            for statement in statements:
                connection.exec_driver_sql(statement)
        finally:
            connection.exec_driver_sql("UNLOCK TABLES")


@contextmanager
def short_metadata_waits(connection: Connection) -> Iterator[None]:
    """MariaDB statements that take no `WAIT n` clause (LOCK TABLES, CREATE TRIGGER) wait for a
    table's metadata lock at most a second in the block, as the swap does."""
    saved = connection.scalar(text("SELECT @@SESSION.lock_wait_timeout"))
    connection.exec_driver_sql(f"SET SESSION lock_wait_timeout = {_SWAP_WAIT}")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"SET SESSION lock_wait_timeout = {int(saved)}")


def swapped(statements: list[str], together: Callable[[], None]) -> None:
    """Run `statements` by `together` (`in_one_transaction` or `with_table_locked`), outside
    the migration's transaction and retried after a short lock wait; writing SQL, one after
    another."""
    with outside_transaction():
        if offline():
            for statement in statements:
                op.execute(statement)
            return
        locked_briefly(together)
