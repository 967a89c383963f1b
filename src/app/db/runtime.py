"""The process's state, in one explicit object: the settings and what is built from them (the
engine, its session factory, the replica set, an asyncio engine per event loop).

`Runtime(settings)` builds nothing until asked. The default runtime, behind `get_settings()`,
`get_engine()` and the rest, reads the environment on first use; `use_runtime(...)` puts another
in its place for a block (a test, a tool pointed at another database) and puts the old one
back after.
"""

from __future__ import annotations

import asyncio
import logging
import pkgutil
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from importlib.util import find_spec
from types import ModuleType
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import sessionmaker

from app.config import Settings, SettingsError
from app.db.session import (
    DataSession,
    async_engine_from_settings,
    engine_from_settings,
    make_async_session_factory,
    make_session_factory,
    settings_options,
)
from app.topology.replicas import ReplicaSet

_log = logging.getLogger("app")


class Runtime:
    """Settings and the engines, session factories and replicas built from them, on demand."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        """`settings` (default: read from the environment and `.env`), with `overrides` of
        its fields (`Runtime(database_url="sqlite://")`)."""
        base = settings if settings is not None else Settings()
        # Built again rather than copied, so the overrides are validated like the rest.
        self.settings = type(base)(**{**base.model_dump(), **overrides}) if overrides else base
        # An asyncio engine's pooled connections belong to the event loop that opened them: one
        # per loop, so a second `asyncio.run()` (a script, a test) gets its own.
        self._async: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[AsyncEngine, async_sessionmaker[AsyncSession]]
        ] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    @cached_property
    def cursor_key(self) -> bytes:
        """The key that signs pagination cursors (SECRET_KEY); said once when it is the
        placeholder, which anyone can read in this code and forge cursors with."""
        if self.settings.signs_with_a_public_key:
            _log.warning(
                "pagination cursors are signed with the development placeholder SECRET_KEY, "
                "which anyone can read: set SECRET_KEY outside development"
            )
        return self.settings.secret_key.get_secret_value().encode()

    @cached_property
    def extensions(self) -> tuple[ModuleType, ...]:
        """The packages APP_EXTENSIONS names, imported (their models join `Base.metadata`),
        each with its `repositories` module if it has one, so the repositories it declares
        are its models' (`Repository.of`) before anything else imports them."""
        packages = tuple(_imported(name, "APP_EXTENSIONS") for name in self.settings.extensions)
        for package in packages:
            if hasattr(package, "__path__") and find_spec(f"{package.__name__}.repositories"):
                _imported(f"{package.__name__}.repositories", "APP_EXTENSIONS")
        return packages

    @cached_property
    def unit_of_work(self) -> Any:
        """The object APP_UNIT_OF_WORK names (None: not set), imported after the extensions;
        `app.repositories.unit_of_work_class` checks that it is a unit-of-work class."""
        name = self.settings.app_unit_of_work
        self.extensions  # noqa: B018 - their models first, as the class's module expects
        return _imported(name, "APP_UNIT_OF_WORK") if name else None

    @cached_property
    def engine(self) -> Engine:
        """The engine DATABASE_URL names."""
        return engine_from_settings(self.settings)

    @cached_property
    def session_factory(self) -> sessionmaker[DataSession]:
        """Sessions on `engine`."""
        return make_session_factory(self.engine)

    @cached_property
    def replicas(self) -> ReplicaSet | None:
        """The replicas of `engine` (DATABASE_REPLICA_URLS), or None when there are none."""
        if not self.settings.replica_urls:
            return None
        return ReplicaSet.build(
            self.engine,
            self.settings.replica_urls,
            max_lag=self.settings.db_replica_max_lag,
            **settings_options(self.settings),
        )

    def async_engine(self) -> AsyncEngine:
        """The asyncio engine for the running event loop, built there on first use."""
        return self._async_pair()[0]

    def async_session_factory(self) -> async_sessionmaker[AsyncSession]:
        """Sessions on the running event loop's asyncio engine."""
        return self._async_pair()[1]

    def _async_pair(self) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
        loop = asyncio.get_running_loop()
        with self._lock:
            found = self._async.get(loop)
            if found is None:
                engine = async_engine_from_settings(self.settings)
                found = self._async[loop] = (engine, make_async_session_factory(engine))
        return found

    def close(self) -> None:
        """Stop the replica monitor and close the blocking engines' connections (asyncio
        engines are closed by their own loop: `await runtime.async_engine().dispose()`)."""
        if "replicas" in self.__dict__ and self.replicas is not None:
            self.replicas.close()
        if "engine" in self.__dict__:
            self.engine.dispose()


def _imported(name: str, setting: str) -> Any:
    try:
        return pkgutil.resolve_name(name)
    except (ImportError, AttributeError, ValueError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    raise SettingsError(f"{setting} names {name!r}, which cannot be imported ({reason})")


_default: Runtime | None = None
_default_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The runtime in use: the one `use_runtime` put in place, else the default one."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Runtime()
    return _default


@contextmanager
def use_runtime(runtime: Runtime) -> Iterator[Runtime]:
    """Make `runtime` the one in use inside the block; the previous one is back after it (and
    `runtime` is closed)."""
    global _default
    previous, _default = _default, runtime
    try:
        yield runtime
    finally:
        _default = previous
        runtime.close()


def get_settings() -> Settings:
    """The settings of the runtime in use."""
    return get_runtime().settings


def get_extensions() -> tuple[ModuleType, ...]:
    """The extension packages of the runtime in use (APP_EXTENSIONS), imported."""
    return get_runtime().extensions


def get_engine() -> Engine:
    """The engine of the runtime in use, built on first use."""
    return get_runtime().engine


def get_session_factory() -> sessionmaker[DataSession]:
    """The session factory of the runtime in use."""
    return get_runtime().session_factory


def get_replicas() -> ReplicaSet | None:
    """The replica set of the runtime in use (None when there are no replicas)."""
    return get_runtime().replicas


def get_async_engine() -> AsyncEngine:
    """The asyncio engine of the runtime in use, in the running event loop."""
    return get_runtime().async_engine()


def get_async_session_factory() -> async_sessionmaker[AsyncSession]:
    """The asyncio session factory of the runtime in use, in the running event loop."""
    return get_runtime().async_session_factory()
