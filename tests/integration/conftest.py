"""Fixtures of the integration tests that need a database of their own."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.db.session import make_engine
from app.migrations import upgrade
from tests.backends import ThrowawayDatabases

_counter = itertools.count()


@pytest.fixture
def fresh_url(backend: str, databases: ThrowawayDatabases) -> str:
    """The URL (password included) of a new, empty database for this test alone."""
    url = databases.new_url(backend, f"own_{next(_counter)}")
    return url.render_as_string(hide_password=False)


@pytest.fixture
def committed_url(committed_engine: Engine, committing_factory: sessionmaker[Session]) -> str:
    """A migrated database that really commits (emptied after the test by committing_factory)."""
    return committed_engine.url.render_as_string(hide_password=False)


@pytest.fixture
def loaded(fresh_url: str) -> Iterator[Engine]:
    """An engine on a fresh database migrated to head, with a pool big enough for the threads
    of live traffic."""
    engine = make_engine(fresh_url, pool_size=8)
    upgrade(engine)
    yield engine
    engine.dispose()
