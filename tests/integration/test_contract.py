"""The repository contract in ordinary use: nothing the caller left out is lost, a collision on
another unique key changes nothing, what was read outlives the unit, `load` always loads."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Session, sessionmaker

from app.db.errors import ConflictError, InvalidQueryError
from app.repositories import ItemRepository, UnitOfWork, UserRepository
from tests.integration.helpers import count_rows


def _user_row(connection: Connection, email: str) -> dict[str, object]:
    row = connection.execute(
        text(
            "SELECT id, email, full_name, hashed_password, is_active, is_superuser, version "
            "FROM users WHERE email = :email"
        ),
        {"email": email},
    ).one()
    return dict(row._mapping)


def _ada(session: Session) -> uuid.UUID:
    user = UserRepository(session).create(
        {
            "email": "ada@example.com",
            "hashed_password": "old-hash",
            "full_name": "Ada Lovelace",
            "is_active": False,
            "is_superuser": True,
        }
    )
    return user.id


# -- upsert keeps what it was not given ---------------------------------------------------------


def test_upsert_of_an_existing_row_changes_only_the_given_fields(
    session: Session, connection: Connection
) -> None:
    _ada(session)
    before = _user_row(connection, "ada@example.com")
    UserRepository(session).upsert({"email": "ada@example.com", "hashed_password": "new-hash"})
    after = _user_row(connection, "ada@example.com")
    assert after == {
        **before,
        "hashed_password": "new-hash",
        "version": int(str(before["version"])) + 1,
    }


def test_upsert_of_a_new_row_gives_omitted_fields_their_defaults(
    session: Session, connection: Connection
) -> None:
    UserRepository(session).upsert({"email": "new@example.com", "hashed_password": "h"})
    row = _user_row(connection, "new@example.com")
    assert (row["full_name"], row["is_active"], row["is_superuser"], row["version"]) == (
        None,
        True,
        False,
        1,
    )


def test_upsert_many_with_different_field_sets_keeps_what_each_row_left_out(
    session: Session, connection: Connection
) -> None:
    users = UserRepository(session)
    _ada(session)
    users.create({"email": "bob@example.com", "hashed_password": "h", "full_name": "Bob"})
    sent = users.upsert_many(
        [
            {"email": "ada@example.com", "hashed_password": "h2"},
            {"email": "bob@example.com", "hashed_password": "h3", "is_active": False},
            {"email": "cy@example.com", "hashed_password": "h4", "full_name": "Cy"},
        ]
    )
    assert sent == 3
    ada, bob, cy = (_user_row(connection, f"{n}@example.com") for n in ("ada", "bob", "cy"))
    assert (ada["full_name"], ada["is_superuser"], ada["hashed_password"]) == (
        "Ada Lovelace",
        True,
        "h2",
    )
    assert (bob["full_name"], bob["is_active"], bob["hashed_password"]) == ("Bob", False, "h3")
    assert (cy["full_name"], cy["is_active"]) == ("Cy", True)


def test_an_upsert_colliding_on_another_unique_key_is_a_conflict_and_changes_nothing(
    session: Session, connection: Connection
) -> None:
    users = UserRepository(session)
    _ada(session)
    before = _user_row(connection, "ada@example.com")
    stranger = uuid.uuid4()
    with session.begin_nested(), pytest.raises(ConflictError) as caught:
        users.upsert(
            {"id": stranger, "email": "ada@example.com", "hashed_password": "taken-over"},
            conflict=("id",),
        )
    assert caught.value.fields == ("email",)
    assert _user_row(connection, "ada@example.com") == before
    assert count_rows(connection, "users", "id = :id", id=str(stranger)) == 0
    assert count_rows(connection, "users") == 1


def test_an_upsert_by_email_whose_id_belongs_to_another_user_is_a_conflict(
    session: Session, connection: Connection
) -> None:
    users = UserRepository(session)
    ada = _ada(session)
    users.create({"email": "bob@example.com", "hashed_password": "bob-hash"})
    before = [_user_row(connection, e) for e in ("ada@example.com", "bob@example.com")]
    with session.begin_nested(), pytest.raises(ConflictError) as caught:
        users.upsert({"id": ada, "email": "bob@example.com", "hashed_password": "x"})
    assert caught.value.fields == ("id",)
    assert [_user_row(connection, e) for e in ("ada@example.com", "bob@example.com")] == before


def test_upsert_many_with_one_colliding_row_writes_none_of_its_group(
    session: Session, connection: Connection
) -> None:
    users = UserRepository(session)
    _ada(session)
    with session.begin_nested(), pytest.raises(ConflictError):
        users.upsert_many(
            [
                {"id": uuid.uuid4(), "email": "fresh@example.com", "hashed_password": "h"},
                {"id": uuid.uuid4(), "email": "ada@example.com", "hashed_password": "h"},
            ],
            conflict=("id",),
        )
    assert count_rows(connection, "users") == 1
    assert _user_row(connection, "ada@example.com")["hashed_password"] == "old-hash"


# -- what was read outlives the unit ------------------------------------------------------------


def test_objects_read_in_a_unit_stay_readable_after_it_ends_without_commit(
    session_factory: sessionmaker[Session],
) -> None:
    with UnitOfWork(session_factory) as uow:
        _ada(uow.session)
        uow.commit()
    with UnitOfWork(session_factory) as uow:
        user = uow.users.get_by_email("ADA@example.com")
        assert user is not None
    assert (user.email, user.full_name, user.is_superuser) == (
        "ada@example.com",
        "Ada Lovelace",
        True,
    )


def test_objects_read_in_a_committed_unit_stay_readable(
    session_factory: sessionmaker[Session],
) -> None:
    with UnitOfWork(session_factory) as uow:
        user_id = _ada(uow.session)
        uow.commit()
    with UnitOfWork(session_factory) as uow:
        users = uow.users.list(where={"id": user_id})
        uow.commit()
    assert [u.email for u in users] == ["ada@example.com"]


def test_relationships_not_loaded_in_the_unit_still_raise_after_it(
    session_factory: sessionmaker[Session],
) -> None:
    with UnitOfWork(session_factory) as uow:
        user_id = _ada(uow.session)
        uow.items.create({"title": "Lamp", "owner_id": user_id})
        uow.commit()
    with UnitOfWork(session_factory) as uow:
        plain = uow.users.get_one(user_id)
    with pytest.raises(InvalidRequestError):
        _ = plain.items
    with UnitOfWork(session_factory) as uow:
        loaded = uow.users.get_one(user_id, load=("items",))
    assert [item.title for item in loaded.items] == ["Lamp"]


# -- load= loads, whatever the session holds ----------------------------------------------------


def test_get_with_load_loads_the_relationship_of_a_row_already_in_the_session(
    session: Session,
) -> None:
    users = UserRepository(session)
    user_id = _ada(session)  # held by the session, its items never loaded
    ItemRepository(session).create({"title": "Lamp", "owner_id": user_id})
    found = users.get_one(user_id, load=("items",))
    assert [item.title for item in found.items] == ["Lamp"]
    assert users.get(user_id, load=("items",)) is found


# -- errors name the field and the rule, never a stored value -----------------------------------


def test_setting_a_required_field_to_null_names_the_field_and_not_the_row(
    session: Session, connection: Connection
) -> None:
    user_id = _ada(session)
    with pytest.raises(InvalidQueryError) as caught:
        UserRepository(session).update(user_id, {"email": None})
    assert str(caught.value) == "User.email cannot be null"
    assert _user_row(connection, "ada@example.com")["hashed_password"] == "old-hash"


def test_a_new_row_without_a_required_field_says_which_fields_it_needs(session: Session) -> None:
    with pytest.raises(InvalidQueryError, match="a new user needs hashed_password; given: email"):
        UserRepository(session).create({"email": "x@example.com"})


# -- cursors ------------------------------------------------------------------------------------


def test_every_cursor_the_repository_makes_is_accepted_back(session: Session) -> None:
    user_id = _ada(session)
    items = ItemRepository(session, cursor_key=b"k" * 32)
    for n in range(3):
        items.create({"title": f"t{n}", "owner_id": user_id, "description": f"{n}" * 3000})
    first = items.paginate(order_by=["description"], limit=1)
    assert first.next_cursor is not None
    assert len(first.next_cursor) > 4096
    second = items.paginate(order_by=["description"], limit=1, cursor=first.next_cursor)
    assert [item.title for item in first.items + second.items] == ["t0", "t1"]
