"""MariaDB 10.11 through PyMySQL (blocking) and asyncmy (asyncio).

Sessions run in strict SQL mode with `max_statement_time` set at connect, and a URL may name
several servers (`?host=a:3306&host=b:3306`), tried in order. A connection streaming an
unbuffered result can run nothing else: a statement there is refused, not run (the driver would
silently throw the rest of the result away). Bulk writes go through the driver's executemany,
which sends multi-row INSERTs of about a megabyte, its own escaping of the values as parameters.
Keyset pages spell the lexicographic rule out (the optimizer reads the whole index for a row
value). Migrations take GET_LOCK on a name derived from the database's.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Insert, Table, bindparam, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL

from app.config import mysql_servers
from app.db.error_codes import code_of
from app.db.errors import (
    InvalidQueryError,
    MigrationLockedError,
    RetryableError,
    StatisticsUnavailableError,
)
from app.db.telemetry import split_tags
from app.dialects.base import (
    STREAM_CUT_SHORT,
    Backend,
    ConnectOptions,
    HeavyStatement,
    UpsertPlan,
    close_streams,
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
    ddl_commits_as_it_goes = True

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

    def column_collations(self, connection: Connection, table: str) -> dict[str, str | None]:
        rows = connection.execute(
            text(
                "SELECT COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table"
            ),
            {"table": table},
        )
        return {
            str(name): (None if collation is None else str(collation)) for name, collation in rows
        }

    def database_exists(self, connection: Connection, name: str) -> bool:
        found = connection.scalar(
            text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :name"),
            {"name": name},
        )
        return found is not None

    def heaviest_statements(self, connection: Connection, limit: int) -> list[HeavyStatement]:
        """From the performance schema's digests (texts with `?` for every value); the tags
        from the latest statement of each digest the server still remembers, of which only
        the tags are read, as its text holds the values the driver wrote into it."""
        if not connection.scalar(text("SELECT @@performance_schema")):
            raise StatisticsUnavailableError(
                "MariaDB keeps no statement statistics here: set performance_schema=ON under "
                "[mysqld] in the server's configuration (and performance_schema_consumer_events_"
                "statements_current=ON and ..._history_long=ON to see the unit of work that sent "
                "each) and restart it"
            )
        rows = connection.execute(
            text(
                "SELECT DIGEST, DIGEST_TEXT, COUNT_STAR, SUM_TIMER_WAIT / 1000000000, "
                "SUM_ROWS_SENT + SUM_ROWS_AFFECTED "
                "FROM performance_schema.events_statements_summary_by_digest "
                "WHERE SCHEMA_NAME = DATABASE() AND DIGEST IS NOT NULL "
                "ORDER BY SUM_TIMER_WAIT DESC LIMIT :limit"
            ),
            {"limit": limit},
        ).all()
        tags = _digest_tags(connection, [str(row[0]) for row in rows])
        found = []
        for digest, digest_text, calls, total_ms, count in rows:
            statement = split_tags(str(digest_text))[0]
            counted = (int(calls), float(total_ms), int(count or 0))
            found.append(HeavyStatement(statement, tags.get(str(digest), {}), *counted))
        return found


# The statements the server remembers: the latest few per connection, and the latest
# thousands overall where that consumer is on.
_HISTORIES = [
    text(
        f"SELECT DIGEST, SQL_TEXT FROM performance_schema.{table} "  # noqa: S608 - our names
        "WHERE DIGEST IN :digests ORDER BY TIMER_START"
    ).bindparams(bindparam("digests", expanding=True))
    for table in ("events_statements_history_long", "events_statements_history")
]


def _digest_tags(connection: Connection, digests: list[str]) -> dict[str, dict[str, str]]:
    """The tags of the latest statement of each digest in the statement history tables."""
    if not digests:
        return {}
    found: dict[str, dict[str, str]] = {}
    for history in _HISTORIES:
        rows = connection.execute(history, {"digests": digests})
        for digest, sql_text in rows:
            tags = split_tags(str(sql_text or ""))[1]
            if tags:
                found[str(digest)] = tags
    return found


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
