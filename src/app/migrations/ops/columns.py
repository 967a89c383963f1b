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
from sqlalchemy import Column
from sqlalchemy import column as lightweight_column

from app.db.types import exact_version_of
from app.migrations.ops.backfill import BATCH_SIZE
from app.migrations.ops.backfill import backfill as backfill_rows
from app.migrations.ops.ddl import (
    alter_mariadb,
    column_sql,
    has_column,
    not_null_postgresql,
)
from app.migrations.ops.online import (
    dialect_name,
    locked_briefly,
    offline,
    outside_transaction,
    quote,
)
from app.migrations.ops.rename_column import finish_if_renamed


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
    # Text that names no collation compares exactly, as on the models (`exact_text`).
    kind = exact_version_of(column.type) or column.type
    nullable = Column(column.name, kind, nullable=True)
    default = getattr(column.server_default, "arg", None)
    dialect = dialect_name()
    with outside_transaction():
        if offline() or not has_column(op.get_bind(), table, column.name):
            _add_nullable(table, nullable, dialect)
        if default is not None and dialect != "sqlite":
            locked_briefly(
                lambda: op.alter_column(
                    table, column.name, server_default=default, existing_type=kind
                )
            )
    needs_value = lightweight_column(column.name).is_(None)
    backfill_rows(table, {column.name: backfill}, where=needs_value, batch_size=batch_size)
    if dialect == "postgresql":
        not_null_postgresql(table, column.name, needs_value, backfill, batch_size)
    elif dialect in ("mysql", "mariadb"):
        required = Column(column.name, kind, nullable=False, server_default=column.server_default)
        alter_mariadb(table, f"MODIFY COLUMN {column_sql(required)}", instant=False)
    else:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(
                column.name, nullable=False, server_default=default, existing_type=kind
            )


def drop_column(table: str, name: str) -> None:
    """Drop column `name` of `table` (what `add_not_null_column` added) without a long lock.

    When `name` is one of the two names of a rename in progress (`rename_column`), the other
    one stays and takes over (the contract step, or the expand step undone)."""
    if finish_if_renamed(table, name):
        return
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


def _add_nullable(table: str, column: Column[Any], dialect: str) -> None:
    if dialect in ("mysql", "mariadb"):
        alter_mariadb(table, f"ADD COLUMN IF NOT EXISTS {column_sql(column)}", instant=True)
    else:
        locked_briefly(lambda: op.add_column(table, column))
