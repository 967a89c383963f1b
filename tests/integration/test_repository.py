"""Repository CRUD on every backend: success paths, failure paths, and a database left as it was."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from app.db.errors import ConflictError, ForeignKeyError, InvalidQueryError, NotFoundError
from app.repositories import ItemRepository, UserRepository
from app.schemas import ItemCreate
from tests.integration.helpers import count_rows, emails


@pytest.fixture
def users(session: Session) -> UserRepository:
    return UserRepository(session)


@pytest.fixture
def items(session: Session) -> ItemRepository:
    return ItemRepository(session)


def _new_user(users: UserRepository, email: str = "ada@example.com") -> uuid.UUID:
    return users.create({"email": email, "hashed_password": "hash"}).id


def test_create_flushes_so_the_row_is_in_the_database(
    users: UserRepository, connection: Connection
) -> None:
    user = users.create({"email": "Ada@Example.com", "hashed_password": "hash"})
    assert user.id is not None
    assert user.version == 1
    assert user.created_at is not None
    assert emails(connection) == ["ada@example.com"]


def test_create_accepts_a_pydantic_model(
    users: UserRepository, items: ItemRepository, connection: Connection
) -> None:
    owner = _new_user(users)
    item = items.create({**ItemCreate(title="Lamp").model_dump(), "owner_id": owner})
    assert item.title == "Lamp"
    assert count_rows(connection, "items", "title = 'Lamp'") == 1


def test_create_refuses_unknown_fields_naming_the_writable_ones(users: UserRepository) -> None:
    with pytest.raises(InvalidQueryError, match=r"no writable field 'password'.*email"):
        users.create({"email": "a@example.com", "password": "plain"})


def test_create_refuses_data_that_is_not_a_mapping(users: UserRepository) -> None:
    with pytest.raises(InvalidQueryError, match="mapping or a pydantic model"):
        users.create(["email", "a@example.com"])  # type: ignore[arg-type]


def test_a_duplicate_email_is_a_conflict_even_in_another_case(
    users: UserRepository, session: Session, connection: Connection
) -> None:
    _new_user(users, "ada@example.com")
    with pytest.raises(ConflictError) as caught:
        _new_user(users, "ADA@example.com")
    assert caught.value.fields == ("email",)
    assert caught.value.constraint == "uq_users_email"
    assert str(caught.value) == "a user with this email already exists"
    session.rollback()
    assert count_rows(connection, "users") == 0


def test_an_item_for_a_missing_owner_is_a_foreign_key_error(
    items: ItemRepository, session: Session, connection: Connection
) -> None:
    with pytest.raises(ForeignKeyError):
        items.create({"title": "Orphan", "owner_id": uuid.uuid4()})
    session.rollback()
    assert count_rows(connection, "items") == 0


def test_get_returns_the_row_or_none(users: UserRepository) -> None:
    user_id = _new_user(users)
    found = users.get(user_id)
    assert found is not None
    assert found.email == "ada@example.com"
    assert users.get(str(user_id)) is found
    assert users.get(uuid.uuid4()) is None


def test_get_refuses_an_id_that_is_not_a_uuid(users: UserRepository) -> None:
    with pytest.raises(InvalidQueryError, match="not a valid id"):
        users.get("1 OR 1=1")


def test_get_one_raises_not_found(users: UserRepository) -> None:
    missing = uuid.uuid4()
    with pytest.raises(NotFoundError, match=str(missing)):
        users.get_one(missing)


def test_update_changes_only_the_given_fields(
    users: UserRepository, connection: Connection
) -> None:
    user_id = _new_user(users)
    updated = users.update(user_id, {"full_name": "Ada Lovelace"})
    assert (updated.full_name, updated.email, updated.version) == (
        "Ada Lovelace",
        "ada@example.com",
        2,
    )
    assert count_rows(connection, "users", "full_name = 'Ada Lovelace' AND version = 2") == 1


def test_update_normalises_a_new_email(users: UserRepository, connection: Connection) -> None:
    user_id = _new_user(users)
    users.update(user_id, {"email": "Lovelace@Example.com"})
    assert emails(connection) == ["lovelace@example.com"]


def test_update_refuses_unknown_and_managed_fields(users: UserRepository) -> None:
    user_id = _new_user(users)
    for field in ("nickname", "version", "id", "created_at"):
        with pytest.raises(InvalidQueryError, match=repr(field)):
            users.update(user_id, {field: "x"})


def test_update_of_a_missing_row_is_not_found(users: UserRepository) -> None:
    with pytest.raises(NotFoundError):
        users.update(uuid.uuid4(), {"full_name": "Nobody"})


def test_delete_removes_the_row_and_its_items(
    users: UserRepository, items: ItemRepository, connection: Connection
) -> None:
    owner = _new_user(users)
    items.create({"title": "one", "owner_id": owner})
    items.create({"title": "two", "owner_id": owner})
    users.delete(owner)
    assert count_rows(connection, "users") == 0
    assert count_rows(connection, "items") == 0


def test_delete_of_a_missing_row_is_not_found(users: UserRepository) -> None:
    with pytest.raises(NotFoundError):
        users.delete(uuid.uuid4())


def test_list_filters_by_equality_and_null(users: UserRepository) -> None:
    users.create({"email": "a@example.com", "hashed_password": "h", "full_name": "A"})
    users.create({"email": "b@example.com", "hashed_password": "h"})
    users.create({"email": "c@example.com", "hashed_password": "h", "is_active": False})
    assert [u.email for u in users.list(where={"full_name": None}, order_by="email")] == [
        "b@example.com",
        "c@example.com",
    ]
    assert [u.email for u in users.list(where={"is_active": False})] == ["c@example.com"]
    assert users.count(where={"is_active": True}) == 2
    assert users.exists(where={"email": "b@example.com"})
    assert not users.exists(where={"email": "z@example.com"})


def test_list_sorts_pages_and_breaks_ties_by_id(users: UserRepository) -> None:
    for letter in "dcba":
        users.create({"email": f"{letter}@example.com", "hashed_password": "h", "full_name": "X"})
    by_email_desc = [u.email[0] for u in users.list(order_by=["-email"], limit=2, offset=1)]
    assert by_email_desc == ["c", "b"]
    tied = users.list(order_by=["full_name"])
    assert [u.id for u in tied] == sorted(u.id for u in tied)


def test_list_refuses_unknown_or_secret_fields(users: UserRepository) -> None:
    with pytest.raises(InvalidQueryError, match="allowed fields"):
        users.list(where={"nickname": "x"})
    with pytest.raises(InvalidQueryError, match="'hashed_password'"):
        users.list(where={"hashed_password": "h"})
    with pytest.raises(InvalidQueryError, match="'hashed_password'"):
        users.list(order_by=["-hashed_password"])
    with pytest.raises(InvalidQueryError):
        users.count(where={"email; DROP TABLE users": 1})


@pytest.mark.parametrize("limit", [0, -1, 1001, True, "10"])
def test_list_bounds_the_limit(users: UserRepository, limit: object) -> None:
    with pytest.raises(InvalidQueryError, match="limit must be"):
        users.list(limit=limit)  # type: ignore[arg-type]


def test_list_refuses_a_negative_offset(users: UserRepository) -> None:
    with pytest.raises(InvalidQueryError, match="offset must be"):
        users.list(offset=-1)


def test_get_by_email_ignores_case(users: UserRepository) -> None:
    user_id = _new_user(users, "ada@example.com")
    found = users.get_by_email("  ADA@Example.Com ")
    assert found is not None
    assert found.id == user_id
    assert users.get_by_email("nobody@example.com") is None


def test_list_by_owner_returns_only_that_owners_items_oldest_first(
    users: UserRepository, items: ItemRepository
) -> None:
    ada, bob = _new_user(users, "ada@example.com"), _new_user(users, "bob@example.com")
    for title in ("first", "second", "third"):
        items.create({"title": title, "owner_id": ada})
    items.create({"title": "bob's", "owner_id": bob})
    assert [i.title for i in items.list_by_owner(ada)] == ["first", "second", "third"]
    assert [i.title for i in items.list_by_owner(str(ada), limit=1, offset=2)] == ["third"]


def test_create_many_inserts_in_batches_with_ids_and_timestamps(
    users: UserRepository, connection: Connection
) -> None:
    rows = ({"email": f"User{n}@Example.com", "hashed_password": "h"} for n in range(2500))
    assert users.create_many(rows, batch_size=1000) == 2500
    assert count_rows(connection, "users") == 2500
    assert count_rows(connection, "users", "email = 'user7@example.com'") == 1
    assert (
        count_rows(
            connection,
            "users",
            "id IS NOT NULL AND created_at IS NOT NULL AND version = 1 AND is_active = :yes",
            yes=True,
        )
        == 2500
    )


def test_create_many_with_a_duplicate_is_a_conflict(
    users: UserRepository, session: Session, connection: Connection
) -> None:
    _new_user(users, "taken@example.com")
    rows = [
        {"email": "new@example.com", "hashed_password": "h"},
        {"email": "TAKEN@example.com", "hashed_password": "h"},
    ]
    with pytest.raises(ConflictError):
        users.create_many(rows)
    session.rollback()
    assert count_rows(connection, "users") == 0
