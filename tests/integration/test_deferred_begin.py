"""PostgreSQL: a unit's transaction begins with its first statement that needs one
(`app.dialects.deferred_begin`). A unit that only reads holds no transaction on the server;
writes, row locks, functions that may write and stronger isolation levels still get one, from
the start of what needs it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from app.db.errors import RetryableError
from app.db.models import User
from app.db.session import (
    make_async_engine,
    make_async_session_factory,
    make_engine,
    make_session_factory,
)
from app.dialects import deferred_begin
from app.repositories import AsyncUnitOfWork, UnitOfWork, run_in_transaction

pytestmark = pytest.mark.backends("postgresql")
_STATE = "SELECT state FROM pg_stat_activity WHERE pid = :pid"


@pytest.fixture
def admin(committed_engine: Engine) -> Iterator[Engine]:
    built = make_engine(committed_engine.url, pool_size=1)
    yield built
    built.dispose()


def _state_of(admin: Engine, session: Session) -> str:
    pid = session.connection().connection.driver_connection.info.backend_pid  # type: ignore[union-attr]
    with admin.connect() as connection:
        return str(connection.execute(text(_STATE), {"pid": pid}).scalar())


def _user(factory: sessionmaker[Session], email: str) -> object:
    with UnitOfWork(factory) as uow:
        made = uow.users.create({"email": email, "hashed_password": "x"})
        uow.commit()
        return made.id


def test_a_unit_that_only_reads_holds_no_transaction(
    committing_factory: sessionmaker[Session], admin: Engine
) -> None:
    user_id = _user(committing_factory, "reader@example.com")
    with UnitOfWork(committing_factory) as uow:
        assert uow.users.get(user_id) is not None
        assert uow.users.paginate(limit=5).items
        assert _state_of(admin, uow.session) == "idle"
        uow.users.update(user_id, {"full_name": "Written"})
        assert _state_of(admin, uow.session) == "idle in transaction"
    with UnitOfWork(committing_factory) as uow:  # left without commit: nothing written
        assert uow.users.get_one(user_id).full_name is None


@pytest.mark.parametrize("face", ["blocking", "asyncio"])
def test_an_autocommit_left_on_a_pooled_connection_does_not_commit_the_next_unit(
    committed_engine: Engine, face: str
) -> None:
    """A unit that never reached its end (a task cancelled while its BEGIN was deferred)
    could leave its connection in psycopg's autocommit. The next unit on that connection still
    defers its BEGIN: a write it does not commit is not stored."""

    def left_in_autocommit(driver: Any) -> None:
        driver.autocommit = True

    async def asyncio_face() -> None:
        engine = make_async_engine(committed_engine.url, pool_size=1, max_overflow=0)
        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            await raw.driver_connection.set_autocommit(True)
        async with AsyncUnitOfWork(make_async_session_factory(engine)) as uow:
            await uow.users.create({"email": "left@example.com", "hashed_password": "x"})
        await engine.dispose()

    if face == "asyncio":
        asyncio.run(asyncio_face())
    else:
        engine = make_engine(committed_engine.url, pool_size=1, max_overflow=0)
        with engine.connect() as connection:
            left_in_autocommit(connection.connection.driver_connection)
            connection.connection.info.clear()  # as a unit that never reached its end leaves it
        with UnitOfWork(make_session_factory(engine)) as uow:
            uow.users.create({"email": "left@example.com", "hashed_password": "x"})
        engine.dispose()
    with committed_engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(User)) == 0


def test_a_write_after_reads_commits_and_a_failed_one_leaves_nothing(
    committing_factory: sessionmaker[Session],
) -> None:
    user_id = _user(committing_factory, "writer@example.com")
    with UnitOfWork(committing_factory) as uow:
        uow.users.get_one(user_id)
        uow.users.update(user_id, {"full_name": "Kept"})
        uow.commit()
    with UnitOfWork(committing_factory) as uow:
        uow.users.get_one(user_id)
        uow.users.update(user_id, {"full_name": "Undone"})
        uow.rollback()
        assert uow.users.get_one(user_id).full_name == "Kept"


def test_rows_read_for_update_stay_locked_until_the_unit_ends(
    committing_factory: sessionmaker[Session], admin: Engine
) -> None:
    user_id = _user(committing_factory, "locked@example.com")
    with UnitOfWork(committing_factory) as uow:
        uow.session.execute(select(User).where(User.id == user_id).with_for_update()).one()
        with admin.connect() as other, pytest.raises(RetryableError):  # lock_not_available
            other.execute(
                select(User.id).where(User.id == user_id).with_for_update(nowait=True)
            ).all()


def test_a_function_that_may_write_or_lock_runs_inside_the_transaction(
    committing_factory: sessionmaker[Session], admin: Engine
) -> None:
    with UnitOfWork(committing_factory) as uow:
        uow.session.execute(select(func.pg_advisory_xact_lock(424242)))
        with admin.connect() as other:
            taken = other.execute(select(func.pg_try_advisory_lock(424242))).scalar()
        assert taken is False  # held by the unit's transaction, not released at once
        assert _state_of(admin, uow.session) == "idle in transaction"


def test_now_in_a_unit_is_the_time_its_transaction_began(
    committing_factory: sessionmaker[Session],
) -> None:
    with UnitOfWork(committing_factory) as uow:
        first = uow.session.execute(select(func.now())).scalar()
        uow.session.execute(select(func.pg_sleep(0.01)))
        assert uow.session.execute(select(func.now())).scalar() == first


def test_repeatable_read_sees_one_snapshot_across_its_reads(
    committing_factory: sessionmaker[Session],
) -> None:
    user_id = _user(committing_factory, "snapshot@example.com")
    with UnitOfWork(committing_factory, isolation_level="REPEATABLE READ") as uow:
        before = uow.session.execute(select(User.full_name).where(User.id == user_id)).scalar()
        # Another transaction commits between the unit's two reads.
        done = threading.Thread(target=_rename, args=(committing_factory, user_id))
        done.start()
        done.join()
        after = uow.session.execute(select(User.full_name).where(User.id == user_id)).scalar()
        assert before == after is None


def _rename(factory: sessionmaker[Session], user_id: object) -> None:
    with UnitOfWork(factory) as uow:
        uow.users.update(user_id, {"full_name": "Renamed"})
        uow.commit()


def test_units_run_at_read_committed_whatever_the_database_default(
    committed_engine: Engine, admin: Engine
) -> None:
    database = committed_engine.url.database
    with admin.connect() as connection:
        connection.exec_driver_sql(
            f"ALTER DATABASE \"{database}\" SET default_transaction_isolation = 'serializable'"
        )
        connection.commit()
    engine = make_engine(committed_engine.url, pool_size=1)
    try:
        with engine.connect() as connection:
            level = connection.exec_driver_sql("SHOW transaction_isolation").scalar()
        assert level == "read committed"
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.exec_driver_sql(
                f'ALTER DATABASE "{database}" RESET default_transaction_isolation'
            )
            connection.commit()


def test_the_asyncio_face_reads_without_a_transaction_too(
    committed_engine: Engine, committing_factory: sessionmaker[Session], admin: Engine
) -> None:
    user_id = _user(committing_factory, "async-reader@example.com")

    async def read() -> tuple[str, str]:
        engine = make_async_engine(committed_engine.url, pool_size=1)
        try:
            factory = make_async_session_factory(engine)
            async with AsyncUnitOfWork(factory) as uow:
                assert await uow.users.get(user_id) is not None
                connection = await uow.async_session.connection()
                raw = await connection.get_raw_connection()
                pid = raw.driver_connection.info.backend_pid  # type: ignore[union-attr]
                reading = await asyncio.to_thread(_state_by_pid, admin, pid)
                await uow.users.update(user_id, {"full_name": "Async"})
                writing = await asyncio.to_thread(_state_by_pid, admin, pid)
                await uow.commit()
            return reading, writing
        finally:
            await engine.dispose()

    assert asyncio.run(read()) == ("idle", "idle in transaction")
    with UnitOfWork(committing_factory) as uow:
        assert uow.users.get_one(user_id).full_name == "Async"


def _state_by_pid(admin: Engine, pid: int) -> str:
    with admin.connect() as connection:
        return str(connection.execute(text(_STATE), {"pid": pid}).scalar())


def _round_trips(engine: Engine, work: Callable[[], object], tmp_path: Path) -> int:
    """How many times `work` waited for the server on the engine's one pooled connection: the
    frontend's Query and Sync messages in libpq's trace of it."""
    with engine.connect() as connection:
        pgconn = connection.connection.driver_connection.pgconn  # type: ignore[union-attr]
    trace = tmp_path / "trace.txt"
    with trace.open("w") as sink:
        pgconn.trace(sink.fileno())
        try:
            work()
        finally:
            pgconn.untrace()
    lines = [line.split("\t") for line in trace.read_text().splitlines()]
    return sum(1 for line in lines if len(line) > 3 and line[1] == "F" and line[3] in _WAITS)


_WAITS = {"Query", "Sync"}


def test_a_unit_that_signs_its_commit_takes_no_round_trip_more(
    committing_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """A unit's BEGIN goes with its first write, in one round trip, and run_in_transaction's
    receipt (the transaction's id) goes with them: a unit that signs takes as many round trips
    as one committed plainly, and says which transaction it was."""
    url = committing_factory.kw["bind"].url
    engine = make_engine(url, pool_size=1, max_overflow=0)
    factory = make_session_factory(engine)
    emails = (f"trip{n}@example.com" for n in range(10))
    signed: list[object] = []

    def write(uow: UnitOfWork) -> None:
        uow.users.create({"email": next(emails), "hashed_password": "x"})
        signed.append(deferred_begin.transaction_id(uow.session.connection()))

    try:
        run_in_transaction(write, session_factory=factory)  # the connection, made
        plain = _round_trips(
            engine, lambda: run_in_transaction(write, session_factory=factory, exactly_once=False),
            tmp_path,
        )  # fmt: skip
        exactly_once = _round_trips(
            engine, lambda: run_in_transaction(write, session_factory=factory), tmp_path
        )
    finally:
        engine.dispose()
    assert plain == exactly_once == 2  # BEGIN with the INSERT, COMMIT
    assert signed[1] is None
    assert isinstance(signed[2], int)
