"""The data layer on a three-node MariaDB Galera cluster: conflicts certified on commit are
retried, a unit of work sees what committed before it on any node, migrations started on every
node at once apply once, and writes go on through the survivors when a node dies."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from app.db.session import make_engine, make_session_factory
from app.dialects.galera import LOCK_TABLE, cluster_state, is_galera
from app.migrations import upgrade
from app.repositories import UnitOfWork, run_in_transaction
from tests.backends import ThrowawayDatabases
from tests.integration.helpers import WriteStream, run_app, stored_item_ids
from tests.topologies import GaleraCluster

pytestmark = pytest.mark.backends("galera")

NODES = (1, 2, 3)


@pytest.fixture(scope="module")
def cluster_database(
    backend: str, galera_cluster: GaleraCluster, databases: ThrowawayDatabases
) -> str:
    """A migrated database of this module on the cluster; its name."""
    url = databases.new_url(backend, "galera")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    assert url.database is not None
    return url.database


@pytest.fixture
def node_engines(
    galera_cluster: GaleraCluster, cluster_database: str
) -> Iterator[dict[int, Engine]]:
    """One engine per node on the module's database, emptied after the test."""
    engines = {node: make_engine(galera_cluster.url(node, cluster_database)) for node in NODES}
    yield engines
    with engines[1].begin() as connection:
        connection.exec_driver_sql("DELETE FROM items")
        connection.exec_driver_sql("DELETE FROM users")
    for engine in engines.values():
        engine.dispose()


def _status(engine: Engine, name: str) -> int:
    with engine.connect() as connection:
        row = connection.execute(text("SHOW GLOBAL STATUS LIKE :name"), {"name": name}).one()
    return int(row[1])


def test_every_node_is_synced_in_one_cluster_and_sessions_ask_for_causal_reads(
    node_engines: dict[int, Engine],
) -> None:
    for engine in node_engines.values():
        with engine.connect() as connection:
            state = cluster_state(connection)
            assert state is not None
            assert (state.size, state.status, state.local_state, state.ready) == (
                3, "Primary", "Synced", True,
            )  # fmt: skip
            assert is_galera(connection)
            assert connection.scalar(text("SELECT @@wsrep_sync_wait")) == 7


def test_causal_reads_can_be_turned_off(galera_cluster: GaleraCluster) -> None:
    engine = make_engine(galera_cluster.url(2), causal_reads=False)
    try:
        with engine.connect() as connection:
            assert is_galera(connection)
            assert connection.scalar(text("SELECT @@wsrep_sync_wait")) == 0
    finally:
        engine.dispose()


def test_a_unit_the_cluster_aborted_before_its_commit_is_run_again_not_reported_done(
    node_engines: dict[int, Engine],
) -> None:
    """A unit on node 1 is brute-force aborted by a conflicting commit from node 2 while it is
    still open: the abort reaches it at its next statement (the commit's receipt), and it runs
    again; it is never reported committed with nothing applied."""
    factories = {node: make_session_factory(engine) for node, engine in node_engines.items()}
    with UnitOfWork(factories[1]) as uow:
        user_id = uow.users.create(
            {"email": "aborted@example.com", "hashed_password": "h", "full_name": "0"}
        ).id
        uow.commit()
    attempts = []

    def increment(uow: UnitOfWork) -> None:
        attempts.append(1)
        user = uow.users.get_one(user_id)
        uow.users.update(user_id, {"full_name": str(int(user.full_name or "0") + 1)})
        if len(attempts) == 1:
            with UnitOfWork(factories[2]) as other:
                other.users.update(user_id, {"full_name": "100"})
                other.commit()
            time.sleep(0.5)  # node 1 applies node 2's commit, aborting this unit

    run_in_transaction(increment, session_factory=factories[1], backoff=0.01)
    assert len(attempts) == 2
    with node_engines[3].connect() as connection:
        stored = connection.execute(text("SELECT full_name FROM users")).scalar_one()
    assert stored == "101"


def test_conflicting_commits_on_three_nodes_are_retried_and_lose_no_increment(
    node_engines: dict[int, Engine],
) -> None:
    """Threads bound to different nodes increment one counter: commits that lose certification
    to another node's are RetryableError, and run_in_transaction runs them again."""
    factories = {node: make_session_factory(engine) for node, engine in node_engines.items()}
    with UnitOfWork(factories[1]) as uow:
        user_id = uow.users.create(
            {"email": "counter@example.com", "hashed_password": "h", "full_name": "0"}
        ).id
        uow.commit()
    conflicts_before = sum(
        _status(engine, "wsrep_local_cert_failures") for engine in node_engines.values()
    )

    def increment(uow: UnitOfWork) -> None:
        user = uow.users.get_one(user_id)
        uow.users.update(user_id, {"full_name": str(int(user.full_name or "0") + 1)})

    def worker(factory: sessionmaker[Session]) -> None:
        for _ in range(40):
            run_in_transaction(
                increment, retries=200, session_factory=factory, backoff=0.005, max_backoff=0.1
            )

    with ThreadPoolExecutor(max_workers=6) as pool:
        for outcome in [pool.submit(worker, factories[1 + n % 3]) for n in range(6)]:
            outcome.result(timeout=300)

    for engine in node_engines.values():
        with engine.connect() as connection:
            row = connection.execute(text("SELECT full_name, version FROM users")).one()
        assert tuple(row) == ("240", 241)
    conflicts = (
        sum(_status(engine, "wsrep_local_cert_failures") for engine in node_engines.values())
        - conflicts_before
    )
    assert conflicts > 0, "no commit lost certification: the test did not contend across nodes"


def test_a_unit_of_work_sees_a_commit_made_just_before_on_another_node(
    node_engines: dict[int, Engine],
) -> None:
    """A commit carrying thousands of rows on node 1, then at once a read on node 2: without
    causal reads Galera may not have applied it there yet."""
    writer = make_session_factory(node_engines[1])
    reader = make_session_factory(node_engines[2])
    with UnitOfWork(writer) as uow:
        owner = uow.users.create({"email": "owner@example.com", "hashed_password": "h"}).id
        uow.commit()
    missed = 0
    for round_ in range(20):
        marker = f"round {round_}"
        with UnitOfWork(writer) as uow:
            uow.items.create_many(
                {"title": marker if n == 0 else f"filler {n}", "owner_id": owner}
                for n in range(3_000)
            )
            uow.commit()
        with UnitOfWork(reader) as uow:
            missed += uow.items.count(where={"title": marker}) != 1
    assert missed == 0


def _upgrade_on(url: URL) -> tuple[int, str]:
    done = run_app("db", "upgrade", database_url=url.render_as_string(hide_password=False))
    return done.returncode, done.stdout + done.stderr


def test_upgrades_started_at_once_on_every_node_apply_the_migrations_once(
    backend: str, galera_cluster: GaleraCluster, databases: ThrowawayDatabases
) -> None:
    database = databases.new_url(backend, "upgrade_race").database
    assert database is not None
    with ThreadPoolExecutor(max_workers=3) as pool:
        outcomes = list(pool.map(_upgrade_on, [galera_cluster.url(n, database) for n in NODES]))
    assert [code for code, _ in outcomes] == [0, 0, 0], outcomes
    engine = make_engine(galera_cluster.url(3, database))
    try:
        with engine.connect() as connection:
            assert len(connection.execute(text("SELECT * FROM alembic_version")).all()) == 1
            assert connection.scalar(text(f"SELECT count(*) FROM {LOCK_TABLE}")) == 0
    finally:
        engine.dispose()


def test_a_live_lease_is_waited_for_and_a_dead_migrators_lease_runs_out(
    backend: str, databases: ThrowawayDatabases
) -> None:
    url = databases.new_url(backend, "lease")
    database_url = url.render_as_string(hide_password=False)
    engine = make_engine(url)
    try:
        upgrade(engine)  # creates the lease table
        with engine.begin() as connection:
            connection.execute(
                text(
                    f"INSERT INTO {LOCK_TABLE} VALUES "
                    "('app:migrations', 'elsewhere:1:x', UTC_TIMESTAMP(6) + INTERVAL 300 SECOND)"
                )
            )
        quick = {"DB_MIGRATION_WAIT": "1"}
        held = run_app("db", "upgrade", database_url=database_url, env=quick)
        assert held.returncode != 0
        assert "another process is migrating this database" in held.stderr
        assert "Traceback" not in held.stderr
        with engine.begin() as connection:  # its holder died: nobody renews it
            connection.execute(
                text(f"UPDATE {LOCK_TABLE} SET expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND")
            )
        taken_over = run_app("db", "upgrade", database_url=database_url, env=quick)
        assert taken_over.returncode == 0, taken_over.stderr
        with engine.connect() as connection:
            assert connection.scalar(text(f"SELECT count(*) FROM {LOCK_TABLE}")) == 0
    finally:
        engine.dispose()


def test_writes_go_on_through_the_survivors_when_a_node_dies(
    galera_cluster: GaleraCluster, cluster_database: str
) -> None:
    """Writers on a URL naming all three nodes; node 1, the first they try, is killed (-9)."""
    engine = make_engine(
        galera_cluster.cluster_url(cluster_database), connect_timeout=2, statement_timeout=20
    )
    factory = make_session_factory(engine)
    with UnitOfWork(factory) as uow:
        owner = uow.users.create({"email": "writer@example.com", "hashed_password": "h"}).id
        uow.commit()
    try:
        with WriteStream(factory, owner) as stream:
            time.sleep(2)
            killed_at = time.monotonic()
            galera_cluster.kill(1)
            time.sleep(14)
        after = [at for at, _ in stream.committed if at > killed_at]
        assert after, f"no write committed after the node died; failures: {stream.failures[-5:]}"
        resumed = after[0] - killed_at
        assert resumed < 10, f"writes resumed {resumed:.1f} s after the node died"
        assert len(after) > 20
        for node in (2, 3):
            survivor = make_engine(galera_cluster.url(node, cluster_database))
            try:
                missing = stream.committed_ids() - stored_item_ids(survivor)
            finally:
                survivor.dispose()
            assert not missing, f"{len(missing)} committed writes missing on node {node}"
    finally:
        engine.dispose()
        galera_cluster.up()  # node 1 rejoins (state transfer) for the tests after this one


def test_info_shows_the_cluster_and_a_url_listing_the_nodes_masked(
    galera_cluster: GaleraCluster, cluster_database: str
) -> None:
    url = galera_cluster.cluster_url(cluster_database).set(password="s3cret")
    done = run_app("db", "info", database_url=url.render_as_string(hide_password=False))
    assert done.returncode != 0  # root has no password: the login is refused, in one line
    assert "s3cret" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    ports = galera_cluster.client_ports
    assert f"host=127.0.0.1:{ports[0]}&host=127.0.0.1:{ports[1]}" in done.stderr
    shown = run_app(
        "db", "info",
        database_url=galera_cluster.url(2, cluster_database).render_as_string(hide_password=False),
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "cluster: Galera, 3 nodes, Primary; this node Synced" in shown.stdout
    assert "app_migration_lock" not in shown.stdout
