"""Engines and session factories, built from settings by functions; nothing connects at import
and nothing here is kept: the process's own engines live in `app.db.runtime`.

Each backend's connection settings and event listeners come from its module in `app.dialects`;
every engine translates database errors as its statements fail (`app.db.errors`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import fields
from functools import wraps
from typing import Any, TypeVar, cast
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, create_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool, QueuePool

from app.config import Settings, SettingsError, parse_database_url
from app.db import liveness, telemetry
from app.db.error_events import install_translation
from app.db.errors import translate
from app.dialects import backend_for
from app.dialects.base import ConnectOptions
from app.dialects.streams import end_streams_with_their_unit

F = TypeVar("F", bound=Callable[..., Any])


def _telling_aborted(method: F) -> F:
    """`method`, whose refusal to go on in a transaction an earlier error broke (SQLAlchemy's
    `PendingRollbackError`) is the data-layer error for it (`translate`)."""

    @wraps(method)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except sa_exc.PendingRollbackError as exc:
            raise translate(exc) from exc

    return cast(F, run)


class DataSession(Session):
    """A Session whose flush reports a lost optimistic lock as `StaleObjectError` (every flush
    passes here: autoflush, commit's, a repository's, the caller's own), and whose calls after
    an error that broke its transaction (a refused write the caller caught) are refused with
    `InvalidQueryError`, not SQLAlchemy's own error."""

    def flush(self, objects: Any = None) -> None:
        try:
            # Session's own, named: repositories call this on plain Sessions too.
            Session.flush(self, objects)
        except StaleDataError as exc:
            raise translate(exc, table=_stale_table(self, exc)) from exc
        except sa_exc.PendingRollbackError as exc:
            raise translate(exc) from exc

    execute = _telling_aborted(Session.execute)
    scalars = _telling_aborted(Session.scalars)
    get = _telling_aborted(Session.get)
    connection = _telling_aborted(Session.connection)
    begin_nested = _telling_aborted(Session.begin_nested)
    commit = _telling_aborted(Session.commit)

    def scalar(self, *args: Any, **kwargs: Any) -> Any:
        # Written out: wrapped, Session.scalar's overloads are lost to mypy.
        try:
            return Session.scalar(self, *args, **kwargs)
        except sa_exc.PendingRollbackError as exc:
            raise translate(exc) from exc


def _stale_table(session: Session, exc: StaleDataError) -> Any:
    """The table whose row lost its lock. The failed flush has put its rows back as they were,
    so the session no longer lists them as changed; SQLAlchemy names the table in its message,
    and the session holds a row of it."""
    named = _STALE_TABLE.search(str(exc))
    if named is None:
        return None
    for state in session.identity_map.all_states():
        table = state.mapper.local_table
        if getattr(table, "name", None) == named.group(1):
            return table
    return None


_STALE_TABLE = re.compile(r"statement on table '([^']+)'")


class _QueuePool(QueuePool):
    """The usual pool; a checkout that waited DB_POOL_TIMEOUT in vain is a
    DatabaseUnavailableError, and the telemetry hears how long each checkout waited."""

    def _do_get(self) -> Any:
        started = time.perf_counter()
        try:
            return super()._do_get()
        except sa_exc.TimeoutError as exc:
            raise translate(exc) from exc
        finally:
            telemetry.pool_waited(time.perf_counter() - started)


class _AsyncQueuePool(_QueuePool, AsyncAdaptedQueuePool):
    """`_QueuePool` for asyncio engines."""


def make_engine(url: str | URL, **options: Any) -> Engine:
    """Build an engine for `url` with the per-backend settings this project relies on.

    Keyword arguments are those of `engine_options`, plus any of SQLAlchemy's `create_engine`,
    and `causal_reads` (default True: see `app.dialects.galera`).
    """
    parsed = parse_database_url(url)
    observation = _observation(options)
    causal_reads = options.pop("causal_reads", True)
    connect = _connect_options(options)
    engine = create_engine(parsed, **engine_options(parsed, connect=connect, **options))
    _configure(engine, parsed, causal_reads=causal_reads, observation=observation, connect=connect)
    return engine


def make_async_engine(url: str | URL, **options: Any) -> AsyncEngine:
    """The asyncio twin of `make_engine`, from the same URL: psycopg's async mode on PostgreSQL,
    aiosqlite on SQLite, asyncmy on MariaDB; the same settings, timeouts and pragmas."""
    parsed = parse_database_url(url, asynchronous=True)
    observation = _observation(options)
    causal_reads = options.pop("causal_reads", True)
    connect = _connect_options(options)
    engine = create_async_engine(
        parsed, **engine_options(parsed, asynchronous=True, connect=connect, **options)
    )
    _configure(
        engine.sync_engine, parsed, causal_reads=causal_reads, observation=observation,
        connect=connect,
    )  # fmt: skip
    return engine


def _connect_options(options: dict[str, Any]) -> ConnectOptions:
    """What each connection needs, from (and out of) `options`: `connect_timeout` (seconds,
    default 10), `statement_timeout` and `idle_transaction_timeout` (seconds, default None: no
    limit) and `pooler` ("transaction" or "session" behind a connection pooler; default None)."""
    names = [field.name for field in fields(ConnectOptions)]
    return ConnectOptions(**{name: options.pop(name) for name in names if name in options})


# The pooler each engine was built for, so that its twin on the other face can be built alike.
_POOLERS: WeakKeyDictionary[Engine, str | None] = WeakKeyDictionary()


def pooler_of(engine: Engine | AsyncEngine) -> str | None:
    """The `pooler` mode `engine` was built with (None: it connects to the server itself)."""
    return _POOLERS.get(engine.sync_engine if isinstance(engine, AsyncEngine) else engine)


def _observation(options: dict[str, Any]) -> telemetry.Observation:
    """The engine's statement telemetry, from (and out of) `options`: `application` (the
    tags' application, default "app"), `query_tags` (default True) and `slow_statement_ms`
    (default None: no slow-statement log)."""
    return telemetry.Observation(
        application=options.pop("application", "app"),
        tags=options.pop("query_tags", True),
        slow_ms=options.pop("slow_statement_ms", None),
    )


def engine_options(
    url: URL,
    *,
    connect: ConnectOptions | None = None,
    echo: bool = False,
    echo_parameters: bool = False,
    pool_size: int = 5,
    max_overflow: int = 10,
    pool_timeout: float = 30.0,
    asynchronous: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """`create_engine` arguments for `url`, the same for blocking and asyncio engines.

    `connect.statement_timeout` (seconds) bounds every statement, waiting for locks included, so
    a lost server or a runaway query ends in an error, not a hang. SQLite is local: its
    `busy_timeout` bounds waiting for locks. Statement parameters stay out of echo logs and
    exception text unless `echo_parameters`.
    """
    backend = backend_for(url.get_backend_name())
    kwargs: dict[str, Any] = {
        "echo": echo,
        # Pinged only when there is a reason to doubt it (app.db.liveness).
        "pool_pre_ping": False,
        "hide_parameters": not echo_parameters,
        "connect_args": backend.connect_args(url, connect or ConnectOptions()),
    }
    pool = backend.pool_options(url)
    if "poolclass" not in pool and "poolclass" not in options:
        kwargs.update(
            poolclass=_AsyncQueuePool if asynchronous else _QueuePool,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
        )
    kwargs.update(pool)
    kwargs.update(options)
    return kwargs


def _configure(
    engine: Engine,
    url: URL,
    *,
    causal_reads: bool,
    observation: telemetry.Observation,
    connect: ConnectOptions,
) -> None:
    backend = backend_for(url.get_backend_name())
    install_translation(engine, backend.refuses_writes)
    liveness.install(engine, None if backend.file_database else backend.spoke_while_idle)
    end_streams_with_their_unit(engine)
    observation.install(
        engine, with_comment=backend.with_comment, without_literals=backend.without_literals
    )
    backend.configure(engine, url, causal_reads=causal_reads, connect=connect)
    _POOLERS[engine] = connect.pooler


def make_session_factory(bind: Any, **options: Any) -> sessionmaker[DataSession]:
    """A session factory bound to `bind` (an engine or a connection); objects stay readable
    after commit. Keyword arguments are `sessionmaker`'s."""
    return sessionmaker(
        bind=bind,
        class_=DataSession,
        **{"expire_on_commit": False, "autoflush": True, **options},
    )


def make_async_session_factory(bind: Any, **options: Any) -> async_sessionmaker[AsyncSession]:
    """The asyncio twin of `make_session_factory`."""
    return async_sessionmaker(
        bind=bind,
        sync_session_class=DataSession,
        **{"expire_on_commit": False, "autoflush": True, **options},
    )


def engine_from_settings(settings: Settings, **overrides: Any) -> Engine:
    """Build the engine that `settings` describes (keyword arguments override them)."""
    return make_engine(settings.database_url, **{**settings_options(settings), **overrides})


def async_engine_from_settings(settings: Settings, **overrides: Any) -> AsyncEngine:
    """Build the asyncio engine that `settings` describes (keyword arguments override them)."""
    return make_async_engine(settings.database_url, **{**settings_options(settings), **overrides})


def settings_options(settings: Settings) -> dict[str, Any]:
    """The engine options that `settings` give (for `make_engine` and `make_async_engine`)."""
    return {
        "echo": settings.db_echo,
        "echo_parameters": settings.db_echo_parameters,
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout,
        "connect_timeout": settings.db_connect_timeout,
        "statement_timeout": settings.db_statement_timeout or None,
        "idle_transaction_timeout": settings.db_idle_transaction_timeout or None,
        "pooler": settings.database_pooler or None,
        "causal_reads": settings.db_causal_reads,
        "application": settings.app_name,
        "query_tags": settings.db_query_tags,
        "slow_statement_ms": settings.db_slow_statement_ms or None,
    }


def migration_engine(settings: Settings) -> Engine:
    """An engine for migrations: no pool, and no statement timeout of the application's (a
    migration has its own, DB_MIGRATION_STATEMENT_TIMEOUT). Behind a transaction pooler it
    connects to DATABASE_DIRECT_URL: the migration lock lives as long as a session."""
    options: dict[str, Any] = {"poolclass": NullPool, "statement_timeout": None}
    if settings.database_pooler == "transaction":
        if not settings.database_direct_url:
            raise SettingsError(
                "migrations hold a lock for the length of a database session, which a "
                "transaction pooler does not keep: set DATABASE_DIRECT_URL to the PostgreSQL "
                "server's own address"
            )
        return make_engine(
            settings.database_direct_url,
            **{**settings_options(settings), **options, "pooler": None},
        )
    return engine_from_settings(settings, **options)
