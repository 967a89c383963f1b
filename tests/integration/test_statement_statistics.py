"""`app db top`: the statements that took the most time, by the unit of work that sent them,
from the server's own statistics; on a server that keeps none, how to turn them on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from app.db.session import make_engine, make_session_factory
from app.migrations import upgrade
from app.repositories import UnitOfWork
from tests.backends import ThrowawayDatabases
from tests.integration.helpers import run_app
from tests.topologies import GaleraCluster, PostgresPair

SECRET_EMAIL = "statistics.secret@example.com"
_HOW_TO = {
    "sqlite": "this database (sqlite) keeps no statistics of statements",
    "postgresql": "add pg_stat_statements to shared_preload_libraries",
    "mariadb": "set performance_schema=ON under [mysqld]",
}
_STATISTICS_ON = {
    "postgresql": "SELECT current_setting('shared_preload_libraries') LIKE '%pg_stat_statements%'",
    "mariadb": "SELECT @@performance_schema = 1",
}
_SLEEP = {"postgresql": "SELECT pg_sleep(0.05)", "mariadb": "SELECT SLEEP(0.05)"}
# A utility statement, which pg_stat_statements keeps as it was written, literals and all.
_UTILITY = {
    "postgresql": "DO $$BEGIN PERFORM pg_sleep(0.05); PERFORM 'statistics-secret'::text; END$$",
}


@pytest.mark.backends("sqlite", "postgresql", "mariadb")
def test_on_a_server_without_statistics_it_says_in_one_line_how_to_turn_them_on(
    backend: str, committed_url: str
) -> None:
    if backend in _STATISTICS_ON:
        engine = make_engine(committed_url)
        with engine.connect() as connection:
            statistics_on = connection.scalar(text(_STATISTICS_ON[backend]))
        engine.dispose()
        if statistics_on:
            pytest.skip("this server keeps statement statistics: the other tests cover it")
    result = run_app("db", "top", database_url=committed_url)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert _HOW_TO[backend] in result.stderr
    assert "Traceback" not in result.stderr


def _heavy_units(url: URL | str, backend: str) -> None:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    try:
        with UnitOfWork(factory, name="reports.heavy") as uow:
            uow.users.create({"email": SECRET_EMAIL, "hashed_password": "h"})
            for _ in range(3):
                uow.session.execute(text(_SLEEP[backend]))
                if backend in _UTILITY:
                    uow.session.execute(text(_UTILITY[backend]))
            uow.commit()
    finally:
        engine.dispose()


def _assert_listed(output: str, sleep_shape: str) -> None:
    """Into a pipe: a heading, then a line a statement, tab-separated, each statement whole."""
    lines = [line.split("\t") for line in output.splitlines()]
    assert lines[0] == ["unit of work", "calls", "total ms", "mean ms", "rows", "statement"]
    rows = [cells for cells in lines if sleep_shape in cells[-1].lower().replace("`", "")]
    assert rows, output
    assert rows[0][:2] == ["reports.heavy", "3"]  # the unit, its calls
    assert SECRET_EMAIL not in output
    assert "statistics-secret" not in output


@pytest.fixture
def statistics_database(postgres_pair: PostgresPair) -> Iterator[URL]:
    """A migrated database on a PostgreSQL that preloads pg_stat_statements (the pair's
    primary), with the extension installed."""
    admin = make_engine(postgres_pair.url("primary", "postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql("DROP DATABASE IF EXISTS statistics WITH (FORCE)")
        connection.exec_driver_sql("CREATE DATABASE statistics")
    url = postgres_pair.url("primary", "statistics")
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE EXTENSION pg_stat_statements")
    engine.dispose()
    yield url
    with admin.connect() as connection:
        connection.exec_driver_sql("DROP DATABASE IF EXISTS statistics WITH (FORCE)")
    admin.dispose()


@pytest.mark.backends("postgresql")
def test_postgresql_lists_the_heaviest_statements_with_the_unit_that_sent_them(
    statistics_database: URL,
) -> None:
    _heavy_units(statistics_database, "postgresql")
    result = run_app("db", "top", database_url=statistics_database.render_as_string(False))
    assert result.returncode == 0, result.stderr
    _assert_listed(result.stdout, "pg_sleep($1)")


@pytest.mark.backends("galera")
def test_mariadb_lists_the_heaviest_statements_with_the_unit_that_sent_them(
    backend: str, galera_cluster: GaleraCluster, databases: ThrowawayDatabases
) -> None:
    url = databases.new_url(backend, "statistics")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    _heavy_units(url, "mariadb")
    result = run_app("db", "top", database_url=url.render_as_string(hide_password=False))
    assert result.returncode == 0, result.stderr
    _assert_listed(result.stdout, "sleep (?)")
