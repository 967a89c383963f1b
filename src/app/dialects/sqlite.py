"""SQLite, the embedded default, through pysqlite (blocking) and aiosqlite (asyncio).

Every connection turns on foreign keys, case-sensitive LIKE, WAL and a busy timeout, and lets
SQLAlchemy rather than pysqlite begin transactions. A unit's transaction begins at its first
statement that is not a read: a transaction that held its first read's snapshot to its first
write could not write once another connection had committed, whatever rows each touched, while
a write that begins its transaction waits for the write lock and then sees the latest commit.
Until then each SELECT reads the latest commit, as at READ COMMITTED elsewhere.
Migrations run as one write transaction, with foreign keys off while batch mode copies tables
and checked before the run commits.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    Engine,
    ForeignKeyConstraint,
    Insert,
    Select,
    String,
    Table,
    bindparam,
    event,
    func,
    select,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import URL, ExceptionContext
from sqlalchemy.pool import PoolResetState, StaticPool
from sqlalchemy.sql.ddl import DDLElement
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import CompoundSelect
from sqlalchemy.types import TypeDecorator, TypeEngine
from sqlalchemy.util import await_only
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_random

from app.db.errors import ForeignKeyError, MigrationLockedError, RetryableError
from app.db.models import Base
from app.dialects import sqlite_one_trip
from app.dialects.base import (
    Backend,
    ConnectOptions,
    UpsertPlan,
    on_conflict_do_update,
)
from app.dialects.commit_markers import CommitReceipt
from app.dialects.sqlite_writers import end_turn, wait_for_turn
from app.dialects.streams import is_streaming, keep_streams

BUSY_TIMEOUT_MS = 5_000
# An execution option naming the statement that opens a transaction, for callers that need the
# write lock up front ("BEGIN IMMEDIATE"), as migrations do.
BEGIN_OPTION = "sqlite_begin"


class ForeignKeyCheckError(RuntimeError):
    """A migration left rows whose references point nowhere; nothing of the run was kept."""


class SQLite(Backend):
    """SQLite; see the module's docstring."""

    name = "sqlite"
    row_value_keyset = True
    most_listed_values = 500  # a longer IN list goes as one JSON parameter
    nulls_sort_largest = False
    file_database = True
    # The run's one write transaction holds the write lock against a second migrator, and lets
    # the foreign keys be checked before anything commits.
    one_transaction_per_run = True

    def connect_args(self, url: URL, options: ConnectOptions) -> dict[str, Any]:
        if url.get_driver_name() == "aiosqlite":
            # A statement is one trip to aiosqlite's thread, not four (`sqlite_one_trip`).
            return {"check_same_thread": False, "async_creator_fn": sqlite_one_trip.connect}
        return {"check_same_thread": False}

    def sign_commit(self, connection: Connection) -> CommitReceipt | None:
        """None: the database is a file in this process, so a COMMIT's answer cannot be lost
        on the way (the process that would wait for it is the one that stopped)."""
        return None

    def pool_options(self, url: URL) -> dict[str, Any]:
        # One shared connection in memory, or every checkout would see another empty database.
        shared = {"poolclass": StaticPool} if in_memory(url) else {}
        # The pool's reset is `configure`'s, which skips a ROLLBACK outside a transaction.
        return {**shared, "pool_reset_on_return": None}

    def configure(
        self, engine: Engine, url: URL, *, causal_reads: bool, connect: ConnectOptions
    ) -> None:
        """Foreign keys, WAL and a busy timeout; and let SQLAlchemy, not pysqlite, emit BEGIN.

        pysqlite's own transaction handling skips BEGIN before some statements and commits
        implicitly before DDL, which breaks SAVEPOINT and ROLLBACK. Turning it off and emitting
        BEGIN ourselves makes transactions behave as on the other backends.
        """
        file_database = not in_memory(url)
        # The queue of this file's writers in this process (one connection in memory: none).
        queue = os.path.realpath(str(url.database)) if file_database else None
        is_async = engine.dialect.is_async
        busy_seconds = BUSY_TIMEOUT_MS / 1000
        if engine.dialect.is_async:
            _AIOSQLITE_LOG.addFilter(_CALLS_BY_NAME)  # once: the same filter is added once

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor: Any = (
                dbapi_connection.cursor()
            )  # the driver's own: sqlite3's, or aiosqlite's adapted
            try:
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                # LIKE is case-sensitive on PostgreSQL and MariaDB (binary collation): here too.
                cursor.execute("PRAGMA case_sensitive_like=ON")
                if file_database:
                    _use_wal(cursor)
                    # WAL with NORMAL sync stays consistent after a crash; it only may lose the
                    # last commits on power loss, which FULL would keep at several times the cost.
                    cursor.execute("PRAGMA synchronous=NORMAL")
            finally:
                cursor.close()

        @event.listens_for(engine, "handle_error")
        def _name_the_foreign_key(context: ExceptionContext) -> None:
            # After the translation (app.db.errors), which SQLite's message leaves unnamed.
            # Set only when an earlier handler replaced the exception.
            refused = getattr(context, "chained_exception", None)
            if isinstance(refused, ForeignKeyError) and refused.constraint is None:
                found = refused_foreign_key(context)
                if found is not None:
                    refused.constraint = str(found.name)
                    refused.fields = tuple(column.key for column in found.columns)

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            options = connection.get_execution_options()
            begin = options.get(BEGIN_OPTION)
            if begin is not None:  # IMMEDIATE waits for the write lock: its errors are translated
                connection.exec_driver_sql(begin)
            elif options.get("isolation_level") == "SERIALIZABLE":
                # A unit that asks for one snapshot across its reads begins at once.
                _send(connection, "BEGIN")
            # Otherwise the transaction begins with the unit's first write (`_write_begins`).

        @event.listens_for(engine, "before_cursor_execute")
        def _write_begins(
            connection: Connection, _cursor: Any, statement: str, _p: Any, context: Any, _m: bool
        ) -> None:
            if _only_reads(statement, context):
                return
            # A stream's SELECT on this connection would go on to see rows written after it
            # began (and might never end); PostgreSQL's stream keeps to its start, and so does
            # this one: its rest is read before the write.
            if is_streaming(connection):
                keep_streams(connection)
            if (
                connection.in_transaction()
                and not _in_transaction(connection)
                and connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT"
                and not _BEGINS.match(statement)
            ):
                # The unit's first write: its transaction begins here, in this process's turn
                # for the file. A deferred BEGIN takes no lock: the write itself takes SQLite's,
                # which BEGIN IMMEDIATE would hold one trip to aiosqlite's thread longer. A
                # savepoint takes it at once, for the reads after it share its snapshot.
                if queue is not None:
                    wait_for_turn(connection.info, queue, is_async=is_async, timeout=busy_seconds)
                savepoint = _SAVEPOINT.match(statement) is not None
                _send(connection, "BEGIN IMMEDIATE" if savepoint else "BEGIN")

        @event.listens_for(engine, "commit")
        @event.listens_for(engine, "rollback")
        def _turn_ends(connection: Connection) -> None:
            # An invalidated connection's info is out of reach; the pool's event ends its turn.
            if not connection.invalidated:
                end_turn(connection.info)

        @event.listens_for(engine, "close")
        @event.listens_for(engine, "invalidate")
        @event.listens_for(engine, "detach")
        def _turn_ends_with_the_connection(_dbapi: Any, record: Any, *_rest: Any) -> None:
            if record is not None:
                end_turn(record.info)

        @event.listens_for(engine, "reset")
        def _roll_back_if_open(dbapi: Any, record: Any, state: PoolResetState) -> None:
            # In place of the pool's own reset (`pool_options`): a unit has most often ended
            # its transaction already, and a ROLLBACK outside one, which does nothing, would
            # still cost a trip to aiosqlite's thread.
            if record is None:  # a detached connection, closed next: rolled back as the pool would
                if state.asyncio_safe:
                    dbapi.rollback()
                return
            if state.asyncio_safe and record.driver_connection.in_transaction:
                record.dbapi_connection.rollback()
            end_turn(record.info)

    def upsert(self, table: Table, plan: UpsertPlan) -> Insert:
        return on_conflict_do_update(sqlite.insert(table), plan)

    def insert_ignoring_duplicates(self, table: Table) -> Insert:
        return sqlite.insert(table).on_conflict_do_nothing()

    def text_match(self, column: Any, op: str, needle: str) -> ColumnElement[bool]:
        # SQLite refuses a LIKE pattern over 50,000 bytes, and escaping may double a needle's
        # bytes: a longer needle is found by instr(), which has no such limit (and, like LIKE
        # here, compares case-sensitively; lower() on both sides for the `i` forms, as
        # SQLAlchemy's ILIKE does).
        if len(needle.encode()) <= _LONGEST_LIKE_NEEDLE:
            return super().text_match(column, op, needle)
        insensitive = op.startswith("i")
        haystack = func.lower(column) if insensitive else column
        wanted = func.lower(bindparam(None, needle)) if insensitive else bindparam(None, needle)
        position = func.instr(haystack, wanted)
        condition: ColumnElement[bool] = (
            position == 1 if op.endswith("startswith") else position > 0
        )
        return condition

    def in_values(self, column: Any, values: list[Any]) -> ColumnElement[bool]:
        # SQLite takes at most 32,766 parameters a statement: a long list goes as one JSON
        # array, its values in their stored form, read back by json_each.
        if self.lists_values(len(values)):
            return super().in_values(column, values)
        listed = func.json_each(bindparam(None, values, type_=_StoredJSON(column.type)))
        condition: ColumnElement[bool] = column.in_(select(listed.table_valued("value").c.value))
        return condition

    @contextmanager
    def migration_lock(self, connection: Connection, *, wait_seconds: float) -> Iterator[None]:
        """SQLite's own write lock, taken up front with BEGIN IMMEDIATE and waited for under
        `busy_timeout`."""
        dbapi_connection = connection.connection.dbapi_connection
        assert dbapi_connection is not None
        dbapi_connection.execute(f"PRAGMA busy_timeout = {int(wait_seconds * 1000)}")
        connection.execution_options(**{BEGIN_OPTION: "BEGIN IMMEDIATE"})
        try:
            yield
        except RetryableError as exc:
            raise MigrationLockedError.after(wait_seconds) from exc
        finally:
            connection.execution_options(**{BEGIN_OPTION: "BEGIN"})
            dbapi_connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    @contextmanager
    def migration_session(
        self, connection: Connection, *, lock_timeout: float, statement_timeout: float
    ) -> Iterator[None]:
        """Foreign keys off while batch mode copies tables: dropping the old copy of `users`
        with them on would cascade-delete every item. The pragma has no effect inside a
        transaction, so it is set before the first BEGIN; the keys are checked inside the run's
        transaction, before it commits (`check_migrations`)."""
        if connection.in_transaction():
            yield
            return
        dbapi_connection = connection.connection.dbapi_connection
        assert dbapi_connection is not None
        dbapi_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            yield
        except BaseException:
            if connection.in_transaction():
                connection.rollback()
            raise
        else:
            if connection.in_transaction():
                connection.commit()
        finally:
            dbapi_connection.execute("PRAGMA foreign_keys=ON")

    def check_migrations(self, connection: Connection) -> None:
        violations = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if violations:
            tables = sorted({str(row[0]) for row in violations})
            raise ForeignKeyCheckError(
                f"the migrations left {len(violations)} rows in {', '.join(tables)} whose "
                "foreign keys point to no row; nothing was applied"
            )


SQLITE = SQLite()
# The longest needle (UTF-8 bytes) a LIKE pattern carries: its escaped form, between two `%`,
# stays within SQLite's 50,000 bytes.
_LONGEST_LIKE_NEEDLE = 24_000


class _StoredJSON(TypeDecorator[list[Any]]):
    """A list of values of `item`, sent as one JSON array of their stored forms."""

    impl = String
    cache_ok = True

    def __init__(self, item: TypeEngine[Any]) -> None:
        super().__init__()
        self.item = item

    def process_bind_param(self, value: list[Any] | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        processor = self.item.dialect_impl(dialect).bind_processor(dialect)
        stored = [v if processor is None or v is None else processor(v) for v in value]
        return json.dumps(stored, ensure_ascii=False)


_PROBE = "app_foreign_key_probe"


def refused_foreign_key(context: ExceptionContext) -> ForeignKeyConstraint | None:
    """The foreign key that refused the failed statement, which SQLite does not name.

    The statement runs again, as it was sent, with the checks deferred, in a savepoint that is
    rolled back: `PRAGMA foreign_key_check` then names the key each stray row breaks. Only on
    this error path, and only over the tables concerned: the written one, and for a DELETE
    those that refer to it.
    """
    table = _written_table(context)
    connection = context.connection
    if table is None or context.statement is None or connection is None:
        return None
    compiled = getattr(context.execution_context, "compiled", None)
    deleting = bool(getattr(getattr(compiled, "statement", None), "is_delete", False))
    if deleting or context.statement.lstrip()[:6].upper() == "DELETE":
        checked = _referring_to(table)
    else:
        checked = [table]
    many = bool(getattr(context.execution_context, "executemany", False))
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None
    cursor: Any = dbapi_connection.cursor()  # the driver's: sqlite3's, or aiosqlite's adapted
    try:
        cursor.execute(f"SAVEPOINT {_PROBE}")
        try:
            cursor.execute("PRAGMA defer_foreign_keys = ON")
            if many:
                cursor.executemany(context.statement, context.parameters)
            else:
                cursor.execute(context.statement, context.parameters)
            for candidate in checked:
                quoted = context.dialect.identifier_preparer.quote(candidate.name)
                cursor.execute(f"PRAGMA foreign_key_check({quoted})")
                stray = cursor.fetchone()
                if stray is not None:
                    return _key_numbered(cursor, candidate, quoted, int(stray[3]))
        finally:
            cursor.execute(f"ROLLBACK TO {_PROBE}")
            cursor.execute(f"RELEASE {_PROBE}")
            cursor.execute("PRAGMA defer_foreign_keys = OFF")
    except sqlite3.Error:
        return None  # the name stays unknown; the error is raised all the same
    finally:
        cursor.close()
    return None


def _referring_to(table: Table) -> list[Table]:
    """The tables with a foreign key to `table`."""
    return [
        other
        for other in table.metadata.tables.values()
        if any(key.references(table) for key in other.foreign_keys)
    ]


def _written_table(context: ExceptionContext) -> Table | None:
    compiled = getattr(context.execution_context, "compiled", None)
    table = getattr(getattr(compiled, "statement", None), "table", None)
    if isinstance(table, Table):
        return table
    # A statement sent as the driver's SQL (the bulk paths): INSERT INTO "name" ...
    words = (context.statement or "").split(None, 3)
    if len(words) >= 3 and words[0].upper() == "INSERT" and words[1].upper() == "INTO":
        return _table_named(words[2].strip('"'))
    return None


def _table_named(name: str) -> Table | None:
    return Base.metadata.tables.get(name)


def _key_numbered(
    cursor: Any, table: Table, quoted: str, number: int
) -> ForeignKeyConstraint | None:
    """The model's foreign key that SQLite numbers `number` on `table`."""
    cursor.execute(f"PRAGMA foreign_key_list({quoted})")
    columns = {str(row[3]) for row in cursor.fetchall() if int(row[0]) == number}
    for key in table.foreign_key_constraints:
        if {column.name for column in key.columns} == columns:
            return key
    return None


# A statement that only reads; and one that begins a transaction itself.
_READS = re.compile(r"\s*(?:SELECT|VALUES|EXPLAIN)\b", re.IGNORECASE)
_BEGINS = re.compile(r"\s*BEGIN\b", re.IGNORECASE)
_SAVEPOINT = re.compile(r"\s*SAVEPOINT\b", re.IGNORECASE)


def _only_reads(statement: str, context: Any) -> bool:
    compiled = getattr(getattr(context, "compiled", None), "statement", None)
    if isinstance(compiled, Select | CompoundSelect):
        return True
    return not isinstance(compiled, UpdateBase | DDLElement) and bool(_READS.match(statement))


def _driver(connection: Connection) -> Any:
    """The driver's own connection: sqlite3's, or aiosqlite's (a detached one's too, which
    has no pool record to ask)."""
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None  # a statement is running on it
    return connection.dialect.get_driver_connection(dbapi_connection)


def _in_transaction(connection: Connection) -> bool:
    """Whether the driver's connection is in a transaction."""
    return bool(_driver(connection).in_transaction)


def _send(connection: Any, statement: str) -> None:
    """`statement` straight to the driver: it skips the statement pipeline (a tenth of a point
    read), and on the asyncio face makes one trip to aiosqlite's thread, not three."""
    driver = _driver(connection)
    if connection.dialect.is_async:
        await_only(driver.execute(statement))
    else:
        driver.execute(statement).close()


class _CallsByName(logging.Filter):
    """aiosqlite logs every call it runs on its thread, at DEBUG, with the call's arguments: a
    statement's parameters, stored values among them. Its records name the call only (and an
    exception it returns by its class)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_named(argument) for argument in record.args)
        return True


def _named(argument: object) -> object:
    if isinstance(argument, functools.partial):
        return getattr(argument.func, "__qualname__", type(argument.func).__name__)
    if isinstance(argument, BaseException):
        return type(argument).__name__
    return argument


_AIOSQLITE_LOG = logging.getLogger("aiosqlite")
_CALLS_BY_NAME = _CallsByName()


def in_memory(url: URL) -> bool:
    """Whether `url` names an in-memory database rather than a file."""
    return url.database in (None, "", ":memory:")


def _use_wal(cursor: Any) -> None:
    """Switch a database file to WAL unless it already is.

    While another process creates the file or holds its write lock, even reading the journal
    mode can fail at once with "database is locked" (SQLite does not wait on its busy timeout
    there), so the switch is retried for as long as that timeout.
    """
    retrying = Retrying(
        stop=stop_after_delay(BUSY_TIMEOUT_MS / 1000),
        wait=wait_random(0.01, 0.05),
        retry=retry_if_exception_type(sqlite3.OperationalError),
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            cursor.execute("PRAGMA journal_mode")  # (an asyncio cursor returns no cursor)
            if cursor.fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
