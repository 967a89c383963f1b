"""The seed on every backend: idempotent, extendable, crash-safe, and careful where it runs."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.pool import NullPool

from app.config import Settings
from app.db.session import make_engine
from app.migrations import upgrade
from app.seed import SeedOptions, SeedRefusedError, seed_database
from tests.backends import ROOT, ThrowawayDatabases

_counter = itertools.count()


@pytest.fixture
def fresh_engine(backend: str, databases: ThrowawayDatabases) -> Iterator[Engine]:
    """An engine on a new, empty (unmigrated) database of its own."""
    engine = make_engine(databases.new_url(backend, f"seed_{next(_counter)}"), poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture
def migrated_engine(fresh_engine: Engine) -> Engine:
    upgrade(fresh_engine)
    return fresh_engine


def _settings(**overrides: object) -> Settings:
    return Settings(**{"app_env": "test", **overrides})  # type: ignore[arg-type]


def _snapshot(engine: Engine) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with engine.connect() as connection:
        users = connection.execute(
            text(
                "SELECT id, email, full_name, hashed_password, is_active, is_superuser, "
                "created_at, version FROM users ORDER BY email"
            )
        ).all()
        items = connection.execute(
            text("SELECT id, title, description, owner_id, created_at FROM items ORDER BY id")
        ).all()
    return [tuple(row) for row in users], [tuple(row) for row in items]


def _counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as connection:
        return (
            connection.execute(text("SELECT count(*) FROM users")).scalar_one(),
            connection.execute(text("SELECT count(DISTINCT email) FROM users")).scalar_one(),
            connection.execute(text("SELECT count(*) FROM items")).scalar_one(),
        )


def test_a_default_run_makes_an_admin_and_a_few_demo_users_with_items(
    migrated_engine: Engine,
) -> None:
    summary = seed_database(migrated_engine, _settings(), SeedOptions())
    assert summary.inserted == 1 + 5 + 15
    with migrated_engine.connect() as connection:
        admin = connection.execute(
            text("SELECT email, is_superuser FROM users WHERE is_superuser = :yes"), {"yes": True}
        ).one()
    assert admin.email == "admin@example.com"
    assert _counts(migrated_engine) == (6, 6, 15)


def test_running_twice_leaves_exactly_the_same_rows(migrated_engine: Engine) -> None:
    options = SeedOptions(users=300, items_per_user=2, batch_size=100)
    first = seed_database(migrated_engine, _settings(), options)
    before = _snapshot(migrated_engine)
    second = seed_database(migrated_engine, _settings(), options)
    assert (first.inserted, first.already_present) == (901, 0)
    assert (second.inserted, second.already_present) == (0, 901)
    assert _snapshot(migrated_engine) == before


def test_a_larger_run_adds_exactly_the_missing_users(migrated_engine: Engine) -> None:
    seed_database(migrated_engine, _settings(), SeedOptions(users=2000, items_per_user=1))
    summary = seed_database(migrated_engine, _settings(), SeedOptions(users=3000, items_per_user=1))
    assert summary.inserted == 2000  # 1000 users and their 1000 items
    assert _counts(migrated_engine) == (3001, 3001, 3000)


def test_the_same_options_give_the_same_data_whatever_the_batch_size(
    backend: str, databases: ThrowawayDatabases, migrated_engine: Engine
) -> None:
    seed_database(migrated_engine, _settings(), SeedOptions(users=50, seed=7, batch_size=50))
    other = make_engine(databases.new_url(backend, f"seed_{next(_counter)}"), poolclass=NullPool)
    try:
        upgrade(other)
        seed_database(other, _settings(), SeedOptions(users=50, seed=7, batch_size=7))
        users_a, items_a = _snapshot(migrated_engine)
        users_b, items_b = _snapshot(other)
    finally:
        other.dispose()
    without_hash = [row[:3] + row[4:] for row in users_a]
    assert without_hash == [row[:3] + row[4:] for row in users_b]
    assert items_a == items_b


def test_a_person_registered_with_a_seed_email_is_left_alone_and_their_items_skipped(
    migrated_engine: Engine,
) -> None:
    with migrated_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (id, email, full_name, hashed_password, created_at, updated_at) "
                "VALUES (:id, 'user3@example.com', 'A real person', 'their-hash', :now, :now)"
            ),
            {"id": "0" * 31 + "1", "now": "2026-01-01 00:00:00"},
        )
    first = seed_database(migrated_engine, _settings(), SeedOptions())
    again = seed_database(migrated_engine, _settings(), SeedOptions())
    # user3 and its 3 items are left out; the admin, 4 demo users and their 12 items are in.
    assert (first.inserted, first.skipped) == (1 + 4 + 12, 4)
    assert (again.inserted, again.already_present, again.skipped) == (0, 17, 4)
    with migrated_engine.connect() as connection:
        person = connection.execute(
            text("SELECT full_name, hashed_password FROM users WHERE email = 'user3@example.com'")
        ).one()
        owned = connection.execute(
            text(
                "SELECT count(*) FROM items JOIN users ON users.id = items.owner_id "
                "WHERE users.email = 'user3@example.com'"
            )
        ).scalar_one()
    assert tuple(person) == ("A real person", "their-hash")
    assert owned == 0
    assert _counts(migrated_engine) == (6, 6, 12)


def test_refused_in_production_without_force(migrated_engine: Engine) -> None:
    settings = _settings(
        app_env="production", seed_password="a-real-secret-password", secret_key="k" * 32
    )
    with pytest.raises(SeedRefusedError, match="production"):
        seed_database(migrated_engine, settings, SeedOptions())
    assert _counts(migrated_engine) == (0, 0, 0)
    seed_database(migrated_engine, settings, SeedOptions(force=True))
    assert _counts(migrated_engine) == (6, 6, 15)


def test_refused_in_production_with_the_placeholder_password(migrated_engine: Engine) -> None:
    with pytest.raises(SeedRefusedError, match="SEED_PASSWORD"):
        settings = _settings(app_env="production", secret_key="k" * 32)
        seed_database(migrated_engine, settings, SeedOptions(force=True))


def test_refused_on_a_database_that_is_not_migrated(fresh_engine: Engine) -> None:
    with pytest.raises(SeedRefusedError, match="app db upgrade"):
        seed_database(fresh_engine, _settings(), SeedOptions())
    with fresh_engine.connect() as connection:
        tables = connection.dialect.get_table_names(connection)
    assert "users" not in tables


def test_a_run_killed_midway_is_completed_exactly_by_the_next(migrated_engine: Engine) -> None:
    users, per_user, batch = 40_000, 2, 1_000
    url = migrated_engine.url.render_as_string(hide_password=False)
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "seed.py"), "--users", str(users),
         "--items-per-user", str(per_user), "--batch-size", str(batch)],
        env={**os.environ, "DATABASE_URL": url, "APP_ENV": "test"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while _counts(migrated_engine)[0] < 1 + 3 * batch:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the seed made no progress"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    killed_users, _, killed_items = _counts(migrated_engine)
    assert killed_users < 1 + users, "the run finished before it could be killed"
    # Batches commit users and their items together: nothing half-written.
    assert killed_items == (killed_users - 1) * per_user

    seed_database(migrated_engine, _settings(), SeedOptions(users=users, items_per_user=per_user))
    assert _counts(migrated_engine) == (1 + users, 1 + users, users * per_user)
