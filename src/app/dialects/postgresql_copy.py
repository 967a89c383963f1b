"""PostgreSQL's bulk path: COPY text written here a column at a time (not value by value by
the driver), streamed through psycopg on either face, every batch of a call in one COPY, the
driver's errors translated as the engine translates those of SQLAlchemy's statements."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import repeat
from typing import Any, cast

import psycopg
from sqlalchemy import (
    Connection,
    DateTime,
    Table,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util import await_only

from app.db.error_events import scrub
from app.db.errors import translate
from app.db.telemetry import observation_of
from app.dialects import deferred_begin
from app.dialects.base import (
    Batch,
    Processor,
    python_type,
    storage_columns,
)
from app.dialects.streams import is_streaming

# -- COPY text, written here a column at a time rather than value by value by the driver ----------

NULL = "\\N"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_escape(value: str) -> str:
    """A string as a field of PostgreSQL's COPY text format."""
    return value.translate(_COPY_ESCAPES)


def _copy_boolean(value: bool) -> str:
    return "t" if value else "f"


def _copy_uuid(value: uuid.UUID) -> str:
    return value.hex


def _copy_timestamp(value: dt.datetime) -> str:
    # Aware (values are checked before this): the offset travels with it.
    return value.isoformat()


# By the Python type of a column's values (exactly: an enum's members, say, are not text here).
_TEXT_WRITERS: dict[type, Processor] = {
    bool: _copy_boolean,
    int: str,
    str: copy_escape,
    uuid.UUID: _copy_uuid,
}


def _aware_timestamp(table: Table, name: str) -> bool:
    column_type = table.c[name].type
    impl = column_type.impl if isinstance(column_type, TypeDecorator) else column_type
    return isinstance(impl, DateTime) and bool(impl.timezone)


def copy_writers(table: Table, names: tuple[str, ...]) -> tuple[Processor, ...] | None:
    """A COPY text writer per column, or None when a column's type has none here."""
    writers: list[Processor] = []
    for name in names:
        kind = python_type(table, name)
        if kind is dt.datetime and _aware_timestamp(table, name):
            writers.append(_copy_timestamp)
        elif kind is not None and kind in _TEXT_WRITERS:
            writers.append(_TEXT_WRITERS[kind])
        else:
            return None
    return tuple(writers)


def copy_text(writers: tuple[Processor, ...], batch: Batch) -> str:
    """A batch as COPY text: formatted a column at a time, joined once."""
    # Timestamps repeat (a batch's `now`, created_at beside updated_at, a seed's owner time):
    # each object is formatted once.
    formatted_times: dict[int, str] = {}
    formatted = [
        values if name in batch.stored_as_is else _copy_column(writer, values, formatted_times)
        for (name, values), writer in zip(batch.columns.items(), writers, strict=True)
    ]
    lines = list(map("\t".join, zip(*formatted, strict=True)))
    lines.append("")
    return "\n".join(lines)


def _copy_column(writer: Processor, values: list[Any], times: dict[int, str]) -> list[str]:
    if writer is copy_escape and None not in values:
        return list(map(str.translate, values, repeat(_COPY_ESCAPES)))
    if writer is _copy_timestamp:
        return [NULL if v is None else _formatted_time(v, times) for v in values]
    return [NULL if value is None else writer(value) for value in values]


def _formatted_time(value: dt.datetime, times: dict[int, str]) -> str:
    text = times.get(id(value))
    if text is None:
        text = times[id(value)] = value.isoformat()
    return text


Chunk = str | list[tuple[Any, ...]]


def copy_run(
    connection: Connection, table: Table, first: Batch, pending: Iterator[Batch]
) -> tuple[Batch | None, int]:
    """COPY `first` and the batches after it that have its columns; the first batch of other
    columns (for a COPY of its own), or None at the end; and how many rows were copied."""
    names = tuple(first.columns)
    writers = copy_writers(table, names)
    following: list[Batch] = []
    copied = [0]

    def chunks() -> Iterator[Chunk]:
        batch: Batch | None = first
        while batch is not None:
            yield _chunk(connection, table, writers, batch)
            copied[0] += batch.count
            batch = next(pending, None)
            if batch is not None and tuple(batch.columns) != names:
                following.append(batch)
                return

    if is_streaming(connection):
        for chunk in chunks():
            copy_from(connection, table, names, [chunk])
    else:
        copy_from(connection, table, names, chunks())
    return (following[0] if following else None), copied[0]


def _chunk(
    connection: Connection, table: Table, writers: tuple[Processor, ...] | None, batch: Batch
) -> Chunk:
    """A batch for COPY: as text where every column has a writer here, else as rows of stored
    values for psycopg to adapt."""
    if writers is not None:
        return copy_text(writers, batch)
    columns = storage_columns(connection, table, batch)
    return list(zip(*columns.values(), strict=True))


def copy_from(
    connection: Connection, table: Table | Any, names: Sequence[str], chunks: Iterable[Chunk]
) -> None:
    """Load rows into `table` by COPY: chunks of COPY text (tab-separated, one row a line), or
    lists of rows for psycopg to adapt. Chunks are sent as they come, so the server stores one
    while the caller makes the next; one COPY for all of them, so a failure anywhere stores
    none."""
    deferred_begin.begin_now(connection)
    driver_connection: Any = connection.connection.driver_connection
    observed = observation_of(connection).driver_statement(
        connection, _copy_statement(connection, table, names)
    )
    with observed as statement, _translated(connection, statement, table):
        if connection.engine.logger.isEnabledFor(logging.INFO):  # as SQLAlchemy logs its own
            connection.engine.logger.info("%s", statement)
        if connection.dialect.is_async:
            _copy_awaiting(driver_connection, statement, chunks)
            return
        with driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            for chunk in chunks:
                if isinstance(chunk, str):
                    copy.write(chunk)
                else:
                    for row in chunk:
                        copy.write_row(row)


def _copy_awaiting(driver_connection: Any, statement: str, chunks: Iterable[Chunk]) -> None:
    """COPY on psycopg's asyncio connection, from inside SQLAlchemy's greenlet: each step is
    awaited there, as SQLAlchemy awaits every statement, so the chunks may themselves await
    (rows pulled from an async iterable)."""
    cursor = driver_connection.cursor()
    opened = cursor.copy(statement)
    copy = await_only(opened.__aenter__())
    try:
        for chunk in chunks:
            if isinstance(chunk, str):
                await_only(copy.write(chunk))
            else:
                await_only(_write_rows(copy, chunk))
    except BaseException as exc:
        await_only(opened.__aexit__(type(exc), exc, exc.__traceback__))
        raise
    else:
        await_only(opened.__aexit__(None, None, None))
    finally:
        await_only(cursor.close())


async def _write_rows(copy: Any, rows: list[tuple[Any, ...]]) -> None:
    for row in rows:
        await copy.write_row(row)


def _copy_statement(connection: Connection, table: Any, names: Sequence[str]) -> str:
    preparer = connection.dialect.identifier_preparer
    return (
        f"COPY {preparer.format_table(table)} "
        f"({', '.join(preparer.quote(name) for name in names)}) FROM STDIN"
    )


@contextmanager
def _translated(connection: Connection, statement: str, table: Table | Any) -> Iterator[None]:
    """The bare driver's errors as the data layer's, as the engine translates those of the
    statements SQLAlchemy runs (`app.db.errors`)."""
    try:
        yield
    except psycopg.Error as exc:  # COPY is PostgreSQL's; both faces of psycopg raise these
        # A connection that broke mid-COPY was lost, not never made: said so, not "cannot
        # connect" (which an error without the server's code would otherwise be).
        lost = connection.dialect.is_disconnect(cast(Any, exc), None, None)
        wrapped = sa_exc.DBAPIError.instance(
            statement, None, exc, psycopg.Error, connection_invalidated=lost
        )
        translated = translate(
            wrapped, table=table if isinstance(table, Table) else None, connected=not lost
        )
        if translated is not wrapped and connection.engine.hide_parameters:
            scrub(exc)
        raise translated from exc
