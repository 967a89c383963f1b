"""Retries, atomicity, lost updates, a database restart, and bad input, on real databases."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session, sessionmaker

from app.db.errors import (
    ConflictError,
    DatabaseUnavailableError,
    DataLayerError,
    InvalidQueryError,
    RetryableError,
    StaleObjectError,
)
from app.db.session import make_engine, make_session_factory
from app.migrations import upgrade
from app.repositories import UnitOfWork, UserRepository, run_in_transaction, transactional
from app.schemas import UserCreate
from app.services import register_user
from tests.integration.helpers import count_rows
from tests.topologies import PostgresPair


def _scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as connection:
        return connection.execute(text(sql), params).scalar()


# -- retries -----------------------------------------------------------------------------------


def test_run_in_transaction_retries_retryable_errors_then_commits(
    committing_factory: sessionmaker[Session], committed_engine: Engine
) -> None:
    attempts: list[int] = []

    def flaky(uow: UnitOfWork) -> str:
        attempts.append(1)
        uow.users.create({"email": f"try{len(attempts)}@example.com", "hashed_password": "h"})
        if len(attempts) < 3:
            raise RetryableError("simulated serialization failure")
        return "done"

    assert run_in_transaction(flaky, session_factory=committing_factory) == "done"
    assert len(attempts) == 3
    # The failed attempts were rolled back: only the third one's row is there.
    assert _scalar(committed_engine, "SELECT count(*) FROM users") == 1
    assert _scalar(committed_engine, "SELECT email FROM users") == "try3@example.com"


def test_run_in_transaction_never_retries_other_errors(
    committing_factory: sessionmaker[Session],
) -> None:
    attempts: list[int] = []

    def conflicting(uow: UnitOfWork) -> None:
        attempts.append(1)
        raise ConflictError("a user with email 'x' already exists")

    with pytest.raises(ConflictError):
        run_in_transaction(conflicting, session_factory=committing_factory)
    assert len(attempts) == 1


def test_run_in_transaction_never_retries_a_callers_stale_expected_version(
    committing_factory: sessionmaker[Session], committed_engine: Engine
) -> None:
    with UnitOfWork(committing_factory) as setup:
        user_id = setup.users.create({"email": "v@example.com", "hashed_password": "h"}).id
        setup.users.update(user_id, {"full_name": "Second"})
        setup.commit()
    attempts: list[int] = []

    def rename_from_an_old_form(uow: UnitOfWork) -> None:
        attempts.append(1)
        uow.users.update(user_id, {"full_name": "From an old form"}, expected_version=1)

    with pytest.raises(StaleObjectError, match="version 1") as caught:
        run_in_transaction(rename_from_an_old_form, session_factory=committing_factory)
    assert len(attempts) == 1
    assert caught.value.lost_race is False
    assert _scalar(committed_engine, "SELECT full_name FROM users") == "Second"


def test_run_in_transaction_retries_an_optimistic_lock_lost_to_a_concurrent_writer(
    committing_factory: sessionmaker[Session], committed_engine: Engine, backend: str
) -> None:
    with UnitOfWork(committing_factory) as setup:
        user_id = setup.users.create({"email": "r@example.com", "hashed_password": "h"}).id
        setup.commit()
    attempts: list[int] = []

    def rename(uow: UnitOfWork) -> None:
        attempts.append(1)
        read = uow.users.get_one(user_id)  # held: its version is what the update checks
        if len(attempts) == 1:
            with UnitOfWork(committing_factory) as rival:
                rival.users.update(user_id, {"full_name": "Rival"})
                rival.commit()
        uow.users.update(read.id, {"full_name": f"Attempt {len(attempts)}"})

    run_in_transaction(rename, session_factory=committing_factory, backoff=0.001)
    assert len(attempts) == 2
    assert _scalar(committed_engine, "SELECT full_name FROM users") == "Attempt 2"
    assert _scalar(committed_engine, "SELECT version FROM users") == 3


def test_run_in_transaction_gives_up_after_the_last_retry(
    committing_factory: sessionmaker[Session],
) -> None:
    attempts: list[int] = []

    def always_busy(uow: UnitOfWork) -> None:
        attempts.append(1)
        raise RetryableError("busy")

    with pytest.raises(RetryableError):
        run_in_transaction(always_busy, retries=2, session_factory=committing_factory)
    assert len(attempts) == 3


def test_the_decorator_form_runs_in_a_transaction(
    committing_factory: sessionmaker[Session], committed_engine: Engine
) -> None:
    @transactional(session_factory=committing_factory)
    def rename(uow: UnitOfWork, email: str, name: str) -> uuid.UUID:
        user = uow.users.get_by_email(email) or uow.users.create(
            {"email": email, "hashed_password": "h"}
        )
        uow.users.update(user.id, {"full_name": name})
        return user.id

    user_id = rename("deco@example.com", "Decorated")
    assert rename("deco@example.com", "Again") == user_id
    assert _scalar(committed_engine, "SELECT full_name FROM users") == "Again"


# -- lost updates -------------------------------------------------------------------------------


def _increment_concurrently(
    factory: sessionmaker[Session], user_id: uuid.UUID, *, isolation_level: str | None
) -> None:
    errors: list[BaseException] = []

    def increment(uow: UnitOfWork) -> None:
        user = uow.users.get_one(user_id)
        uow.users.update(user_id, {"full_name": str(int(user.full_name or "0") + 1)})

    def worker() -> None:
        try:
            for _ in range(200):
                run_in_transaction(
                    increment, retries=200, isolation_level=isolation_level,
                    session_factory=factory,
                )  # fmt: skip
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "the increments did not finish"
    assert not errors, errors[:3]


def test_concurrent_increments_lose_no_update(
    committing_factory: sessionmaker[Session], committed_engine: Engine
) -> None:
    _count_to_1600(committing_factory, committed_engine, isolation_level=None)


@pytest.mark.backends("postgresql")
def test_concurrent_serializable_increments_lose_no_update(
    committing_factory: sessionmaker[Session], committed_engine: Engine
) -> None:
    _count_to_1600(committing_factory, committed_engine, isolation_level="SERIALIZABLE")


def _count_to_1600(
    factory: sessionmaker[Session], engine: Engine, *, isolation_level: str | None
) -> None:
    """8 threads x 200 read-modify-write increments of one counter."""
    with UnitOfWork(factory) as uow:
        user_id = uow.users.create(
            {"email": "counter@example.com", "hashed_password": "h", "full_name": "0"}
        ).id
        uow.commit()
    _increment_concurrently(factory, user_id, isolation_level=isolation_level)
    assert _scalar(engine, "SELECT full_name FROM users") == "1600"
    assert _scalar(engine, "SELECT version FROM users") == 1601


# -- atomicity ----------------------------------------------------------------------------------


class PlannedFailureError(Exception):
    pass


def test_a_failing_unit_of_work_leaves_nothing_behind(
    committing_factory: sessionmaker[Session], committed_engine: Engine
) -> None:
    chooser = random.Random(2026)
    committed: set[int] = set()
    for unit in range(500):
        items = chooser.randint(1, 4)
        fail_at = chooser.randint(0, items + 1)  # items + 1: never fails
        try:
            with UnitOfWork(committing_factory) as uow:
                owner = uow.users.create(
                    {"email": f"unit{unit}@example.com", "hashed_password": "h"}
                )
                for step in range(items):
                    if step == fail_at:
                        raise PlannedFailureError
                    uow.items.create({"title": f"unit{unit}-{step}", "owner_id": owner.id})
                if fail_at == items:
                    raise PlannedFailureError
                uow.commit()
            committed.add(unit)
        except PlannedFailureError:
            pass
    with committed_engine.connect() as connection:
        users = {
            int(e[4:].split("@")[0]) for e in connection.scalars(text("SELECT email FROM users"))
        }
        owners = {
            int(t[4:].split("-")[0]) for t in connection.scalars(text("SELECT title FROM items"))
        }
    assert users == committed
    assert owners <= committed
    assert 0 < len(committed) < 500


# -- a database restart -------------------------------------------------------------------------


@pytest.fixture
def restartable(postgres_pair: PostgresPair) -> Iterator[Engine]:
    """A migrated database on the project's own PostgreSQL primary (scripts/pg-cluster.sh),
    which the test may restart: never the PostgreSQL the system runs."""
    admin = make_engine(postgres_pair.url("primary", "postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {RESTARTED} WITH (FORCE)")
        connection.exec_driver_sql(f"CREATE DATABASE {RESTARTED}")
    engine = make_engine(postgres_pair.url("primary", RESTARTED))
    upgrade(engine)
    yield engine
    engine.dispose()
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {RESTARTED} WITH (FORCE)")
    admin.dispose()


RESTARTED = "app_restarted"


@pytest.mark.backends("postgresql")
def test_a_restart_loses_no_committed_transaction_and_the_stream_resumes(
    restartable: Engine, postgres_pair: PostgresPair
) -> None:
    factory = make_session_factory(restartable)
    total = 150
    reported: list[int] = []
    failures: list[str] = []
    done = threading.Event()

    def stream() -> None:
        deadline = time.monotonic() + 120
        n = 0
        while n < total and time.monotonic() < deadline:
            try:
                run_in_transaction(
                    lambda uow, n=n: uow.users.create(
                        {"email": f"stream{n}@example.com", "hashed_password": "h"}
                    ),
                    session_factory=factory,
                )
                reported.append(n)
                n += 1
            except ConflictError:
                # The commit of n went through just as the connection dropped.
                reported.append(n)
                n += 1
            except (DatabaseUnavailableError, RetryableError) as exc:
                failures.append(type(exc).__name__)
                time.sleep(0.2)
        done.set()

    worker = threading.Thread(target=stream)
    worker.start()
    while len(reported) < total // 3 and worker.is_alive():
        time.sleep(0.01)
    postgres_pair.restart_primary()
    worker.join(timeout=180)
    assert done.is_set(), "the stream did not finish"
    assert reported == list(range(total))
    emails = _scalar(restartable, "SELECT count(DISTINCT email) FROM users")
    assert emails == total == _scalar(restartable, "SELECT count(*) FROM users")
    print(f"errors seen during the restart: {failures}")


# -- bad input ----------------------------------------------------------------------------------

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.text(min_size=300, max_size=400),
    st.just("x\x00y"),
    st.just("'; DROP TABLE users; --"),
    st.just("ünïcødé ✓ \U0001d518"),
    st.binary(max_size=10),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.datetimes(),
    st.uuids(),
)
fields = st.sampled_from(
    ["email", "full_name", "hashed_password", "is_active", "is_superuser", "created_at", "id",
     "version", "nickname", "email; --", ""]
)  # fmt: skip
RELIABLE = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ALLOWED = (ValidationError, DataLayerError)


def _contents(connection: Connection) -> list[Any]:
    return [
        connection.execute(text(f"SELECT * FROM {table} ORDER BY id")).all()
        for table in ("users", "items")
    ]


def _attempt(
    session: Session,
    connection: Connection,
    action: Callable[[], object],
    prepare: Callable[[], object] | None = None,
) -> None:
    """Run `action`; when it refuses its input, the transaction it ran in must be intact and
    unchanged: bad input is refused before anything reaches the database. (On PostgreSQL a
    statement the database refused would have aborted the transaction, and reading the tables
    would fail.)"""
    savepoint = session.begin_nested()
    try:
        if prepare is not None:
            prepare()
        session.flush()
        before = _contents(connection)
        try:
            action()
        except ALLOWED:
            assert _contents(connection) == before
    finally:
        savepoint.rollback()
        session.expunge_all()


@RELIABLE
@given(data=st.dictionaries(fields, junk, max_size=5))
def test_bad_create_input_is_refused_cleanly(
    session: Session, connection: Connection, data: dict[str, Any]
) -> None:
    _attempt(session, connection, lambda: UserRepository(session).create(data))


@RELIABLE
@given(data=st.dictionaries(fields, junk, max_size=4))
def test_bad_update_input_is_refused_cleanly(
    session: Session, connection: Connection, data: dict[str, Any]
) -> None:
    users = UserRepository(session)
    target = uuid.uuid4()
    _attempt(
        session,
        connection,
        lambda: users.update(target, data),
        prepare=lambda: users.create(
            {"id": target, "email": "target@example.com", "hashed_password": "h"}
        ),
    )


@RELIABLE
@given(
    where=st.dictionaries(
        st.sampled_from(
            [
                "email",
                "email__icontains",
                "is_active",
                "created_at__gt",
                "id__in",
                "full_name__is_null",
                "version__ge",
                "bogus",
                "email__nope",
            ]
        ),
        junk,
        max_size=3,
    ),
    order=st.lists(st.sampled_from(["email", "-created_at", "hashed_password", "x"]), max_size=2),
    limit=junk,
    offset=junk,
)
def test_bad_list_input_is_refused_cleanly(
    session: Session, connection: Connection, where: Any, order: Any, limit: Any, offset: Any
) -> None:
    users = UserRepository(session)
    _attempt(
        session,
        connection,
        lambda: users.list(where=where, order_by=order, limit=limit, offset=offset),
    )


@RELIABLE
@given(email=st.text(max_size=400), password=st.text(max_size=200), name=junk)
def test_bad_registrations_are_refused_cleanly(
    session_factory: sessionmaker[Session],
    connection: Connection,
    email: str,
    password: str,
    name: Any,
) -> None:
    before = count_rows(connection, "users")
    try:
        register_user(
            UnitOfWork(session_factory), {"email": email, "password": password, "full_name": name}
        )
    except ALLOWED:
        assert count_rows(connection, "users") == before
    else:
        connection.execute(text("DELETE FROM users"))


def test_schemas_refuse_what_the_columns_cannot_hold() -> None:
    with pytest.raises(ValidationError):
        UserCreate(email="a@example.com", password="short")
    with pytest.raises(ValidationError):
        UserCreate(email="x" * 400 + "@example.com", password="long enough")


def test_values_the_columns_cannot_hold_are_invalid_queries(session: Session) -> None:
    users = UserRepository(session)
    with pytest.raises(InvalidQueryError, match="longer than 320"):
        users.create({"email": "a" * 330 + "@example.com", "hashed_password": "h"})
    with pytest.raises(InvalidQueryError, match="NUL"):
        users.create({"email": "nul\x00@example.com", "hashed_password": "h"})
    with pytest.raises(InvalidQueryError, match="must be bool"):
        users.create({"email": "b@example.com", "hashed_password": "h", "is_active": "yes"})
