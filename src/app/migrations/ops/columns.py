"""A NOT NULL column added to a large, busy table without a long lock.

Adding `col NOT NULL DEFAULT <per-row value>` rewrites the table under an exclusive lock. The
online way: add the column nullable (a metadata change), give it its default for the rows
written from now on, fill the existing rows in batches, then declare it NOT NULL in a way that
does not hold a long lock: on PostgreSQL a `CHECK (col IS NOT NULL) NOT VALID` constraint, its
VALIDATE (which lets writes through), `SET NOT NULL` (which trusts the valid check instead of
scanning), and the check dropped; on MariaDB an in-place rebuild that lets writes through
(`ALGORITHM=INPLACE, LOCK=NONE`); on SQLite, batch mode's table copy. Each step is skipped when
an earlier run already made it, so a migration killed half-way continues when run again.
"""

from __future__ import annotations

from typing import Any

from alembic import op
from sqlalchemy import Column, Connection, inspect, text
from sqlalchemy import column as lightweight_column
from sqlalchemy import exc as sa_exc
from sqlalchemy.schema import CreateColumn

from app.db.errors import InvalidQueryError
from app.dialects.mariadb import refuses_algorithm
from app.migrations.ops.backfill import BATCH_SIZE
from app.migrations.ops.backfill import backfill as backfill_rows
from app.migrations.ops.online import (
    dialect_name,
    locked_briefly,
    mariadb_wait,
    offline,
    outside_transaction,
    quote,
)


class NotNullRefusedError(RuntimeError):
    """Rows without a value remained, so the column could not be made NOT NULL."""


def add_not_null_column(
    table: str, column: Column[Any], *, backfill: Any, batch_size: int = BATCH_SIZE
) -> None:
    """Add `column` to `table` as NOT NULL, its existing rows set to `backfill`.

    `backfill` is a value or a SQL expression over the row's columns. Rows written while this
    runs get the column's `server_default`; without one, the code writing the table must
    already set the column, or the NOT NULL step finds rows without a value and fails.
    """
    if column.server_default is not None and not hasattr(column.server_default, "arg"):
        raise ValueError(f"add_not_null_column {column.name!r}: server_default must be a value")
    nullable = Column(column.name, column.type, nullable=True)
    default = getattr(column.server_default, "arg", None)
    dialect = dialect_name()
    with outside_transaction():
        if offline() or not has_column(op.get_bind(), table, column.name):
            _add_nullable(table, nullable, dialect)
        if default is not None and dialect != "sqlite":
            locked_briefly(
                lambda: op.alter_column(
                    table, column.name, server_default=default, existing_type=column.type
                )
            )
    needs_value = lightweight_column(column.name).is_(None)
    backfill_rows(table, {column.name: backfill}, where=needs_value, batch_size=batch_size)
    if dialect == "postgresql":
        not_null_postgresql(table, column.name, needs_value, backfill, batch_size)
    elif dialect in ("mysql", "mariadb"):
        required = Column(
            column.name, column.type, nullable=False, server_default=column.server_default
        )
        alter_mariadb(table, f"MODIFY COLUMN {column_sql(required)}", instant=False)
    else:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(
                column.name, nullable=False, server_default=default, existing_type=column.type
            )


def drop_column(table: str, name: str) -> None:
    """Drop column `name` of `table` (what `add_not_null_column` added) without a long lock."""
    dialect = dialect_name()
    if dialect == "sqlite":
        if offline() or has_column(op.get_bind(), table, name):
            with op.batch_alter_table(table) as batch:
                batch.drop_column(name)
        return
    with outside_transaction():
        if dialect == "postgresql":
            statement = f"ALTER TABLE {quote(table)} DROP COLUMN IF EXISTS {quote(name)}"
            locked_briefly(lambda: op.execute(statement))
        else:
            alter_mariadb(table, f"DROP COLUMN IF EXISTS {quote(name)}", instant=True)


def has_column(connection: Connection, table: str, name: str) -> bool:
    return any(column["name"] == name for column in inspect(connection).get_columns(table))


def column_sql(column: Column[Any]) -> str:
    return str(CreateColumn(column).compile(dialect=op.get_context().dialect))


def _add_nullable(table: str, column: Column[Any], dialect: str) -> None:
    if dialect in ("mysql", "mariadb"):
        alter_mariadb(table, f"ADD COLUMN IF NOT EXISTS {column_sql(column)}", instant=True)
    else:
        locked_briefly(lambda: op.add_column(table, column))


def alter_mariadb(table: str, change: str, *, instant: bool) -> None:
    """ALTER TABLE with the least locking the server can do: INSTANT, else INPLACE, LOCK=NONE."""
    alter = f"ALTER TABLE {quote(table)} {mariadb_wait()} {change}"
    online = f"{alter}, ALGORITHM=INPLACE, LOCK=NONE"
    if not instant:
        locked_briefly(lambda: op.execute(online))
        return
    try:
        locked_briefly(lambda: op.execute(f"{alter}, ALGORITHM=INSTANT"))
    except sa_exc.DBAPIError as exc:
        if not refuses_algorithm(exc):
            raise
        locked_briefly(lambda: op.execute(online))


def not_null_postgresql(
    table: str, name: str, needs_value: Any, backfill: Any, batch_size: int
) -> None:
    check = f"ck_{table}_{name}_not_null"[:63]
    with outside_transaction():
        connection = None if offline() else op.get_bind()
        if connection is None or not _constraint_exists(connection, table, check):
            locked_briefly(
                lambda: op.execute(
                    f"ALTER TABLE {quote(table)} ADD CONSTRAINT {quote(check)} "
                    f"CHECK ({quote(name)} IS NOT NULL) NOT VALID"
                )
            )
    # Rows written between the backfill and the check got no value from anyone.
    backfill_rows(table, {name: backfill}, where=needs_value, batch_size=batch_size)
    with outside_transaction():
        try:
            locked_briefly(
                lambda: op.execute(f"ALTER TABLE {quote(table)} VALIDATE CONSTRAINT {quote(check)}")
            )
        except InvalidQueryError as exc:  # the check refused a row
            locked_briefly(
                lambda: op.execute(f"ALTER TABLE {quote(table)} DROP CONSTRAINT {quote(check)}")
            )
            raise NotNullRefusedError(
                f"{table}.{name}: rows without a value were written while the column was "
                "filled; give the column a server_default, or deploy code that writes it first"
            ) from exc
        locked_briefly(
            lambda: op.execute(
                f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(name)} SET NOT NULL"
            )
        )
        locked_briefly(
            lambda: op.execute(
                f"ALTER TABLE {quote(table)} DROP CONSTRAINT IF EXISTS {quote(check)}"
            )
        )


def _constraint_exists(connection: Connection, table: str, name: str) -> bool:
    found = connection.scalar(
        text(
            "SELECT 1 FROM pg_constraint WHERE conname = :name "
            "AND conrelid = (quote_ident(current_schema()) || '.' || quote_ident(:table))::regclass"
        ),
        {"name": name, "table": table},
    )
    return found is not None
