"""This package's branch of migrations: on top of the project's, down to base and up again, and
the database then matches the models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from app.db.admin import create_database, drop_database
from app.db.session import make_engine
from app.migrations import downgrade, drift, migration_state, upgrade


@pytest.fixture
def empty_engine(app_database_url: URL, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty database of its own, beside the tests' one."""
    if app_database_url.get_backend_name() == "sqlite":
        url = app_database_url.set(database=str(tmp_path / "migrations.db"))
    else:
        url = app_database_url.set(database=f"{app_database_url.database}_migrations")
        drop_database(url)
        create_database(url)
    engine = make_engine(url, poolclass=NullPool)
    try:
        yield engine
    finally:
        engine.dispose()
        drop_database(url)


def test_the_branch_goes_up_down_and_up_again(empty_engine: Engine) -> None:
    upgrade(empty_engine)
    state = migration_state(empty_engine)
    assert state.at_head
    assert len(state.heads) == 2
    assert drift(empty_engine) == []
    downgrade(empty_engine, "todo@base")
    tables = set(inspect(empty_engine).get_table_names())
    assert "users" in tables
    assert not {t for t in tables if t.startswith("todo_")}
    downgrade(empty_engine, "base")
    upgrade(empty_engine)
    assert drift(empty_engine) == []
