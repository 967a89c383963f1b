"""Use cases: registering users and creating items, committed through a Unit of Work."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session, sessionmaker

from app.db.errors import ConflictError, ForeignKeyError
from app.db.models import User
from app.repositories import UnitOfWork
from app.schemas import ItemCreate, UserCreate
from app.services import create_item, register_user
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
    with pytest.raises(ConflictError, match=r"ada@example\.com"):
        _register(session_factory, "ADA@EXAMPLE.COM")
    assert count_rows(connection, "users") == 1


def test_register_user_validates_its_input(session_factory: sessionmaker[Session]) -> None:
    uow = UnitOfWork(session_factory)
    with pytest.raises(ValidationError, match="email"):
        register_user(uow, {"email": "not-an-email", "password": PASSWORD})
    with pytest.raises(ValidationError, match="at least 8"):
        register_user(uow, {"email": "ok@example.com", "password": "short"})


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
