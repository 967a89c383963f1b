"""pytest-alembic's fixtures, pointed at a fresh empty database on each backend."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from alembic.config import Config
from sqlalchemy import Engine
from sqlalchemy.pool import NullPool

from app.db.session import make_engine
from tests.backends import ROOT, ThrowawayDatabases

_counter = itertools.count()


@pytest.fixture
def alembic_config() -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["configure_logger"] = False
    return config


@pytest.fixture
def alembic_engine(backend: str, databases: ThrowawayDatabases) -> Iterator[Engine]:
    """An engine on a database made for this test alone, with no tables."""
    url = databases.new_url(backend, f"migrations_{next(_counter)}")
    engine = make_engine(url, poolclass=NullPool)
    yield engine
    engine.dispose()
