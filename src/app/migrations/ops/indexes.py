"""Indexes built and dropped without blocking writes.

PostgreSQL: `CREATE INDEX CONCURRENTLY` outside the migration's transaction. A build that failed
(a lock wait that ran out, a duplicate under a unique index, a killed migration) leaves an
INVALID index behind; it is dropped and the build started again, and a valid index of the name
means an earlier run got this far. MariaDB: `ALGORITHM=INPLACE, LOCK=NONE`, which the server
refuses rather than quietly locking the table. SQLite: a plain CREATE INDEX.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress

from alembic import op
from sqlalchemy import Connection, text
from sqlalchemy import exc as sa_exc

from app.db.errors import DataLayerError
from app.migrations.ops.online import (
    dialect_name,
    locked_briefly,
    mariadb_wait,
    offline,
    outside_transaction,
    quote,
)


def create_index(name: str, table: str, columns: Sequence[str], *, unique: bool = False) -> None:
    """Create index `name` on `table` (`columns`, in order) while the table stays writable."""
    if isinstance(columns, str) or not columns:
        raise ValueError(f"create_index {name!r}: columns must be a non-empty list of names")
    kind = "UNIQUE INDEX" if unique else "INDEX"
    column_list = ", ".join(quote(column) for column in columns)
    dialect = dialect_name()
    with outside_transaction():
        if dialect == "postgresql":
            statement = (
                f"CREATE {kind} CONCURRENTLY {quote(name)} ON {quote(table)} ({column_list})"
            )
            if offline():
                op.execute(statement)
                return
            locked_briefly(lambda: _build_postgresql(op.get_bind(), name, statement))
        elif dialect in ("mysql", "mariadb"):
            statement = (
                f"CREATE {kind} IF NOT EXISTS {quote(name)} ON {quote(table)} ({column_list}) "
                f"{mariadb_wait()} ALGORITHM=INPLACE LOCK=NONE"
            )
            locked_briefly(lambda: op.execute(statement))
        else:
            op.execute(
                f"CREATE {kind} IF NOT EXISTS {quote(name)} ON {quote(table)} ({column_list})"
            )


def drop_index(name: str, table: str) -> None:
    """Drop index `name` of `table` while the table stays writable; nothing if it is gone."""
    dialect = dialect_name()
    with outside_transaction():
        if dialect == "postgresql":
            statement = f"DROP INDEX CONCURRENTLY IF EXISTS {quote(name)}"
            locked_briefly(lambda: op.execute(statement))
        elif dialect in ("mysql", "mariadb"):
            statement = (
                f"ALTER TABLE {quote(table)} {mariadb_wait()} DROP INDEX IF EXISTS {quote(name)}, "
                "ALGORITHM=INPLACE, LOCK=NONE"
            )
            locked_briefly(lambda: op.execute(statement))
        else:
            op.execute(f"DROP INDEX IF EXISTS {quote(name)}")


def postgresql_index_valid(connection: Connection, name: str) -> bool | None:
    """Whether index `name` is valid: None when there is no such index (current schema)."""
    return connection.scalar(  # type: ignore[no-any-return]
        text(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = :name AND c.relnamespace = current_schema()::regnamespace"
        ),
        {"name": name},
    )


def _build_postgresql(connection: Connection, name: str, statement: str) -> None:
    valid = postgresql_index_valid(connection, name)
    if valid:
        return
    if valid is False:
        connection.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {quote(name)}")
    try:
        connection.exec_driver_sql(statement)
    except (sa_exc.DBAPIError, DataLayerError):
        # Leave no INVALID index behind; if even the drop cannot get its lock, the next attempt
        # (or the next run) finds the index invalid and drops it first.
        with suppress(sa_exc.DBAPIError, DataLayerError):
            if postgresql_index_valid(connection, name) is False:
                connection.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {quote(name)}")
        raise
