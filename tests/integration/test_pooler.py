"""Behind PgBouncer, in transaction mode (the `pgbouncer` test backend: a PgBouncer this run
starts in front of the PostgreSQL server, stock settings) and in session mode: our session
settings are in force in every transaction whatever the database's defaults say, nothing relies
on a server connection staying ours between transactions, and what needs a session goes to
DATABASE_DIRECT_URL."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from app.db.errors import DatabaseUnavailableError, DataLayerError
from app.db.session import (
    make_async_engine,
    make_async_session_factory,
    make_engine,
    make_session_factory,
)
from app.repositories import AsyncUnitOfWork, UnitOfWork
from tests.backends import DATABASE_DEFAULTS, ThrowawayDatabases, direct_url
from tests.integration.helpers import resolve_a_commit_held_open, run_app
from tests.topologies import PgBouncer, pgbouncer_unavailable_reason, started

pytestmark = pytest.mark.backends("pgbouncer")

# Ours (DB_STATEMENT_TIMEOUT's default) as PostgreSQL shows it; the database says otherwise.
OURS = {"TimeZone": "UTC", "statement_timeout": "1min"}


@pytest.fixture
def pooled_url(backend: str, databases: ThrowawayDatabases) -> URL:
    """A new database, migrated, reached through the run's transaction pooler."""
    url = databases.new_url(backend, f"pooled_{uuid.uuid4().hex[:6]}")
    direct = direct_url(url).render_as_string(hide_password=False)
    migrated = run_app("db", "upgrade", database_url=direct)
    assert migrated.returncode == 0, migrated.stderr
    return url


def _settings_in(connection: Any) -> dict[str, str]:
    return {name: connection.execute(text(f"SHOW {name}")).scalar() for name in OURS}


def test_the_databases_own_defaults_differ_from_ours(pooled_url: URL) -> None:
    # What the other tests prove is only proof if the server would otherwise say something else.
    direct = direct_url(pooled_url)
    with psycopg.connect(
        host=direct.host, port=direct.port, dbname=direct.database, user=direct.username
    ) as connection:
        shown = {name: connection.execute(f"SHOW {name}").fetchone()[0] for name in OURS}
    assert shown == DATABASE_DEFAULTS


def test_our_settings_hold_in_every_transaction_of_both_faces(pooled_url: URL) -> None:
    engine = make_engine(pooled_url, pooler="transaction", statement_timeout=60)
    try:
        for _ in range(12):  # more transactions than server connections meet one client's
            with UnitOfWork(make_session_factory(engine)) as uow:
                assert _settings_in(uow.session) == OURS
                user = uow.users.create({"email": "tz@example.com", "hashed_password": "x"})
                assert user.created_at.utcoffset() == dt.timedelta(0)
                uow.rollback()
    finally:
        engine.dispose()

    async def asyncio_face() -> None:
        async_engine = make_async_engine(pooled_url, pooler="transaction", statement_timeout=60)
        try:
            for _ in range(12):
                async with AsyncUnitOfWork(make_async_session_factory(async_engine)) as uow:
                    shown = {
                        name: (await uow.async_session.execute(text(f"SHOW {name}"))).scalar()
                        for name in OURS
                    }
                    assert shown == OURS
        finally:
            await async_engine.dispose()

    asyncio.run(asyncio_face())


def _mixed_unit(engine: Engine, worker: int, round_: int) -> None:
    """A get, an update that advances the version, and a page: the statements a web request
    sends, each run far more often than psycopg's threshold for preparing one."""
    with UnitOfWork(make_session_factory(engine)) as uow:
        owner = uow.users.get_by_email(f"w{worker}@example.com")
        assert owner is not None
        item = uow.items.list(where={"owner_id": owner.id}, limit=1)[0]
        uow.items.update(item.id, {"title": f"round {round_}"}, expected_version=item.version)
        uow.items.paginate(order_by=["-created_at"], limit=10)
        uow.commit()


def _load(url: URL, workers: int) -> None:
    engine = make_engine(url, pooler="transaction", statement_timeout=60)
    with UnitOfWork(make_session_factory(engine)) as uow:
        for worker in range(max(workers, 16)):
            owner = uow.users.create({"email": f"w{worker}@example.com", "hashed_password": "x"})
            uow.items.create({"title": "start", "owner_id": owner.id})
        uow.commit()
    engine.dispose()


def test_eight_threads_of_units_through_a_transaction_pooler_meet_no_error(
    pooled_url: URL,
) -> None:
    _load(pooled_url, 8)
    engine = make_engine(pooled_url, pooler="transaction", statement_timeout=60, pool_size=8)
    failures: list[BaseException] = []

    def worker(number: int) -> None:
        for round_ in range(40):
            try:
                _mixed_unit(engine, number, round_)
            except BaseException as exc:  # every failure is counted, whatever its kind
                failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    engine.dispose()
    assert not any(thread.is_alive() for thread in threads)
    assert [repr(failure) for failure in failures] == []


def test_sixteen_tasks_of_units_through_a_transaction_pooler_meet_no_error(
    pooled_url: URL,
) -> None:
    _load(pooled_url, 16)

    async def run() -> list[BaseException]:
        engine = make_async_engine(
            pooled_url, pooler="transaction", statement_timeout=60, pool_size=8
        )
        factory = make_async_session_factory(engine)
        failures: list[BaseException] = []

        async def task(number: int) -> None:
            for round_ in range(30):
                try:
                    async with AsyncUnitOfWork(factory) as uow:
                        owner = await uow.users.get_by_email(f"w{number}@example.com")
                        item = (await uow.items.list(where={"owner_id": owner.id}, limit=1))[0]
                        await uow.items.update(
                            item.id, {"title": f"r{round_}"}, expected_version=item.version
                        )
                        await uow.items.paginate(order_by=["-created_at"], limit=10)
                        streamed = [row async for row in uow.items.iterate(batch_size=2)]
                        assert streamed
                        await uow.commit()
                except BaseException as exc:  # every failure is counted, whatever its kind
                    failures.append(exc)

        await asyncio.gather(*(task(n) for n in range(16)))
        await engine.dispose()
        return failures

    assert [repr(failure) for failure in asyncio.run(run())] == []


def test_a_lost_commit_behind_the_pooler_ends_the_transaction_the_server_holds(
    pooled_url: URL,
) -> None:
    """The COMMIT never reached the server through the pooler (a silent network): telling the
    outcome ends the server's session still in that transaction, found by the transaction's
    id (the pooler's connection numbers are not the server's), and says it was not applied."""
    engine = make_engine(pooled_url, poolclass=NullPool, pooler="transaction")
    try:
        email = resolve_a_commit_held_open(engine)
    finally:
        engine.dispose()
    with make_engine(direct_url(pooled_url), poolclass=NullPool).connect() as connection:
        stored = connection.scalar(
            text("SELECT count(*) FROM users WHERE email = :e"), {"e": email}
        )
    assert stored == 0


def test_without_database_pooler_the_refusal_names_it(pooled_url: URL) -> None:
    engine = make_engine(pooled_url, poolclass=NullPool)
    with (
        pytest.raises(DatabaseUnavailableError, match="DATABASE_POOLER") as caught,
        engine.connect(),
    ):
        pass
    engine.dispose()
    assert "check that it is running" not in str(caught.value)
    shown = run_app("db", "info", database_url=pooled_url.render_as_string(hide_password=False))
    assert shown.returncode == 2  # the CLI's code for a database it cannot reach
    (line,) = shown.stderr.splitlines()
    assert "DATABASE_POOLER" in line


def test_migrations_through_a_transaction_pooler_go_to_the_direct_url(
    backend: str, databases: ThrowawayDatabases
) -> None:
    url = databases.new_url(backend, "pooled_migrations")
    pooled = url.render_as_string(hide_password=False)
    env = {"DATABASE_POOLER": "transaction"}
    refused = run_app("db", "upgrade", database_url=pooled, env=env)
    assert refused.returncode == 2  # the CLI's code for settings it cannot use
    (line,) = refused.stderr.splitlines()
    assert "DATABASE_DIRECT_URL" in line
    assert "Traceback" not in refused.stderr

    env["DATABASE_DIRECT_URL"] = direct_url(url).render_as_string(hide_password=False)
    upgraded = run_app("db", "upgrade", database_url=pooled, env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    seeded = run_app("db", "seed", database_url=pooled, env=env)
    assert seeded.returncode == 0, seeded.stderr
    status = run_app("db", "status", database_url=pooled, env=env)
    assert status.returncode == 0, status.stderr


@pytest.fixture(scope="module")
def session_pooler(backend: str) -> Iterator[PgBouncer]:
    """A second PgBouncer, in session mode, in front of the same server."""
    reason = pgbouncer_unavailable_reason()
    if reason is not None:
        pytest.fail(reason)
    pooler = started(lambda: PgBouncer(mode="session"))
    yield pooler
    pooler.down()


def test_a_session_pooler_keeps_our_settings_and_prepared_statements(
    pooled_url: URL, session_pooler: PgBouncer
) -> None:
    url = session_pooler.url(str(pooled_url.database))
    engine = make_engine(url, pooler="session", statement_timeout=60)
    try:
        for _ in range(8):  # past psycopg's threshold: statements are prepared, and reused
            with UnitOfWork(make_session_factory(engine)) as uow:
                assert _settings_in(uow.session) == OURS
                assert uow.users.get_by_email("nobody@example.com") is None
    except DataLayerError as exc:
        pytest.fail(f"through a session pooler: {exc!r}")
    finally:
        engine.dispose()
