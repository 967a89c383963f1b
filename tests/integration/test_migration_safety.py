"""Migrations that cannot half-apply by surprise: a pending migration that some backend's SQL
cannot express is refused before any DDL runs; one that fails midway says which, where and
why in one line, and on MariaDB (DDL commits as it goes) the next run finishes it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, make_url, text
from sqlalchemy.pool import NullPool

from app.db.session import make_engine
from tests.backends import is_mariadb
from tests.integration.helpers import alembic_ini_with, run_app

LENGTHLESS = "20261201_1500_lengthless.py"
FAILING = "20261201_1510_failing.py"


@pytest.fixture
def migrated(fresh_url: str) -> Iterator[Engine]:
    """An engine on a database at the project's head."""
    assert run_app("db", "upgrade", database_url=fresh_url).returncode == 0
    engine = make_engine(fresh_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def _version(engine: Engine) -> str:
    with engine.connect() as connection:
        return str(connection.execute(text("SELECT version_num FROM alembic_version")).scalar())


def test_a_migration_a_backend_cannot_express_is_refused_before_any_ddl(
    backend: str, fresh_url: str, migrated: Engine, tmp_path: Path
) -> None:
    head = _version(migrated)
    ini = alembic_ini_with(tmp_path, "lengthless_migration.py", LENGTHLESS)
    result = run_app("db", "upgrade", database_url=fresh_url, env={"ALEMBIC_CONFIG": str(ini)})
    if not is_mariadb(backend):
        assert result.returncode == 0, result.stderr  # VARCHAR without a length is fine here
        return
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert LENGTHLESS in line
    assert "column 'body'" in line
    assert "VARCHAR requires a length on dialect mysql" in line
    assert "Traceback" not in result.stderr
    assert "nothing was run" in line
    assert not inspect(migrated).has_table("tags")  # its first operation did not run either
    assert not inspect(migrated).has_table("notes")
    assert _version(migrated) == head


def test_lint_writes_every_migration_for_every_backend(tmp_path: Path) -> None:
    ini = alembic_ini_with(tmp_path, "lengthless_migration.py", LENGTHLESS)
    result = run_app("db", "lint", database_url="sqlite://", env={"ALEMBIC_CONFIG": str(ini)})
    assert result.returncode == 1
    (line,) = [line for line in result.stdout.splitlines() if ": compile:" in line]
    assert LENGTHLESS in line
    assert "cannot be written for mysql" in line
    assert "column 'body'" in line
    assert "(instead: give each column a type every backend can create" in line


def test_lint_writes_every_downgrade_for_every_backend_too(tmp_path: Path) -> None:
    name = "constraint_downgrade_migration.py"
    ini = alembic_ini_with(tmp_path, name, name)
    result = run_app("db", "lint", database_url="sqlite://", env={"ALEMBIC_CONFIG": str(ini)})
    assert result.returncode == 1
    (line,) = [line for line in result.stdout.splitlines() if ": compile:" in line]
    assert name in line
    assert "its downgrade cannot be written for sqlite" in line
    assert "(instead: change the table in batch mode" in line


def test_a_migration_that_fails_midway_says_where_and_the_next_run_finishes_it(
    backend: str, fresh_url: str, migrated: Engine, tmp_path: Path
) -> None:
    head = _version(migrated)
    ini = alembic_ini_with(
        tmp_path, "failing_migration.py", FAILING, indexed="missing", length="100"
    )
    env = {"ALEMBIC_CONFIG": str(ini)}
    failed = run_app("db", "upgrade", database_url=fresh_url, env=env)
    assert failed.returncode == 1
    (line,) = failed.stderr.splitlines()
    assert f"migration {FAILING}" in line or f"{FAILING} (8b2c3d4e5f6a)" in line
    assert "failed at create index ix_notes_body" in line
    assert "database error" in line
    assert _version(migrated) == head
    if is_mariadb(backend):
        assert "already applied by it: create table notes" in line
        assert inspect(migrated).has_table("notes")
    else:
        assert "nothing of it was applied" in line
        assert not inspect(migrated).has_table("notes")

    alembic_ini_with(
        tmp_path, "failing_migration.py", FAILING, indexed="body", length="100"
    )  # the fix
    finished = run_app("db", "upgrade", database_url=fresh_url, env=env)
    assert finished.returncode == 0, finished.stderr
    assert _version(migrated) == "8b2c3d4e5f6a"
    columns = {column["name"] for column in inspect(migrated).get_columns("notes")}
    assert columns == {"id", "body", "pinned"}
    assert [index["name"] for index in inspect(migrated).get_indexes("notes")] == ["ix_notes_body"]


def test_a_name_already_taken_fails_the_migration_on_every_backend(
    backend: str, fresh_url: str, migrated: Engine, tmp_path: Path
) -> None:
    """A table of that name made by someone else, not by an earlier run of this migration: the
    database's error, and nothing of the migration is applied (MariaDB skipped it and went on,
    reporting the migration applied with the table as it was)."""
    head = _version(migrated)
    with migrated.begin() as connection:
        connection.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, other INTEGER)"))
    ini = alembic_ini_with(tmp_path, "failing_migration.py", FAILING, indexed="body", length="100")
    failed = run_app("db", "upgrade", database_url=fresh_url, env={"ALEMBIC_CONFIG": str(ini)})
    assert failed.returncode == 1, failed.stdout
    (line,) = failed.stderr.splitlines()
    assert f"{FAILING} (8b2c3d4e5f6a) failed at create table notes: database error" in line
    assert _version(migrated) == head
    columns = {column["name"] for column in inspect(migrated).get_columns("notes")}
    assert columns == {"id", "other"}


def test_a_migration_run_again_refuses_to_skip_what_its_fix_changed(
    backend: str, fresh_url: str, migrated: Engine, tmp_path: Path
) -> None:
    """The fix of a migration that failed midway also changed what the failed run made (a
    column's type): on MariaDB, which kept that, the next run says so instead of skipping it;
    elsewhere nothing was kept and the fixed migration applies whole."""
    ini = alembic_ini_with(
        tmp_path, "failing_migration.py", FAILING, indexed="missing", length="100"
    )
    env = {"ALEMBIC_CONFIG": str(ini)}
    assert run_app("db", "upgrade", database_url=fresh_url, env=env).returncode == 1
    alembic_ini_with(tmp_path, "failing_migration.py", FAILING, indexed="body", length="300")
    again = run_app("db", "upgrade", database_url=fresh_url, env=env)
    if not is_mariadb(backend):
        assert again.returncode == 0, again.stderr
        assert _version(migrated) == "8b2c3d4e5f6a"
        return
    assert again.returncode == 1
    (line,) = again.stderr.splitlines()
    assert f"{FAILING} (8b2c3d4e5f6a) failed at create table notes: " in line
    assert "the run that stopped part-way left column notes.body of another type" in line
    assert _version(migrated) != "8b2c3d4e5f6a"
    # Undone by hand as it says, the next run applies the fixed migration whole.
    with migrated.begin() as connection:
        connection.execute(text("DROP TABLE notes"))
    finished = run_app("db", "upgrade", database_url=fresh_url, env=env)
    assert finished.returncode == 0, finished.stderr
    assert _version(migrated) == "8b2c3d4e5f6a"
    (body,) = [c for c in inspect(migrated).get_columns("notes") if c["name"] == "body"]
    assert body["type"].length == 300


def test_a_failure_after_an_online_helper_tells_what_the_helper_committed(
    backend: str, fresh_url: str, migrated: Engine, tmp_path: Path
) -> None:
    """An online helper commits what came before it and its own steps as it goes: a later
    failure says so, and names what stays, on every backend where that is so."""
    head = _version(migrated)
    name = "20261207_1700_failing_after_helper.py"
    ini = alembic_ini_with(tmp_path, "failing_after_helper_migration.py", name, missing="nothing")
    failed = run_app("db", "upgrade", database_url=fresh_url, env={"ALEMBIC_CONFIG": str(ini)})
    assert failed.returncode == 1
    (line,) = failed.stderr.splitlines()
    assert f"{name} (9c3d4e5f6a7b) failed" in line
    assert _version(migrated) == head
    kept = inspect(migrated).has_table("notes")
    assert kept is (backend != "sqlite")  # SQLite runs the whole migration as one transaction
    if not kept:
        assert "nothing of it was applied" in line
        return
    assert "nothing of it was applied" not in line
    assert "already applied by it: create table notes" in line
    indexes = [index["name"] for index in inspect(migrated).get_indexes("notes")]
    assert indexes == ["ix_notes_body"]
    if not is_mariadb(backend):
        assert "and what its online helpers (app.migration_ops) finished" in line


def test_an_online_helper_that_fails_and_leaves_nothing_claims_nothing_applied(
    backend: str, fresh_url: str, migrated: Engine, tmp_path: Path
) -> None:
    """A unique constraint over values that repeat: the helper fails, leaves no index behind,
    and the line says so without naming anything as applied (it said "already applied by it:
    what its online helpers did")."""
    head = _version(migrated)
    with migrated.begin() as connection:
        for email in ("a@example.com", "b@example.com"):
            connection.execute(
                text(
                    "INSERT INTO users (id, email, hashed_password, is_active, created_at, "
                    "updated_at, version) VALUES (:id, :email, 'same', :yes, :now, :now, 1)"
                ),
                {"id": uuid.uuid4().hex, "email": email, "yes": True, "now": "2026-01-01 00:00:00"},
            )
    name = "20261208_0140_failing_helper.py"
    ini = alembic_ini_with(tmp_path, "failing_helper_migration.py", name)
    failed = run_app("db", "upgrade", database_url=fresh_url, env={"ALEMBIC_CONFIG": str(ini)})
    assert failed.returncode == 1
    (line,) = failed.stderr.splitlines()
    # Named by the helper that failed (MariaDB said "at a statement of the migration's own").
    assert f"{name} (9d4e5f6a7b8c) failed in migration_ops.create_unique_constraint: " in line
    assert "users: values of (hashed_password) held by more than one row: 1" in line
    assert "already applied" not in line
    assert _version(migrated) == head
    indexes = {index["name"] for index in inspect(migrated).get_indexes("users")}
    assert not any("hashed_password" in str(index) for index in indexes)


def test_a_failed_downgrade_says_where_too(
    backend: str, fresh_url: str, migrated: Engine, tmp_path: Path
) -> None:
    ini = alembic_ini_with(tmp_path, "failing_migration.py", FAILING, indexed="body", length="100")
    env = {"ALEMBIC_CONFIG": str(ini)}
    assert run_app("db", "upgrade", database_url=fresh_url, env=env).returncode == 0
    with migrated.begin() as connection:
        connection.execute(text("DROP TABLE notes"))  # someone was here before the downgrade
    result = run_app("db", "downgrade", "-1", database_url=fresh_url, env=env)
    # Gone before the downgrade ran, not by an earlier run of it: the database's error on every
    # backend (MariaDB skips what is in place only when running again a migration it stopped).
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert "(8b2c3d4e5f6a) failed at drop table notes" in line
    assert "database error" in line
    assert _version(migrated) == "8b2c3d4e5f6a"


# Characters a URL must encode, so that a partly hidden password would show.
PASSWORD = "Pw@d:7/zq%Q"


@pytest.fixture
def url_with_password(backend: str, fresh_url: str, migrated: Engine) -> Iterator[str]:
    """`fresh_url` reached with a password (PostgreSQL's trust ignores it; MariaDB gets a user)."""
    url = make_url(fresh_url)
    if not is_mariadb(backend):
        yield url.set(password=PASSWORD).render_as_string(hide_password=False)
        return
    user = f"pw_{url.database}"[:32]
    with migrated.begin() as connection:
        connection.exec_driver_sql(
            f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s", (PASSWORD,)
        )
        connection.exec_driver_sql(f"GRANT ALL ON `{url.database}`.* TO '{user}'@'127.0.0.1'")
    try:
        yield url.set(username=user, password=PASSWORD).render_as_string(hide_password=False)
    finally:
        with migrated.begin() as connection:
            connection.exec_driver_sql(f"DROP USER '{user}'@'127.0.0.1'")


@pytest.mark.backends("postgresql", "mariadb")
def test_a_failed_migration_says_where_without_the_password(
    url_with_password: str, migrated: Engine, tmp_path: Path
) -> None:
    ini = alembic_ini_with(
        tmp_path, "failing_migration.py", FAILING, indexed="missing", length="100"
    )
    env = {"ALEMBIC_CONFIG": str(ini)}
    failed = run_app("db", "upgrade", database_url=url_with_password, env=env)
    assert failed.returncode == 1
    (line,) = failed.stderr.splitlines()
    assert "failed at create index ix_notes_body" in line
    for shown in (PASSWORD, "Pw@d", "7/zq", "Pw%40d"):
        assert shown not in failed.stderr + failed.stdout
    info = run_app("db", "info", database_url=url_with_password, env=env)
    assert info.returncode == 0, info.stderr
    for shown in (PASSWORD, "Pw@d", "7/zq", "Pw%40d"):
        assert shown not in info.stderr + info.stdout
