"""Engines and session factories, built from settings by functions; nothing connects at import."""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool, StaticPool
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_random

from app.config import Settings, get_settings, parse_database_url
from app.db.galera import install_server_choice
from app.db.replicas import ReplicaSet
from app.db.streaming import refuse_statements_while_streaming

SQLITE_BUSY_TIMEOUT_MS = 5_000
# An execution option naming the statement that opens a transaction on SQLite, for callers that
# need the write lock up front ("BEGIN IMMEDIATE"), as migrations do.
SQLITE_BEGIN_OPTION = "sqlite_begin"
MARIADB_SQL_MODE = "TRADITIONAL,NO_ENGINE_SUBSTITUTION"


def make_engine(url: str | URL, **options: Any) -> Engine:
    """Build an engine for `url` with the per-backend settings this project relies on.

    Keyword arguments are those of `engine_options`, plus any of SQLAlchemy's `create_engine`,
    and `causal_reads` (default True: see `app.db.galera`).
    """
    parsed = parse_database_url(url)
    causal_reads = options.pop("causal_reads", True)
    engine = create_engine(parsed, **engine_options(parsed, **options))
    _configure(engine, parsed, causal_reads=causal_reads)
    return engine


def make_async_engine(url: str | URL, **options: Any) -> AsyncEngine:
    """The asyncio twin of `make_engine`, from the same URL: psycopg's async mode on PostgreSQL,
    aiosqlite on SQLite, asyncmy on MariaDB; the same settings, timeouts and pragmas."""
    parsed = parse_database_url(url, asynchronous=True)
    causal_reads = options.pop("causal_reads", True)
    engine = create_async_engine(parsed, **engine_options(parsed, **options))
    _configure(engine.sync_engine, parsed, causal_reads=causal_reads)
    return engine


def engine_options(
    url: URL,
    *,
    echo: bool = False,
    echo_parameters: bool = False,
    pool_size: int = 5,
    max_overflow: int = 10,
    pool_timeout: float = 30.0,
    connect_timeout: int = 10,
    statement_timeout: float | None = None,
    **options: Any,
) -> dict[str, Any]:
    """`create_engine` arguments for `url`, the same for blocking and asyncio engines.

    `statement_timeout` (seconds) bounds every statement, waiting for locks included, so a lost
    server or a runaway query ends in an error, not a hang. SQLite is local: its `busy_timeout`
    bounds waiting for locks. Statement parameters stay out of echo logs and exception text
    unless `echo_parameters`.
    """
    backend = url.get_backend_name()
    kwargs: dict[str, Any] = {
        "echo": echo,
        "pool_pre_ping": True,
        "hide_parameters": not echo_parameters,
    }
    if _in_memory(url):
        # One shared connection, or every checkout would see a different empty database.
        kwargs["poolclass"] = StaticPool
    elif "poolclass" not in options:
        kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout)
    if backend == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False}
    else:
        connect_args: dict[str, Any] = {"connect_timeout": connect_timeout}
        if backend == "postgresql":
            # TCP keepalives notice a server that vanished without closing the connection.
            connect_args.update(keepalives=1, keepalives_idle=10, keepalives_interval=5,
                                keepalives_count=3)  # fmt: skip
            # Sessions in UTC, like everything stored: timestamps come back already in UTC
            # (psycopg's own timezone.utc), with no conversion per value.
            server_options = ["-c TimeZone=UTC"]
            if statement_timeout:
                server_options.append(f"-c statement_timeout={int(statement_timeout * 1000)}")
            connect_args["options"] = " ".join(server_options)
        else:
            # One SET for the session settings: both drivers run init_command, and asyncmy
            # mangles its own sql_mode argument.
            settings = [f"sql_mode = '{MARIADB_SQL_MODE}'"]
            if statement_timeout:
                settings.append(f"max_statement_time = {statement_timeout:g}")
                # A read that waits this long means the server is gone.
                connect_args["read_timeout"] = int(statement_timeout) + 30
            connect_args.update(
                charset="utf8mb4", init_command="SET SESSION " + ", ".join(settings)
            )
        kwargs["connect_args"] = connect_args
    kwargs.update(options)
    return kwargs


def _in_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _configure(engine: Engine, url: URL, *, causal_reads: bool) -> None:
    if url.get_backend_name() == "sqlite":
        _configure_sqlite(engine, file_database=not _in_memory(url))
    elif url.get_backend_name() != "postgresql":
        install_server_choice(engine, url, causal_reads=causal_reads)
        refuse_statements_while_streaming(engine)


def _configure_sqlite(engine: Engine, *, file_database: bool) -> None:
    """Foreign keys, WAL and a busy timeout; and let SQLAlchemy, not pysqlite, emit BEGIN.

    pysqlite's own transaction handling skips BEGIN before some statements and commits
    implicitly before DDL, which breaks SAVEPOINT and ROLLBACK. Turning it off and emitting
    BEGIN ourselves makes transactions behave as on the other backends.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            # LIKE is case-sensitive on PostgreSQL and MariaDB (binary collation): here too.
            cursor.execute("PRAGMA case_sensitive_like=ON")
            if file_database:
                _use_wal(cursor)
                # WAL with NORMAL sync stays consistent after a crash; it only may lose the
                # last commits on power loss, which FULL would keep at several times the cost.
                cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(
            connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "BEGIN")
        )


def _use_wal(cursor: Any) -> None:
    """Switch a database file to WAL unless it already is.

    While another process creates the file or holds its write lock, even reading the journal
    mode can fail at once with "database is locked" (SQLite does not wait on its busy timeout
    there), so the switch is retried for as long as that timeout.
    """
    retrying = Retrying(
        stop=stop_after_delay(SQLITE_BUSY_TIMEOUT_MS / 1000),
        wait=wait_random(0.01, 0.05),
        retry=retry_if_exception_type(sqlite3.OperationalError),
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            cursor.execute("PRAGMA journal_mode")  # (an asyncio cursor returns no cursor)
            if cursor.fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to `engine`; objects stay readable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


def make_async_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """The asyncio twin of `make_session_factory`."""
    return async_sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


def engine_from_settings(settings: Settings, **overrides: Any) -> Engine:
    """Build the engine that `settings` describes (keyword arguments override them)."""
    return make_engine(settings.database_url, **{**_settings_options(settings), **overrides})


def async_engine_from_settings(settings: Settings, **overrides: Any) -> AsyncEngine:
    """Build the asyncio engine that `settings` describes (keyword arguments override them)."""
    return make_async_engine(settings.database_url, **{**_settings_options(settings), **overrides})


def _settings_options(settings: Settings) -> dict[str, Any]:
    return {
        "echo": settings.db_echo,
        "echo_parameters": settings.db_echo_parameters,
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout,
        "connect_timeout": settings.db_connect_timeout,
        "statement_timeout": settings.db_statement_timeout or None,
        "causal_reads": settings.db_causal_reads,
    }


def migration_engine(settings: Settings) -> Engine:
    """An engine for migrations: no pool, and no statement timeout of the application's (a
    migration has its own, DB_MIGRATION_STATEMENT_TIMEOUT)."""
    return engine_from_settings(settings, poolclass=NullPool, statement_timeout=None)


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    """The engine for the default settings, built on first use."""
    return engine_from_settings(get_settings())


@lru_cache(maxsize=1)
def get_session_factory() -> sessionmaker[Session]:
    """The session factory for the default engine, built on first use."""
    return make_session_factory(get_engine())


@lru_cache(maxsize=1)
def get_replicas() -> ReplicaSet | None:
    """The replicas of the default engine (DATABASE_REPLICA_URLS), or None when there are none."""
    settings = get_settings()
    if not settings.replica_urls:
        return None
    return ReplicaSet.build(
        get_engine(),
        settings.replica_urls,
        max_lag=settings.db_replica_max_lag,
        **_settings_options(settings),
    )


# An asyncio engine's pooled connections belong to the event loop that opened them: the default
# engine is kept per loop, so a second `asyncio.run()` (a script, a test) gets its own.
_async_defaults: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, tuple[AsyncEngine, async_sessionmaker[AsyncSession]]
] = weakref.WeakKeyDictionary()


def get_async_engine() -> AsyncEngine:
    """The asyncio engine for the default settings in the running event loop, built on first
    use there."""
    return _async_default()[0]


def get_async_session_factory() -> async_sessionmaker[AsyncSession]:
    """The asyncio session factory for the default engine in the running event loop."""
    return _async_default()[1]


def _async_default() -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
    loop = asyncio.get_running_loop()
    found = _async_defaults.get(loop)
    if found is None:
        engine = async_engine_from_settings(get_settings())
        found = _async_defaults[loop] = (engine, make_async_session_factory(engine))
    return found
