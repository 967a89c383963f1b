"""Bulk inserts at the speed of the driver.

Rows are tuples in column order. Each value goes through its column type's own bind processor
(so storage formats stay SQLAlchemy's, and `UTCDateTime` still refuses naive datetimes); then
PostgreSQL gets one COPY and the others one DBAPI executemany per call, without SQLAlchemy's
per-row parameter handling.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from sqlalchemy import Connection, Dialect, Table
from sqlalchemy import exc as sa_exc
from sqlalchemy.util import await_only

Processor = Callable[[Any], Any]


def bulk_insert(
    connection: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert `rows` into `table`; database errors come out as SQLAlchemy's DBAPIError."""
    if not rows:
        return
    dialect = connection.dialect
    processed = _apply(_processors(table, tuple(columns), dialect), rows)
    if dialect.name == "postgresql":
        _copy(connection, table, columns, processed)
    else:
        marks = ", ".join([_placeholder(dialect)] * len(columns))
        names = ", ".join(dialect.identifier_preparer.quote(name) for name in columns)
        connection.exec_driver_sql(
            f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({names}) "  # noqa: S608 - names come from the table
            f"VALUES ({marks})",
            processed,
        )


@lru_cache(maxsize=64)
def _processors(
    table: Table, columns: tuple[str, ...], dialect: Dialect
) -> tuple[tuple[int, Processor], ...]:
    """(position, processor) for the columns whose type converts values for this dialect.

    Columns of equal types share one processor object, which `_apply` relies on.
    """
    by_type: dict[str, Processor | None] = {}
    found = []
    for position, name in enumerate(columns):
        column_type = table.c[name].type
        key = f"{type(column_type).__qualname__}:{column_type!r}"
        if key not in by_type:
            by_type[key] = column_type.dialect_impl(dialect).bind_processor(dialect)
        processor = by_type[key]
        if processor is not None:
            found.append((position, processor))
    return tuple(found)


def _apply(
    processors: tuple[tuple[int, Processor], ...], rows: Sequence[Sequence[Any]]
) -> list[tuple[Any, ...]]:
    if not processors:
        return [tuple(row) for row in rows]
    # Bulk rows often repeat one object, down a column (a batch's timestamp) or across columns
    # of one type (created_at = updated_at): convert it once.
    last_in: list[Any] = [object()] * len(processors)
    last_out: list[Any] = [None] * len(processors)
    out = []
    for row in rows:
        values = list(row)
        previous_in: Any = object()
        previous_processor: Any = None
        previous_out: Any = None
        for slot, (position, processor) in enumerate(processors):
            value = values[position]
            if value is None:
                continue
            if value is last_in[slot]:
                converted = last_out[slot]
            elif value is previous_in and processor is previous_processor:
                converted = previous_out
            else:
                converted = processor(value)
            last_in[slot] = previous_in = value
            last_out[slot] = previous_out = converted
            previous_processor = processor
            values[position] = converted
        out.append(tuple(values))
    return out


def _placeholder(dialect: Dialect) -> str:
    return "?" if dialect.paramstyle == "qmark" else "%s"


def copy_text(
    connection: Connection, table: Table, columns: Sequence[str], chunks: Iterable[str]
) -> None:
    """Load rows written as PostgreSQL COPY text (tab-separated, one row a line), on a blocking
    connection. Chunks are sent as they come, so the server stores one while the caller makes
    the next."""
    statement = _copy_statement(connection, table, columns)
    with _wrapping_driver_errors(statement):
        driver_connection: Any = connection.connection.driver_connection
        with driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            for chunk in chunks:
                copy.write(chunk)


def _copy(
    connection: Connection, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    statement = _copy_statement(connection, table, columns)
    driver_connection: Any = connection.connection.driver_connection
    with _wrapping_driver_errors(statement):
        if connection.dialect.is_async:
            # Under an asyncio engine this runs in SQLAlchemy's greenlet: await psycopg's
            # async COPY from here, as SQLAlchemy awaits every other statement.
            await_only(_copy_rows_async(driver_connection, statement, rows))
            return
        with driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)


async def _copy_rows_async(
    driver_connection: Any, statement: str, rows: list[tuple[Any, ...]]
) -> None:
    async with driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            await copy.write_row(row)


def _copy_statement(connection: Connection, table: Table, columns: Sequence[str]) -> str:
    preparer = connection.dialect.identifier_preparer
    return (
        f"COPY {preparer.format_table(table)} "
        f"({', '.join(preparer.quote(name) for name in columns)}) FROM STDIN"
    )


@contextmanager
def _wrapping_driver_errors(statement: str) -> Iterator[None]:
    """Errors of the bare driver, wrapped as SQLAlchemy wraps them, so callers translate alike."""
    try:
        yield
    except psycopg.Error as exc:  # COPY is PostgreSQL's; both faces of psycopg raise these
        raise sa_exc.DBAPIError.instance(statement, None, exc, psycopg.Error) from exc
