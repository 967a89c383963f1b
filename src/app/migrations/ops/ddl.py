"""The ALTER TABLE steps the online helpers share: a column's SQL, an in-place MariaDB change,
NOT NULL declared on PostgreSQL without a scan under lock."""

from __future__ import annotations

from typing import Any

from alembic import op
from sqlalchemy import Column, Connection, inspect, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.schema import CreateColumn

from app.db.errors import InvalidQueryError
from app.dialects.mariadb import refuses_algorithm
from app.migrations.ops.backfill import backfill as backfill_rows
from app.migrations.ops.online import (
    locked_briefly,
    mariadb_wait,
    offline,
    outside_transaction,
    quote,
)


class NotNullRefusedError(RuntimeError):
    """Rows without a value remained, so the column could not be made NOT NULL."""


def has_column(connection: Connection, table: str, name: str) -> bool:
    return any(column["name"] == name for column in inspect(connection).get_columns(table))


def column_sql(column: Column[Any]) -> str:
    return str(CreateColumn(column).compile(dialect=op.get_context().dialect))


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


def column_collation(connection: Connection, table: str, column: str) -> str | None:
    """The collation `table.column` has other than its type's default (PostgreSQL), or its
    collation (MariaDB); None for a column without one."""
    if connection.dialect.name == "postgresql":
        query = (
            "SELECT co.collname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "JOIN pg_collation co ON co.oid = a.attcollation "
            "WHERE a.attrelid = to_regclass(quote_ident(current_schema()) || '.' || "
            "quote_ident(:table)) AND a.attname = :column AND a.attcollation <> t.typcollation"
        )
    else:
        query = (
            "SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
            "DATABASE() AND TABLE_NAME = :table AND COLUMN_NAME = :column"
        )
    found = connection.scalar(text(query), {"table": table, "column": column})
    return None if found is None else str(found)
