"""A pytest plugin for projects that build on this data layer.

Enable it with `pytest -p app.testing`, or `pytest_plugins = ["app.testing"]` in a conftest.py.
It migrates a database of the tests' own once per run and gives each test a unit of work in
which everything the test does, its commits included, is rolled back at the end:

    def test_signing_up_twice_is_a_conflict(uow, user_factory):
        user_factory(email="ada@example.com")
        with pytest.raises(ConflictError):
            register_user(uow, {"email": "ADA@example.com", "password": "long enough"})

The database: `--app-database-url URL` (or APP_TEST_DATABASE_URL) is used as it is; otherwise a
throwaway database is created next to the one DATABASE_URL names (a temporary file for SQLite)
and dropped after the run. `async_uow` needs pytest-asyncio.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import NullPool

from app.config import parse_database_url
from app.db.admin import create_database, drop_database
from app.db.models import Item, User
from app.db.runtime import get_settings
from app.db.session import (
    DataSession,
    make_async_engine,
    make_async_session_factory,
    make_engine,
    make_session_factory,
    pooler_of,
)
from app.dialects import backend_for
from app.migrations import upgrade
from app.repositories import (
    AsyncUnitOfWork,
    UnitOfWork,
    async_unit_of_work_class,
    unit_of_work_class,
)

URL_OPTION = "--app-database-url"
URL_VARIABLE = "APP_TEST_DATABASE_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        URL_OPTION,
        default=os.environ.get(URL_VARIABLE),
        help="database for app.testing to migrate and use as it is (default: a throwaway "
        "database beside DATABASE_URL's, dropped after the run)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # pytest-alembic (installed with app[dev]) binds its built-in migration tests to
    # tests/conftest.py through a collector that cannot be built on pytest 9 (it extends a node
    # id pytest 9 no longer keeps), which fails the whole collection. Its fixtures stay; only
    # that collector is kept out (tests/migrations runs the built-in tests as plain tests).
    if pytest.version_tuple >= (9,):
        config.pluginmanager.set_blocked(_PYTEST_ALEMBIC_COLLECTOR)


_PYTEST_ALEMBIC_COLLECTOR = "pytest-alembic"


@pytest.fixture(scope="session")
def app_database_url(request: pytest.FixtureRequest) -> Iterator[URL]:
    """The URL of the tests' database: given, or made for this run and dropped after it."""
    given = request.config.getoption(URL_OPTION)
    if given:
        yield parse_database_url(given)
        return
    base = parse_database_url(get_settings().database_url)
    with tempfile.TemporaryDirectory() as tmp:
        if backend_for(base.get_backend_name()).file_database:
            url = base.set(database=str(Path(tmp) / "app_test.db"))
        else:
            url = base.set(database=f"{base.database or 'app'}_test_{uuid.uuid4().hex[:8]}")
        create_database(url)
        try:
            yield url
        finally:
            drop_database(url)


@pytest.fixture(scope="session")
def app_engine(app_database_url: URL) -> Iterator[Engine]:
    """An engine on the tests' database, migrated to the newest revision."""
    engine = make_engine(app_database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def app_connection(app_engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that is rolled back after the test."""
    with app_engine.connect() as connection:
        transaction = connection.begin()
        yield connection
        if transaction.is_active:
            transaction.rollback()


@pytest.fixture
def app_session_factory(app_connection: Connection) -> sessionmaker[DataSession]:
    """Sessions joined to the test's transaction: their commits become savepoint releases."""
    return make_session_factory(app_connection, join_transaction_mode="create_savepoint")


@pytest.fixture
def uow(app_session_factory: sessionmaker[DataSession]) -> UnitOfWork:
    """A unit of work (not yet entered) whose commits become savepoints of the test's
    transaction: the test sees them, the next test does not. Its class is
    `unit_of_work_class()` (APP_UNIT_OF_WORK)."""
    return unit_of_work_class()(app_session_factory)


_numbers = itertools.count(1)


@pytest.fixture
def user_factory(uow: UnitOfWork) -> Callable[..., User]:
    """`user_factory(**fields)`: a committed user; unique email unless given."""

    def make(**fields: Any) -> User:
        values = {"email": f"user{next(_numbers)}@example.test", "hashed_password": "x"}
        with uow:
            user = uow.users.create({**values, **fields})
            uow.commit()
        return user

    return make


@pytest.fixture
def item_factory(uow: UnitOfWork, user_factory: Callable[..., User]) -> Callable[..., Item]:
    """`item_factory(**fields)`: a committed item, of a new user unless `owner_id` is given."""

    def make(**fields: Any) -> Item:
        if "owner_id" not in fields:
            fields["owner_id"] = user_factory().id
        with uow:
            item = uow.items.create({"title": f"item {next(_numbers)}", **fields})
            uow.commit()
        return item

    return make


try:
    import pytest_asyncio
except ImportError:  # async_uow needs pytest-asyncio; everything else works without it
    pass
else:

    @pytest_asyncio.fixture
    async def async_app_session_factory(
        app_engine: Engine,
    ) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
        """`app_session_factory` for asyncio tests (`run_in_transaction_async(...,
        session_factory=)`): sessions in one transaction of their own, rolled back after the
        test. It is another connection than the blocking fixtures': neither sees what the other
        wrote, and on SQLite the second to write waits for the first (busy)."""
        engine = make_async_engine(app_engine.url, poolclass=NullPool, pooler=pooler_of(app_engine))
        connection = await engine.connect()
        transaction = await connection.begin()
        try:
            yield make_async_session_factory(connection, join_transaction_mode="create_savepoint")
        finally:
            if transaction.is_active:
                await transaction.rollback()
            await connection.close()
            await engine.dispose()

    @pytest_asyncio.fixture
    async def async_uow(
        async_app_session_factory: async_sessionmaker[AsyncSession],
    ) -> AsyncUnitOfWork:
        """`uow` for asyncio tests: everything it commits is rolled back after the test."""
        return async_unit_of_work_class()(async_app_session_factory)
