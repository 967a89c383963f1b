"""The Unit of Work beyond its contract (tests/contract): one session at a time, concurrent
writers, where its session comes from, commit tokens and read-only units."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Connection
from sqlalchemy.orm import Session, sessionmaker

from app.db.errors import ReadOnlyError, StaleObjectError
from app.db.models import Item, User
from app.db.runtime import Runtime, use_runtime
from app.repositories import ItemRepository, Repository, UnitOfWork, UserRepository
from tests.integration.helpers import emails


class BoomError(Exception):
    pass


def _add(uow: UnitOfWork, email: str) -> None:
    uow.users.create({"email": email, "hashed_password": "h"})


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


# Users have validators: their update is the ORM's flush. Items have none: theirs is one UPDATE
# at the version read (Repository._update_read_row).
@pytest.mark.parametrize(("model", "field"), [("users", "full_name"), ("items", "description")])
def test_the_second_of_two_concurrent_updates_is_stale(
    committing_factory: sessionmaker[Session], model: str, field: str
) -> None:
    """The second writer never overwrites the first, and is told so the same way on every
    backend (SQLite included: its transaction begins at its first write)."""
    row_id = _committed_row(committing_factory, model)

    first, second = UnitOfWork(committing_factory), UnitOfWork(committing_factory)
    with first, second:
        # Each holds the row it read: that copy is what the version check protects.
        read_by_first = getattr(first, model).get_one(row_id)
        read_by_second = getattr(second, model).get_one(row_id)
        assert read_by_first.version == read_by_second.version == 1
        getattr(first, model).update(row_id, {field: "First"})
        first.commit()
        with pytest.raises(StaleObjectError) as stale:
            getattr(second, model).update(row_id, {field: "Second"})
        assert stale.value.lost_race is True
        assert str(stale.value) == (
            f"the {model[:-1]} was changed or deleted by someone else since it was read; "
            "load it again and retry"
        )

    with UnitOfWork(committing_factory) as check:
        row = getattr(check, model).get_one(row_id)
        assert (getattr(row, field), row.version) == ("First", 2)


@pytest.mark.parametrize(("model", "field"), [("users", "full_name"), ("items", "description")])
def test_a_version_the_caller_gave_that_went_stale_meanwhile_is_never_a_lost_race(
    committing_factory: sessionmaker[Session], model: str, field: str
) -> None:
    """`expected_version` given, and the row changed between the read and the write: the
    caller's version is stale (`lost_race=False`: running the unit again would not help), the
    same on every backend and path (one statement with RETURNING, one UPDATE after the read,
    the ORM's flush for a model with validators)."""
    row_id = _committed_row(committing_factory, model)

    first, second = UnitOfWork(committing_factory), UnitOfWork(committing_factory)
    with first, second:
        held = getattr(second, model).get_one(row_id)  # read before the first writer's commit
        seen = held.version
        getattr(first, model).update(row_id, {field: "First"})
        first.commit()
        with pytest.raises(StaleObjectError) as stale:
            getattr(second, model).update(row_id, {field: "Second"}, expected_version=seen)
        assert stale.value.lost_race is False
        if model == "items":  # the paths that can read the row again say at which version
            assert f"at version {seen + 1}, not version {seen}" in str(stale.value)


def _committed_row(factory: sessionmaker[Session], model: str) -> uuid.UUID:
    """The id of a committed user, or of an item of one."""
    with UnitOfWork(factory) as setup:
        owner = setup.users.create({"email": "s@example.com", "hashed_password": "h"})
        row_id: uuid.UUID = owner.id
        if model == "items":
            row_id = setup.items.create({"title": "shared", "owner_id": row_id}).id
        setup.commit()
    return row_id


def test_units_that_each_read_then_update_their_own_row_all_commit(
    committing_factory: sessionmaker[Session],
) -> None:
    # Each unit reads before any of them writes (SQLite: see the asyncio twin in test_asyncio).
    with UnitOfWork(committing_factory) as setup:
        ids = [setup.users.create({"email": f"own{n}@example.com", "hashed_password": "h"}).id
               for n in range(4)]  # fmt: skip
        setup.commit()
    everyone_read = threading.Barrier(len(ids))

    def rename(user_id: uuid.UUID) -> None:
        with UnitOfWork(committing_factory) as uow:
            uow.users.get_one(user_id)
            everyone_read.wait(timeout=10)
            uow.users.update(user_id, {"full_name": "renamed"})
            uow.commit()

    with ThreadPoolExecutor(len(ids)) as pool:
        list(pool.map(rename, ids))
    with UnitOfWork(committing_factory) as check:
        assert [check.users.get_one(user_id).version for user_id in ids] == [2] * len(ids)


def test_updating_a_row_deleted_since_it_was_read_is_stale(
    committing_factory: sessionmaker[Session],
) -> None:
    expected = StaleObjectError
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


def test_default_session_factory_comes_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite://")
    with use_runtime(Runtime()), UnitOfWork() as uow:
        assert str(uow.session.get_bind().url) == "sqlite+pysqlite://"


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


def test_a_unit_makes_only_the_repositories_it_uses(
    session_factory: sessionmaker[Session],
) -> None:
    """A unit class may declare many repositories: each is made at its first use in an open
    unit (once, and again in each later opening), so a unit pays for the ones it touches."""
    made: list[str] = []

    class CountedUsers(UserRepository):
        def __init__(self, session: Session, **options: Any) -> None:
            made.append("users")
            super().__init__(session, **options)

    class CountedItems(ItemRepository):
        def __init__(self, session: Session, **options: Any) -> None:
            made.append("items")
            super().__init__(session, **options)

    hints = {"users": CountedUsers, "items": CountedItems, "more_items": Repository[Item]}
    unit_class = type("CountedUnit", (UnitOfWork,), {"__annotations__": hints})
    uow = unit_class(session_factory)
    with uow:
        assert made == []
        assert uow.users.get(uuid.uuid4()) is None
        assert uow.users.count() == 0
        assert made == ["users"]
        assert uow.repository(User) is uow.users
        assert uow.repository(Item) is uow.items  # the first declared for its model
        assert uow.more_items is not uow.items
        first = uow.users
    with uow:
        assert uow.users is not first
        assert uow.users.session is uow.session
    assert made == ["users", "items", "users"]
