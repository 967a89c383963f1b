"""`app db` operations on every backend: status, check, lint, locks, timeouts, diagram, reset."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.pool import NullPool

from app import migrations
from app.db.session import make_engine
from app.migrations.diagram import schema_markdown
from app.migrations.lock import migration_lock
from tests.backends import ROOT, ThrowawayDatabases
from tests.integration.helpers import alembic_ini_with, run_app


@pytest.fixture
def fresh_engine(fresh_url: str) -> Iterator[Engine]:
    engine = make_engine(fresh_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def _scalar(engine: Engine, sql: str) -> object:
    with engine.connect() as connection:
        return connection.execute(text(sql)).scalar()


def test_status_check_fails_before_and_passes_after_upgrade(fresh_url: str) -> None:
    before = run_app("db", "status", "--check", database_url=fresh_url)
    assert before.returncode == 1
    assert "pending" in before.stdout
    assert run_app("db", "upgrade", database_url=fresh_url).returncode == 0
    after = run_app("db", "status", "--check", database_url=fresh_url)
    assert after.returncode == 0, after.stderr
    assert "applied" in after.stdout


def test_history_lists_every_revision_without_a_database() -> None:
    result = run_app("db", "history", database_url="sqlite:///does/not/exist.db")
    assert result.returncode == 0
    assert "create initial tables" in result.stdout


def test_check_reports_drift_between_models_and_database(
    fresh_url: str, fresh_engine: Engine
) -> None:
    assert run_app("db", "upgrade", database_url=fresh_url).returncode == 0
    clean = run_app("db", "check", database_url=fresh_url)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    with fresh_engine.begin() as connection:
        connection.execute(text("ALTER TABLE items ADD COLUMN colour VARCHAR(20)"))
    drifted = run_app("db", "check", database_url=fresh_url)
    assert drifted.returncode == 1
    assert "remove_column items.colour" in drifted.stdout


def test_check_counts_pending_migrations_as_drift(fresh_url: str) -> None:
    result = run_app("db", "check", database_url=fresh_url)
    assert result.returncode == 1
    assert "pending migrations" in result.stdout


def test_sql_prints_the_migration_without_touching_the_database(fresh_url: str) -> None:
    result = run_app("db", "sql", database_url=fresh_url)
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE users" in result.stdout
    assert run_app("db", "status", "--check", database_url=fresh_url).returncode == 1


def test_sql_of_a_range_going_back_is_the_downgrade_and_a_malformed_range_one_line(
    fresh_url: str,
) -> None:
    first = run_app("db", "sql", "base:heads", database_url=fresh_url).stdout
    oldest = re.search(r"-- Running upgrade  -> (\w+)", first)
    assert oldest is not None
    back = run_app("db", "sql", f"heads:{oldest.group(1)}", database_url=fresh_url)
    assert back.returncode == 0, back.stderr
    assert "-- Running downgrade " in back.stdout
    assert "CREATE TABLE users" not in back.stdout
    malformed = run_app("db", "sql", "a:b:c", database_url=fresh_url)
    assert malformed.returncode == 2
    assert malformed.stderr.strip().splitlines() == [
        "error: 'a:b:c' is not a range: give FROM:TO, or TO alone"
    ]


def test_two_concurrent_upgrades_both_succeed_and_apply_the_schema_once(
    fresh_url: str, fresh_engine: Engine
) -> None:
    env = {**os.environ, "DATABASE_URL": fresh_url, "APP_ENV": "test"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "app", "db", "upgrade"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = [(process.wait(timeout=180), process.stderr) for process in processes]
    for code, stderr in outcomes:
        assert code == 0, stderr.read() if stderr else ""
    assert _scalar(fresh_engine, "SELECT count(*) FROM alembic_version") == 1
    assert _scalar(fresh_engine, "SELECT count(*) FROM users") == 0


@pytest.mark.backends("postgresql", "mariadb")
def test_a_second_migrator_gives_up_clearly_while_the_lock_is_held(
    fresh_url: str, fresh_engine: Engine, backend: str
) -> None:
    with fresh_engine.connect() as holder, migration_lock(holder, wait_seconds=1):
        result = run_app("db", "upgrade", database_url=fresh_url, env={"DB_MIGRATION_WAIT": "1"})
    assert result.returncode == 1
    assert "another process is migrating this database" in result.stderr
    assert "Traceback" not in result.stderr
    assert run_app("db", "upgrade", database_url=fresh_url).returncode == 0


@pytest.mark.backends("postgresql", "mariadb")
def test_the_migration_lock_of_one_database_does_not_block_another(
    fresh_url: str, fresh_engine: Engine, databases: ThrowawayDatabases, backend: str
) -> None:
    other_url = databases.new_url(backend, "other_locked").render_as_string(hide_password=False)
    other = make_engine(other_url, poolclass=NullPool)
    try:
        with other.connect() as holder, migration_lock(holder, wait_seconds=1):
            result = run_app(
                "db", "upgrade", database_url=fresh_url, env={"DB_MIGRATION_WAIT": "2"}
            )
    finally:
        other.dispose()
    assert result.returncode == 0, result.stderr
    assert _scalar(fresh_engine, "SELECT count(*) FROM alembic_version") == 1


@pytest.mark.backends("postgresql")
def test_a_migration_stuck_behind_a_busy_table_fails_fast(
    fresh_url: str, fresh_engine: Engine, unsafe_alembic_ini: Path
) -> None:
    env = {"ALEMBIC_CONFIG": str(unsafe_alembic_ini), "DB_MIGRATION_LOCK_TIMEOUT": "1"}
    with fresh_engine.connect() as holder:
        assert run_app("db", "upgrade", database_url=fresh_url).returncode == 0
        holder.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
        result = run_app("db", "upgrade", database_url=fresh_url, env=env)
        holder.rollback()
    assert result.returncode == 1
    assert "waited longer than DB_MIGRATION_LOCK_TIMEOUT" in result.stderr
    head = migrations.revisions()[0].revision
    assert _scalar(fresh_engine, "SELECT version_num FROM alembic_version") == head


@pytest.fixture
def unsafe_alembic_ini(tmp_path: Path) -> Path:
    """The project's migrations with the deliberately unsafe one on top."""
    return alembic_ini_with(tmp_path, "unsafe_migration.py", "20261126_1200_unsafe.py")


def test_lint_accepts_the_same_changes_made_through_the_online_helpers(tmp_path: Path) -> None:
    ini = alembic_ini_with(tmp_path, "online_migration.py", "20261127_1200_online.py")
    result = run_app("db", "lint", database_url="sqlite://", env={"ALEMBIC_CONFIG": str(ini)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no unsafe operations" in result.stdout


def test_lint_names_the_helpers_as_the_safe_alternative(unsafe_alembic_ini: Path) -> None:
    result = run_app(
        "db", "lint", database_url="sqlite://", env={"ALEMBIC_CONFIG": str(unsafe_alembic_ini)}
    )
    lines = result.stdout.splitlines()
    (required,) = [line for line in lines if ": not-null-without-default:" in line]
    indexes = [line for line in lines if ": index-not-concurrent:" in line]
    assert "migration_ops.add_not_null_column" in required
    assert indexes
    assert all("migration_ops.create_index" in index for index in indexes)
    for rule, helper in (
        ("add-foreign-key", "create_foreign_key"),
        ("add-unique-constraint", "create_unique_constraint"),
        ("add-check-constraint", "create_check_constraint"),
        ("squawk/adding-foreign-key-constraint", "create_foreign_key"),
        ("rename", "rename_column"),
        ("squawk/renaming-column", "rename_column"),
    ):
        (line,) = [line for line in lines if f": {rule}:" in line]
        assert f"migration_ops.{helper}" in line, line


def test_lint_passes_our_migrations() -> None:
    result = run_app("db", "lint", database_url="sqlite://")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no unsafe operations" in result.stdout


def test_lint_flags_an_unsafe_migration_with_rule_file_and_alternative(
    unsafe_alembic_ini: Path,
) -> None:
    result = run_app(
        "db", "lint", database_url="sqlite://", env={"ALEMBIC_CONFIG": str(unsafe_alembic_ini)}
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    for rule, count in (("not-null-without-default", 1), ("rename", 1),
                        ("index-not-concurrent", 2)):  # op's and a batch operation's  # fmt: skip
        found = [line for line in lines if f": {rule}:" in line]
        assert len(found) == count, lines
        assert all("20261126_1200_unsafe.py" in line and "instead:" in line for line in found)
    assert not [line for line in lines if ": drop-column:" in line]  # waived, with a reason
    assert any("squawk/adding-required-field" in line for line in lines)


def test_the_schema_diagram_is_up_to_date() -> None:
    on_disk = (ROOT / "docs" / "schema.md").read_text()
    assert on_disk == schema_markdown(), "docs/schema.md is stale: run `app db diagram`"
    result = run_app("db", "diagram", "--check", database_url="sqlite://")
    assert result.returncode == 0


def test_reset_rebuilds_and_seeds_but_never_in_production(
    fresh_url: str, fresh_engine: Engine
) -> None:
    refused = run_app("db", "reset", "--yes", database_url=fresh_url,
                      env={"APP_ENV": "production", "SECRET_KEY": "k" * 48})  # fmt: skip
    assert refused.returncode == 2
    # No flag overrides it, and the refusal names none.
    assert refused.stderr == (
        "error: refusing to reset the database with APP_ENV=production: it is never done there\n"
    )
    assert run_app("db", "upgrade", database_url=fresh_url).returncode == 0
    with fresh_engine.begin() as connection:
        connection.execute(text("CREATE TABLE leftover (x INTEGER)"))
    result = run_app("db", "reset", "--yes", database_url=fresh_url)
    assert result.returncode == 0, result.stderr
    assert _scalar(fresh_engine, "SELECT count(*) FROM users") == 6
    with fresh_engine.connect() as connection:
        assert "leftover" not in connection.dialect.get_table_names(connection)


def test_create_makes_a_missing_database(backend: str, fresh_url: str) -> None:
    """On every backend, SQLite's file included (the commands that read refuse a missing one)."""
    missing = fresh_url.rsplit("/", 1)[0] + "/" + fresh_url.rsplit("/", 1)[1] + "_made"
    try:
        made = run_app("db", "create", database_url=missing)
        assert made.returncode == 0, made.stderr
        assert "created" in made.stdout
        current = run_app("db", "current", database_url=missing)
        assert current.returncode == 1  # there, and empty: behind head
        assert "base (no migrations applied)" in current.stdout
        again = run_app("db", "create", database_url=missing)
        assert "already exists" in again.stdout
    finally:
        from app.db.admin import drop_database

        drop_database(missing)


def test_wait_returns_once_the_database_answers(fresh_url: str) -> None:
    result = run_app("db", "wait", "--timeout", "10", database_url=fresh_url)
    assert result.returncode == 0
    assert "database is up" in result.stdout


def test_wait_gives_up_after_the_timeout_without_the_password() -> None:
    result = run_app(
        "db", "wait", "--timeout", "1",
        database_url="postgresql+psycopg://app:wait-secret@127.0.0.1:1/app",
    )  # fmt: skip
    assert result.returncode == 2
    assert "cannot connect to the database" in result.stderr
    assert "wait-secret" not in result.stderr + result.stdout


def test_every_command_has_help() -> None:
    commands = ("upgrade", "downgrade", "current", "history", "status", "revision", "check",
                "sql", "create", "wait", "reset", "info", "diagram", "lint", "seed")  # fmt: skip
    for name in commands:
        result = run_app("db", name, "--help", database_url="sqlite://")
        assert result.returncode == 0, name
        assert "Usage" in result.stdout, name


def test_revision_writes_a_dated_formatted_file(
    fresh_url: str, fresh_engine: Engine, unsafe_alembic_ini: Path
) -> None:
    versions = unsafe_alembic_ini.parent / "migrations" / "versions"
    (versions / "20261126_1200_unsafe.py").unlink()  # back to the project's own history
    env = {"ALEMBIC_CONFIG": str(unsafe_alembic_ini)}
    assert run_app("db", "upgrade", database_url=fresh_url, env=env).returncode == 0
    with fresh_engine.begin() as connection:  # a difference for autogenerate to write
        connection.execute(text("DROP INDEX ix_items_title ON items")
                           if fresh_engine.dialect.name == "mysql"
                           else text("DROP INDEX ix_items_title"))  # fmt: skip
    result = run_app(
        "db", "revision", "-m", "Index item titles", "--autogenerate",
        database_url=fresh_url, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (written,) = list(versions.glob("*index_item_titles.py"))
    assert re.fullmatch(r"\d{8}_\d{4}_index_item_titles\.py", written.name)
    source = written.read_text()
    assert f"Revises: {migrations.revisions()[0].revision}\n" in source
    assert "ix_items_title" in source
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "--quiet", str(written)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert lint.returncode == 0, lint.stdout


def test_autogenerate_writes_nothing_where_models_and_database_agree(
    fresh_url: str, unsafe_alembic_ini: Path
) -> None:
    versions = unsafe_alembic_ini.parent / "migrations" / "versions"
    (versions / "20261126_1200_unsafe.py").unlink()
    env = {"ALEMBIC_CONFIG": str(unsafe_alembic_ini)}
    assert run_app("db", "upgrade", database_url=fresh_url, env=env).returncode == 0
    before = sorted(versions.glob("*.py"))

    result = run_app("db", "revision", "-m", "Nothing", "--autogenerate",
                     database_url=fresh_url, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "nothing written: the models and the database have no difference" in result.stdout
    assert sorted(versions.glob("*.py")) == before

    # A database without the migrations applied: autogenerate would write them all again.
    result = run_app("db", "revision", "-m", "Early", "--autogenerate",
                     database_url="sqlite://", env=env)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == (
        "error: the database is not at the newest migration: `app db upgrade` first "
        "(autogenerate compares the models with a database that has every migration applied)\n"
    )
    assert sorted(versions.glob("*.py")) == before

    result = run_app("db", "revision", "-m", " ", database_url=fresh_url, env=env)
    assert result.returncode == 2
    assert "a migration's message names what it does" in result.stderr
    assert sorted(versions.glob("*.py")) == before

    # Asked for without autogenerate, an empty script is what the author means to fill in.
    result = run_app("db", "revision", "-m", "By hand", database_url=fresh_url, env=env)
    assert result.returncode == 0, result.stderr
    (written,) = list(versions.glob("*by_hand.py"))
    assert f"wrote {written}" in " ".join(result.stdout.split())


def test_lint_of_a_revision_no_file_defines_is_a_usage_error() -> None:
    result = run_app("db", "lint", "nope:head", database_url="sqlite://")
    assert result.returncode == 2
    assert result.stderr.startswith("error: no such revision range 'nope:head': "), result.stderr
    assert result.stderr.count("\n") == 1


def test_lint_without_squawk_fails_with_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from app.cli.main import cli

    monkeypatch.setenv("DATABASE_URL", "sqlite://")
    monkeypatch.setattr("app.migrations.lint.shutil.which", lambda _name: None)
    monkeypatch.setattr("app.migrations.lint.sys.executable", str(tmp_path / "bin" / "python"))
    result = CliRunner().invoke(cli, ["db", "lint"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: app db lint needs squawk, which is not installed: `pip install squawk-cli` "
        "(it comes with this package's dependencies)"
    ]


def test_a_database_at_a_revision_no_file_defines_is_told_in_one_line(
    fresh_url: str, fresh_engine: Engine
) -> None:
    assert run_app("db", "upgrade", database_url=fresh_url).returncode == 0
    with fresh_engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'deadbeef0000'"))

    for command in (("db", "current"), ("db", "status"), ("db", "upgrade")):
        result = run_app(*command, database_url=fresh_url)
        assert result.returncode == 1, command
        assert result.stderr.startswith(
            "error: the database is at a revision no migration file defines"
        ), result.stderr
        assert "deadbeef0000" in result.stderr
        assert "unexpected" not in result.stderr
        assert "Traceback" not in result.stderr
