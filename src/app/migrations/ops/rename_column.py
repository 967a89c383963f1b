"""A column renamed while the code that knows only the old name still runs (expand/contract).

    def upgrade() -> None:        # the release whose code uses both names, or the new one
        migration_ops.rename_column("items", "title", "name")
    def downgrade() -> None:
        migration_ops.undo_rename_column("items", "title", "name")

    def upgrade() -> None:        # a later release, once no running code uses "title"
        migration_ops.finish_rename_column("items", "title", "name")
    def downgrade() -> None:
        migration_ops.rename_column("items", "title", "name")

`rename_column` (the expand step) adds the column `name` of the same type beside `title`, and
triggers keep the two in step: a row inserted with one of them gets the same value in the other,
and an update of either is copied to the other. The rows already there are copied in batches
(`backfill`); the new column becomes NOT NULL if the old one is, and gets copies of the indexes,
unique constraints and foreign keys of the old one (named with the new name in place of the
old). Old code reads and writes `title`, new code `name`, and each sees the other's writes.

`finish_rename_column` (the contract step) drops, under one short lock, the triggers and the old
column; the new one takes its default. `undo_rename_column` drops the new one instead.
`drop_column` on either name of a rename in progress does the same as these, so no trigger is
ever left behind referring to a dropped column.

The column copied to (the one added) has no default while both exist: an insert that leaves it
out gets the other's value, its default included. The trigger's name records which column was
copied to which, so a run killed half-way continues when run again. A column that is part of
the primary key, that a check constraint or an expression index uses, or that another table's
foreign key refers to is refused. SQLite has no concurrent code to serve: `rename_column` and
`undo_rename_column` rename the column in place (batch mode) and `finish_rename_column` finds
nothing left to do.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, NoReturn

from alembic import op
from sqlalchemy import Connection, inspect, text
from sqlalchemy import column as lightweight_column
from sqlalchemy.sql.expression import ColumnClause
from sqlalchemy.types import TypeEngine

from app.migrations.ops.backfill import BATCH_SIZE
from app.migrations.ops.backfill import backfill as backfill_rows
from app.migrations.ops.constraints import create_foreign_key, create_unique_constraint
from app.migrations.ops.ddl import alter_mariadb, has_column, not_null_postgresql
from app.migrations.ops.indexes import create_index, drop_index
from app.migrations.ops.names import MAX_NAME, name_with
from app.migrations.ops.online import (
    dialect_name,
    locked_briefly,
    mariadb_wait,
    offline,
    outside_transaction,
    quote,
)
from app.migrations.ops.swap import in_one_transaction, swapped, with_table_locked
from app.migrations.ops.uses import uses_of

TRIGGER_PREFIX = "app_rename_"
# The comment of a column a rename added on MariaDB, until its triggers exist: a run killed in
# between is told from a column the table had of its own (PostgreSQL adds both at once).
ADDED_MARK = "app: added by a rename in progress"


@dataclass(frozen=True)
class ColumnRename:
    """A rename whose expand step ran and whose contract step did not: both names work.
    `source` is the column that was there; `target` the one added and kept in step with it."""

    table: str
    source: str
    target: str

    @property
    def trigger(self) -> str:
        return _trigger(self.table, self.source, self.target)

    def __str__(self) -> str:
        return (
            f"{self.table}.{self.source} and {self.table}.{self.target} are kept in step "
            "(a column rename in progress: finish_rename_column or undo_rename_column ends it)"
        )


def rename_column(
    table_name: str,
    column_name: str,
    new_column_name: str,
    *,
    existing_type: TypeEngine[Any] | None = None,
    existing_nullable: bool | None = None,
    batch_size: int = BATCH_SIZE,
) -> None:
    """Make `column_name` of `table_name` readable and writable as `new_column_name` too (the
    expand step; see the module). Where only `new_column_name` is left (a contract step being
    undone), `column_name` comes back the same way. `existing_type` (and `existing_nullable`)
    are needed only when writing SQL (`--sql`), where the table cannot be asked."""
    if column_name == new_column_name:
        raise ValueError(f"rename_column {table_name}.{column_name}: the new name is the same")
    if dialect_name() == "sqlite":
        _rename_sqlite(table_name, column_name, new_column_name, existing_type)
        return
    if offline():
        existing_type = existing_type or _modelled_type(table_name, new_column_name, column_name)
        if existing_type is None:
            raise ValueError(
                f"rename_column {table_name}.{column_name}: writing SQL (--sql) needs "
                "existing_type= where the models have neither name"
            )
        type_sql = existing_type.compile(op.get_context().dialect)
        source = _Source(type_sql=type_sql, nullable=existing_nullable is not False)
        _expand(ColumnRename(table_name, column_name, new_column_name), source, batch_size)
        return
    connection = op.get_bind()
    rename = _direction(connection, table_name, column_name, new_column_name)
    source = _described(connection, table_name, rename.source)
    copies = _copies(connection, table_name, rename.source, rename.target)
    _expand(rename, source, batch_size)
    for copy in copies:
        copy()


def _modelled_type(table: str, *names: str) -> TypeEngine[Any] | None:
    """The type the models give the first of `names` in `table` (the migration's target
    metadata), for writing SQL without the table to ask."""
    found = op.get_context().opts.get("target_metadata")
    for metadata in found if isinstance(found, list | tuple) else [found]:
        modelled = getattr(metadata, "tables", {}).get(table)
        for name in names:
            if modelled is not None and name in modelled.c:
                return modelled.c[name].type  # type: ignore[no-any-return]
    return None


def finish_rename_column(table_name: str, column_name: str, new_column_name: str) -> None:
    """The contract step: `column_name` dropped, `new_column_name` (which takes its default)
    left; nothing when that is done already. SQLite: nothing (the rename happened already)."""
    _end(table_name, column_name, new_column_name, dropped=column_name)


def undo_rename_column(table_name: str, column_name: str, new_column_name: str) -> None:
    """The expand step undone: `new_column_name` dropped, `column_name` left as it was.
    SQLite: the column renamed back."""
    if dialect_name() == "sqlite":
        _rename_sqlite(table_name, new_column_name, column_name, None)
        return
    _end(table_name, column_name, new_column_name, dropped=new_column_name)


def finish_if_renamed(table: str, column: str) -> bool:
    """What `drop_column` does first: when `column` is one of the two names of a rename in
    progress, end the rename by dropping it (the other name stays). False when it is not."""
    if offline() or dialect_name() == "sqlite":
        return False
    for rename in column_renames(op.get_bind()):
        if rename.table == table and column in (rename.source, rename.target):
            kept = rename.target if column == rename.source else rename.source
            _drop_half(op.get_bind(), rename, column, kept)
            return True
    return False


def column_renames(connection: Connection) -> list[ColumnRename]:
    """The renames whose expand step ran and whose contract step did not."""
    if connection.dialect.name == "postgresql":
        query = (
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE c.relnamespace = current_schema()::regnamespace AND t.tgname LIKE :prefix"
        )
    elif connection.dialect.name in ("mysql", "mariadb"):
        query = (
            "SELECT EVENT_OBJECT_TABLE, TRIGGER_NAME FROM information_schema.TRIGGERS "
            "WHERE TRIGGER_SCHEMA = DATABASE() AND TRIGGER_NAME LIKE :prefix"
        )
    else:
        return []
    found = connection.execute(text(query), {"prefix": TRIGGER_PREFIX.replace("_", r"\_") + "%"})
    triggers: dict[str, set[str]] = {}
    for table, trigger in found:
        triggers.setdefault(table, set()).add(re.sub(r"_(ins|upd)$", "", trigger))
    renames = []
    for table, names in sorted(triggers.items()):
        columns = [c["name"] for c in inspect(connection).get_columns(table)]
        renames += [
            ColumnRename(table, source, target)
            for source in columns
            for target in columns
            if source != target and _trigger(table, source, target) in names
        ]
    return renames


def _rename_sqlite(
    table: str, column: str, new_name: str, existing_type: TypeEngine[Any] | None
) -> None:
    """`column` renamed `new_name` in place; nothing when that is done already. Refused as on
    the servers: a name that is missing or taken, a column they would refuse."""
    if not offline():
        connection = op.get_bind()
        has_old, has_new = (
            has_column(connection, table, column),
            has_column(connection, table, new_name),
        )
        if has_new and not has_old:
            return  # done already
        _refuse_unless_renameable(connection, table, column, new_name, has_old, has_new)
    # Its unique constraints and foreign keys are named as the servers' copies are, in the
    # same rebuild of the table (SQLite renames no constraint in place).
    named = [] if offline() else _named_constraints(op.get_bind(), table, column, new_name)
    with op.batch_alter_table(table) as batch:
        batch.alter_column(column, new_column_name=new_name, existing_type=existing_type)
        for rename in named:
            rename(batch)
    if offline():
        return
    # Its indexes are named as the servers' copies are (the naming convention's names).
    for index in inspect(op.get_bind()).get_indexes(table):
        renamed = name_with(str(index["name"]), column, new_name)
        if renamed is not None and new_name in index["column_names"]:
            op.drop_index(str(index["name"]), table_name=table)
            columns = [str(c) for c in index["column_names"]]
            op.create_index(renamed, table, columns, unique=bool(index["unique"]))


def _refuse_unless_renameable(
    connection: Connection, table: str, column: str, new_name: str, has_old: bool, has_new: bool
) -> None:
    """Refuse a rename of a missing column, onto a name the table has, or of a column the
    servers cannot serve under two names (`uses_of`)."""
    if not has_old:
        raise ValueError(f"rename_column: {table} has no column {column}")
    if has_new:
        raise ValueError(
            f"rename_column: {table} has a column {new_name} already; rename onto a new name"
        )

    def refuse(why: str) -> NoReturn:
        _refuse(table, column, why)

    uses_of(connection, table, column, refuse)


def _direction(connection: Connection, table: str, column: str, new_name: str) -> ColumnRename:
    """Which column is copied to which: the one there to the one missing; for a run that was
    interrupted, what its triggers say, or (MariaDB, killed before them) the mark on the column
    it added. Both names taken otherwise: refused, nothing changed."""
    for rename in column_renames(connection):
        if rename.table == table and {rename.source, rename.target} == {column, new_name}:
            return rename
    has_old, has_new = (
        has_column(connection, table, column),
        has_column(connection, table, new_name),
    )
    if has_old and has_new:
        for source, target in ((column, new_name), (new_name, column)):
            if _marked(connection, table, target):
                return ColumnRename(table, source, target)
        _refuse_unless_renameable(connection, table, column, new_name, has_old, has_new)
    if has_new:
        return ColumnRename(table, new_name, column)  # a contract step undone: back again
    _refuse_unless_renameable(connection, table, column, new_name, has_old, has_new)
    return ColumnRename(table, column, new_name)


def _marked(connection: Connection, table: str, column: str) -> bool:
    """Whether `column` is one a rename added and has not yet kept in step (MariaDB)."""
    found = next(c for c in inspect(connection).get_columns(table) if c["name"] == column)
    return found.get("comment") == ADDED_MARK


def _end(table: str, column: str, new_name: str, *, dropped: str) -> None:
    kept = new_name if dropped == column else column
    if dialect_name() == "sqlite":
        # No rename is ever in progress there: the column was renamed in place.
        connection = None if offline() else op.get_bind()
        if connection is not None and not has_column(connection, table, new_name):
            raise ValueError(
                f"{table}.{column}: no rename to {new_name} in progress (rename_column starts one)"
            )
        return
    if offline():  # the rename as `rename_column` makes it, from `column` to `new_name`
        _drop_half(None, ColumnRename(table, column, new_name), dropped, kept)
        return
    connection = op.get_bind()
    for rename in column_renames(connection):
        if rename.table == table and {rename.source, rename.target} == {dropped, kept}:
            _drop_half(connection, rename, dropped, kept)
            return
    if has_column(connection, table, dropped):
        raise ValueError(
            f"{table}.{dropped}: no rename to {kept} in progress (rename_column starts one)"
        )


def _drop_half(
    connection: Connection | None, rename: ColumnRename, dropped: str, kept: str
) -> None:
    """End a rename: the triggers and `dropped` go under one short lock; `kept` takes the
    default of `dropped` if it has none (the column copied to had none while both existed).
    Writing SQL (`connection` None), the defaults are not known and stay as they are."""
    default = None
    if connection is not None and _default(connection, rename.table, kept) is None:
        default = _default(connection, rename.table, dropped)
    if dialect_name() == "postgresql":
        _contract_postgresql(rename, dropped, kept, default)
    else:
        _contract_mariadb(connection, rename, dropped, kept, default)


def _trigger(table: str, old: str, new: str) -> str:
    """The name of the rename's trigger (PostgreSQL; MariaDB's two add `_ins`, `_upd`): a hash
    of the three names, which keeps it within every server's length limit."""
    digest = hashlib.sha1(f"{table}\0{old}\0{new}".encode(), usedforsecurity=False)
    return f"{TRIGGER_PREFIX}{digest.hexdigest()[:16]}"


@dataclass(frozen=True)
class _Source:
    """The old column as the new one copies it: its type (SQL, with its collation) and NULLs."""

    type_sql: str
    nullable: bool


def _described(connection: Connection, table: str, column: str) -> _Source:
    if connection.dialect.name == "postgresql":
        row = connection.execute(
            text(
                "SELECT format_type(a.atttypid, a.atttypmod) AS type, "
                "CASE WHEN a.attcollation <> t.typcollation THEN quote_ident(co.collname) END "
                "AS collation, NOT a.attnotnull AS nullable, "
                "a.attidentity <> '' OR a.attgenerated <> '' AS computed "
                "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
                "LEFT JOIN pg_collation co ON co.oid = a.attcollation "
                "WHERE a.attrelid = (quote_ident(current_schema()) || '.' || "
                "quote_ident(:table))::regclass AND a.attname = :column AND NOT a.attisdropped"
            ),
            {"table": table, "column": column},
        ).one()
    else:
        row = connection.execute(
            text(
                "SELECT COLUMN_TYPE AS type, COLLATION_NAME AS collation, "
                "IS_NULLABLE = 'YES' AS nullable, "
                "EXTRA LIKE '%auto_increment%' OR GENERATION_EXPRESSION IS NOT NULL AS computed "
                "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                "AND TABLE_NAME = :table AND COLUMN_NAME = :column"
            ),
            {"table": table, "column": column},
        ).one()
    if row.computed:
        _refuse(table, column, "it is an identity, auto-increment or generated column")
    collation = f" COLLATE {row.collation}" if row.collation else ""
    return _Source(type_sql=f"{row.type}{collation}", nullable=bool(row.nullable))


def _default(connection: Connection, table: str, column: str) -> str | None:
    found = next(c for c in inspect(connection).get_columns(table) if c["name"] == column)
    return found.get("default")


def _refuse(table: str, column: str, why: str) -> NoReturn:
    raise ValueError(f"rename_column {table}.{column}: {why}; rename it with op.alter_column")


def _named_constraints(
    connection: Connection, table: str, column: str, new_name: str
) -> list[Callable[[Any], None]]:
    """For SQLite's rename of `column`: each of its named unique constraints and foreign keys
    dropped and made again under the name the naming convention gives it with `new_name`, as a
    step on the batch that rebuilds the table."""
    inspector = inspect(connection)
    steps: list[Callable[[Any], None]] = []

    def columns_of(names: list[Any]) -> list[str]:
        # By the names the table had before the batch: the batch takes each constraint's
        # columns from the table it copies, and moves them to the column's new name itself.
        return [str(name) for name in names]

    for unique in inspector.get_unique_constraints(table):
        renamed = name_with(str(unique["name"] or ""), column, new_name)
        if renamed is not None and column in unique["column_names"]:
            old, columns = str(unique["name"]), columns_of(unique["column_names"])

            def remake_unique(batch: Any, old: str = old, renamed: str = renamed,
                              columns: list[str] = columns) -> None:  # fmt: skip
                batch.drop_constraint(old, type_="unique")
                batch.create_unique_constraint(renamed, columns)

            steps.append(remake_unique)
    for key in inspector.get_foreign_keys(table):
        renamed = name_with(str(key["name"] or ""), column, new_name)
        if renamed is not None and column in key["constrained_columns"]:
            old, columns = str(key["name"]), columns_of(key["constrained_columns"])

            def remake_key(batch: Any, old: str = old, renamed: str = renamed,
                           columns: list[str] = columns, key: Any = key) -> None:  # fmt: skip
                batch.drop_constraint(old, type_="foreignkey")
                batch.create_foreign_key(
                    renamed, key["referred_table"], columns, key["referred_columns"],
                    **{k: v for k, v in key.get("options", {}).items() if k in _KEY_OPTIONS},
                )  # fmt: skip

            steps.append(remake_key)
    return steps


_KEY_OPTIONS = ("ondelete", "onupdate", "deferrable", "initially")


def _renamed(name: str, old: str, new: str) -> str:
    """An index's or constraint's name for the new column: the old column's name in it
    replaced by the new one (as a naming convention names it), else the new name appended."""
    return name_with(name, old, new) or f"{name}_{new}"[:MAX_NAME]


def _copies(connection: Connection, table: str, old: str, new: str) -> list[Callable[[], None]]:
    """What the new column needs of what uses the old one, as steps to run after the copy;
    refuses what cannot be copied."""

    def refuse(why: str) -> NoReturn:
        _refuse(table, old, why)

    steps: list[Callable[[], None]] = []
    for use in uses_of(connection, table, old, refuse):
        name = _renamed(use.name, old, new)
        columns = use.columns_with(old, new)
        if use.kind == "foreign key":
            steps.append(
                partial(create_foreign_key, op.f(name), table, use.referred_table, columns,
                        use.referred_columns, **use.options)
            )  # fmt: skip
        elif use.kind == "unique":
            steps.append(partial(create_unique_constraint, op.f(name), table, columns))
        else:
            steps.append(partial(create_index, name, table, columns, unique=use.unique))
    return steps


def _expand(rename: ColumnRename, source: _Source, batch_size: int) -> None:
    """Add the target column, keep it in step, fill it, make it NOT NULL like the source."""
    target_sql = f"{quote(rename.target)} {source.type_sql}"
    if dialect_name() == "postgresql":
        _keep_in_step_postgresql(rename, target_sql)
    else:
        _keep_in_step_mariadb(rename, target_sql)
    # Only rows whose target is still empty: a value there came through the triggers.
    copied: ColumnClause[Any] = lightweight_column(rename.source)
    empty = lightweight_column(rename.target).is_(None)
    backfill_rows(rename.table, {rename.target: copied}, where=empty, batch_size=batch_size)
    if source.nullable or (
        not offline() and not _described(op.get_bind(), rename.table, rename.target).nullable
    ):
        return
    if dialect_name() == "postgresql":
        not_null_postgresql(rename.table, rename.target, empty, copied, batch_size)
    else:
        change = f"MODIFY COLUMN {target_sql} NOT NULL"
        alter_mariadb(rename.table, change, instant=False)


# -- PostgreSQL -----------------------------------------------------------------------------------


def _keep_in_step_postgresql(rename: ColumnRename, target_sql: str) -> None:
    """The target column and the trigger that keeps it in step, added in one transaction."""
    table, source, target = quote(rename.table), quote(rename.source), quote(rename.target)
    trigger, function = quote(rename.trigger), quote(f"{rename.trigger}_fn")
    with outside_transaction():
        op.execute(
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN IF TG_OP = 'INSERT' THEN "
            f"IF NEW.{target} IS NULL THEN NEW.{target} := NEW.{source}; "
            f"ELSE NEW.{source} := NEW.{target}; END IF; "
            f"ELSIF NEW.{target} IS DISTINCT FROM OLD.{target} THEN NEW.{source} := NEW.{target}; "
            f"ELSE NEW.{target} := NEW.{source}; END IF; RETURN NEW; END $$"
        )
        steps = [
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {target_sql}",
            f"CREATE OR REPLACE TRIGGER {trigger} BEFORE INSERT OR UPDATE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()",
        ]
    swapped(steps, lambda: in_one_transaction(op.get_bind(), steps))


def _contract_postgresql(
    rename: ColumnRename, dropped: str, kept: str, default: str | None
) -> None:
    table = quote(rename.table)
    swap = [f"DROP TRIGGER IF EXISTS {quote(rename.trigger)} ON {table}"]
    if default is not None:
        swap.append(f"ALTER TABLE {table} ALTER COLUMN {quote(kept)} SET DEFAULT {default}")
    swap += [
        f"ALTER TABLE {table} DROP COLUMN {quote(dropped)}",
        f"DROP FUNCTION IF EXISTS {quote(rename.trigger + '_fn')}()",
    ]
    swapped(swap, lambda: in_one_transaction(op.get_bind(), swap))


# -- MariaDB --------------------------------------------------------------------------------------


def _keep_in_step_mariadb(rename: ColumnRename, target_sql: str) -> None:
    table, source, target = quote(rename.table), quote(rename.source), quote(rename.target)
    mark = f"COMMENT '{ADDED_MARK}'"
    alter_mariadb(rename.table, f"ADD COLUMN IF NOT EXISTS {target_sql} {mark}", instant=True)
    bodies = {
        f"{rename.trigger}_ins": (
            "INSERT",
            f"IF NEW.{target} IS NULL THEN SET NEW.{target} = NEW.{source}; "
            f"ELSE SET NEW.{source} = NEW.{target}; END IF;",
        ),
        f"{rename.trigger}_upd": (
            "UPDATE",
            f"IF NOT (NEW.{target} <=> OLD.{target}) THEN SET NEW.{source} = NEW.{target}; "
            f"ELSE SET NEW.{target} = NEW.{source}; END IF;",
        ),
    }
    with outside_transaction():
        for name, (event, body) in bodies.items():
            statement = (
                f"CREATE TRIGGER IF NOT EXISTS {quote(name)} BEFORE {event} ON {table} "
                f"FOR EACH ROW BEGIN {body} END"
            )
            locked_briefly(partial(op.execute, statement))
    if offline() or _marked(op.get_bind(), rename.table, rename.target):
        nullable = offline() or _described(op.get_bind(), rename.table, rename.target).nullable
        null = "NULL" if nullable else "NOT NULL"
        change = f"MODIFY COLUMN {target_sql} {null} COMMENT ''"
        alter_mariadb(rename.table, change, instant=True)


def _contract_mariadb(
    connection: Connection | None,
    rename: ColumnRename,
    dropped: str,
    kept: str,
    default: str | None,
) -> None:
    # Dropping a column only shrinks the indexes it is part of, and a foreign key on it stops
    # the drop: both go first (the kept column has its copies).
    if connection is not None:
        for key in inspect(connection).get_foreign_keys(rename.table):
            if dropped in key["constrained_columns"]:
                name = quote(str(key["name"]))
                alter_mariadb(rename.table, f"DROP FOREIGN KEY IF EXISTS {name}", instant=True)
        for index in inspect(connection).get_indexes(rename.table):
            if dropped in index["column_names"]:
                drop_index(str(index["name"]), rename.table)
    change = f"ALTER COLUMN {quote(kept)} SET DEFAULT {default}, " if default is not None else ""
    swap = [
        f"DROP TRIGGER IF EXISTS {quote(rename.trigger + '_ins')}",
        f"DROP TRIGGER IF EXISTS {quote(rename.trigger + '_upd')}",
        f"ALTER TABLE {quote(rename.table)} {mariadb_wait()} {change}"
        f"DROP COLUMN {quote(dropped)}, ALGORITHM=INSTANT",
    ]
    swapped(swap, lambda: with_table_locked(op.get_bind(), rename.table, swap))
