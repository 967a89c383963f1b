"""A column's type changed on a large, busy table without rewriting it under a lock.

`ALTER COLUMN ... TYPE` rewrites the table while it holds an exclusive lock (PostgreSQL), or
copies it while writes wait (MariaDB). The online way: a new column of the new type beside the
old one (`_<name>_retyped`), kept in step with it by triggers as rows are written, filled for the
rows already there in batches, made NOT NULL and given the old column's default the way
`add_not_null_column` does it; then, under one short lock, the triggers and the old column go
and the new one takes its name. Code running meanwhile reads and writes the old column as
before; the statements psycopg prepared against the old type are planned anew (see
`app.dialects.postgresql.Replanning`). SQLite: batch mode's table copy.

Each step is skipped when an earlier run made it, so a migration killed half-way continues
when run again; one killed during the swap on MariaDB finds the triggers gone and the new
column still there, puts the triggers back and fills what it missed.

The indexes and unique constraints the column is part of are built again on the new column
(without blocking writes, under a scratch name) before the swap, and take their names in it. A
column of the primary key, of a foreign key (either end) or of a check is refused: dropping the
old column would take those with it.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from functools import partial
from typing import Any, NoReturn

from alembic import op
from sqlalchemy import Column, Connection, cast, inspect
from sqlalchemy import column as lightweight_column
from sqlalchemy.types import TypeEngine

from app.migrations.ops.backfill import BATCH_SIZE
from app.migrations.ops.backfill import backfill as backfill_rows
from app.migrations.ops.constraints import create_unique_constraint
from app.migrations.ops.ddl import (
    alter_mariadb,
    column_collation,
    column_sql,
    has_column,
    not_null_postgresql,
)
from app.migrations.ops.indexes import create_index
from app.migrations.ops.names import MAX_NAME
from app.migrations.ops.online import (
    dialect_name,
    locked_briefly,
    mariadb_wait,
    offline,
    outside_transaction,
    quote,
)
from app.migrations.ops.rename_column import column_renames
from app.migrations.ops.swap import in_one_transaction, swapped, with_table_locked
from app.migrations.ops.uses import uses_of


def alter_column(
    table_name: str,
    column_name: str,
    *,
    type_: TypeEngine[Any],
    existing_type: TypeEngine[Any] | None = None,
    batch_size: int = BATCH_SIZE,
    **unsupported: Any,
) -> None:
    """`op.alter_column(table_name, column_name, type_=..., existing_type=...)` while the table
    stays readable and writable; only a type change (the other changes `op.alter_column` makes
    have helpers of their own, or hold no long lock)."""
    if unsupported:
        raise ValueError(
            f"alter_column {table_name}.{column_name}: changes only the type here; "
            f"{', '.join(sorted(unsupported))} goes through op.alter_column"
        )
    dialect = dialect_name()
    if dialect == "sqlite":
        if offline() or not _has_type(op.get_bind(), table_name, column_name, type_):
            with op.batch_alter_table(table_name) as batch:
                batch.alter_column(column_name, type_=type_, existing_type=existing_type)
        return
    retyped = f"_{column_name}_retyped"[:63]
    connection = None if offline() else op.get_bind()
    if connection is not None:
        if not has_column(connection, table_name, retyped) and _has_type(
            connection, table_name, column_name, type_
        ):
            return  # an earlier run finished
        for rename in column_renames(connection):
            if rename.table == table_name and column_name in (rename.source, rename.target):
                raise ValueError(
                    f"alter_column {table_name}.{column_name}: a rename of the column is in "
                    "progress; finish (or undo) it first"
                )
        bound = _bound(connection, table_name, column_name)
    else:
        bound = []
    old = _described(connection, table_name, column_name)
    kept = None if connection is None else column_collation(connection, table_name, column_name)
    new_column = Column(retyped, _collated(type_, kept), nullable=True)
    if dialect == "postgresql":
        _retype_postgresql(table_name, column_name, new_column, old, batch_size, bound)
    else:
        _retype_mariadb(table_name, column_name, new_column, old, batch_size, bound)


def _has_type(connection: Connection, table: str, name: str, type_: TypeEngine[Any]) -> bool:
    dialect = connection.dialect
    for found in inspect(connection).get_columns(table):
        if found["name"] == name:
            return _spelled(found["type"].compile(dialect)) == _spelled(type_.compile(dialect))
    raise ValueError(f"alter_column: {table} has no column {name}")


def _collated(type_: TypeEngine[Any], collation: str | None) -> TypeEngine[Any]:
    """`type_` as the migration's dialect writes it, with the column's `collation` when it is
    a text type that names none: a change of length keeps how the column compares."""
    found = type_.dialect_impl(op.get_context().dialect)
    if collation is None or not hasattr(found, "collation") or found.collation is not None:
        return type_
    collated = copy.copy(found)
    collated.collation = collation
    return collated


def _without_collation(type_: TypeEngine[Any]) -> TypeEngine[Any]:
    """The type as a CAST names it: PostgreSQL takes no COLLATE inside one (the column the
    value lands in has the collation)."""
    found = type_.dialect_impl(op.get_context().dialect)
    if getattr(found, "collation", None) is None:
        return found
    plain = copy.copy(found)
    plain.collation = None  # type: ignore[attr-defined]
    return plain


def _spelled(type_sql: str) -> str:
    """A type's SQL without what the server adds on its own (MariaDB's display width) and
    without its collation (kept from the column when the new type names none)."""
    plain = re.sub(r"\s+COLLATE\s+\S+$", "", type_sql.upper())
    return re.sub(r"^(\w*INT\w*)\(\d+\)", r"\1", plain).replace("INTEGER", "INT")


@dataclass(frozen=True)
class _Bound:
    """An index or unique constraint the column is part of, built again on the new column
    under `scratch` and given back its `name` in the swap."""

    name: str
    columns: list[str]
    unique: bool
    constraint: bool

    @property
    def scratch(self) -> str:
        return f"{self.name[: MAX_NAME - 8]}_retyped"

    def build(self, table: str, column: str, retyped: str) -> None:
        columns = [retyped if c == column else c for c in self.columns]
        if self.constraint:
            create_unique_constraint(op.f(self.scratch), table, columns)
        else:
            create_index(self.scratch, table, columns, unique=self.unique)


def _bound(connection: Connection, table: str, name: str) -> list[_Bound]:
    """The indexes and unique constraints that use the column; refuses a column that a key or a
    check uses (dropping it drops them) or that an index uses other than as a plain column."""

    def refuse(why: str) -> NoReturn:
        raise ValueError(
            f"alter_column {table}.{name}: {why}; drop it first and add it back after the "
            "change (migration_ops.create_*_constraint)"
        )

    return [
        _Bound(use.name, use.columns, unique=use.unique, constraint=use.kind == "unique")
        for use in uses_of(connection, table, name, refuse, foreign_keys=False)
    ]


class _Old:
    """What the new column takes over from the old one: NOT NULL, and its default (SQL)."""

    def __init__(self, nullable: bool, default: str | None) -> None:
        self.nullable = nullable
        self.default = default


def _described(connection: Connection | None, table: str, name: str) -> _Old:
    if connection is None:  # writing SQL: what the models' usual column is
        return _Old(nullable=False, default=None)
    found = next(c for c in inspect(connection).get_columns(table) if c["name"] == name)
    return _Old(nullable=bool(found["nullable"]), default=found.get("default"))


def _names(table: str, column: str) -> tuple[str, str]:
    """The trigger's name and its function's (PostgreSQL) or its prefix (MariaDB)."""
    base = f"app_retype_{table}_{column}"[:55]
    return base, f"{base}_fn"


# -- PostgreSQL -----------------------------------------------------------------------------------


def _retype_postgresql(
    table: str, name: str, new_column: Column[Any], old: _Old, batch_size: int, bound: list[_Bound]
) -> None:
    retyped = new_column.name
    trigger, function = _names(table, name)
    cast_type = _without_collation(new_column.type)
    type_sql = cast_type.compile(op.get_context().dialect)
    with outside_transaction():
        locked_briefly(
            lambda: op.execute(
                f"ALTER TABLE {quote(table)} ADD COLUMN IF NOT EXISTS {column_sql(new_column)}"
            )
        )
        op.execute(
            f"CREATE OR REPLACE FUNCTION {quote(function)}() RETURNS trigger LANGUAGE plpgsql "
            f"AS $$ BEGIN NEW.{quote(retyped)} := CAST(NEW.{quote(name)} AS {type_sql}); "
            "RETURN NEW; END $$"
        )
        locked_briefly(
            lambda: op.execute(
                f"CREATE OR REPLACE TRIGGER {quote(trigger)} BEFORE INSERT OR UPDATE ON "
                f"{quote(table)} FOR EACH ROW EXECUTE FUNCTION {quote(function)}()"
            )
        )
    copied = cast(lightweight_column(name), cast_type)
    backfill_rows(table, {retyped: copied}, batch_size=batch_size)
    if old.default is not None:
        with outside_transaction():
            locked_briefly(
                lambda: op.execute(
                    f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(retyped)} "
                    f"SET DEFAULT {old.default}"
                )
            )
    if not old.nullable:
        needs_value = lightweight_column(retyped).is_(None)
        not_null_postgresql(table, retyped, needs_value, copied, batch_size)
    for index in bound:
        index.build(table, name, retyped)
    swap = [
        f"DROP TRIGGER IF EXISTS {quote(trigger)} ON {quote(table)}",
        f"ALTER TABLE {quote(table)} DROP COLUMN {quote(name)}",
        f"ALTER TABLE {quote(table)} RENAME COLUMN {quote(retyped)} TO {quote(name)}",
        *(
            f"ALTER TABLE {quote(table)} RENAME CONSTRAINT {quote(b.scratch)} TO {quote(b.name)}"
            if b.constraint
            else f"ALTER INDEX {quote(b.scratch)} RENAME TO {quote(b.name)}"
            for b in bound
        ),
        f"DROP FUNCTION IF EXISTS {quote(function)}()",
    ]
    swapped(swap, lambda: in_one_transaction(op.get_bind(), swap))


# -- MariaDB --------------------------------------------------------------------------------------


def _retype_mariadb(
    table: str, name: str, new_column: Column[Any], old: _Old, batch_size: int, bound: list[_Bound]
) -> None:
    retyped = new_column.name
    prefix, _ = _names(table, name)
    triggers = {f"{prefix}_ins": "INSERT", f"{prefix}_upd": "UPDATE"}
    alter_mariadb(table, f"ADD COLUMN IF NOT EXISTS {column_sql(new_column)}", instant=True)
    with outside_transaction():
        for trigger, event in triggers.items():
            statement = (
                f"CREATE TRIGGER IF NOT EXISTS {quote(trigger)} BEFORE {event} ON "
                f"{quote(table)} FOR EACH ROW SET NEW.{quote(retyped)} = NEW.{quote(name)}"
            )
            locked_briefly(partial(op.execute, statement))
    backfill_rows(table, {retyped: lightweight_column(name)}, batch_size=batch_size)
    if not old.nullable or old.default is not None:
        default = f" DEFAULT {old.default}" if old.default is not None else ""
        null = "NULL" if old.nullable else "NOT NULL"
        type_sql = new_column.type.compile(op.get_context().dialect)
        alter_mariadb(
            table, f"MODIFY COLUMN {quote(retyped)} {type_sql} {null}{default}", instant=False
        )
    for index in bound:
        index.build(table, name, retyped)
    # The old indexes go in the same statement, so that the column drop rebuilds nothing
    # (NOCOPY: no table copy; INSTANT when there are none).
    changes = [f"DROP INDEX {quote(b.name)}" for b in bound]
    changes += [
        f"DROP COLUMN {quote(name)}",
        f"RENAME COLUMN {quote(retyped)} TO {quote(name)}",
        *(f"RENAME INDEX {quote(b.scratch)} TO {quote(b.name)}" for b in bound),
    ]
    algorithm = "NOCOPY" if bound else "INSTANT"
    swap = [
        *(f"DROP TRIGGER IF EXISTS {quote(trigger)}" for trigger in triggers),
        f"ALTER TABLE {quote(table)} {mariadb_wait()} {', '.join(changes)}, ALGORITHM={algorithm}",
    ]
    swapped(swap, lambda: with_table_locked(op.get_bind(), table, swap))
