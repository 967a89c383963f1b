"""Use cases: registering users and creating items, committed through a Unit of Work."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session, sessionmaker

from app.db.errors import ConflictError, ForeignKeyError, InvalidQueryError, RetryableError
from app.db.models import User
from app.repositories import UnitOfWork, run_in_transaction
from app.schemas import ItemCreate, UserAdminCreate, UserCreate
from app.services import create_item, create_user, register_user
from app.services.passwords import verify_password
from tests.integration.helpers import count_rows

PASSWORD = "correct horse battery staple"


def _register(factory: sessionmaker[Session], email: str = "Ada@Example.com") -> User:
    return register_user(UnitOfWork(factory), UserCreate(email=email, password=PASSWORD))


def test_register_user_stores_an_argon2_hash_that_verifies_and_never_the_password(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    user = _register(session_factory)
    assert user.email == "ada@example.com"
    row = connection.execute(text("SELECT email, hashed_password FROM users")).one()
    assert row.email == "ada@example.com"
    assert row.hashed_password.startswith("$argon2id$")
    assert verify_password(PASSWORD, row.hashed_password)
    assert not verify_password("wrong password", row.hashed_password)
    everything = " ".join(str(v) for v in connection.execute(text("SELECT * FROM users")).one())
    assert PASSWORD not in everything


def test_register_user_turns_a_taken_email_into_a_conflict(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    _register(session_factory, "ada@example.com")
    with pytest.raises(ConflictError, match="a user with this email already exists"):
        _register(session_factory, "ADA@EXAMPLE.COM")
    assert count_rows(connection, "users") == 1


def test_register_user_validates_its_input(session_factory: sessionmaker[Session]) -> None:
    uow = UnitOfWork(session_factory)
    with pytest.raises(InvalidQueryError, match="email"):
        register_user(uow, {"email": "not-an-email", "password": PASSWORD})
    with pytest.raises(InvalidQueryError, match="at least 8") as short:
        register_user(uow, {"email": "ok@example.com", "password": "short"})
    assert "short" not in str(short.value).replace("at least 8", "")  # never the password


def test_signing_up_cannot_give_itself_privileges(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    uow = UnitOfWork(session_factory)
    for privilege in ({"is_superuser": True}, {"is_active": False}):
        with pytest.raises(InvalidQueryError, match=next(iter(privilege))):
            register_user(uow, {"email": "eve@example.com", "password": PASSWORD, **privilege})
    with pytest.raises(InvalidQueryError, match="is_superuser"):
        register_user(
            uow, UserAdminCreate(email="eve@example.com", password=PASSWORD, is_superuser=True)
        )
    assert count_rows(connection, "users") == 0
    admin = create_user(
        uow, UserAdminCreate(email="root@example.com", password=PASSWORD, is_superuser=True)
    )
    assert admin.is_superuser
    assert count_rows(connection, "users", "is_superuser = :yes", yes=True) == 1


def test_create_item_for_an_owner(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    owner = _register(session_factory)
    item = create_item(UnitOfWork(session_factory), owner.id, ItemCreate(title="Lamp"))
    assert item.owner_id == owner.id
    assert count_rows(connection, "items", "title = 'Lamp'") == 1


def test_create_item_for_a_missing_owner_is_a_foreign_key_error(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    with pytest.raises(ForeignKeyError):
        create_item(UnitOfWork(session_factory), uuid.uuid4(), {"title": "Orphan"})
    assert count_rows(connection, "items") == 0


# -- services inside a caller's transaction: the outermost boundary owns the commit ------------


def test_a_service_joins_run_in_transaction_and_commits_once(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    user = run_in_transaction(
        lambda uow: register_user(uow, UserCreate(email="ada@example.com", password=PASSWORD)),
        session_factory=session_factory,
    )
    assert user.email == "ada@example.com"
    assert count_rows(connection, "users") == 1


def test_services_compose_inside_a_callers_unit_of_work(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    with UnitOfWork(session_factory) as uow:
        owner = register_user(uow, UserCreate(email="ada@example.com", password=PASSWORD))
        create_item(uow, owner.id, ItemCreate(title="Lamp"))
        uow.commit()
    assert count_rows(connection, "items", "title = 'Lamp'") == 1


def test_work_of_composed_services_is_undone_when_the_caller_does_not_commit(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    with UnitOfWork(session_factory) as uow:
        owner = register_user(uow, UserCreate(email="ada@example.com", password=PASSWORD))
        create_item(uow, owner.id, ItemCreate(title="Lamp"))
    assert count_rows(connection, "users") == count_rows(connection, "items") == 0


def test_an_inner_service_failure_rolls_back_the_whole_transaction(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    def sign_up_two(uow: UnitOfWork) -> None:
        register_user(uow, UserCreate(email="ada@example.com", password=PASSWORD))
        register_user(uow, UserCreate(email="ADA@example.com", password=PASSWORD))

    with pytest.raises(ConflictError):
        run_in_transaction(sign_up_two, session_factory=session_factory)
    assert count_rows(connection, "users") == 0


def test_a_retried_transaction_runs_its_services_again_and_keeps_one_result(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    attempts: list[int] = []

    def sign_up(uow: UnitOfWork) -> User:
        user = register_user(uow, UserCreate(email="ada@example.com", password=PASSWORD))
        attempts.append(1)
        if len(attempts) == 1:
            raise RetryableError("a concurrent transaction won")
        return user

    user = run_in_transaction(sign_up, session_factory=session_factory, backoff=0.001)
    assert len(attempts) == 2
    assert count_rows(connection, "users", "id = :id", id=_stored_id(connection, user.id)) == 1
    assert count_rows(connection, "users") == 1


def _stored_id(connection: Connection, value: uuid.UUID) -> str:
    return str(value) if connection.dialect.name == "postgresql" else value.hex
