"""Text means the same on every backend, whatever the database's default collation: equality,
LIKE and ORDER BY compare code points exactly, and trailing spaces count."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import NullPool

from app.db.session import make_engine, make_session_factory
from app.migrations import drift, upgrade
from app.repositories import UnitOfWork
from tests.backends import ROOT, ThrowawayDatabases
from tests.integration.helpers import run_app

TITLES = ["Lamp", "lamp", "LAMP", "pad", "pad ", "B", "a", "é", "e"]


@pytest.fixture(scope="module")
def linguistic_engine(backend: str, databases: ThrowawayDatabases) -> Iterator[Engine]:
    """A migrated database created with a case-insensitive or linguistic default collation."""
    engine = make_engine(databases.new_linguistic_url(backend, "linguistic"), poolclass=NullPool)
    upgrade(engine)
    factory = make_session_factory(engine)
    with UnitOfWork(factory) as uow:
        owner = uow.users.create({"email": "owner@example.com", "hashed_password": "h"})
        uow.items.create_many({"title": title, "owner_id": owner.id} for title in TITLES)
        uow.commit()
    yield engine
    engine.dispose()


def _titles(engine: Engine, **query: object) -> list[str]:
    with UnitOfWork(sessionmaker(bind=engine)) as uow:
        return [item.title for item in uow.items.list(**query)]  # type: ignore[arg-type]


def test_equality_is_exact_about_case(linguistic_engine: Engine) -> None:
    assert _titles(linguistic_engine, where={"title": "LAMP"}) == ["LAMP"]


def test_equality_counts_trailing_spaces(linguistic_engine: Engine) -> None:
    assert _titles(linguistic_engine, where={"title": "pad"}) == ["pad"]
    assert _titles(linguistic_engine, where={"title": "pad "}) == ["pad "]


def test_equality_tells_accented_letters_apart(linguistic_engine: Engine) -> None:
    assert _titles(linguistic_engine, where={"title__in": ["e"]}) == ["e"]


def test_like_is_case_sensitive(linguistic_engine: Engine) -> None:
    assert _titles(linguistic_engine, where={"title__startswith": "La"}) == ["Lamp"]
    assert _titles(linguistic_engine, where={"title__contains": "AM"}) == ["LAMP"]


def test_order_is_code_point_order(linguistic_engine: Engine) -> None:
    assert _titles(linguistic_engine, order_by=["title"]) == sorted(TITLES)


def test_a_users_email_differing_only_by_accent_is_a_different_email(
    linguistic_engine: Engine,
) -> None:
    with UnitOfWork(sessionmaker(bind=linguistic_engine)) as uow:
        uow.users.create({"email": "rene@example.com", "hashed_password": "h"})
        uow.users.create({"email": "rené@example.com", "hashed_password": "h"})
        assert uow.users.count(where={"email__startswith": "ren"}) == 2


@pytest.mark.backends("postgresql", "mariadb")
def test_a_text_column_whose_collation_drifted_from_the_model_is_a_difference(
    backend: str, fresh_url: str
) -> None:
    engine = make_engine(fresh_url, poolclass=NullPool)
    upgrade(engine)
    assert drift(engine) == []
    linguistic = (
        'ALTER TABLE items ALTER COLUMN title TYPE VARCHAR(255) COLLATE "default"'
        if backend == "postgresql"
        else "ALTER TABLE items MODIFY title VARCHAR(255) CHARACTER SET utf8mb4 "
        "COLLATE utf8mb4_general_ci NOT NULL"
    )
    with engine.begin() as connection:
        connection.exec_driver_sql(linguistic)
    found = drift(engine)
    engine.dispose()
    (title,) = [difference for difference in found if "items.title" in difference]
    # The type reads the same: the message says what differs.
    stored = "default" if backend == "postgresql" else "utf8mb4_general_ci"
    wanted = "C" if backend == "postgresql" else "utf8mb4_nopad_bin"
    assert title.endswith(f"(collation {stored} -> {wanted})"), title


@pytest.mark.backends("postgresql", "mariadb")
def test_autogenerate_writes_the_change_back_to_the_models_collation(
    backend: str, fresh_url: str, tmp_path: Path
) -> None:
    engine = make_engine(fresh_url, poolclass=NullPool)
    upgrade(engine)
    drifted = (
        'ALTER TABLE items ALTER COLUMN title TYPE VARCHAR(255) COLLATE "default"'
        if backend == "postgresql"
        else "ALTER TABLE items MODIFY title VARCHAR(255) CHARACTER SET utf8mb4 "
        "COLLATE utf8mb4_general_ci NOT NULL"
    )
    with engine.begin() as connection:
        connection.exec_driver_sql(drifted)
    engine.dispose()
    shutil.copytree(ROOT / "migrations", tmp_path / "migrations",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(ROOT / "alembic.ini", tmp_path / "alembic.ini")
    env = {"ALEMBIC_CONFIG": str(tmp_path / "alembic.ini")}
    written = run_app("db", "revision", "--autogenerate", "-m", "collation back",
                      database_url=fresh_url, env=env)  # fmt: skip
    assert written.returncode == 0, written.stderr
    (script,) = (tmp_path / "migrations" / "versions").glob("*_collation_back.py")
    source = script.read_text()
    assert '"items",' in source
    assert '"title",' in source
    assert "type_=exact_text(255)" in source
    assert run_app("db", "upgrade", database_url=fresh_url, env=env).returncode == 0
    assert (
        "the database matches the models"
        in run_app("db", "check", database_url=fresh_url, env=env).stdout
    )
