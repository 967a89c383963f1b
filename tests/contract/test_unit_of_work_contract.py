"""The unit-of-work contract, in both faces on every backend: commit, rollback, savepoints,
composition of services, retries, and objects that outlive the unit."""

from __future__ import annotations

from typing import Any

import pytest

from app.db.errors import ConflictError, RetryableError
from app.repositories import UnitOfWork
from app.schemas import ItemCreate, UserCreate
from tests.contract.conftest import Database, Faces

PASSWORD = "correct horse battery staple"


class BoomError(Exception):
    pass


def _add(uow: Any, email: str) -> Any:
    return uow.users.create({"email": email, "hashed_password": "h"})


def test_commit_makes_the_work_permanent(faces: Faces, db: Database) -> None:
    with faces.uow() as uow:
        _add(uow, "kept@example.com")
        uow.commit()
    assert db.count("users", "email = 'kept@example.com'") == 1


def test_leaving_without_commit_or_with_an_exception_rolls_back(faces: Faces, db: Database) -> None:
    with faces.uow() as uow:
        _add(uow, "dropped@example.com")
    with pytest.raises(BoomError), faces.uow() as uow:
        _add(uow, "raised@example.com")
        raise BoomError
    assert db.count("users") == 0


def test_rollback_discards_the_work_since_the_last_commit(faces: Faces, db: Database) -> None:
    with faces.uow() as uow:
        _add(uow, "first@example.com")
        uow.commit()
        _add(uow, "second@example.com")
        uow.rollback()
        uow.commit()
    assert db.count("users") == 1


def test_a_failed_savepoint_undoes_only_its_own_work(faces: Faces, db: Database) -> None:
    with faces.uow() as uow:
        _add(uow, "outer@example.com")
        with pytest.raises(BoomError), uow.savepoint():
            _add(uow, "inner@example.com")
            raise BoomError
        with pytest.raises(ConflictError), uow.savepoint():
            _add(uow, "OUTER@example.com")
        _add(uow, "after@example.com")
        uow.commit()
    assert db.count("users") == 2
    assert db.count("users", "email = 'inner@example.com'") == 0


def test_entering_an_open_unit_joins_its_transaction_and_the_outermost_commit_decides(
    faces: Faces, db: Database
) -> None:
    uow = faces.uow()
    with uow:
        with uow:
            _add(uow, "inner@example.com")
            uow.commit()  # handed to the enclosing block, which then ends without commit
        assert db.count("users") == 1
    assert db.count("users") == 0
    with uow:
        _add(uow, "outer@example.com")
        with uow:
            _add(uow, "kept@example.com")
            uow.commit()
        uow.commit()
    assert db.count("users") == 2


def test_a_joined_block_left_without_commit_discards_only_its_own_work(
    faces: Faces, db: Database
) -> None:
    uow = faces.uow()
    with uow:
        _add(uow, "outer@example.com")
        with uow:
            _add(uow, "inner@example.com")
        uow.commit()
    assert db.scalar("SELECT email FROM users") == "outer@example.com"
    assert db.count("users") == 1


def test_a_failure_in_a_joined_block_that_the_caller_catches_undoes_only_that_block(
    faces: Faces, db: Database
) -> None:
    """As a savepoint does: the refused write's block is rolled back to where it began, and
    the enclosing unit goes on (the failure came from a flush, which leaves the savepoint
    waiting for exactly that rollback)."""
    uow = faces.uow()
    with uow:
        _add(uow, "outer@example.com")
        with pytest.raises(ConflictError), uow:
            _add(uow, "inner@example.com")
            _add(uow, "OUTER@example.com")  # taken
        with uow:
            _add(uow, "undone@example.com")
            with pytest.raises(ConflictError):
                _add(uow, "OUTER@example.com")
            uow.rollback()
        _add(uow, "after@example.com")
        uow.commit()
    assert db.count("users") == 2
    assert db.count("users", "email = 'after@example.com'") == 1


def test_a_failure_in_a_joined_block_that_propagates_rolls_back_the_whole_unit(
    faces: Faces, db: Database
) -> None:
    uow = faces.uow()
    with pytest.raises(ConflictError), uow:
        _add(uow, "outer@example.com")
        with uow:
            _add(uow, "inner@example.com")
            uow.commit()
        with uow:
            _add(uow, "OUTER@example.com")  # taken: the error leaves every block
            uow.commit()
        uow.commit()
    assert db.count("users") == 0


def test_objects_read_in_a_unit_stay_readable_after_it(faces: Faces) -> None:
    with faces.uow() as uow:
        _add(uow, "ada@example.com")
        uow.commit()
    with faces.uow() as uow:
        user = uow.users.get_by_email("ada@example.com")
    assert (user.email, user.version) == ("ada@example.com", 1)


def test_services_compose_inside_a_callers_unit_and_the_caller_commits(
    faces: Faces, db: Database
) -> None:
    with faces.uow() as uow:
        owner = faces.register_user(uow, UserCreate(email="ada@example.com", password=PASSWORD))
        faces.create_item(uow, owner.id, ItemCreate(title="Lamp"))
        assert db.count("users") == 1  # visible inside the caller's transaction
    assert db.count("users") == db.count("items") == 0  # the caller did not commit
    with faces.uow() as uow:
        owner = faces.register_user(uow, UserCreate(email="ada@example.com", password=PASSWORD))
        faces.create_item(uow, owner.id, ItemCreate(title="Lamp"))
        uow.commit()
    assert db.count("items", "title = 'Lamp'") == 1


def test_a_failing_service_rolls_back_the_whole_unit(faces: Faces, db: Database) -> None:
    with pytest.raises(ConflictError), faces.uow() as uow:
        faces.register_user(uow, UserCreate(email="ada@example.com", password=PASSWORD))
        faces.register_user(uow, UserCreate(email="ADA@example.com", password=PASSWORD))
        uow.commit()
    assert db.count("users") == 0


def test_run_in_transaction_commits_once_and_retries_the_whole_function(
    faces: Faces, db: Database
) -> None:
    attempts: list[int] = []

    def sign_up(uow: UnitOfWork) -> str:
        attempts.append(1)
        with uow:
            uow.users.create({"email": f"try{len(attempts)}@example.com", "hashed_password": "h"})
            uow.commit()
        if len(attempts) == 1:
            raise RetryableError("a concurrent transaction won")
        return "done"

    assert faces.run_in_transaction(sign_up, backoff=0.001) == "done"
    assert len(attempts) == 2
    assert db.count("users") == 1
    assert db.scalar("SELECT email FROM users") == "try2@example.com"
