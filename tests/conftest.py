"""Backend selection and database fixtures shared by every test that touches a database.

`--backend sqlite,postgresql,mariadb,galera,pgbouncer` picks the backends (default: all of them).
An unreachable server is skipped with its reason, unless REQUIRE_BACKENDS=all (or names it):
then the run fails. Choosing `galera` starts a three-node cluster for the session, `pgbouncer` a
PgBouncer in front of the PostgreSQL server (tests.topologies).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import NullPool

from app.db.session import DataSession, make_engine, make_session_factory
from app.migrations import upgrade
from tests.backends import (
    ALL_BACKENDS,
    GALERA_SUITE,
    POOLED_SUITE,
    ROOT,
    SERVER_URLS,
    ThrowawayDatabases,
    direct_url,
    pooler_of,
    required_backends,
    unreachable_reason,
)
from tests.topologies import (
    FailoverFormation,
    GaleraCluster,
    PgBouncer,
    PostgresPair,
    T,
    failover_unavailable_reason,
    galera_unavailable_reason,
    pgbouncer_unavailable_reason,
    postgres_pair_unavailable_reason,
    started,
)

# CI replays the same examples every run, so a red build always means a change broke something;
# developers' runs keep exploring new ones.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        default=",".join(ALL_BACKENDS),
        help="comma-separated backends to run database tests on (default: all)",
    )


def pytest_configure(config: pytest.Config) -> None:
    selected = [name.strip() for name in config.getoption("--backend").split(",") if name.strip()]
    unknown = [name for name in selected if name not in ALL_BACKENDS]
    if unknown:
        raise pytest.UsageError(f"unknown backend(s) {unknown}; choose from {list(ALL_BACKENDS)}")
    left_out = sorted(required_backends() - set(selected))
    if left_out:
        raise pytest.UsageError(
            f"REQUIRE_BACKENDS asks for {', '.join(left_out)}, which --backend leaves out"
        )
    topology_failures = _start_topologies(config, selected)
    unreachable = {
        name: reason
        for name in selected
        if (reason := topology_failures.get(name) or unreachable_reason(name))
    }
    missing = sorted(required_backends() & set(unreachable))
    if missing:
        reasons = "; ".join(unreachable[name] for name in missing)
        raise pytest.UsageError(f"REQUIRE_BACKENDS asks for unreachable backends: {reasons}")
    config.stash[_SELECTED] = selected
    config.stash[_UNREACHABLE] = unreachable


_SELECTED = pytest.StashKey[list[str]]()
_UNREACHABLE = pytest.StashKey[dict[str, str]]()
_GALERA = pytest.StashKey[GaleraCluster]()
_PGBOUNCER = pytest.StashKey[PgBouncer]()


def _start_topologies(config: pytest.Config, selected: list[str]) -> dict[str, str]:
    """Start the Galera cluster and the PgBouncer once for the run when their backends are
    selected and no server is given; returns why a topology could not start, by backend."""
    failures: dict[str, str] = {}
    if "galera" in selected and "galera" not in SERVER_URLS:
        try:
            cluster = _started(galera_unavailable_reason(), GaleraCluster)
        except RuntimeError as exc:
            failures["galera"] = str(exc)
        else:
            config.stash[_GALERA] = cluster
            SERVER_URLS["galera"] = cluster.url().render_as_string(hide_password=False)
    if "pgbouncer" in selected and "pgbouncer" not in SERVER_URLS:
        server = make_url(SERVER_URLS["postgresql"])
        try:
            pooler = _started(
                pgbouncer_unavailable_reason(),
                lambda: PgBouncer(server=f"{server.host}:{server.port or 5432}"),
            )
        except RuntimeError as exc:
            failures["pgbouncer"] = str(exc)
        else:
            config.stash[_PGBOUNCER] = pooler
            SERVER_URLS["pgbouncer"] = pooler.url().render_as_string(hide_password=False)
    return failures


def _started(reason: str | None, make: Callable[[], T]) -> T:
    if reason is not None:
        raise RuntimeError(reason)
    return started(make)


def pytest_unconfigure(config: pytest.Config) -> None:
    for key in (_GALERA, _PGBOUNCER):
        topology = config.stash.get(key, None)
        if topology is not None:
            topology.down()


@pytest.fixture(scope="session")
def galera_cluster(request: pytest.FixtureRequest) -> GaleraCluster:
    """The Galera cluster of this run (tests that need it are marked backends("galera"))."""
    cluster = request.config.stash.get(_GALERA, None)
    if cluster is None:
        # These tests kill nodes and start them again: only on a cluster this run started.
        reason = "TEST_GALERA_URL names a cluster this run did not start: its nodes are not ours"
        if "galera" in required_backends():
            pytest.fail(reason)
        pytest.skip(reason)
    return cluster


def _postgresql_topology(backend: str, reason: str | None, make: Callable[[], T]) -> Iterator[T]:
    """Start a PostgreSQL topology for the run (tests marked backends("postgresql") ask for
    it); one that cannot start here skips, or fails when PostgreSQL is required."""
    assert backend == "postgresql", "mark tests that use it backends('postgresql')"
    if reason is not None:
        if "postgresql" in required_backends():
            pytest.fail(reason)
        pytest.skip(reason)
    topology = started(make)
    yield topology
    topology.down()


@pytest.fixture(scope="session")
def postgres_pair(backend: str) -> Iterator[PostgresPair]:
    """A PostgreSQL primary and its streaming replica, started once for the run."""
    yield from _postgresql_topology(backend, postgres_pair_unavailable_reason(), PostgresPair)


@pytest.fixture(scope="session")
def failover_formation(backend: str) -> Iterator[FailoverFormation]:
    """A pg_auto_failover monitor and two nodes, started once for the run."""
    yield from _postgresql_topology(backend, failover_unavailable_reason(), FailoverFormation)


def _runs_on_galera(metafunc: pytest.Metafunc) -> bool:
    path = metafunc.definition.path.relative_to(ROOT).as_posix()
    return path.startswith(GALERA_SUITE)


def _runs_pooled(metafunc: pytest.Metafunc) -> bool:
    path = metafunc.definition.path.relative_to(ROOT).as_posix()
    return path.startswith(POOLED_SUITE)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    selected = metafunc.config.stash[_SELECTED]
    unreachable = metafunc.config.stash[_UNREACHABLE]
    only = metafunc.definition.get_closest_marker("backends")
    if only is not None:
        selected = [name for name in selected if name in only.args]
    if not _runs_on_galera(metafunc):
        selected = [name for name in selected if name != "galera"]
    if not _runs_pooled(metafunc):
        selected = [name for name in selected if name != "pgbouncer"]
    params = [
        pytest.param(
            name,
            id=name,
            marks=[pytest.mark.skip(reason=unreachable[name])] if name in unreachable else [],
        )
        for name in selected
    ]
    metafunc.parametrize("backend", params, scope="session")


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowawayDatabases]:
    """Creates databases for this run and drops them all at its end."""
    made = ThrowawayDatabases(tmp_path_factory.mktemp("databases"))
    yield made
    made.drop_all()


@pytest.fixture(scope="session")
def app_database_url(backend: str, databases: ThrowawayDatabases) -> URL:
    """The plugin's database (app.testing migrates it once per backend): one of this run's."""
    return databases.new_url(backend, "shared")


@pytest.fixture(scope="session")
def app_engine(backend: str, app_database_url: URL) -> Iterator[Engine]:
    """The plugin's engine on its database, migrated to head; through a pooler, its migrations
    go to the server itself (the pooler keeps no session for the migration lock)."""
    migrator = make_engine(direct_url(app_database_url), poolclass=NullPool)
    upgrade(migrator)
    migrator.dispose()
    built = make_engine(app_database_url, pooler=pooler_of(backend))
    yield built
    built.dispose()


# The project's tests run on the plugin its users run on (app.testing); these are its fixtures
# under the names the tests use.


@pytest.fixture(scope="session")
def engine(app_engine: Engine) -> Engine:
    """An engine on a database of this run, migrated to head; tests roll back what they do."""
    return app_engine


@pytest.fixture
def connection(app_connection: Connection) -> Connection:
    """A connection inside a transaction that is rolled back after the test."""
    return app_connection


@pytest.fixture
def session_factory(app_session_factory: sessionmaker[DataSession]) -> sessionmaker[DataSession]:
    """Sessions joined to the test's transaction: their commits become savepoint releases."""
    return app_session_factory


@pytest.fixture
def session(session_factory: sessionmaker[DataSession]) -> Iterator[DataSession]:
    """A session whose work disappears with the test's transaction."""
    with session_factory() as opened:
        yield opened


@pytest.fixture(scope="session")
def committed_engine(backend: str, databases: ThrowawayDatabases) -> Iterator[Engine]:
    """An engine on a second migrated database, for tests that need real, concurrent commits."""
    url = databases.new_url(backend, "committed")
    migrator = make_engine(direct_url(url), poolclass=NullPool)
    upgrade(migrator)
    migrator.dispose()
    built = make_engine(url, pool_size=10, pooler=pooler_of(backend))
    yield built
    built.dispose()


@pytest.fixture
def committing_factory(committed_engine: Engine) -> Iterator[sessionmaker[DataSession]]:
    """Sessions that really commit; the tables are emptied after the test."""
    yield make_session_factory(committed_engine)
    with committed_engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM items")
        conn.exec_driver_sql("DELETE FROM users")


@pytest.fixture(scope="session")
def empty_database_url(backend: str, databases: ThrowawayDatabases) -> str:
    """A URL for an empty database of this run, for migration tests."""
    return databases.new_url(backend, "migrations").render_as_string(hide_password=False)


@pytest.fixture
def raw_engine(empty_database_url: str) -> Iterator[Engine]:
    """An engine without pooling on the empty migration database."""
    built = make_engine(empty_database_url, poolclass=NullPool)
    yield built
    built.dispose()
