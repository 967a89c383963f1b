"""MariaDB 10.11 through PyMySQL (blocking) and asyncmy (asyncio).

Sessions run in strict SQL mode with `max_statement_time` set at connect, and a URL may name
several servers (`?host=a:3306&host=b:3306`), tried in order. A connection streaming an
unbuffered result can run nothing else: a statement there is refused, not run (the driver would
silently throw the rest of the result away). Bulk writes are one multi-row INSERT per batch of
about a megabyte. Keyset pages spell the lexicographic rule out (the optimizer reads the whole
index for a row value). Migrations take GET_LOCK on a name derived from the database's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import uuid
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Insert, Table, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL

from app.config import mysql_servers
from app.db.error_codes import code_of
from app.db.errors import InvalidQueryError, MigrationLockedError, RetryableError
from app.dialects.base import (
    STREAM_CUT_SHORT,
    Backend,
    Batch,
    ConnectOptions,
    Processor,
    UpsertPlan,
    bind_processors,
    close_streams,
    converted,
    python_type,
    session_lock,
)

SQL_MODE = "TRADITIONAL,NO_ENGINE_SUBSTITUTION"
# ER_ALTER_OPERATION_NOT_SUPPORTED(_REASON): the ALTER algorithm asked for is not possible.
_ALGORITHM_REFUSED = {1845, 1846}


class MariaDB(Backend):
    """MariaDB; see the module's docstring."""

    name = "mysql"
    row_value_keyset = False
    nulls_sort_largest = False
    maintenance_database = "information_schema"

    def connect_args(self, url: URL, options: ConnectOptions) -> dict[str, Any]:
        # One SET for the session settings: both drivers run init_command, and asyncmy mangles
        # its own sql_mode argument.
        settings = [f"sql_mode = '{SQL_MODE}'"]
        connect_args: dict[str, Any] = {"connect_timeout": options.connect_timeout}
        if options.statement_timeout:
            settings.append(f"max_statement_time = {options.statement_timeout:g}")
            # A read that waits this long means the server is gone.
            connect_args["read_timeout"] = int(options.statement_timeout) + 30
        connect_args.update(charset="utf8mb4", init_command="SET SESSION " + ", ".join(settings))
        return connect_args

    def configure(self, engine: Engine, url: URL, *, causal_reads: bool) -> None:
        servers = mysql_servers(url)

        @event.listens_for(engine, "do_connect")
        def _connect(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
            dbapi = dialect.loaded_dbapi
            failure: BaseException | None = None
            for host, port in servers:
                try:
                    connection = dialect.connect(*cargs, **{**cparams, "host": host, "port": port})
                except dbapi.Error as exc:
                    failure = exc
                    continue
                try:
                    self.accept_server(
                        dbapi, connection, record.info, f"{host}:{port}", causal_reads
                    )
                except dbapi.Error as exc:
                    failure = exc
                    connection.close()
                    continue
                return connection
            assert failure is not None  # servers is never empty
            raise failure

        @event.listens_for(engine, "before_cursor_execute")
        def _refuse_while_streaming(connection: Connection, *_args: Any) -> None:
            # The rest of the stream would be thrown away: end it, and refuse the statement.
            if close_streams(connection):
                raise InvalidQueryError(STREAM_CUT_SHORT)

    def accept_server(
        self, dbapi: Any, dbapi_connection: Any, info: dict[str, Any], server: str, causal: bool
    ) -> None:
        """Take a new connection to `server` into use (`info` is its pool record's), or raise
        the driver's error to try the next server; `causal`: DB_CAUSAL_READS."""

    def upsert(self, table: Table, plan: UpsertPlan) -> Insert:
        # ON DUPLICATE KEY UPDATE names no key: it updates the row any unique key matched, so
        # callers check the outcome when other keys are given. Its assignments are evaluated
        # left to right: the computed ones (from the stored row) come first.
        if plan.source is not None:
            raise NotImplementedError("MariaDB upserts rows given as parameters")
        statement = mysql.insert(table)
        changes = {name: statement.inserted[name] for name in plan.from_new_row}
        return statement.on_duplicate_key_update({**plan.computed, **changes})

    def insert_ignoring_duplicates(self, table: Table) -> Insert:
        # No DO NOTHING here; assigning the key to itself is the no-op. (INSERT IGNORE would
        # also swallow data errors, turning them into silent truncations.)
        key = next(iter(table.primary_key.columns))
        return mysql.insert(table).on_duplicate_key_update({key.key: key})

    def insert_batches(self, connection: Connection, table: Table, batches: Iterable[Batch]) -> int:
        inserted = 0
        for batch in batches:
            _insert_literals(connection, table, batch)
            inserted += batch.count
        return inserted

    def migration_lock(
        self, connection: Connection, *, wait_seconds: float
    ) -> AbstractContextManager[None]:
        """GET_LOCK with a timeout, on a name derived from the database's: GET_LOCK names are
        server-wide, and one name would make migrating staging block production."""
        name: list[str] = []

        def acquire(_owned_transaction: bool) -> None:
            # Asked inside: the block's transaction (if it is the block's) begins here.
            name.append(_lock_name(connection))
            try:
                got = connection.scalar(
                    text("SELECT GET_LOCK(:name, :wait)"), {"name": name[0], "wait": wait_seconds}
                )
            except RetryableError as exc:
                raise MigrationLockedError.after(wait_seconds) from exc
            if got != 1:
                raise MigrationLockedError.after(wait_seconds)

        def release() -> None:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name[0]})

        return session_lock(connection, acquire, release)

    @contextmanager
    def short_lock_waits(self, connection: Connection, seconds: float) -> Iterator[None]:
        # DDL waits for its metadata lock as long as its own `WAIT n` says (`ddl_wait`); row
        # locks are waited for in whole seconds, at least one.
        variables = ("innodb_lock_wait_timeout", "max_statement_time")
        wanted = (max(math.ceil(seconds), 1), 0)
        saved = tuple(
            connection.execute(
                text("SELECT " + ", ".join(f"@@SESSION.{n}" for n in variables))
            ).one()
        )
        _set_session(connection, dict(zip(variables, wanted, strict=True)))
        try:
            yield
        finally:
            _set_session(connection, dict(zip(variables, saved, strict=True)))

    def database_exists(self, connection: Connection, name: str) -> bool:
        found = connection.scalar(
            text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :name"),
            {"name": name},
        )
        return found is not None


MARIADB = MariaDB()


def ddl_wait(seconds: float) -> str:
    """The clause that bounds a DDL statement's wait for its table's metadata lock. The server
    counts whole seconds (`WAIT 0.5` does not wait at all): at least one."""
    return f"WAIT {max(math.ceil(seconds), 1)}"


def refuses_algorithm(exc: BaseException) -> bool:
    """Whether an ALTER failed because the server cannot run it with the algorithm asked for."""
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    return code_of(orig) in _ALGORITHM_REFUSED


def _lock_name(connection: Connection) -> str:
    """The migration lock's name for the connection's database; within GET_LOCK's 64 characters."""
    database = connection.scalar(text("SELECT DATABASE()")) or ""
    return f"app:migrations:{hashlib.sha256(database.encode()).hexdigest()[:40]}"


def _set_session(connection: Connection, values: dict[str, object]) -> None:
    # Numbers read back from the server or set above, never caller text; whole numbers are
    # written as integers, which is all lock_wait_timeout accepts.
    numbers = {name: float(str(value)) for name, value in values.items()}
    assignments = ", ".join(
        f"SESSION {name} = {int(number) if number.is_integer() else number!r}"
        for name, number in numbers.items()
    )
    connection.execute(text(f"SET {assignments}"))


# -- one multi-row INSERT a batch, its values written as literals here ----------------------------
#
# What PyMySQL's executemany does too (it interpolates literals client-side), but a column at a
# time. The escapes are those of MariaDB string literals under our sql_mode, which never has
# NO_BACKSLASH_ESCAPES; every connection speaks utf8mb4.

_ESCAPES = str.maketrans(
    {"\0": "\\0", "\n": "\\n", "\r": "\\r", "\x1a": "\\Z", "'": "\\'", '"': '\\"', "\\": "\\\\"}
)


def _literal_text(value: str) -> str:
    return "'" + value.translate(_ESCAPES) + "'"


def _literal_uuid(value: uuid.UUID | str) -> str:
    # 32 hex digits, as SQLAlchemy stores a Uuid where there is no native type.
    return "'" + (value.hex if isinstance(value, uuid.UUID) else value) + "'"


def _literal_boolean(value: bool) -> str:
    return "1" if value else "0"


def _literal_timestamp(value: dt.datetime) -> str:
    return "'" + value.isoformat(" ") + "'"  # naive UTC by now (UTCDateTime's bind processor)


_LITERALS: dict[type, Processor] = {
    bool: _literal_boolean,
    int: str,
    str: _literal_text,
    uuid.UUID: _literal_uuid,
    dt.datetime: _literal_timestamp,
}

# A statement stays well under max_allowed_packet (16 MiB by default; 1 MiB at the least),
# as PyMySQL's own executemany keeps to about a megabyte.
_MAX_STATEMENT = 1_000_000


def _insert_literals(connection: Connection, table: Table, batch: Batch) -> None:
    names = tuple(batch.columns)
    processors = bind_processors(table, names, connection.dialect)
    written = []
    for name, values in batch.columns.items():
        writer = _LITERALS.get(python_type(table, name))  # type: ignore[arg-type]
        if writer is None:
            raise NotImplementedError(f"{table.name}.{name}: no literal writer for its type")
        processor = processors.get(name)
        if (
            writer is not _literal_boolean
            and processor is not None
            and name not in batch.stored_as_is
        ):
            values = converted(processor, values)
        if writer is _literal_text and None not in values:
            written.append(list(map(writer, values)))
        elif writer is _literal_timestamp:
            texts = converted(writer, values)
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


def _statement_spans(rows: list[str]) -> Iterator[tuple[int, int]]:
    """(start, end) of runs of `rows` whose text fits one statement; one row at the least."""
    start, size = 0, 0
    for index, row in enumerate(rows):
        if size and size + len(row) > _MAX_STATEMENT:
            yield start, index
            start, size = index, 0
        size += len(row) + 3
    yield start, len(rows)
