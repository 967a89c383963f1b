"""The Unit of Work owns the transaction: commit, rollback, savepoints, one session at a time."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection
from sqlalchemy.orm import Session, sessionmaker

from app.db.errors import ConflictError, ReadOnlyError, RetryableError, StaleObjectError
from app.repositories import UnitOfWork
from tests.integration.helpers import count_rows, emails


class BoomError(Exception):
    pass


def _add(uow: UnitOfWork, email: str) -> None:
    uow.users.create({"email": email, "hashed_password": "h"})


def test_commit_makes_the_work_permanent(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    with UnitOfWork(session_factory) as uow:
        _add(uow, "kept@example.com")
        uow.commit()
    assert emails(connection) == ["kept@example.com"]


def test_rolls_back_uncommitted_work_by_default(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    with UnitOfWork(session_factory) as uow:
        _add(uow, "dropped@example.com")
    assert count_rows(connection, "users") == 0


def test_an_exception_rolls_back_and_propagates(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    with pytest.raises(BoomError), UnitOfWork(session_factory) as uow:
        _add(uow, "dropped@example.com")
        raise BoomError
    assert count_rows(connection, "users") == 0


def test_explicit_rollback_discards_work_since_the_last_commit(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    with UnitOfWork(session_factory) as uow:
        _add(uow, "first@example.com")
        uow.commit()
        _add(uow, "second@example.com")
        uow.rollback()
        uow.commit()
    assert emails(connection) == ["first@example.com"]


def test_a_failed_savepoint_undoes_only_its_own_work(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    with UnitOfWork(session_factory) as uow:
        _add(uow, "outer@example.com")
        with pytest.raises(BoomError), uow.savepoint():
            _add(uow, "inner@example.com")
            raise BoomError
        with uow.savepoint():
            _add(uow, "second-inner@example.com")
        uow.commit()
    assert emails(connection) == ["outer@example.com", "second-inner@example.com"]


def test_a_conflict_inside_a_savepoint_leaves_the_rest_of_the_work_usable(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    with UnitOfWork(session_factory) as uow:
        _add(uow, "ada@example.com")
        with pytest.raises(ConflictError), uow.savepoint():
            _add(uow, "ADA@example.com")
        _add(uow, "bob@example.com")
        uow.commit()
    assert emails(connection) == ["ada@example.com", "bob@example.com"]


def test_the_session_is_closed_on_exit_and_a_new_one_opened_on_reentry(
    session_factory: sessionmaker[Session],
) -> None:
    uow = UnitOfWork(session_factory)
    with uow:
        first = uow.session
    with pytest.raises(RuntimeError, match="not open"):
        _ = uow.session
    with uow:
        second = uow.session
    assert first is not second


def test_entering_an_open_unit_joins_its_transaction_and_the_outermost_commit_decides(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    uow = UnitOfWork(session_factory)
    with uow:
        outer_session = uow.session
        with uow:
            assert uow.session is outer_session
            _add(uow, "inner@example.com")
            uow.commit()  # handed to the enclosing block, which then ends without commit
    assert count_rows(connection, "users") == 0


def test_work_committed_by_a_joined_block_becomes_permanent_with_the_outer_commit(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    uow = UnitOfWork(session_factory)
    with uow:
        _add(uow, "outer@example.com")
        with uow:
            _add(uow, "inner@example.com")
            uow.commit()
        uow.commit()
    assert emails(connection) == ["inner@example.com", "outer@example.com"]


def test_a_joined_block_left_without_commit_discards_only_its_own_work(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    uow = UnitOfWork(session_factory)
    with uow:
        _add(uow, "outer@example.com")
        with uow:
            _add(uow, "inner@example.com")
        uow.commit()
    assert emails(connection) == ["outer@example.com"]


def test_a_failure_in_a_joined_block_that_propagates_rolls_back_the_whole_unit(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    uow = UnitOfWork(session_factory)
    with pytest.raises(ConflictError), uow:
        _add(uow, "outer@example.com")
        with uow:
            _add(uow, "inner@example.com")
            uow.commit()
        with uow:
            _add(uow, "OUTER@example.com")  # taken: the error leaves every block
            uow.commit()
        uow.commit()
    assert count_rows(connection, "users") == 0


def test_the_second_of_two_concurrent_updates_is_stale(
    committing_factory: sessionmaker[Session], backend: str
) -> None:
    """The second writer never overwrites the first. On SQLite its read snapshot is already
    refused at the write (SQLITE_BUSY_SNAPSHOT), so it sees `RetryableError` instead."""
    expected = RetryableError if backend == "sqlite" else StaleObjectError
    with UnitOfWork(committing_factory) as setup:
        user_id = setup.users.create({"email": "shared@example.com", "hashed_password": "h"}).id
        setup.commit()

    first, second = UnitOfWork(committing_factory), UnitOfWork(committing_factory)
    with first, second:
        # Each holds the user it read: that copy is what the version check protects.
        read_by_first = first.users.get_one(user_id)
        read_by_second = second.users.get_one(user_id)
        assert read_by_first.version == read_by_second.version == 1
        first.users.update(user_id, {"full_name": "First"})
        first.commit()
        with pytest.raises(expected):
            second.users.update(user_id, {"full_name": "Second"})

    with UnitOfWork(committing_factory) as check:
        user = check.users.get_one(user_id)
        assert (user.full_name, user.version) == ("First", 2)


def test_updating_a_row_deleted_since_it_was_read_is_stale(
    committing_factory: sessionmaker[Session], backend: str
) -> None:
    expected = RetryableError if backend == "sqlite" else StaleObjectError
    with UnitOfWork(committing_factory) as setup:
        user_id = setup.users.create({"email": "gone@example.com", "hashed_password": "h"}).id
        setup.commit()
    reader, deleter = UnitOfWork(committing_factory), UnitOfWork(committing_factory)
    with reader, deleter:
        read = reader.users.get_one(user_id)
        assert read.version == 1
        deleter.users.delete(user_id)
        deleter.commit()
        with pytest.raises(expected):
            reader.users.update(user_id, {"full_name": "Too late"})


def test_an_update_that_names_an_old_version_is_stale(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    with UnitOfWork(session_factory) as uow:
        user = uow.users.create({"email": "v@example.com", "hashed_password": "h"})
        uow.users.update(user.id, {"full_name": "Second"}, expected_version=1)
        with pytest.raises(StaleObjectError, match="version 1"):
            uow.users.update(user.id, {"full_name": "Third"}, expected_version=1)
        uow.commit()
    assert count_rows(connection, "users", "full_name = 'Second' AND version = 2") == 1


def test_default_session_factory_comes_from_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    from app.config import get_settings
    from app.db import session as session_module

    monkeypatch.setenv("DATABASE_URL", "sqlite://")
    for cached in (get_settings, session_module.get_engine, session_module.get_session_factory):
        cached.cache_clear()
    try:
        with UnitOfWork() as uow:
            assert str(uow.session.get_bind().url) == "sqlite+pysqlite://"
    finally:
        for cached in (get_settings, session_module.get_engine, session_module.get_session_factory):
            cached.cache_clear()


def test_commit_returns_a_token_that_a_later_read_only_unit_accepts_without_replicas(
    session_factory: sessionmaker[Session],
) -> None:
    with UnitOfWork(session_factory) as uow:
        _add(uow, "token@example.com")
        token = uow.commit()
    assert isinstance(token, str)
    assert token
    with UnitOfWork(session_factory, read_only=True, after=token) as uow:
        assert uow.users.get_by_email("token@example.com") is not None


def test_a_read_only_unit_refuses_every_write_and_leaves_nothing(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    with UnitOfWork(session_factory) as uow:
        _add(uow, "existing@example.com")
        uow.commit()
    writes = {
        "create": lambda uow: _add(uow, "new@example.com"),
        "create_many": lambda uow: uow.users.create_many(
            [{"email": "bulk@example.com", "hashed_password": "h"}]
        ),
        "update": lambda uow: uow.users.update(
            uow.users.get_by_email("existing@example.com").id, {"full_name": "X"}
        ),
        "upsert": lambda uow: uow.users.upsert(
            {"email": "existing@example.com", "hashed_password": "other"}
        ),
    }
    for name, write in writes.items():
        with (
            UnitOfWork(session_factory, read_only=True) as uow,
            pytest.raises(ReadOnlyError, match="read-only"),
        ):
            write(uow)
        assert emails(connection) == ["existing@example.com"], name
    with UnitOfWork(session_factory, read_only=True) as uow:
        assert uow.users.count() == 1
        assert isinstance(uow.commit(), str)  # a unit that only read commits as any other
    assert connection.exec_driver_sql("SELECT full_name FROM users").scalar() is None
