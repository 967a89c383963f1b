"""MariaDB 10.11 through PyMySQL (blocking) and asyncmy (asyncio).

Sessions run in strict SQL mode with `max_statement_time` set at connect, and a URL may name
several servers (`?host=a:3306&host=b:3306`), tried in order. A connection streaming an
unbuffered result can run nothing else: a statement there is refused, not run (the driver would
silently throw the rest of the result away). Bulk writes are LOAD DATA LOCAL INFILE (PyMySQL)
or the driver's executemany, which sends multi-row INSERTs of about a megabyte, its own escaping
of the values as parameters (asyncmy, and values the file cannot carry as text); the query tags
of an executemany go after its first keyword, where the driver still sees the INSERT it batches.
Keyset pages spell the lexicographic rule out (the optimizer reads the whole index for a row
value). Migrations take GET_LOCK on a name derived from the database's. A statement larger than
the server's `max_allowed_packet` is refused before it is sent (`mariadb_packets`).
"""

from __future__ import annotations

import hashlib
import math
import socket
import string
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Insert,
    Table,
    bindparam,
    event,
    func,
    text,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL

from app.config import mysql_servers
from app.db.error_codes import code_of
from app.db.error_events import quiet_server_warnings
from app.db.errors import (
    DataLayerError,
    InvalidQueryError,
    MigrationLockedError,
    RetryableError,
    StatisticsUnavailableError,
)
from app.db.telemetry import split_tags
from app.dialects import asyncmy_connection, commit_markers, literals, mariadb_load
from app.dialects.base import (
    Backend,
    Batch,
    ConnectOptions,
    HeavyStatement,
    UpsertPlan,
    session_lock,
)
from app.dialects.commit_markers import CommitReceipt, note_writes, wrote
from app.dialects.pymysql_connection import EndAwareConnection, settle_at_checkout
from app.dialects.streams import STREAM_CUT_SHORT, close_streams

SQL_MODE = "TRADITIONAL,NO_ENGINE_SUBSTITUTION"
# ER_ALTER_OPERATION_NOT_SUPPORTED(_REASON): the ALTER algorithm asked for is not possible.
_ALGORITHM_REFUSED = {1845, 1846}


# The statements SQLAlchemy's MySQL reflection runs with the connection's error events off.
_REFLECTION_STATEMENTS = ("SHOW CREATE TABLE ", "DESCRIBE ")


# Strings in either quote, with backslash escapes (sql_mode has neither ANSI_QUOTES nor
# NO_BACKSLASH_ESCAPES: SQL_MODE); `--` starts a comment only before a space (`5--3` is 8).
_MARIADB_LITERALS = literals.masker(
    kept=(
        r"--(?=\s)[^\n]*",
        literals.HASH_COMMENT,
        literals.BLOCK_COMMENT,
        literals.BACKTICK_NAME,
    ),
    masked=(
        literals.SINGLE_QUOTED_ESCAPED,
        literals.DOUBLE_QUOTED_ESCAPED,
        literals.HEX_NUMBER,
        literals.BINARY_NUMBER,
        literals.NUMBER,
    ),
)


class MariaDB(Backend):
    """MariaDB; see the module's docstring."""

    name = "mysql"
    row_value_keyset = False
    nulls_sort_largest = False
    maintenance_database = "information_schema"
    ddl_commits_as_it_goes = True

    def socket_of(self, driver_connection: Any) -> int | None:
        # PyMySQL keeps its socket in `_sock` (None once closed).
        sock = getattr(driver_connection, "_sock", None)
        return sock.fileno() if isinstance(sock, socket.socket) else None

    def spoke_while_idle(self, driver_connection: Any) -> bool:
        if isinstance(driver_connection, asyncmy_connection.EndAwareAsyncConnection):
            return driver_connection.spoke_while_idle()
        return super().spoke_while_idle(driver_connection)

    def connect_args(self, url: URL, options: ConnectOptions) -> dict[str, Any]:
        # One SET for the session settings: both drivers run init_command, and asyncmy mangles
        # its own sql_mode argument.
        settings = [f"sql_mode = '{SQL_MODE}'"]
        connect_args: dict[str, Any] = {"connect_timeout": options.connect_timeout}
        if options.statement_timeout:
            settings.append(f"max_statement_time = {options.statement_timeout:g}")
            # A read that waits this long means the server is gone: no statement may run longer,
            # and the network gets the connect timeout (PostgreSQL's bound too, `answer_bound`).
            connect_args["read_timeout"] = math.ceil(
                options.statement_timeout + options.connect_timeout
            )
        if options.idle_transaction_timeout:
            # The server ends a transaction idle this long (and its connection): its row locks
            # go with it.
            settings.append(
                f"idle_transaction_timeout = {math.ceil(options.idle_transaction_timeout)}"
            )
        connect_args.update(charset="utf8mb4", init_command="SET SESSION " + ", ".join(settings))
        # Announced at login, so that bulk loads may send a file; accepted only while one of
        # ours runs (`mariadb_load`). Not by asyncmy, whose replies to the file's packets
        # break the connection's packet order.
        connect_args["local_infile"] = url.get_driver_name() == "pymysql"
        return connect_args

    def configure(
        self, engine: Engine, url: URL, *, causal_reads: bool, connect: ConnectOptions
    ) -> None:
        servers = mysql_servers(url)
        if engine.hide_parameters:
            quiet_server_warnings("asyncmy")

        @event.listens_for(engine, "do_connect")
        def _connect(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
            dbapi = dialect.loaded_dbapi
            failure: BaseException | None = None
            for host, port in servers:
                try:
                    connection = _logged_in(dialect, cargs, {**cparams, "host": host, "port": port})
                except dbapi.Error as exc:
                    failure = exc
                    continue
                mariadb_load.refuse_file_requests(connection)
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

        @event.listens_for(engine, "before_cursor_execute")
        def _errors_translated_after_reflection(
            connection: Connection, _cursor: Any, statement: str, *_args: Any
        ) -> None:
            # SQLAlchemy reflects a table through the connection in use (migrations, `app db
            # check`) with the connection's error events turned off, and leaves them off: a
            # later failure on it would skip our translation, and its text would keep the
            # values the server quotes. They go back on for every statement but reflection's.
            skipped = connection.get_execution_options().get("skip_user_error_events")
            if skipped and not statement.startswith(_REFLECTION_STATEMENTS):
                connection.execution_options(skip_user_error_events=False)

        settle_at_checkout(engine)

        # (On Galera a marker would be a write set for every node to certify.)
        note_writes(engine)

    def accept_server(
        self, dbapi: Any, dbapi_connection: Any, info: dict[str, Any], server: str, causal: bool
    ) -> None:
        """Take a new connection to `server` into use (`info` is its pool record's), or raise
        the driver's error to try the next server; `causal`: DB_CAUSAL_READS."""

    def with_comment(self, statement: str, comment: str, *, executemany: bool) -> str:
        # Both drivers send an executemany INSERT as multi-row statements only when the text
        # ends with its VALUES (or ON DUPLICATE KEY) clause, else as one statement a row: the
        # comment goes after the first keyword there.
        if executemany:
            keyword, _, rest = statement.lstrip().partition(" ")
            return f"{keyword} {comment} {rest}"
        return super().with_comment(statement, comment, executemany=executemany)

    line_comments = ("-- ", "--\t", "#")

    def without_literals(self, statement: str) -> str:
        return _MARIADB_LITERALS(statement)

    def insert_batches(self, connection: Connection, table: Table, batches: Iterable[Batch]) -> int:
        """Batches by LOAD DATA LOCAL INFILE (`mariadb_load`), or, for one holding a value that
        file cannot carry as text, the driver's executemany."""
        if not mariadb_load.takes_files(connection):
            return super().insert_batches(connection, table, batches)
        return mariadb_load.load_batches(connection, table, batches)

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

    def text_match(self, column: Any, op: str, needle: str) -> ColumnElement[bool]:
        # MariaDB's lower() folds every script's letters, where PostgreSQL's C collation and
        # SQLite fold ASCII ones only: here too, the column's ASCII capitals replaced one by one
        # (REPLACE compares exactly; twice LOWER's time over a scan).
        if not op.startswith("i"):
            return super().text_match(column, op, needle)
        folded = column
        for capital in string.ascii_uppercase:
            folded = func.replace(folded, capital, capital.lower())
        return super().text_match(folded, op[1:], needle.translate(_ASCII_LOWER))

    def sign_commit(self, connection: Connection) -> CommitReceipt | None:
        """A marker row (`commit_markers`), and the server's session: the connection's thread
        id and the address the server sees it from (thread ids start again at 1 when a server
        restarts, and each node of a cluster has its own)."""
        if not wrote(connection):
            return None  # only SELECTs (see `note_writes`)
        mark = commit_markers.write_marker(connection, table_missing=_no_such_table)
        if mark is None:
            return None
        driver = _driver_connection(connection)
        address = _client_address(driver)
        session = (int(driver.thread_id()), address) if address is not None else ()
        return CommitReceipt(connection.engine, mark, session)

    def was_committed(self, connection: Connection, receipt: CommitReceipt) -> bool | None:
        _end_session(connection, receipt.session)
        return commit_markers.fence(connection, receipt.mark)

    def after_commit(self, receipt: CommitReceipt) -> None:
        commit_markers.prune(receipt.engine)

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


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _driver_connection(connection: Connection) -> Any:
    return connection.connection.driver_connection


# ER_NO_SUCH_TABLE: the markers' migration has not run.
_NO_SUCH_TABLE = 1146


def _no_such_table(error: BaseException) -> bool:
    if isinstance(error, sa_exc.DBAPIError):
        return code_of(error.orig) == _NO_SUCH_TABLE
    return getattr(error, "code", None) == _NO_SUCH_TABLE  # translated (SchemaMismatchError)


def _end_session(connection: Connection, session: tuple[Any, ...]) -> None:
    """End the server's session that ran a transaction whose COMMIT got no answer, if it still
    runs, so that the transaction rolls back now rather than when the server notices."""
    if not session:
        return  # (behind a proxy the server sees the proxy's address: left to end itself)
    thread, address = session
    still_there = connection.scalar(
        text("SELECT ID FROM information_schema.PROCESSLIST WHERE ID = :thread AND HOST = :host"),
        {"thread": thread, "host": address},
    )
    if still_there is not None:
        with suppress(DataLayerError):  # it ended meanwhile
            connection.execute(text("KILL CONNECTION :thread"), {"thread": thread})
    connection.rollback()


def _socket_of(driver: Any) -> Any:
    """The connection's socket: PyMySQL's own, or the one under asyncmy's transport."""
    sock = getattr(driver, "_sock", None)
    if sock is None:
        transport = getattr(driver, "_transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
    return sock


def _client_address(driver: Any) -> str | None:
    """`host:port` of the connection's own end, as the server's process list shows it (None
    for a socket file)."""
    sock = _socket_of(driver)
    name = sock.getsockname() if sock is not None else None
    if isinstance(name, tuple) and len(name) >= 2:
        return f"{name[0]}:{name[1]}"
    return None


def _logged_in(dialect: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
    """A new connection whose login (the server's greeting, authentication, init_command) waits
    for the server at most `connect_timeout`: both drivers bound only the TCP connect by it and
    the rest by the read timeout, which is longer, or none at all. Once logged in, reads wait as
    long as `read_timeout` says again."""
    login = cparams.get("connect_timeout")
    logging_in = {**cparams, "read_timeout": login}
    connection: Any = (
        EndAwareConnection(*cargs, **logging_in)
        if dialect.driver == "pymysql"
        else dialect.connect(*cargs, async_creator_fn=asyncmy_connection.connect, **logging_in)
    )
    driver = getattr(connection, "driver_connection", connection)
    # Both drivers read this attribute before every wait for the server.
    driver._read_timeout = cparams.get("read_timeout")
    if login:
        _notice_a_vanished_server(driver, int(login))
    return connection


def _notice_a_vanished_server(driver: Any, seconds: int) -> None:
    """Data the server has not acknowledged for `seconds` means it is gone (a host that
    vanished: the kernel would retransmit for about 15 minutes), and keepalives notice it
    while we wait for an answer, DB_STATEMENT_TIMEOUT=0 included; as libpq's
    `tcp_user_timeout` and `keepalives` do for PostgreSQL."""
    sock = _socket_of(driver)
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, seconds * 1000)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


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
