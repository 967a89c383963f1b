"""PostgreSQL 15 through psycopg 3 (both faces).

Sessions run in UTC with the statement timeout set at connect. Bulk writes stream COPY text
(`postgresql_copy`), every batch of a call in one COPY; `upsert_many` writes
rounds of batches the same way and, when a round meets stored keys, through a staging table and
one `INSERT ... SELECT ... ON CONFLICT`. Keyset pages compare row values. A commit's token is
the primary's WAL position. Migrations take a session advisory lock, tried rather than waited
for. A wait for the server's answer ends once no statement could still be running
(`postgresql_waits`).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from itertools import chain
from typing import Any

import psycopg
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Insert,
    Table,
    any_,
    bindparam,
    event,
    text,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from app.db.error_events import quiet_server_errors
from app.db.errors import (
    MigrationLockedError,
    StatisticsUnavailableError,
)
from app.db.telemetry import split_tags
from app.dialects import deferred_begin, literals
from app.dialects.base import (
    Backend,
    Batch,
    BulkLoadRefused,
    ConnectOptions,
    HeavyStatement,
    PreparedUpsert,
    UpsertOtherwise,
    UpsertPlan,
    on_conflict_do_update,
    session_lock,
)
from app.dialects.commit_markers import CommitReceipt, note_writes, wrote
from app.dialects.driver import driver_value
from app.dialects.postgresql_copy import copy_run
from app.dialects.postgresql_plans import AsyncReplanning, Replanning
from app.dialects.postgresql_upserts import upsert_in_rounds
from app.dialects.postgresql_waits import BoundedWaits, PromptlyCancelled, answer_bound

# The migration lock: pg_advisory_lock takes a bigint, a stable number derived from a name.
MIGRATION_LOCK_KEY = zlib.crc32(b"app:migrations")
# A server process still in a given transaction, ended (PostgreSQL 14 on: and waited for).
# Found by the transaction's id, which names one transaction: the process id the driver knows
# is a pooler's own number behind PgBouncer, not the server's.
_STILL_IN = "FROM pg_stat_activity WHERE backend_xid::text::bigint = :xid % 4294967296"
_END_TRANSACTION = text("SELECT pg_terminate_backend(pid) " + _STILL_IN)
_END_TRANSACTION_WAITING = text("SELECT pg_terminate_backend(pid, 5000) " + _STILL_IN)


# Standard strings (standard_conforming_strings: a backslash is a character), E'' strings with
# backslash escapes, dollar quotes; a double-quoted word is a name.
_POSTGRESQL_LITERALS = literals.masker(
    kept=(literals.LINE_COMMENT, literals.BLOCK_COMMENT, literals.DOUBLE_QUOTED_NAME),
    masked=(
        literals.DOLLAR_QUOTED,
        literals.ESCAPE_STRING,
        literals.SINGLE_QUOTED,
        literals.HEX_NUMBER,
        literals.NUMBER,
    ),
)


class PostgreSQL(Backend):
    """PostgreSQL; see the module's docstring."""

    name = "postgresql"
    row_value_keyset = True
    most_listed_values = 1000  # a longer IN list goes as one array parameter
    nulls_sort_largest = True
    maintenance_database = "postgres"

    def socket_of(self, driver_connection: Any) -> int | None:
        try:
            return int(driver_connection.pgconn.socket)
        except (AttributeError, psycopg.OperationalError):  # closed, or not psycopg's
            return None

    def connect_args(self, url: URL, options: ConnectOptions) -> dict[str, Any]:
        args: dict[str, Any] = {
            "connect_timeout": options.connect_timeout,
            # Data the server has not acknowledged for this long means it is gone (a host that
            # vanished: the kernel would retransmit for about 15 minutes); keepalives notice it
            # while we wait for an answer.
            "tcp_user_timeout": options.connect_timeout * 1000,
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        }
        if options.pooler is None:
            # The session settings ride on the startup packet: no round trip of their own. A
            # pooler refuses that parameter; `configure` sends them another way there.
            args["options"] = " ".join(
                f"-c {name}={_escaped(value)}" for name, value in session_settings(options).items()
            )
        if options.pooler == "transaction":
            # A statement prepared on one server connection is unknown (or another's) on the
            # next transaction's: nothing is prepared on the server.
            args["prepare_threshold"] = None
        return args

    def configure(
        self, engine: Engine, url: URL, *, causal_reads: bool, connect: ConnectOptions
    ) -> None:
        note_writes(engine)
        if engine.hide_parameters:
            quiet_server_errors("psycopg")
        is_async = engine.dialect.is_async
        prepares = connect.pooler != "transaction"
        if connect.pooler != "transaction":
            deferred_begin.install(engine)

        bound = answer_bound(connect)

        @event.listens_for(engine, "do_connect")
        def _our_connection(
            _dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]
        ) -> Any:
            if prepares:
                cparams["cursor_factory"] = AsyncReplanning if is_async else Replanning
            if is_async:
                cparams["async_creator_fn"] = partial(PromptlyCancelled.bounded, bound)
                return None  # the dialect connects, through that function
            return BoundedWaits.bounded(bound, *cargs, **cparams)

        if connect.pooler is None:
            return
        assignments = session_settings(connect).items()
        if connect.pooler == "session":
            # The pooler keeps this client's server connection for the client's life: the
            # settings are made once, as the connection opens.
            statement = "; ".join(f"SET {name} = '{value}'" for name, value in assignments)

            @event.listens_for(engine, "connect")
            def _session_settings(dbapi_connection: Any, _record: Any) -> None:
                _run_on(dbapi_connection, statement, commit=True)

            return
        # Each transaction may run on another server connection: the settings go with every
        # transaction, as it begins, all in one message (SET LOCAL ends with the transaction).
        # Sent as part of the dialect's BEGIN, so that a connection found dead there (the
        # pooler restarted since the checkout) fails as any statement does: invalidated, and
        # the error translated by the engine's handle_error.
        statement = "; ".join(f"SET LOCAL {name} = '{value}'" for name, value in assignments)
        begin = engine.dialect.do_begin

        def _begin_with_settings(pooled: Any) -> None:
            begin(pooled)
            dbapi_connection = pooled.dbapi_connection
            if not getattr(dbapi_connection, "autocommit", False):
                _run_on(dbapi_connection, statement, commit=False)

        engine.dialect.do_begin = _begin_with_settings  # type: ignore[method-assign,assignment]

    def without_literals(self, statement: str) -> str:
        return _POSTGRESQL_LITERALS(statement)

    def read_only_options(self) -> dict[str, Any]:
        return {"postgresql_readonly": True}

    def number_past_given_keys(self, connection: Connection, table: Table, key: str) -> None:
        """The key's sequence (serial or identity) set to the largest key stored, where that
        is at or past the number it would give next: one statement, which changes nothing
        otherwise. (A sequence is outside transactions: a rollback leaves the gap.)"""
        preparer = connection.dialect.identifier_preparer
        column = table.c[key]
        statement = _NUMBER_PAST.format(
            column=preparer.quote(column.name), table=preparer.format_table(table)
        )
        names = {"table": preparer.format_table(table), "column": column.name}
        connection.execute(text(statement), names)

    def refuses_writes(self, driver_connection: Any) -> bool:
        """From the settings the server reports to each connection as they change (PostgreSQL
        14 and later): a hot standby, or transactions read-only by default (the server's, the
        database's or the role's setting)."""
        reported = driver_connection.info.parameter_status
        return "on" in (reported("in_hot_standby"), reported("default_transaction_read_only"))

    def upsert(self, table: Table, plan: UpsertPlan) -> Insert:
        return on_conflict_do_update(postgresql.insert(table), plan)

    def insert_ignoring_duplicates(self, table: Table) -> Insert:
        return postgresql.insert(table).on_conflict_do_nothing()

    def in_values(self, column: Any, values: list[Any]) -> ColumnElement[bool]:
        # psycopg sends at most 65,535 parameters a statement: a long list goes as one array.
        if self.lists_values(len(values)):
            return super().in_values(column, values)
        array = bindparam(None, values, type_=postgresql.ARRAY(column.type))
        condition: ColumnElement[bool] = column == any_(array)
        return condition

    def insert_batches(self, connection: Connection, table: Table, batches: Iterable[Batch]) -> int:
        """One COPY for every run of batches with the same columns, streamed as the batches
        come (a failure anywhere stores none of them: the caller's savepoint); a COPY a batch
        when the rows may come from a stream on this connection, which cannot be read from
        inside a COPY."""
        pending = iter(batches)
        first = next(pending, None)
        inserted = 0
        numbered = table.autoincrement_column
        gave_keys = False
        while first is not None:
            batch = first
            if numbered is not None:
                # Rows that leave the key to the sequence after rows that gave it: the sequence
                # goes on past those first, as between `create` calls (the repository does so
                # after the last run).
                if numbered.key in batch.columns:
                    gave_keys = True
                elif gave_keys:
                    self.number_past_given_keys(connection, table, numbered.key)
                    gave_keys = False
            try:
                first, count = copy_run(connection, table, batch, pending)
            except sa_exc.DBAPIError as exc:
                # The server refuses a COPY into anything but a table before it reads a row
                # (only `first` was taken from the batches).
                if inserted == 0 and isinstance(exc.orig, psycopg.errors.WrongObjectType):
                    raise BulkLoadRefused(chain([batch], pending)) from None
                raise
            inserted += count
        return inserted

    def upsert_batches(
        self,
        session: Session,
        table: Table,
        target: tuple[str, ...],
        prepared: Iterator[PreparedUpsert],
        otherwise: UpsertOtherwise,
    ) -> None:
        """Distinct uniform batches whose columns COPY text can carry in rounds
        (`postgresql_upserts`), the others by `otherwise`."""
        upsert_in_rounds(session, table, target, prepared, otherwise)

    def commit_position(self, connection: Connection) -> str | None:
        dbapi_connection: Any = connection.connection.dbapi_connection
        # Outside a transaction (a client-side switch), so the query leaves none open behind it.
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        try:
            cursor = dbapi_connection.cursor()  # (the asyncio driver's adapter has only cursors)
            try:
                cursor.execute("SELECT pg_current_wal_lsn()::text")
                return str(cursor.fetchone()[0])
            finally:
                cursor.close()
        finally:
            dbapi_connection.autocommit = autocommit

    def sign_commit(self, connection: Connection) -> CommitReceipt | None:
        """The transaction's id (none if it wrote nothing): the server keeps the outcome of
        every recent transaction, and a process still in it is found by it."""
        if not wrote(connection):
            return None  # only SELECTs (see `note_writes`)
        xid = deferred_begin.transaction_id(connection)
        if xid is None:  # not begun with its id (`deferred_begin`)
            xid = driver_value(connection, "SELECT txid_current_if_assigned()")
        return CommitReceipt(connection.engine, xid)

    def was_committed(self, connection: Connection, receipt: CommitReceipt) -> bool | None:
        if receipt.mark is None:
            return True
        xid = int(receipt.mark)
        # A process still in that transaction (behind a pooler too: it holds its server
        # connection until the transaction ends) is ended, and waited for up to 5 s.
        waits = (connection.dialect.server_version_info or (0,)) >= (14,)
        connection.execute(_END_TRANSACTION_WAITING if waits else _END_TRANSACTION, {"xid": xid})
        status = connection.scalar(text("SELECT txid_status(:xid)"), {"xid": xid})
        connection.rollback()
        return {"committed": True, "aborted": False}.get(status)

    def after_commit(self, receipt: CommitReceipt) -> None:
        pass  # nothing to clean up

    def migration_lock(
        self, connection: Connection, *, wait_seconds: float
    ) -> AbstractContextManager[None]:
        """A session advisory lock (advisory locks belong to one database), tried until
        `wait_seconds` have passed."""

        def acquire(owned_transaction: bool) -> None:
            _poll_advisory_lock(connection, wait_seconds, owned_transaction=owned_transaction)

        def release() -> None:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})

        return session_lock(connection, acquire, release)

    def migration_settings(self, *, lock_timeout: float, statement_timeout: float) -> list[str]:
        return [
            f"SET lock_timeout = '{int(lock_timeout * 1000)}ms'",
            f"SET statement_timeout = '{int(statement_timeout * 1000)}ms'",
        ]

    @contextmanager
    def migration_session(
        self, connection: Connection, *, lock_timeout: float, statement_timeout: float
    ) -> Iterator[None]:
        """How long DDL may wait for a lock and run, reset afterwards (the connection may be
        pooled)."""
        owned_transaction = not connection.in_transaction()
        settings = self.migration_settings(
            lock_timeout=lock_timeout, statement_timeout=statement_timeout
        )
        for statement in settings:
            connection.exec_driver_sql(statement)
        if owned_transaction:
            connection.commit()  # SET outlives the transaction; alembic opens its own
        try:
            yield
        except BaseException:
            if owned_transaction and connection.in_transaction():
                connection.rollback()
            _reset_timeouts(connection, commit=owned_transaction)
            raise
        _reset_timeouts(connection, commit=owned_transaction)

    @contextmanager
    def short_lock_waits(self, connection: Connection, seconds: float) -> Iterator[None]:
        names = ("lock_timeout", "statement_timeout")
        wanted = (f"{int(seconds * 1000)}ms", "0")
        before = [connection.scalar(text(f"SELECT current_setting('{n}')")) for n in names]
        for name, value in zip(names, wanted, strict=True):
            connection.execute(text("SELECT set_config(:n, :v, false)"), {"n": name, "v": value})
        try:
            yield
        finally:
            for name, value in zip(names, before, strict=True):
                connection.execute(
                    text("SELECT set_config(:n, :v, false)"), {"n": name, "v": value}
                )

    def database_exists(self, connection: Connection, name: str) -> bool:
        found = connection.scalar(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        )
        return found is not None

    def column_collations(self, connection: Connection, table: str) -> dict[str, str | None]:
        rows = connection.execute(
            text(
                "SELECT a.attname, c.collname FROM pg_attribute a "
                "JOIN pg_class t ON t.oid = a.attrelid "
                "LEFT JOIN pg_collation c ON c.oid = a.attcollation AND a.attcollation <> 0 "
                "WHERE t.relname = :table AND t.relnamespace = current_schema()::regnamespace "
                "AND a.attnum > 0 AND NOT a.attisdropped"
            ),
            {"table": table},
        )
        return {
            str(name): (None if collation is None else str(collation)) for name, collation in rows
        }

    def drop_database_sql(self, url: URL) -> str:
        return f"DROP DATABASE IF EXISTS {self.quoted_database(url)} WITH (FORCE)"

    def heaviest_statements(self, connection: Connection, limit: int) -> list[HeavyStatement]:
        """From pg_stat_statements, which keeps each shape's text as first seen: the tags are
        those of the first unit of work that sent it. A utility statement (DDL, DO, SET) is
        kept as it was written, literals and all: they are masked here."""
        preloaded = connection.scalar(text("SELECT current_setting('shared_preload_libraries')"))
        if "pg_stat_statements" not in str(preloaded):
            raise StatisticsUnavailableError(
                "PostgreSQL keeps no statement statistics here: add pg_stat_statements to "
                "shared_preload_libraries in postgresql.conf, restart the server, then run "
                "CREATE EXTENSION pg_stat_statements in this database"
            )
        installed = connection.scalar(
            text("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'")
        )
        if installed is None:
            raise StatisticsUnavailableError(
                "pg_stat_statements is loaded but not installed in this database: run "
                "CREATE EXTENSION pg_stat_statements in it (as a superuser)"
            )
        rows = connection.execute(
            text(
                "SELECT query, calls, total_exec_time, rows FROM pg_stat_statements "
                "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "ORDER BY total_exec_time DESC LIMIT :limit"
            ),
            {"limit": limit},
        )
        found = []
        for query, calls, total_ms, count in rows:
            statement, tags = split_tags(str(query))
            shown = self.without_literals(statement)
            found.append(HeavyStatement(shown, tags, int(calls), float(total_ms), int(count)))
        return found


# The names are the model's, quoted; pg_get_serial_sequence takes the table's quoted name and
# the column's own.
_NUMBER_PAST = (
    "SELECT setval(s.seqrelid, t.top) FROM pg_catalog.pg_sequence AS s, "
    "(SELECT max({column}) AS top FROM {table}) AS t "
    "WHERE s.seqrelid = CAST(pg_get_serial_sequence(:table, :column) AS regclass) "
    "AND t.top >= COALESCE(pg_sequence_last_value(s.seqrelid) + s.seqincrement, s.seqstart)"
)

POSTGRESQL = PostgreSQL()


def session_settings(options: ConnectOptions) -> dict[str, str]:
    """The server settings every transaction of ours runs under: UTC, like everything stored
    (timestamps come back in UTC, psycopg's own timezone.utc, with no conversion per value),
    and the timeouts (milliseconds) that bound a statement and an idle transaction."""
    # READ COMMITTED whatever the database's default: a unit asks for more (isolation_level=),
    # and a unit's reads may run before its BEGIN (`deferred_begin`).
    settings = {"TimeZone": "UTC", "default_transaction_isolation": "read committed"}
    if options.statement_timeout:
        settings["statement_timeout"] = str(int(options.statement_timeout * 1000))
    if options.idle_transaction_timeout:
        settings["idle_in_transaction_session_timeout"] = str(
            int(options.idle_transaction_timeout * 1000)
        )
    return settings


def _escaped(value: str) -> str:
    """A setting's value as libpq's `options` takes it: spaces and backslashes escaped."""
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


def _run_on(dbapi_connection: Any, statement: str, *, commit: bool) -> None:
    """Run `statement` (no parameters, several statements at once) on a driver connection of
    either face (the asyncio one is SQLAlchemy's adapter, awaited from inside its greenlet),
    below SQLAlchemy's own transaction bookkeeping."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(statement)
    finally:
        cursor.close()
    if commit:
        dbapi_connection.commit()


def _reset_timeouts(connection: Connection, *, commit: bool) -> None:
    try:
        connection.exec_driver_sql("RESET lock_timeout")
        connection.exec_driver_sql("RESET statement_timeout")
        if commit:
            connection.commit()
    except sa_exc.SQLAlchemyError:
        connection.invalidate()  # never hand a pooled session back with migration timeouts


def _poll_advisory_lock(
    connection: Connection, wait_seconds: float, *, owned_transaction: bool
) -> None:
    """Take the advisory lock, trying every so often instead of waiting in one statement.

    A statement blocked on the lock would hold its snapshot, and `CREATE INDEX CONCURRENTLY` in
    the first migrator's run waits for every older snapshot to end: each would wait for the
    other. Between tries this session holds no snapshot (and, when it owns the transaction,
    no transaction).
    """
    deadline = time.monotonic() + wait_seconds
    pause = 0.02
    try_lock = text("SELECT pg_try_advisory_lock(:key)")
    while not connection.scalar(try_lock, {"key": MIGRATION_LOCK_KEY}):
        if owned_transaction:
            connection.commit()
        if time.monotonic() + pause > deadline:
            raise MigrationLockedError.after(wait_seconds)
        time.sleep(pause)
        pause = min(pause * 2, 0.5)
