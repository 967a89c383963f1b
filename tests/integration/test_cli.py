"""The `app` command line, run as a user runs it: a separate process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.pool import NullPool

from app import migrations
from app.db.session import make_engine
from tests.integration.helpers import run_app


def test_version() -> None:
    result = run_app("--version", database_url="sqlite://")
    assert result.returncode == 0
    assert result.stdout.startswith("app ")


def test_upgrade_then_current_then_downgrade(fresh_url: str) -> None:
    assert run_app("db", "create", database_url=fresh_url).returncode == 0  # SQLite: its file
    behind = run_app("db", "current", database_url=fresh_url)
    assert behind.returncode == 1
    assert "behind head" in behind.stdout

    upgraded = run_app("db", "upgrade", database_url=fresh_url)
    assert upgraded.returncode == 0, upgraded.stderr
    current = run_app("db", "current", database_url=fresh_url)
    assert current.returncode == 0
    assert "at head" in current.stdout

    info = run_app("db", "info", database_url=fresh_url)
    assert info.returncode == 0
    assert "users" in info.stdout
    assert "items" in info.stdout

    refused = run_app("db", "downgrade", "base", database_url=fresh_url)
    assert refused.returncode != 0  # no terminal to confirm on: aborted, nothing dropped
    assert run_app("db", "current", database_url=fresh_url).returncode == 0

    downgraded = run_app("db", "downgrade", "base", "--yes", database_url=fresh_url)
    assert downgraded.returncode == 0, downgraded.stderr
    assert "base" in downgraded.stdout


def test_downgrade_takes_a_relative_revision(fresh_url: str) -> None:
    assert run_app("db", "upgrade", database_url=fresh_url).returncode == 0
    history = migrations.revisions()
    stepped = run_app("db", "downgrade", "-1", database_url=fresh_url)
    assert stepped.returncode == 0, stepped.stderr
    assert f"database at {history[1].revision}" in stepped.stdout
    too_far = run_app("db", "downgrade", f"-{len(history)}", database_url=fresh_url)
    assert too_far.returncode == 2
    assert len(too_far.stderr.strip().splitlines()) == 1
    assert "Traceback" not in too_far.stderr


def test_downgrade_is_refused_in_production_without_force() -> None:
    env_url = "sqlite://"
    result = subprocess.run(
        [sys.executable, "-m", "app", "db", "downgrade", "base", "--yes"],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "DATABASE_URL": env_url,
            "APP_ENV": "production",
            "SECRET_KEY": "k" * 48,
        },
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "error: refusing to downgrade with APP_ENV=production; pass --force if you mean it\n"
    )


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://app:s3cret-pw@127.0.0.1:1/app",
        "mysql+pymysql://app:s3cret-pw@127.0.0.1:1/app",
    ],
)
def test_an_unreachable_database_is_one_line_without_the_password(url: str) -> None:
    result = run_app("db", "upgrade", database_url=url)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert result.stderr.count("\n") == 1
    assert "cannot connect to the database" in result.stderr
    assert "app:***@127.0.0.1:1" in result.stderr


def test_a_malformed_url_is_one_line_naming_the_variable() -> None:
    result = run_app("db", "current", database_url="oracle://scott:tiger-pw@h/db")
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr
    assert "tiger-pw" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.backends("postgresql")
def test_a_password_in_the_url_never_reaches_output_or_logs(fresh_url: str) -> None:
    # Trust authentication ignores the password, so the commands really run, with SQL echo on.
    url = fresh_url.replace("root@", "root:echo-secret-pw@")
    for args in (("db", "upgrade"), ("db", "info"), ("db", "status"), ("db", "seed"),
                 ("db", "check"), ("db", "current")):  # fmt: skip
        result = run_app(*args, database_url=url, env={"DB_ECHO": "true"})
        assert result.returncode == 0, result.stderr
        assert "echo-secret-pw" not in result.stdout + result.stderr, args
    assert "SELECT" in run_app("db", "info", database_url=url, env={"DB_ECHO": "true"}).stdout


@pytest.mark.backends("mariadb")
def test_a_refused_login_is_one_line_without_the_password(fresh_url: str) -> None:
    url = fresh_url.replace("root@", "root:wrong-secret-pw@")
    result = run_app("db", "current", database_url=url)
    assert result.returncode == 2
    assert "refused the login" in result.stderr
    assert "wrong-secret-pw" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.backends("postgresql", "mariadb")
def test_an_unknown_user_is_a_refused_login_on_every_server(fresh_url: str) -> None:
    url = fresh_url.replace("root@", "nobody_here:unknown-secret-pw@")
    result = run_app("db", "current", database_url=url)
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: the database refused the login: check the user and password in DATABASE_URL"
    ), result.stderr
    assert result.stderr.count("\n") == 1
    assert "unknown-secret-pw" not in result.stdout + result.stderr


@pytest.mark.backends("postgresql")
def test_a_url_that_wants_a_writable_server_and_finds_none_says_so(fresh_url: str) -> None:
    """Every server of the URL is up but takes no writes (a failover under way): not "cannot
    connect", which sends an operator to check the credentials."""
    _read_only_by_default(fresh_url, "on")
    try:
        result = run_app(
            "db", "current", database_url=f"{fresh_url}?target_session_attrs=read-write"
        )
    finally:
        _read_only_by_default(fresh_url, "off")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: the database is unavailable: no server named in DATABASE_URL takes writes now "
        "(read-only or a standby; a failover may be under way)"
    ), result.stderr
    assert result.stderr.count("\n") == 1


def _read_only_by_default(url: str, setting: str) -> None:
    engine = make_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:  # each statement its own transaction
        connection.exec_driver_sql("SET default_transaction_read_only = off")
        name = connection.exec_driver_sql("SELECT current_database()").scalar()
        connection.exec_driver_sql(
            f'ALTER DATABASE "{name}" SET default_transaction_read_only = {setting}'
        )


@pytest.mark.backends("postgresql", "mariadb")
def test_a_missing_database_says_how_to_make_it(fresh_url: str) -> None:
    url = fresh_url + "_missing"
    result = run_app("db", "current", database_url=url)
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: the database named in DATABASE_URL does not exist; `app db create` makes it"
    ), result.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("db", "upgrade", "--bogus"), "No such option: --bogus (`app db upgrade --help`"),
        (("db", "bogus"), "No such command 'bogus'. (`app db --help`"),
        (("db", "top", "--limit", "0"), "Invalid value for '--limit': 0 is not in the range"),
    ],
)
def test_a_usage_error_is_one_line(args: tuple[str, ...], said: str) -> None:
    result = run_app(*args, database_url="sqlite://")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {said}")


def test_help_shows_flags_as_flags() -> None:
    """A flag takes no value: its help shows none (Typer 0.29 shows `<bool>` after each)."""
    for args in (("--help",), ("db", "downgrade", "--help")):
        result = run_app(*args, database_url="sqlite://")
        assert result.returncode == 0
        assert "--yes" in result.stdout or "--version" in result.stdout
        assert "<bool>" not in result.stdout


def test_ctrl_c_ends_a_command_in_one_line_with_exit_code_130() -> None:
    """`app db wait` on a port nothing answers, interrupted as a terminal's Ctrl-C does."""
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "db", "wait", "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "DATABASE_URL": "postgresql+psycopg://app@127.0.0.1:9/app"},
        # A child of a non-interactive shell ignores SIGINT; a terminal's does not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(4)  # past the imports, into the waiting
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert stderr.splitlines() == [
        "error: interrupted (Ctrl-C); what was committed before it stays"
    ]


@pytest.mark.backends("sqlite")
def test_commands_that_read_refuse_a_sqlite_file_that_is_not_there(tmp_path: Path) -> None:
    """A mistyped path: refused as a server refuses a database it does not have, and no empty
    database is left there (connecting made one)."""
    url = f"sqlite:///{tmp_path / 'typo.db'}"
    for args in (("db", "current"), ("db", "status"), ("db", "check"), ("db", "info")):
        result = run_app(*args, database_url=url)
        assert result.returncode == 2, args
        assert result.stderr.splitlines() == [
            f"error: the database named in DATABASE_URL does not exist (no file "
            f"{tmp_path / 'typo.db'}); `app db create` makes it"
        ]
    assert not (tmp_path / "typo.db").exists()


def test_a_database_ahead_of_the_code_is_told_so_and_its_tables_still_shown(
    fresh_url: str,
) -> None:
    assert run_app("db", "upgrade", database_url=fresh_url).returncode == 0
    engine = make_engine(fresh_url, poolclass=NullPool)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
    engine.dispose()
    down = run_app("db", "downgrade", "-1", database_url=fresh_url)
    assert down.returncode == 1
    (line,) = down.stderr.splitlines()
    assert line.startswith("error: the database is at a revision no migration file defines")
    info = run_app("db", "info", database_url=fresh_url)
    assert info.returncode == 0, info.stderr
    assert "revision: ffffffffffff (no migration file defines it" in info.stdout
    assert "users" in info.stdout


def test_the_diagram_is_the_projects_wherever_the_command_runs(tmp_path: Path) -> None:
    result = run_app("db", "diagram", "--check", database_url="sqlite://", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("docs/schema.md is up to date")
    assert list(tmp_path.iterdir()) == []


def test_upgrade_names_each_migration_it_applies_and_says_when_there_was_none(
    fresh_url: str,
) -> None:
    history = migrations.revisions()  # newest first
    first = run_app("db", "upgrade", database_url=fresh_url)
    assert first.returncode == 0, first.stderr
    applied = [line for line in first.stdout.splitlines() if line.startswith("applied ")]
    assert applied == [f"applied {rev.revision} {rev.message}" for rev in reversed(history)]
    again = run_app("db", "upgrade", history[-1].revision, database_url=fresh_url)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"nothing to apply: database at {history[0].revision}")
    back = run_app("db", "downgrade", "-1", database_url=fresh_url)
    assert back.stdout.splitlines()[0] == f"reverted {history[0].revision} {history[0].message}"
