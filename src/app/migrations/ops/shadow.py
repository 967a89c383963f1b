"""A MariaDB table rebuilt beside itself while it stays writable: for a change MariaDB 10.11
makes only by copying the table while its writes wait (adding a CHECK constraint).

The shadow table is made empty with the table's columns and indexes (`CREATE TABLE ... LIKE`)
and changed while empty (an instant copy of nothing); it gets the table's foreign keys under
scratch names, since a foreign key's name belongs to the database, not to its table (a name too
long to take the scratch suffix is shortened, and the shadow's own table of names keeps each
scratch name's original until the names are back). Triggers
on the table copy every write to the shadow as it commits; the rows already there are copied in
primary-key batches, each its own short transaction, leaving alone a row a trigger copied
first. One atomic `RENAME TABLE` swaps the two; the old table (and its triggers) is dropped and
each foreign key takes its name back (dropped and added in one statement, with its rows not
checked again: the copy checked them).

A row the change refuses (a write that breaks the CHECK) is refused to its writer while the
copy runs, as the server will once the change is in place; one the copy finds stops it, with
the shadow and its triggers removed. A run killed half-way continues: with the triggers in
place the copy is taken up again; without them (killed before they existed) the shadow is made
again; after the swap only the old table's drop and the names are left, which a run that finds
the change in place finishes (`finish_after_swap`).

Rows are copied and forgotten by their primary key, of one column or several (compared column
by column, which MariaDB ranges on the key's index). Refused in one line: a table that a
foreign key refers to, another table's or its own (the key would follow the old table), one
with triggers of its own (they would not follow the new one), one without a primary key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from alembic import op
from sqlalchemy import Connection, inspect, text

from app.migrations.ops.backfill import BATCH_SIZE, progress_bar
from app.migrations.ops.names import MAX_NAME
from app.migrations.ops.online import (
    locked_briefly,
    mariadb_wait,
    outside_transaction,
    quote,
    retrying_lock_waits,
    short_lock_waits,
)
from app.migrations.ops.swap import short_metadata_waits

SHADOW_PREFIX = "app_shadow_"
# What a foreign key's name is followed by on the shadow.
_SCRATCH = "_shadow"


@dataclass(frozen=True)
class _Key:
    """A foreign key of the table, as the shadow copies it."""

    name: str
    columns: list[str]
    referred_table: str
    referred_columns: list[str]
    options: dict[str, Any]

    @property
    def scratch(self) -> str:
        if len(self.name) + len(_SCRATCH) <= MAX_NAME:
            return f"{self.name}{_SCRATCH}"
        digest = hashlib.sha1(self.name.encode(), usedforsecurity=False).hexdigest()[:8]
        return f"{self.name[: MAX_NAME - len(_SCRATCH) - 9]}_{digest}{_SCRATCH}"

    def clause(self, name: str) -> str:
        sql = (
            f"CONSTRAINT {quote(name)} FOREIGN KEY ({_listed(self.columns)}) "
            f"REFERENCES {quote(self.referred_table)} ({_listed(self.referred_columns)})"
        )
        for option in ("ondelete", "onupdate"):
            action = self.options.get(option)
            if action:
                sql += f" ON {option[2:].upper()} {action}"
        return sql


def rebuild_with(
    table: str,
    change: str,
    *,
    refused: Callable[[BaseException], BaseException | None],
    batch_size: int = BATCH_SIZE,
) -> None:
    """Make `change` (the clauses of an ALTER TABLE) to `table` through a shadow copy (see the
    module). `refused(error)` is what to raise instead when the copy fails on a row the change
    refuses (None: raise the error itself)."""
    shadow, retired = _names(table)
    with outside_transaction():
        connection = op.get_bind()
        inspector = inspect(connection)
        tables = set(inspector.get_table_names())
        if retired not in tables:
            if shadow not in tables or not _triggers(connection, table, shadow):
                _refuse_unless_movable(connection, table)
                _drop(connection, table, shadow)
                _make_shadow(connection, table, shadow, change)
            try:
                _copy_rows(connection, table, shadow, batch_size)
            except Exception as exc:
                better = refused(exc)
                _drop(connection, table, shadow)
                if better is None:
                    raise
                raise better from None
            statement = (
                f"RENAME TABLE {quote(table)} {mariadb_wait()} TO {quote(retired)}, "
                f"{quote(shadow)} TO {quote(table)}"
            )
            locked_briefly(partial(connection.exec_driver_sql, statement))
        _after_swap(connection, table)


def finish_after_swap(table: str) -> None:
    """What a rebuild of `table` stopped after its swap left to do (the change is in place):
    the old table's drop and the foreign keys' names; nothing where no such run stopped."""
    shadow, retired = _names(table)
    with outside_transaction():
        connection = op.get_bind()
        tables = set(inspect(connection).get_table_names())
        if retired in tables or _names_kept(shadow) in tables:
            _after_swap(connection, table)


def _after_swap(connection: Connection, table: str) -> None:
    shadow, retired = _names(table)
    locked_briefly(partial(connection.exec_driver_sql, f"DROP TABLE IF EXISTS {quote(retired)}"))
    _names_back(connection, table, _names_kept(shadow))


def _names(table: str) -> tuple[str, str]:
    """The shadow's name and the name the old table is swapped out to."""
    digest = hashlib.sha1(table.encode(), usedforsecurity=False).hexdigest()[:16]
    return f"{SHADOW_PREFIX}{digest}", f"{SHADOW_PREFIX}{digest}_old"


def _names_kept(shadow: str) -> str:
    """The table that keeps the original of each foreign key's scratch name."""
    return f"{shadow}_names"


def _primary_key(connection: Connection, table: str) -> list[str]:
    return list(inspect(connection).get_pk_constraint(table)["constrained_columns"])


def _listed(columns: Sequence[str]) -> str:
    return ", ".join(quote(column) for column in columns)


def _refuse_unless_movable(connection: Connection, table: str) -> None:
    inspector = inspect(connection)

    def refuse(why: str) -> None:
        raise ValueError(
            f"{table}: {why}, so the change cannot be made on a copy of it; "
            "make it with op (the table's writes wait for the server's copy)"
        )

    if not inspector.get_pk_constraint(table)["constrained_columns"]:
        refuse("it has no primary key")
    for other in inspector.get_table_names():
        for key in inspector.get_foreign_keys(other):
            if key["referred_table"] != table:
                continue
            # Its own key too: on the copy it would refer to the old table after the swap.
            refuse(
                f"{other}.{key['name']} refers to it"
                if other != table
                else f"its own foreign key {key['name']} refers to it"
            )
    if _triggers(connection, table, None):
        refuse("it has triggers of its own")


def _triggers(connection: Connection, table: str, shadow: str | None) -> list[str]:
    """The triggers on `table`: those that copy writes to `shadow`, or (None) all of them."""
    names = connection.scalars(
        text(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
            "WHERE TRIGGER_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = :table"
        ),
        {"table": table},
    )
    return [str(name) for name in names if shadow is None or str(name).startswith(shadow)]


def _keys(connection: Connection, table: str) -> list[_Key]:
    return [
        _Key(
            str(key["name"]),
            list(key["constrained_columns"]),
            str(key["referred_table"]),
            list(key["referred_columns"]),
            dict(key.get("options", {})),
        )
        for key in inspect(connection).get_foreign_keys(table)
    ]


def _drop(connection: Connection, table: str, shadow: str) -> None:
    """The shadow and its triggers, if a run made them."""
    with short_metadata_waits(connection):
        for trigger in _triggers(connection, table, shadow):
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {quote(trigger)}")
    connection.exec_driver_sql(
        f"DROP TABLE IF EXISTS {quote(shadow)}, {quote(_names_kept(shadow))}"
    )


def _make_shadow(connection: Connection, table: str, shadow: str, change: str) -> None:
    run = connection.exec_driver_sql
    run(f"CREATE TABLE {quote(shadow)} LIKE {quote(table)}")
    run(f"ALTER TABLE {quote(shadow)} {change}")
    keys = _keys(connection, table)
    names = quote(_names_kept(shadow))
    run(f"CREATE TABLE {names} (scratch VARCHAR(64) PRIMARY KEY, original VARCHAR(64) NOT NULL)")
    if keys:
        pairs = ", ".join(["(%s, %s)"] * len(keys))
        run(
            f"INSERT INTO {names} (scratch, original) VALUES {pairs}",  # noqa: S608
            tuple(name for key in keys for name in (key.scratch, key.name)),
        )
        added = ", ".join(f"ADD {key.clause(key.scratch)}" for key in keys)
        run(f"ALTER TABLE {quote(shadow)} {added}")
    columns = [str(c["name"]) for c in inspect(connection).get_columns(table)]
    listed = _listed(columns)
    new_row = ", ".join(f"NEW.{quote(column)}" for column in columns)
    same_key = " AND ".join(
        f"{quote(column)} <=> OLD.{quote(column)}" for column in _primary_key(connection, table)
    )
    # Our quoted names and the trigger's NEW/OLD row: no value is written into the text.
    copy_new = f"REPLACE INTO {quote(shadow)} ({listed}) VALUES ({new_row})"  # noqa: S608
    forget_old = f"DELETE FROM {quote(shadow)} WHERE {same_key}"  # noqa: S608
    bodies = {
        f"{shadow}_ins": ("INSERT", f"{copy_new};"),
        f"{shadow}_upd": ("UPDATE", f"{forget_old}; {copy_new};"),
        f"{shadow}_del": ("DELETE", f"{forget_old};"),
    }
    with short_metadata_waits(connection):
        for name, (event, body) in bodies.items():
            statement = (
                f"CREATE TRIGGER {quote(name)} AFTER {event} ON {quote(table)} "
                f"FOR EACH ROW BEGIN {body} END"
            )
            retrying_lock_waits(partial(run, statement))


def _copy_rows(connection: Connection, table: str, shadow: str, batch_size: int) -> None:
    """The rows of `table` into `shadow`, in primary-key batches; a row already there (a
    trigger copied it, with its newest values) is left as it is."""
    columns = _listed([str(c["name"]) for c in inspect(connection).get_columns(table)])
    key = [quote(column) for column in _primary_key(connection, table)]
    source, target = quote(table), quote(shadow)
    total = int(connection.scalar(text(f"SELECT count(*) FROM {source}")) or 0)  # noqa: S608
    with short_lock_waits(connection), progress_bar(f"copy {table}", total) as advance:
        for low, high in _batches(connection, source, key, batch_size):
            bounds, values = [], []
            if low is not None:
                bounds.append(_after(key))
                values += _repeated(low)
            if high is not None:
                bounds.append(f"NOT {_after(key)}")
                values += _repeated(high)
            where = f"WHERE {' AND '.join(bounds)} " if bounds else ""
            statement = (
                f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {source} "  # noqa: S608
                f"{where}ORDER BY {', '.join(key)} "
                f"ON DUPLICATE KEY UPDATE {key[0]} = {target}.{key[0]}"
            )
            retrying_lock_waits(partial(connection.exec_driver_sql, statement, tuple(values)))
            advance(batch_size)


def _after(key: Sequence[str]) -> str:
    """Rows whose `key` comes after a bound, column by column: for (a, b),
    `(a > %s OR (a = %s AND b > %s))`, its parameters the bound's values as `_repeated`
    gives them. MariaDB ranges each alternative on the key's index (a row value only on its
    first column)."""
    alternatives = []
    for position, column in enumerate(key):
        equal = [f"{earlier} = %s" for earlier in key[:position]]
        alternatives.append("(" + " AND ".join([*equal, f"{column} > %s"]) + ")")
    return "(" + " OR ".join(alternatives) + ")"


def _repeated(bound: tuple[Any, ...]) -> list[Any]:
    """The parameters of `_after` for a key's values `bound`."""
    return [value for position in range(len(bound)) for value in bound[: position + 1]]


def _batches(
    connection: Connection, source: str, key: Sequence[str], batch_size: int
) -> Iterator[tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]]:
    """(after, up to) primary-key bounds of each batch, as the driver gives the values (None:
    no bound); the server compares them, in its own order of the key's types."""
    last: tuple[Any, ...] | None = None
    order = ", ".join(key)
    while True:
        start = f"WHERE {_after(key)} " if last is not None else ""
        parameters = (*_repeated(last), batch_size - 1) if last is not None else (batch_size - 1,)
        row = connection.exec_driver_sql(
            f"SELECT {order} FROM {source} {start}ORDER BY {order} LIMIT 1 OFFSET %s",  # noqa: S608
            parameters,
        ).first()
        found = tuple(row) if row is not None else None
        yield last, found
        if found is None:
            return
        last = found


def _names_back(connection: Connection, table: str, names: str) -> None:
    """Each foreign key the shadow got under a scratch name takes its own back (dropped and
    added in one statement: the table is never without it); then the table that kept the
    names goes."""
    inspector = inspect(connection)
    kept: dict[str, str] = {}
    if inspector.has_table(names):
        listed = f"SELECT scratch, original FROM {quote(names)}"  # noqa: S608
        rows = connection.exec_driver_sql(listed)
        kept = {str(scratch): str(original) for scratch, original in rows}
    for key in _keys(connection, table):
        original = kept.get(key.name)
        if original is None:
            continue
        renamed = _Key(original, key.columns, key.referred_table, key.referred_columns, key.options)
        statement = (
            f"ALTER TABLE {quote(table)} {mariadb_wait()} DROP FOREIGN KEY {quote(key.name)}, "
            f"ADD {renamed.clause(original)}, ALGORITHM=INPLACE, LOCK=NONE"
        )

        def rename(statement: str = statement) -> None:
            connection.exec_driver_sql("SET SESSION foreign_key_checks = 0")
            try:
                connection.exec_driver_sql(statement)
            finally:
                connection.exec_driver_sql("SET SESSION foreign_key_checks = 1")

        locked_briefly(rename)
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(names)}")
