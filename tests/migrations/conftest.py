"""pytest-alembic's fixtures, pointed at a fresh empty database on each backend."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.pool import NullPool

from app.db.session import make_engine
from tests.backends import ROOT, ThrowawayDatabases

_counter = itertools.count()


@pytest.fixture
def alembic_config() -> dict[str, Any]:
    return {"file": str(ROOT / "alembic.ini")}


@pytest.fixture
def alembic_engine(backend: str, databases: ThrowawayDatabases) -> Iterator[Engine]:
    """An engine on a database made for this test alone, with no tables."""
    url = databases.new_url(backend, f"migrations_{next(_counter)}")
    engine = make_engine(url, poolclass=NullPool)
    yield engine
    engine.dispose()
