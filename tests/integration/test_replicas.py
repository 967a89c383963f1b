"""Read-only units of work on a real streaming replica: routing, commit tokens with replay
paused, lag and a stopped replica passed over and taken back, writes refused."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from app.db.errors import InvalidQueryError, ReadOnlyError, translating_errors
from app.db.runtime import Runtime, use_runtime
from app.db.session import (
    make_async_engine,
    make_async_session_factory,
    make_engine,
    make_session_factory,
)
from app.migrations import upgrade
from app.repositories import AsyncUnitOfWork, UnitOfWork
from app.topology import replicas as replica_checks
from app.topology.replicas import ReplicaSet
from tests.integration.helpers import run_app
from tests.topologies import PostgresPair

pytestmark = pytest.mark.backends("postgresql")
DATABASE = "replicas"
# What a read-only unit is told of its writes, raw SQL included, on the replica as on the primary.
READ_ONLY_UNIT = r"this unit of work is read-only \(UnitOfWork\(read_only=True\)\)"


@pytest.fixture(scope="module")
def pair_database(postgres_pair: PostgresPair) -> Iterator[str]:
    """A migrated database on the primary (and so on the replica); its name."""
    admin = make_engine(postgres_pair.url("primary", "postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        connection.exec_driver_sql(f"CREATE DATABASE {DATABASE}")
    engine = make_engine(postgres_pair.url("primary", DATABASE))
    upgrade(engine)
    engine.dispose()
    yield DATABASE
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    admin.dispose()


@pytest.fixture
def primary(pair_database: str, postgres_pair: PostgresPair) -> Iterator[Engine]:
    engine = make_engine(postgres_pair.url("primary", pair_database))
    yield engine
    with engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM items")
        connection.exec_driver_sql("DELETE FROM users")
    engine.dispose()


@pytest.fixture
def replay(postgres_pair: PostgresPair, pair_database: str) -> Iterator[Callable[[bool], None]]:
    """`replay(False)` pauses WAL replay on the replica, `replay(True)` resumes it; resumed after
    the test."""
    engine = make_engine(postgres_pair.url("replica", pair_database), isolation_level="AUTOCOMMIT")

    def state() -> str:
        with engine.connect() as connection:
            return str(connection.scalar(text("SELECT pg_get_wal_replay_pause_state()")))

    def switch(on: bool) -> None:
        with engine.connect() as connection:
            connection.exec_driver_sql(
                "SELECT pg_wal_replay_resume()" if on else "SELECT pg_wal_replay_pause()"
            )
        if not on:
            _until(lambda: state() == "paused")  # a pause is a request until replay stops

    yield switch
    postgres_pair.start_replica()
    switch(True)
    engine.dispose()


@pytest.fixture
def replicas(
    postgres_pair: PostgresPair, pair_database: str, primary: Engine
) -> Iterator[ReplicaSet]:
    """The pair's replica, checked every 0.2 s, passed over beyond 1 s of lag."""
    built = ReplicaSet.build(primary, [postgres_pair.url("replica", pair_database)], max_lag=1.0)
    built.check_every = 0.2

    def caught_up() -> bool:
        built.check()
        return built.replicas[0].healthy

    _until(caught_up)  # a replica still replaying the migrations lags
    yield built
    built.close()


@pytest.fixture
def factory(primary: Engine) -> sessionmaker[Session]:
    return make_session_factory(primary)


def _until(condition: Callable[[], bool], seconds: float = 20) -> float:
    """Wait for `condition`; how long it took. Fails after `seconds`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "the condition did not hold in time"
        time.sleep(0.05)
    return time.monotonic() - started


def _served_by_replica(
    factory: sessionmaker[Session], replicas: ReplicaSet, after: str | None = None
) -> bool:
    with UnitOfWork(factory, read_only=True, after=after, replicas=replicas) as uow:
        return bool(uow.session.scalar(text("SELECT pg_is_in_recovery()")))


def _add_user(factory: sessionmaker[Session], replicas: ReplicaSet, email: str) -> str:
    with UnitOfWork(factory, replicas=replicas) as uow:
        uow.users.create({"email": email, "hashed_password": "h"})
        return uow.commit()


def test_read_only_units_run_on_the_replica_and_the_others_on_the_primary(
    factory: sessionmaker[Session], replicas: ReplicaSet
) -> None:
    assert _served_by_replica(factory, replicas)
    with UnitOfWork(factory, replicas=replicas) as uow:
        assert uow.session.scalar(text("SELECT pg_is_in_recovery()")) is False


def test_a_token_reads_its_own_write_from_the_primary_until_the_replica_has_replayed_it(
    factory: sessionmaker[Session], replicas: ReplicaSet, replay: Callable[[bool], None]
) -> None:
    replicas.max_lag = 3600  # lag alone must not decide here: the token must
    replay(False)
    token = _add_user(factory, replicas, "ada@example.com")
    with UnitOfWork(factory, read_only=True, replicas=replicas) as uow:
        # Without the token: the replica, which has not replayed the commit.
        assert uow.session.scalar(text("SELECT pg_is_in_recovery()"))
        assert uow.users.get_by_email("ada@example.com") is None
    with UnitOfWork(factory, read_only=True, after=token, replicas=replicas) as uow:
        assert uow.session.scalar(text("SELECT pg_is_in_recovery()")) is False
        assert uow.users.get_by_email("ada@example.com") is not None
    replay(True)
    _until(lambda: _served_by_replica(factory, replicas, after=token))
    with UnitOfWork(factory, read_only=True, after=token, replicas=replicas) as uow:
        assert uow.users.get_by_email("ada@example.com") is not None


def test_a_lagging_replica_is_passed_over_and_taken_back_once_caught_up(
    factory: sessionmaker[Session], replicas: ReplicaSet, replay: Callable[[bool], None]
) -> None:
    assert _served_by_replica(factory, replicas)
    replay(False)
    _add_user(factory, replicas, "first@example.com")
    # Lag is the age of the last replayed commit once the replica is behind: past 1 s, and a
    # check later, the primary serves, without an error.
    _until(lambda: not _served_by_replica(factory, replicas))
    assert "lags" in replicas.replicas[0].problem
    replay(True)
    _until(lambda: _served_by_replica(factory, replicas), seconds=5)


def test_a_stopped_replica_is_passed_over_without_an_error_and_used_again_when_back(
    postgres_pair: PostgresPair, factory: sessionmaker[Session], replicas: ReplicaSet
) -> None:
    assert _served_by_replica(factory, replicas)
    postgres_pair.stop_replica()
    # Every unit succeeds: the first may find the pooled connection dead and fall back.
    for _ in range(5):
        assert not _served_by_replica(factory, replicas)
    postgres_pair.start_replica()
    _until(lambda: _served_by_replica(factory, replicas), seconds=10)


def test_a_write_in_a_read_only_unit_is_a_read_only_error(
    factory: sessionmaker[Session], replicas: ReplicaSet
) -> None:
    for replica_set in (replicas, None):  # on the replica; on the primary (no replicas)
        with (
            UnitOfWork(factory, read_only=True, replicas=replica_set) as uow,
            pytest.raises(ReadOnlyError, match=READ_ONLY_UNIT),
        ):
            uow.users.create({"email": "w@example.com", "hashed_password": "h"})
        with (
            UnitOfWork(factory, read_only=True, replicas=replica_set) as uow,
            pytest.raises(ReadOnlyError, match=READ_ONLY_UNIT),
        ):
            uow.users.create_many([{"email": "m@example.com", "hashed_password": "h"}])
        with (
            UnitOfWork(factory, read_only=True, replicas=replica_set) as uow,
            pytest.raises(ReadOnlyError, match=READ_ONLY_UNIT),
            translating_errors(),
        ):
            uow.session.execute(text("DELETE FROM items"))
    with UnitOfWork(factory) as uow:
        assert uow.users.count() == 0


def test_a_malformed_token_is_refused(factory: sessionmaker[Session], replicas: ReplicaSet) -> None:
    with pytest.raises(InvalidQueryError, match="not a commit token"):
        UnitOfWork(factory, read_only=True, after="yesterday", replicas=replicas).__enter__()


def test_info_shows_the_replicas_their_lag_and_use(
    postgres_pair: PostgresPair, pair_database: str
) -> None:
    replica = postgres_pair.url("replica", pair_database).render_as_string(hide_password=False)
    done = run_app(
        "db", "info",
        database_url=postgres_pair.url("primary", pair_database).render_as_string(
            hide_password=False
        ),
        env={"DATABASE_REPLICA_URLS": replica},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"replica {replica}: in use, lag 0.0 s" in done.stdout


def test_the_asyncio_unit_of_work_routes_and_reads_its_own_writes_the_same_way(
    postgres_pair: PostgresPair,
    pair_database: str,
    replicas: ReplicaSet,
    replay: Callable[[bool], None],
) -> None:
    replicas.max_lag = 3600

    async def scenario() -> None:
        engine = make_async_engine(postgres_pair.url("primary", pair_database))
        factory = make_async_session_factory(engine)

        async def served_by_replica(after: str | None = None) -> bool:
            async with AsyncUnitOfWork(
                factory, read_only=True, after=after, replicas=replicas
            ) as uow:
                return bool(await uow.async_session.scalar(text("SELECT pg_is_in_recovery()")))

        try:
            assert await served_by_replica()
            replay(False)
            async with AsyncUnitOfWork(factory, replicas=replicas) as uow:
                await uow.users.create({"email": "async@example.com", "hashed_password": "h"})
                token = await uow.commit()
            assert not await served_by_replica(after=token)
            async with AsyncUnitOfWork(
                factory, read_only=True, after=token, replicas=replicas
            ) as uow:
                assert await uow.users.get_by_email("async@example.com") is not None
                with pytest.raises(ReadOnlyError):
                    await uow.users.create({"email": "no@example.com", "hashed_password": "h"})
            replay(True)
            started = time.monotonic()
            while not await served_by_replica(after=token):
                assert time.monotonic() - started < 20
                await asyncio.sleep(0.05)
        finally:
            await replicas.dispose_async()
            await engine.dispose()

    asyncio.run(scenario())


def test_the_default_unit_of_work_uses_the_replicas_of_the_settings(
    postgres_pair: PostgresPair, pair_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "DATABASE_URL",
        postgres_pair.url("primary", pair_database).render_as_string(hide_password=False),
    )
    monkeypatch.setenv(
        "DATABASE_REPLICA_URLS",
        postgres_pair.url("replica", pair_database).render_as_string(hide_password=False),
    )
    with use_runtime(Runtime()):
        with UnitOfWork(read_only=True) as uow:
            assert uow.session.scalar(text("SELECT pg_is_in_recovery()"))
        with UnitOfWork() as uow:
            assert uow.session.scalar(text("SELECT pg_is_in_recovery()")) is False


def test_a_token_costs_no_statement_when_the_last_check_covers_it_and_one_otherwise(
    factory: sessionmaker[Session], replicas: ReplicaSet
) -> None:
    replicas.check_every = 3600  # only this test's own checks update what is known
    token = _add_user(factory, replicas, "counted@example.com")
    _until(lambda: _served_by_replica(factory, replicas, after=token))
    replica_engine = replicas.replicas[0].engine
    sent: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        sent.append(statement)

    def statements(after: str | None) -> int:
        sent.clear()
        with UnitOfWork(factory, read_only=True, after=after, replicas=replicas) as uow:
            assert uow.users.get_by_email("counted@example.com") is not None
        return len(sent)

    event.listen(replica_engine, "before_cursor_execute", record)
    try:
        replicas.check()  # the replica's position is known past the token now
        plain = statements(None)
        assert statements(token) == plain
        replicas.replicas[0].replayed = 0  # as if the last check predated the commit
        assert statements(token) == plain + 1
        assert any("pg_last_wal_replay_lsn" in statement for statement in sent)
    finally:
        event.remove(replica_engine, "before_cursor_execute", record)


def test_wal_written_without_commits_does_not_make_a_caught_up_replica_lag(
    postgres_pair: PostgresPair,
    pair_database: str,
    replicas: ReplicaSet,
    replay: Callable[[bool], None],
) -> None:
    """The primary writes WAL with no commit in it (here a logical message; checkpoints and
    standby snapshots do it on their own): a replica that replayed everything up to the last check
    is at most one check behind, not the age of its last replayed commit. One check more with
    replay still stopped, and it is passed over."""
    admin = make_engine(postgres_pair.url("primary", pair_database), isolation_level="AUTOCOMMIT")
    replica = replicas.replicas[0]

    def wal_without_commit() -> None:
        with admin.connect() as connection:
            connection.exec_driver_sql("SELECT pg_logical_emit_message(false, 'app', 'tick')")
            connection.exec_driver_sql("SELECT pg_switch_wal()")  # written out and sent now

    try:
        time.sleep(1.2)  # the last replayed commit is older than DB_REPLICA_MAX_LAG (1 s) now
        replicas.check()
        assert replica.healthy, replica.problem
        replay(False)
        wal_without_commit()
        replicas.check()
        assert replica.healthy, replica.problem
        assert replica.lag == replicas.check_every
        wal_without_commit()
        replicas.check()
        assert not replica.healthy
        assert "lags" in replica.problem
    finally:
        admin.dispose()


def test_a_first_check_waits_a_moment_for_wal_written_just_before_it(
    postgres_pair: PostgresPair,
    pair_database: str,
    primary: Engine,
    replay: Callable[[bool], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A single check (as `app db info` makes) has no earlier one to judge by: WAL the primary
    wrote a moment before, replayed a moment after, is a replica caught up, not one as far behind
    as its last replayed commit is old."""
    waiting = replica_checks._replayed_within

    def resumed_while_waiting(*args: Any) -> Any:
        # Replay resumes 50 ms after the check starts waiting for it, however slow the machine
        # was to get there: the check saw the replica behind, then caught up.
        resume = threading.Timer(0.05, replay, args=(True,))
        resume.start()
        try:
            return waiting(*args)
        finally:
            resume.join()

    monkeypatch.setattr(replica_checks, "_replayed_within", resumed_while_waiting)
    admin = make_engine(postgres_pair.url("primary", pair_database), isolation_level="AUTOCOMMIT")
    fresh = ReplicaSet.build(primary, [postgres_pair.url("replica", pair_database)], max_lag=1.0)
    try:
        time.sleep(1.2)  # the last replayed commit is older than the largest lag allowed
        replay(False)
        with admin.connect() as connection:
            connection.exec_driver_sql("SELECT pg_logical_emit_message(false, 'app', 'tick')")
            connection.exec_driver_sql("SELECT pg_switch_wal()")
        fresh.check()
        replica = fresh.replicas[0]
        assert replica.healthy, replica.problem
        assert replica.lag is not None
        assert 0.05 <= replica.lag < 0.25
    finally:
        fresh.close()
        admin.dispose()
