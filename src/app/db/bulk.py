"""Bulk inserts at the speed of the database's own bulk load.

Values are already checked (the repositories) and in their columns' Python types. PostgreSQL
gets COPY text, written here a column at a time and streamed, every batch of a call in one
COPY; MariaDB one multi-row INSERT a batch, its literals written a column at a time; SQLite one
executemany a batch, its values through each column type's own bind processor. Storage formats
stay SQLAlchemy's on every path (UUIDs as 32 hex digits outside PostgreSQL, timestamps UTC).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache, partial
from itertools import chain, repeat
from operator import is_
from typing import Any

import psycopg
from sqlalchemy import (
    Boolean,
    Connection,
    Dialect,
    Insert,
    Integer,
    Select,
    String,
    Table,
    Uuid,
    select,
)
from sqlalchemy import column as lightweight_column
from sqlalchemy import exc as sa_exc
from sqlalchemy import table as lightweight_table
from sqlalchemy.util import await_only

from app.db.streaming import is_streaming
from app.db.types import UTCDateTime

Processor = Callable[[Any], Any]


def bulk_insert(
    connection: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert `rows` (tuples in the order of `columns`) into `table`; database errors come out
    as SQLAlchemy's DBAPIError."""
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        formatters = _copy_formatters(table, tuple(columns))
        if formatters is not None:
            copy_text(connection, table, columns, [_copy_lines(formatters, rows)])
            return
    dialect = connection.dialect
    if dialect.name == "mysql":
        by_column = [list(values) for values in zip(*rows, strict=True)]
        bulk_insert_columns(connection, table, dict(zip(columns, by_column, strict=True)))
        return
    _executemany(
        connection, table, columns, _apply(_processors(table, tuple(columns), dialect), rows)
    )


def _executemany(
    connection: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """One INSERT for all `rows` (values in storage form), through the driver's executemany."""
    preparer = connection.dialect.identifier_preparer
    marks = ", ".join([_placeholder(connection.dialect)] * len(columns))
    quoted = ", ".join(preparer.quote(name) for name in columns)
    connection.exec_driver_sql(
        f"INSERT INTO {preparer.format_table(table)} ({quoted}) VALUES ({marks})",  # noqa: S608 - names come from the table
        rows,
    )


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


def bulk_insert_columns(
    connection: Connection,
    table: Table,
    columns: dict[str, list[Any]],
    stored_as_is: frozenset[str] = frozenset(),
) -> None:
    """Insert rows given column by column (equally long lists, by column name).

    Columns named in `stored_as_is` already hold the storage form (ids as 32 hex digits)."""
    names = tuple(columns)
    dialect = connection.dialect
    formatters = _copy_formatters(table, names) if dialect.name == "postgresql" else None
    if formatters is not None:
        copy_text(
            connection, table, names, [_columns_text(formatters, names, columns, stored_as_is)]
        )
        return
    processors = dict(_processors(table, names, dialect))
    literals = _mariadb_literals(table, names) if dialect.name == "mysql" else None
    prepared = []
    for position, name in enumerate(names):
        processor = processors.get(position)
        values = columns[name]
        if literals is not None and literals[position] is _mariadb_boolean:
            processor = None  # written as 1/0 from the Python value
        if processor is not None and name not in stored_as_is:
            values = _converted(processor, values)
        prepared.append(values)
    if literals is not None:
        _mariadb_insert(connection, table, names, literals, prepared)
        return
    rows = list(zip(*prepared, strict=True))
    if dialect.name == "postgresql":
        _copy(connection, table, names, rows)
    else:
        _executemany(connection, table, names, rows)


@lru_cache(maxsize=64)
def _processors(
    table: Table, columns: tuple[str, ...], dialect: Dialect
) -> tuple[tuple[int, Processor], ...]:
    """(position, processor) for the columns whose type converts values for this dialect."""
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


# -- PostgreSQL COPY text, written here rather than value by value by the driver -------------

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
    # Aware (the repositories refuse naive values before this): the offset travels with it.
    return value.isoformat()


# Column types the text writers below know, in the order they are tried (Boolean before
# Integer: a Boolean may be stored as one).
_KINDS: tuple[type[Any], ...] = (Boolean, Integer, String, Uuid, UTCDateTime)


def _writers_by_kind(
    table: Table, columns: tuple[str, ...], writers: tuple[Processor, ...]
) -> tuple[Processor, ...] | None:
    """For each column, the writer (one per entry of `_KINDS`) of its type; None when a column's
    type is none of them."""
    chosen: list[Processor] = []
    for name in columns:
        column_type = table.c[name].type
        kind = next((i for i, kind in enumerate(_KINDS) if isinstance(column_type, kind)), None)
        if kind is None:
            return None
        chosen.append(writers[kind])
    return tuple(chosen)


@lru_cache(maxsize=64)
def _copy_formatters(table: Table, columns: tuple[str, ...]) -> tuple[Processor, ...] | None:
    """A COPY text formatter per column, or None when a column's type has none here."""
    return _writers_by_kind(
        table, columns, (_copy_boolean, str, copy_escape, _copy_uuid, _copy_timestamp)
    )


def _copy_lines(formatters: tuple[Processor, ...], rows: Sequence[Sequence[Any]]) -> str:
    """`rows` as COPY text. A batch's rows share their timestamps (one object in every row):
    each distinct object is formatted once."""
    memo: dict[int, str] = {}
    lines = []
    for row in rows:
        fields = []
        for value, formatter in zip(row, formatters, strict=True):
            if value is None:
                fields.append(NULL)
            elif formatter is _copy_timestamp:
                key = id(value)
                text = memo.get(key)
                if text is None:
                    text = memo[key] = formatter(value)
                fields.append(text)
            else:
                fields.append(formatter(value))
        lines.append("\t".join(fields))
    lines.append("")
    return "\n".join(lines)


ColumnsText = Callable[[dict[str, list[Any]], frozenset[str]], str]


def columns_copy_text(table: Table, names: tuple[str, ...]) -> ColumnsText:
    """A writer of COPY text for rows of `table` given column by column, in the order of
    `names` (the second argument names the columns already in storage form)."""
    formatters = _copy_formatters(table, names)
    if formatters is None:
        raise ValueError(f"{table.name} has a column COPY text is not written for here")
    return partial(_columns_text, formatters, names)


class Staging:
    """PostgreSQL: this session's staging table for `table`, a temporary table emptied when it
    is opened and at every commit, loaded by COPY and read back by one SELECT (`rows`)."""

    def __init__(self, connection: Connection, table: Table, names: tuple[str, ...]) -> None:
        self._connection = connection
        self.names = names
        name = f"app_staged_{table.name}"
        preparer = connection.dialect.identifier_preparer
        quoted = preparer.quote(name)
        connection.exec_driver_sql(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {quoted} "
            f"(LIKE {preparer.format_table(table)}) ON COMMIT DELETE ROWS"
        )
        connection.exec_driver_sql(f"TRUNCATE {quoted}")
        self._stage = lightweight_table(name, *(lightweight_column(column) for column in names))

    def load(self, chunks: Iterable[str]) -> None:
        """Add rows written as COPY text of the columns `names`, in one COPY."""
        copy_text(self._connection, self._stage, self.names, chunks)  # type: ignore[arg-type]

    def rows(self) -> Select[Any]:
        """A SELECT of every row loaded."""
        return select(*self._stage.c)


def execute_for_columns(
    connection: Connection,
    table: Table,
    statement: Insert,
    columns: dict[str, list[Any]],
    stored_as_is: frozenset[str] = frozenset(),
) -> bool:
    """Run an INSERT-like `statement` of `table` once per row given column by column, compiled
    once and handed to the driver's executemany; False (nothing run) when its parameters are
    not plainly the columns."""
    names = tuple(columns)
    dialect = connection.dialect
    compiled = statement.compile(dialect=dialect, column_keys=list(names))
    if set(compiled.binds) != set(names):
        return False
    processors = dict(_processors(table, names, dialect))
    prepared = {
        name: _converted(processors[position], columns[name])
        if position in processors and name not in stored_as_is
        else columns[name]
        for position, name in enumerate(names)
    }
    if compiled.positiontup is not None:
        order = [prepared[key] for key in compiled.positiontup]
        parameters: list[Any] = list(zip(*order, strict=True))
    else:
        parameters = [
            dict(zip(names, row, strict=True)) for row in zip(*prepared.values(), strict=True)
        ]
    connection.exec_driver_sql(str(compiled), parameters)
    return True


# -- MariaDB: one multi-row INSERT a batch, its values written as literals here ---------------
#
# What PyMySQL's executemany does too (it interpolates literals client-side), but a column at a
# time. The escapes are those of MariaDB string literals under our sql_mode, which never has
# NO_BACKSLASH_ESCAPES (app.db.session); every connection speaks utf8mb4.

_MARIADB_ESCAPES = str.maketrans(
    {"\0": "\\0", "\n": "\\n", "\r": "\\r", "\x1a": "\\Z", "'": "\\'", '"': '\\"', "\\": "\\\\"}
)


def _mariadb_text(value: str) -> str:
    return "'" + value.translate(_MARIADB_ESCAPES) + "'"


def _mariadb_uuid(value: uuid.UUID | str) -> str:
    # 32 hex digits, as SQLAlchemy stores a Uuid where there is no native type.
    return "'" + (value.hex if isinstance(value, uuid.UUID) else value) + "'"


def _mariadb_boolean(value: bool) -> str:
    return "1" if value else "0"


def _mariadb_timestamp(value: dt.datetime) -> str:
    return "'" + value.isoformat(" ") + "'"  # naive UTC by now (UTCDateTime's bind processor)


@lru_cache(maxsize=64)
def _mariadb_literals(table: Table, columns: tuple[str, ...]) -> tuple[Processor, ...] | None:
    """A literal writer per column (of the values in storage form), or None."""
    return _writers_by_kind(
        table, columns, (_mariadb_boolean, str, _mariadb_text, _mariadb_uuid, _mariadb_timestamp)
    )


def _mariadb_insert(
    connection: Connection,
    table: Table,
    names: tuple[str, ...],
    writers: tuple[Processor, ...],
    columns: list[list[Any]],
) -> None:
    written = []
    for writer, values in zip(writers, columns, strict=True):
        if writer is _mariadb_text and None not in values:
            written.append(list(map(writer, values)))
        elif writer is _mariadb_timestamp:
            texts = _converted(writer, values)
            written.append(["NULL" if text is None else text for text in texts])
        else:
            written.append(["NULL" if value is None else writer(value) for value in values])
    preparer = connection.dialect.identifier_preparer
    quoted = ", ".join(preparer.quote(name) for name in names)
    head = f"INSERT INTO {preparer.format_table(table)} ({quoted}) VALUES "  # noqa: S608 - names come from the table, values are escaped literals
    rows = list(map(",".join, zip(*written, strict=True)))
    for start, end in _statement_spans(rows):
        try:
            # No parameters: the driver interpolates nothing, so a % in the data is just a %.
            connection.exec_driver_sql(f"{head}({'),('.join(rows[start:end])})")
        except sa_exc.DBAPIError as exc:
            # The statement holds the rows' values: keep it out of the error and the logs.
            shown = f"{head}(...) -- {end - start} rows"
            driver_error: Exception = exc.orig if isinstance(exc.orig, Exception) else exc
            raise sa_exc.DBAPIError.instance(shown, None, driver_error, Exception) from driver_error


# A statement stays well under max_allowed_packet (16 MiB by default; 1 MiB at the least),
# as PyMySQL's own executemany keeps to about a megabyte.
_MAX_STATEMENT = 1_000_000


def _statement_spans(rows: list[str]) -> Iterator[tuple[int, int]]:
    """(start, end) of runs of `rows` whose text fits one statement; one row at the least."""
    start, size = 0, 0
    for index, row in enumerate(rows):
        if size and size + len(row) > _MAX_STATEMENT:
            yield start, index
            start, size = index, 0
        size += len(row) + 3
    yield start, len(rows)


def _converted(processor: Processor, values: list[Any]) -> list[Any]:
    """`values` through `processor`; one object repeated down the column (a batch's timestamp)
    is converted once."""
    if any(map(is_, values, repeat(None))):  # `None in values` would call each __eq__
        return [None if value is None else processor(value) for value in values]
    if len(set(map(id, values))) == 1:
        return [processor(values[0])] * len(values)
    return list(map(processor, values))


def _columns_text(
    formatters: tuple[Processor, ...],
    names: tuple[str, ...],
    columns: dict[str, list[Any]],
    stored_as_is: frozenset[str],
) -> str:
    """Rows given column by column, as COPY text: formatted a column at a time, joined once."""
    formatted = [
        columns[name] if name in stored_as_is else _copy_column(formatter, columns[name])
        for name, formatter in zip(names, formatters, strict=True)
    ]
    lines = list(map("\t".join, zip(*formatted, strict=True)))
    lines.append("")
    return "\n".join(lines)


def _copy_column(formatter: Processor, values: list[Any]) -> list[str]:
    if formatter is copy_escape and None not in values:
        return list(map(str.translate, values, repeat(_COPY_ESCAPES)))
    if formatter is _copy_timestamp:
        return [
            NULL if v is None else text
            for v, text in zip(values, _converted(formatter, values), strict=True)
        ]
    return [NULL if value is None else formatter(value) for value in values]


def _placeholder(dialect: Dialect) -> str:
    return "?" if dialect.paramstyle == "qmark" else "%s"


def copy_text(
    connection: Connection, table: Table, columns: Sequence[str], chunks: Iterable[str]
) -> None:
    """Load rows written as PostgreSQL COPY text (tab-separated, one row a line). Chunks are
    sent as they come, so the server stores one while the caller makes the next; one COPY for
    all of them, so a failure anywhere stores none."""
    statement = _copy_statement(connection, table, columns)
    driver_connection: Any = connection.connection.driver_connection
    with _wrapping_driver_errors(statement):
        if connection.dialect.is_async:
            await_only(_copy_text_async(driver_connection, statement, chunks))
            return
        with driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            for chunk in chunks:
                copy.write(chunk)


async def _copy_text_async(driver_connection: Any, statement: str, chunks: Iterable[str]) -> None:
    # Making a chunk does no I/O, so the blocking iterator may be pulled from here.
    async with driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
        for chunk in chunks:
            await copy.write(chunk)


@dataclass(frozen=True)
class Batch:
    """Rows for `insert_batches`: column by column (`columns`, every column of the table) or as
    tuples in the table's column order (`rows`)."""

    count: int
    columns: dict[str, list[Any]] | None = None
    rows: list[tuple[Any, ...]] | None = None
    stored_as_is: frozenset[str] = frozenset()


def insert_batches(connection: Connection, table: Table, batches: Iterable[Batch]) -> int:
    """Insert every batch; how many rows. PostgreSQL: one COPY streamed batch by batch."""
    names = tuple(table.columns.keys())
    pending = iter(batches)
    first = next(pending, None)
    if first is None:
        return 0
    every = chain([first], pending)
    formatters = _copy_formatters(table, names) if connection.dialect.name == "postgresql" else None
    inserted = 0
    if formatters is None:
        for batch in every:
            if batch.columns is not None:
                bulk_insert_columns(connection, table, batch.columns, batch.stored_as_is)
            else:
                bulk_insert(connection, table, names, batch.rows or [])
            inserted += batch.count
        return inserted

    def chunks() -> Iterator[str]:
        nonlocal inserted
        for batch in every:
            if batch.columns is not None:
                yield _columns_text(formatters, names, batch.columns, batch.stored_as_is)
            else:
                yield _copy_lines(formatters, batch.rows or [])
            inserted += batch.count

    if is_streaming(connection):
        # The rows may come from that stream: each batch is taken before its own COPY starts.
        for chunk in chunks():
            copy_text(connection, table, names, [chunk])
    else:
        copy_text(connection, table, names, chunks())
    return inserted


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
