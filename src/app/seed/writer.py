"""Seed writes that skip rows already there: the database's own constraints decide (each
backend's `insert_ignoring_duplicates`), not a prior SELECT; counting is only for the summary
and for choosing the bulk path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table, func, select

from app.dialects import backend_of
from app.seed.data import Row

# Keys per IN list: well under SQLite's limit of 32,766 bound parameters per statement.
_LOOKUP_CHUNK = 10_000


def count_present(connection: Connection, table: Table, column: str, keys: Sequence[Any]) -> int:
    """How many rows of `table` have `column` among `keys` (an indexed lookup per key)."""
    present = 0
    for start in range(0, len(keys), _LOOKUP_CHUNK):
        chunk = keys[start : start + _LOOKUP_CHUNK]
        statement = select(func.count()).select_from(table).where(table.c[column].in_(chunk))
        present += int(connection.scalar(statement) or 0)
    return present


def present_keys(
    connection: Connection, table: Table, column: str, keys: Sequence[Any]
) -> set[Any]:
    """Which of `keys` some row of `table` has in `column`."""
    found: set[Any] = set()
    for start in range(0, len(keys), _LOOKUP_CHUNK):
        chunk = keys[start : start + _LOOKUP_CHUNK]
        found.update(connection.scalars(select(table.c[column]).where(table.c[column].in_(chunk))))
    return found


def insert_skipping_existing(
    connection: Connection, table: Table, columns: Sequence[str], rows: list[Row]
) -> None:
    """Insert rows, letting the database skip those whose key or unique values exist."""
    if not rows:
        return
    statement = backend_of(connection).insert_ignoring_duplicates(table)
    connection.execute(statement, [dict(zip(columns, row, strict=True)) for row in rows])
