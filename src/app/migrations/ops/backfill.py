"""Updates of every row of a large table, in primary-key batches that each commit on their own
(a key of several columns is ordered and compared as a row value).

One UPDATE of a million rows holds a million row locks until it commits and keeps the writers
waiting for it; batches of `batch_size` hold theirs for a few milliseconds. A batch that cannot
get its locks in time is tried again. Rows that already hold the wanted values are left alone,
so a backfill that was killed half-way, run again, writes only what is left.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from typing import Any

from alembic import op
from rich.console import Console
from rich.progress import Progress
from sqlalchemy import (
    ClauseElement,
    ColumnElement,
    Connection,
    and_,
    func,
    inspect,
    literal,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy import (
    column as lightweight_column,
)
from sqlalchemy import (
    table as lightweight_table,
)
from sqlalchemy.sql.expression import ColumnClause, TableClause

from app.migrations.ops.online import (
    offline,
    outside_transaction,
    retrying_lock_waits,
    short_lock_waits,
)

BATCH_SIZE = 10_000


def backfill(
    table: str,
    values: Mapping[str, Any],
    *,
    where: ColumnElement[bool] | None = None,
    batch_size: int = BATCH_SIZE,
) -> int:
    """Set `values` (Python values, or SQL expressions over the row's columns such as
    `sa.func.lower(sa.column("title"))`) on the rows of `table` matching `where`.

    Returns how many rows changed. A `str` is a value, never SQL: pass `sa.text(...)` for SQL.
    """
    if not values:
        raise ValueError(f"backfill of {table!r}: give at least one column to set")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"backfill of {table!r}: batch_size must be a positive integer")
    if offline():
        # No table to ask for its columns' types: each plain value is a literal of the type
        # its Python value has, which is how it is written into the SQL.
        values = {name: _typed(value) for name, value in values.items()}
        target = lightweight_table(table, *(lightweight_column(name) for name in values))
        condition = _needs_update(target, values, where)
        op.execute(update(target).where(condition).values(dict(values)))
        return 0
    with outside_transaction():
        connection = op.get_bind()
        target, key = _described(connection, table)
        unknown = sorted(set(values) - set(target.c.keys()))
        if unknown:
            raise ValueError(f"backfill of {table!r}: no column {', '.join(unknown)}")
        with short_lock_waits(connection):
            return _in_batches(connection, target, key, values, where, batch_size)


def _typed(value: Any) -> Any:
    return value if isinstance(value, ClauseElement) else literal(value)


def _described(connection: Connection, name: str) -> tuple[TableClause, list[ColumnClause[Any]]]:
    """The table's columns (with their types, so values bind right) and its primary key's."""
    inspector = inspect(connection)
    target = lightweight_table(
        name, *(lightweight_column(c["name"], c["type"]) for c in inspector.get_columns(name))
    )
    key = inspector.get_pk_constraint(name)["constrained_columns"]
    if not key:
        raise ValueError(f"backfill of {name!r}: needs a primary key")
    return target, [target.c[column] for column in key]


def _needs_update(
    target: Any, values: Mapping[str, Any], where: ColumnElement[bool] | None
) -> ColumnElement[bool]:
    differs = or_(*(target.c[name].is_distinct_from(value) for name, value in values.items()))
    return differs if where is None else and_(where, differs)


def _in_batches(
    connection: Connection,
    target: TableClause,
    key: list[ColumnClause[Any]],
    values: Mapping[str, Any],
    where: ColumnElement[bool] | None,
    batch_size: int,
) -> int:
    condition = _needs_update(target, values, where)
    total = connection.scalar(select(func.count()).select_from(target)) or 0
    changed = 0
    keyed: Any = key[0] if len(key) == 1 else tuple_(*key)

    def bound(row: Any) -> Any:
        return row[0] if len(key) == 1 else tuple_(*row)

    with progress_bar(f"backfill {target.name}", total) as advance:
        last: Any = None
        while True:
            start = keyed > bound(last) if last is not None else true()
            end = connection.execute(
                select(*key).where(start).order_by(*key).offset(batch_size - 1).limit(1)
            ).first()
            batch = and_(start, keyed <= bound(end)) if end is not None else start
            statement = update(target).where(batch, condition).values(dict(values))
            changed += retrying_lock_waits(partial(_commit, connection, statement))
            advance(batch_size)
            if end is None:
                return changed
            last = end


def _commit(connection: Connection, statement: ClauseElement) -> int:
    """Run one batch; in autocommit it commits on its own (inside SQLite's run it cannot)."""
    result = connection.execute(statement)  # type: ignore[call-overload]
    return int(result.rowcount)


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal's stderr, nothing elsewhere."""
    console = Console(file=sys.stderr)
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(description, total=total)
        yield lambda rows: progress.advance(task, rows)
