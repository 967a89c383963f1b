"""A table renamed while the code that knows only the old name still runs (expand/contract).

    def upgrade() -> None:        # the release whose code uses both names, or the new one
        migration_ops.rename_table("items", "things")
    def downgrade() -> None:
        migration_ops.undo_rename_table("items", "things")

    def upgrade() -> None:        # a later release, once no running code uses "items"
        migration_ops.finish_rename_table("items", "things")
    def downgrade() -> None:
        migration_ops.rename_table("items", "things")

`rename_table` (the expand step) renames the table and, in the same instant, puts a view of it
under the old name: a view of one table's columns, which both servers let code read, insert
into, update and delete from as if it were the table. Old code uses the old name, new code the
new one; there is one table, so each sees the other's writes. The table's indexes and
constraints named after it (the naming convention's names) are renamed with it, where the
server can rename them: all of them on PostgreSQL, the indexes on MariaDB (whose foreign keys
and checks keep their names). `finish_rename_table` (the contract step) drops the view;
`undo_rename_table` drops it and gives the table its old name back.

PostgreSQL does all of that in one transaction. MariaDB cannot create a view while a table is
locked, and no statement renames a table and creates a view at once, so the view is made first,
under a scratch name, over a placeholder that has the new name and the table's columns; one
`RENAME TABLE` (atomic) then moves the placeholder aside, the table to its new name and the view
to the old one, and the placeholder is dropped. A run killed between those steps finds the
scratch objects by their names and starts again. SQLite has no concurrent code to serve: the
table is renamed (and renamed back by `undo_rename_table`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

from alembic import op
from sqlalchemy import Connection, inspect, text

from app.migrations.ops.names import name_with
from app.migrations.ops.online import (
    dialect_name,
    locked_briefly,
    mariadb_wait,
    offline,
    outside_transaction,
    quote,
)
from app.migrations.ops.rename_column import column_renames
from app.migrations.ops.swap import in_one_transaction

# The comment PostgreSQL keeps on the view: how `app db status` knows it for a rename's.
VIEW_COMMENT = "app: the old name of table "
# The comment of the placeholder the view is first made over (MariaDB).
PLACEHOLDER_COMMENT = "app: a placeholder of a table rename"


@dataclass(frozen=True)
class TableRename:
    """A table rename whose expand step ran and whose contract step did not."""

    old_name: str
    new_name: str

    def __str__(self) -> str:
        return (
            f"{self.old_name} is a view of table {self.new_name} (a table rename in progress: "
            "finish_rename_table or undo_rename_table ends it)"
        )


def rename_table(old_table_name: str, new_table_name: str) -> None:
    """Rename `old_table_name` to `new_table_name` and keep the old name working (the expand
    step; see the module). Where the old name is gone (a contract step being undone), its view
    comes back."""
    dialect = dialect_name()
    if dialect == "sqlite":
        _rename_sqlite(old_table_name, new_table_name)
        return
    rename = TableRename(old_table_name, new_table_name)
    with outside_transaction():
        if offline():
            _expand_postgresql(rename) if dialect == "postgresql" else _expand_mariadb(rename)
            return
        state = _state(op.get_bind(), rename)
        if state == "both" and dialect != "postgresql":  # maybe a killed run's placeholder
            _clear_scratch(op.get_bind(), rename)
            state = _state(op.get_bind(), rename)
        if state == "expanded":
            return
        if state == "missing":
            raise ValueError(f"rename_table: there is no table {old_table_name}")
        if state == "both":
            raise ValueError(f"rename_table: {old_table_name} and {new_table_name} are both tables")
        if state == "before":
            _refuse_while_columns_renamed(op.get_bind(), old_table_name)
        if state == "finished":
            locked_briefly(lambda: _create_view(op.get_bind(), rename))
        elif dialect == "postgresql":
            _expand_postgresql(rename)
        else:
            _expand_mariadb(rename)


def finish_rename_table(old_table_name: str, new_table_name: str) -> None:
    """The contract step: the view under the old name dropped. SQLite: nothing (the table was
    renamed in place), unless the rename never ran."""
    if dialect_name() == "sqlite":
        if not offline() and not inspect(op.get_bind()).has_table(new_table_name):
            raise ValueError(
                f"finish_rename_table: there is no table {new_table_name} "
                "(rename_table starts the rename)"
            )
        return
    rename = TableRename(old_table_name, new_table_name)
    with outside_transaction():
        if not offline() and _state(op.get_bind(), rename) != "expanded":
            if _state(op.get_bind(), rename) == "before":
                raise ValueError(
                    f"finish_rename_table: {old_table_name} is still a table "
                    "(rename_table starts the rename)"
                )
            return
        locked_briefly(lambda: op.execute(f"DROP VIEW IF EXISTS {quote(old_table_name)}"))


def undo_rename_table(old_table_name: str, new_table_name: str) -> None:
    """The expand step undone: the view dropped and the table given its old name back."""
    dialect = dialect_name()
    if dialect == "sqlite":
        _rename_sqlite(new_table_name, old_table_name)
        return
    rename = TableRename(old_table_name, new_table_name)
    with outside_transaction():
        if not offline() and _state(op.get_bind(), rename) != "expanded":
            return
        if dialect == "postgresql":
            steps = [f"DROP VIEW IF EXISTS {quote(old_table_name)}"]
            steps += _renamed_postgresql(
                new_table_name, new_table_name, new_table_name, old_table_name
            )
            steps.append(f"ALTER TABLE {quote(new_table_name)} RENAME TO {quote(old_table_name)}")
            _run(steps)
        else:
            scratch = scratch_name(rename)
            _run(
                [
                    f"RENAME TABLE {quote(old_table_name)} TO {quote(scratch)}, "
                    f"{quote(new_table_name)} TO {quote(old_table_name)}",
                    f"DROP VIEW IF EXISTS {quote(scratch)}",
                ]
            )
            _rename_indexes_mariadb(TableRename(new_table_name, old_table_name), old_table_name)


def table_renames(connection: Connection) -> list[TableRename]:
    """The table renames whose expand step ran and whose contract step did not."""
    if connection.dialect.name == "postgresql":
        found = connection.execute(
            text(
                "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c "
                "WHERE c.relkind = 'v' AND c.relnamespace = current_schema()::regnamespace "
                "AND starts_with(obj_description(c.oid, 'pg_class'), :comment)"
            ),
            {"comment": VIEW_COMMENT},
        )
        return [TableRename(view, comment[len(VIEW_COMMENT) :]) for view, comment in found]
    if connection.dialect.name in ("mysql", "mariadb"):
        return list(_views_of_one_table(connection))
    return []


def _refuse_while_columns_renamed(connection: Connection, table: str) -> None:
    """A column rename in progress is known by its table's name: it is finished first."""
    for rename in column_renames(connection):
        if rename.table == table:
            raise ValueError(
                f"rename_table {table}: a rename of its column {rename.source} is in progress; "
                "finish (or undo) it first"
            )


def _rename_sqlite(old: str, new: str) -> None:
    """`old` renamed `new` in place; nothing when that is done already. A missing table or a
    taken name is refused as on the servers."""
    inspector = None if offline() else inspect(op.get_bind())
    if inspector is not None:
        has_old, has_new = inspector.has_table(old), inspector.has_table(new)
        if has_new and not has_old:
            return  # done already
        if not has_old:
            raise ValueError(f"rename_table: there is no table {old}")
        if has_new:
            raise ValueError(f"rename_table: {old} and {new} are both tables")
    op.rename_table(old, new)
    if inspector is None:
        return
    for index in inspect(op.get_bind()).get_indexes(new):
        renamed = name_with(str(index["name"]), old, new)
        if renamed is not None:
            op.drop_index(str(index["name"]), table_name=new)
            columns = [str(c) for c in index["column_names"]]
            op.create_index(renamed, new, columns, unique=bool(index["unique"]))


def _state(connection: Connection, rename: TableRename) -> str:
    """ "before" (the old table only), "expanded" (the new table, the old name its view),
    "finished" (the new table only), "both" (two tables), or "missing"."""
    inspector = inspect(connection)
    tables = set(inspector.get_table_names())
    views = set(inspector.get_view_names())
    if rename.new_name in tables and rename.old_name in tables:
        return "both"
    if rename.new_name in tables:
        return "expanded" if rename.old_name in views else "finished"
    return "before" if rename.old_name in tables else "missing"


def _run(steps: list[str]) -> None:
    if offline():
        for statement in steps:
            op.execute(statement)
        return
    if dialect_name() == "postgresql":
        locked_briefly(lambda: in_one_transaction(op.get_bind(), steps))
    else:
        for statement in steps:
            locked_briefly(partial(op.execute, statement))


def scratch_name(rename: TableRename) -> str:
    """The name the view is made under, and the placeholder moved to (MariaDB)."""
    digest = hashlib.sha1(f"{rename.old_name}\0{rename.new_name}".encode(), usedforsecurity=False)
    return f"app_rename_{digest.hexdigest()[:16]}"


def _create_view(connection: Connection, rename: TableRename) -> None:
    old, new = quote(rename.old_name), quote(rename.new_name)
    connection.exec_driver_sql(f"CREATE VIEW {old} AS SELECT * FROM {new}")  # noqa: S608 - names
    if connection.dialect.name == "postgresql":
        connection.execute(
            text(f"COMMENT ON VIEW {old} IS {_literal(VIEW_COMMENT + rename.new_name)}")
        )


def _literal(value: str) -> str:
    """A string literal of our own making (a table name) for a statement that takes no
    parameters (COMMENT)."""
    return "'" + value.replace("'", "''") + "'"


# -- PostgreSQL -----------------------------------------------------------------------------------


def _expand_postgresql(rename: TableRename) -> None:
    old, new = quote(rename.old_name), quote(rename.new_name)
    steps = [f"ALTER TABLE {old} RENAME TO {new}"]
    steps += _renamed_postgresql(rename.old_name, rename.new_name, rename.old_name, rename.new_name)
    comment = _literal(VIEW_COMMENT + rename.new_name)
    view = f"CREATE VIEW {old} AS SELECT * FROM {new}"  # noqa: S608 - quoted names
    steps += [view, f"COMMENT ON VIEW {old} IS {comment}"]
    _run(steps)


def _renamed_postgresql(table: str, later: str, before: str, after: str) -> list[str]:
    """The statements that rename the indexes and constraints of `table` named after it
    (`before` in their names becomes `after`); they run once the table is called `later`."""
    if offline():
        return []
    found = (
        op.get_bind()
        .execute(
            text(
                "SELECT conname, true FROM pg_constraint WHERE conrelid = to_regclass(:table) "
                "UNION ALL SELECT c.relname, false FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = to_regclass(:table) "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid "
                "AND k.conrelid = i.indrelid)"
            ),
            {"table": quote(table)},
        )
        .all()
    )
    statements = []
    for name, is_constraint in found:
        renamed = name_with(name, before, after)
        if renamed is None:
            continue
        statements.append(
            f"ALTER TABLE {quote(later)} RENAME CONSTRAINT {quote(name)} TO {quote(renamed)}"
            if is_constraint
            else f"ALTER INDEX {quote(name)} RENAME TO {quote(renamed)}"
        )
    return statements


# -- MariaDB --------------------------------------------------------------------------------------


def _expand_mariadb(rename: TableRename) -> None:
    old, new = quote(rename.old_name), quote(rename.new_name)
    scratch = scratch_name(rename)
    placeholder = f"{scratch}_placeholder"
    if not offline():
        _clear_scratch(op.get_bind(), rename)
    # The placeholder has the table's columns, so the view made over it has them too.
    marked = _literal(PLACEHOLDER_COMMENT)
    _run(
        [
            f"CREATE TABLE {new} COMMENT = {marked} AS SELECT * FROM {old} LIMIT 0",  # noqa: S608
            f"CREATE VIEW {quote(scratch)} AS SELECT * FROM {new}",  # noqa: S608 - names
            f"RENAME TABLE {new} TO {quote(placeholder)}, {old} TO {new}, "
            f"{quote(scratch)} TO {old}",
            f"DROP TABLE IF EXISTS {quote(placeholder)}",
        ]
    )
    _rename_indexes_mariadb(rename, rename.new_name)


def _clear_scratch(connection: Connection, rename: TableRename) -> None:
    """What a run killed half-way left: the view under its scratch name, the placeholder
    (empty: no code writes the new name before the expand step ends)."""
    scratch = scratch_name(rename)
    inspector = inspect(connection)
    if scratch in inspector.get_view_names():
        connection.exec_driver_sql(f"DROP VIEW {quote(scratch)}")
    placeholder = f"{scratch}_placeholder"
    if placeholder in inspector.get_table_names():
        connection.exec_driver_sql(f"DROP TABLE {quote(placeholder)}")
    comment = (
        inspector.get_table_comment(rename.new_name)
        if inspector.has_table(rename.new_name)
        else {"text": None}
    )
    if comment["text"] == PLACEHOLDER_COMMENT:
        connection.exec_driver_sql(f"DROP TABLE {quote(rename.new_name)}")


def _rename_indexes_mariadb(rename: TableRename, table: str) -> None:
    if offline():
        return
    for index in inspect(op.get_bind()).get_indexes(table):
        renamed = name_with(str(index["name"]), rename.old_name, rename.new_name)
        if renamed is not None:
            statement = (
                f"ALTER TABLE {quote(table)} {mariadb_wait()} "
                f"RENAME INDEX {quote(str(index['name']))} TO {quote(renamed)}"
            )
            locked_briefly(partial(op.execute, statement))


def _views_of_one_table(connection: Connection) -> Iterator[TableRename]:
    """MariaDB's views that are all the columns of one table, as the expand step makes them
    (the server keeps a view's query rewritten: `select db.t.c AS c, ... from db.t`)."""
    rows = connection.execute(
        text(
            "SELECT TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS "
            "WHERE TABLE_SCHEMA = DATABASE()"
        )
    ).all()
    schema = str(connection.scalar(text("SELECT DATABASE()")))
    for view, definition in rows:
        source = re.search(r" from `((?:[^`]|``)+)`\.`((?:[^`]|``)+)`$", str(definition))
        if source is None:
            continue
        table = source.group(2).replace("``", "`")
        columns = [c["name"] for c in inspect(connection).get_columns(view)]

        def tick(name: str) -> str:
            return "`" + name.replace("`", "``") + "`"

        origin = f"{tick(schema)}.{tick(table)}"
        listed = ",".join(f"{origin}.{tick(c)} AS {tick(c)}" for c in columns)
        if definition == " ".join(("select", listed, "from", origin)):
            yield TableRename(view, table)
