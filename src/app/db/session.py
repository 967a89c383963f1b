"""Engines and session factories, built from settings by functions; nothing connects at import
and nothing here is kept: the process's own engines live in `app.db.runtime`.

Each backend's connection settings and event listeners come from its module in `app.dialects`;
every engine translates database errors as its statements fail (`app.db.errors`).
"""

from __future__ import annotations

import time
from typing import Any

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

from app.config import Settings, parse_database_url
from app.db import telemetry
from app.db.errors import install_translation, translate
from app.dialects import backend_for
from app.dialects.base import ConnectOptions


class DataSession(Session):
    """A Session whose flush reports a lost optimistic lock as `StaleObjectError` (every flush
    passes here: autoflush, commit's, a repository's, the caller's own)."""

    def flush(self, objects: Any = None) -> None:
        try:
            # Session's own, named: repositories call this on plain Sessions too.
            Session.flush(self, objects)
        except StaleDataError as exc:
            raise translate(exc, table=_stale_table(self)) from exc


def _stale_table(session: Session) -> Any:
    # The rows being flushed are of the model that lost its lock (one kind in practice).
    for instance in (*session.dirty, *session.deleted):
        return type(instance).__table__
    return None


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
    engine = create_engine(parsed, **engine_options(parsed, **options))
    _configure(engine, parsed, causal_reads=causal_reads, observation=observation)
    return engine


def make_async_engine(url: str | URL, **options: Any) -> AsyncEngine:
    """The asyncio twin of `make_engine`, from the same URL: psycopg's async mode on PostgreSQL,
    aiosqlite on SQLite, asyncmy on MariaDB; the same settings, timeouts and pragmas."""
    parsed = parse_database_url(url, asynchronous=True)
    observation = _observation(options)
    causal_reads = options.pop("causal_reads", True)
    engine = create_async_engine(parsed, **engine_options(parsed, asynchronous=True, **options))
    _configure(engine.sync_engine, parsed, causal_reads=causal_reads, observation=observation)
    return engine


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
    echo: bool = False,
    echo_parameters: bool = False,
    pool_size: int = 5,
    max_overflow: int = 10,
    pool_timeout: float = 30.0,
    connect_timeout: int = 10,
    statement_timeout: float | None = None,
    asynchronous: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """`create_engine` arguments for `url`, the same for blocking and asyncio engines.

    `statement_timeout` (seconds) bounds every statement, waiting for locks included, so a lost
    server or a runaway query ends in an error, not a hang. SQLite is local: its `busy_timeout`
    bounds waiting for locks. Statement parameters stay out of echo logs and exception text
    unless `echo_parameters`.
    """
    backend = backend_for(url.get_backend_name())
    kwargs: dict[str, Any] = {
        "echo": echo,
        "pool_pre_ping": True,
        "hide_parameters": not echo_parameters,
        "connect_args": backend.connect_args(
            url, ConnectOptions(connect_timeout, statement_timeout)
        ),
    }
    pool = backend.pool_options(url)
    if pool:
        kwargs.update(pool)
    elif "poolclass" not in options:
        kwargs.update(
            poolclass=_AsyncQueuePool if asynchronous else _QueuePool,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
        )
    kwargs.update(options)
    return kwargs


def _configure(
    engine: Engine, url: URL, *, causal_reads: bool, observation: telemetry.Observation
) -> None:
    install_translation(engine)
    observation.install(engine)
    backend_for(url.get_backend_name()).configure(engine, url, causal_reads=causal_reads)


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
        "causal_reads": settings.db_causal_reads,
        "application": settings.app_name,
        "query_tags": settings.db_query_tags,
        "slow_statement_ms": settings.db_slow_statement_ms or None,
    }


def migration_engine(settings: Settings) -> Engine:
    """An engine for migrations: no pool, and no statement timeout of the application's (a
    migration has its own, DB_MIGRATION_STATEMENT_TIMEOUT)."""
    return engine_from_settings(settings, poolclass=NullPool, statement_timeout=None)
