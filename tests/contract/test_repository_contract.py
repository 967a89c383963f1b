"""The repository contract, in both faces on every backend: each method on its success and
failure paths, error mapping, keyset pages, upserts and bulk writes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy.exc import InvalidRequestError

from app.db.errors import (
    ConflictError,
    ForeignKeyError,
    InvalidQueryError,
    NotFoundError,
    StaleObjectError,
)
from tests.contract.conftest import Database, Faces


def _user(uow: Any, email: str = "ada@example.com", **values: Any) -> Any:
    return uow.users.create({"email": email, "hashed_password": "h", **values})


def test_create_then_get_get_one_and_get_by_email(faces: Faces, db: Database) -> None:
    with faces.uow() as uow:
        created = _user(uow, "Ada@Example.com", full_name="Ada")
        assert uow.users.get(created.id).full_name == "Ada"
        assert uow.users.get_one(str(created.id)).email == "ada@example.com"
        assert uow.users.get_by_email("ADA@example.com").id == created.id
        uow.commit()
    assert db.count("users", "email = 'ada@example.com'") == 1


def test_a_missing_row_is_none_or_not_found_and_a_bad_id_is_invalid(faces: Faces) -> None:
    with faces.uow() as uow:
        assert uow.users.get(uuid.uuid4()) is None
        assert uow.users.get_by_email("nobody@example.com") is None
        with pytest.raises(NotFoundError):
            uow.users.get_one(uuid.uuid4())
        with pytest.raises(InvalidQueryError, match="not a valid id"):
            uow.users.get("not-a-uuid")


def test_update_changes_the_given_fields_and_refuses_an_old_version(
    faces: Faces, db: Database
) -> None:
    with faces.uow() as uow:
        user = _user(uow, full_name="Ada")
        uow.users.update(user.id, {"full_name": "Ada L."}, expected_version=1)
        with pytest.raises(StaleObjectError) as caught:
            uow.users.update(user.id, {"full_name": "Old form"}, expected_version=1)
        assert caught.value.lost_race is False
        uow.commit()
    assert db.scalar("SELECT full_name FROM users") == "Ada L."
    assert db.scalar("SELECT version FROM users") == 2


def test_delete_removes_the_row_and_what_it_owns(faces: Faces, db: Database) -> None:
    with faces.uow() as uow:
        user = _user(uow)
        uow.items.create({"title": "Lamp", "owner_id": user.id})
        uow.commit()
    with faces.uow() as uow:
        uow.users.delete(user.id)
        with pytest.raises(NotFoundError):
            uow.users.delete(user.id)
        uow.commit()
    assert db.count("users") == db.count("items") == 0


def test_list_list_page_count_and_exists(faces: Faces) -> None:
    with faces.uow() as uow:
        for n in range(5):
            _user(uow, f"u{n}@example.com", is_active=n % 2 == 0)
        active = uow.users.list(where={"is_active": True}, order_by=["-email"], limit=2)
        assert [u.email for u in active] == ["u4@example.com", "u2@example.com"]
        page = uow.users.list_page(order_by="email", limit=2, offset=2, with_total=True)
        assert ([u.email for u in page.items], page.total) == (
            ["u2@example.com", "u3@example.com"],
            5,
        )
        assert uow.users.count(where={"email__startswith": "u"}) == 5
        assert uow.users.exists(where={"email": "u3@example.com"}) is True
        assert uow.users.exists(where={"email": "u9@example.com"}) is False
        with pytest.raises(InvalidQueryError, match="allowed fields"):
            uow.users.list(where={"hashed_password": "h"})


def test_keyset_pages_cover_every_row_once_and_refuse_an_altered_cursor(faces: Faces) -> None:
    with faces.uow() as uow:
        owner = _user(uow)
        uow.items.create_many({"title": f"t{n % 3}", "owner_id": owner.id} for n in range(7))
        seen, cursor = [], None
        while True:
            page = uow.items.paginate(order_by=["title"], limit=3, cursor=cursor)
            seen += [item.id for item in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert len(seen) == len(set(seen)) == 7
        with pytest.raises(InvalidQueryError, match="invalid cursor"):
            uow.items.paginate(order_by=["title"], limit=3, cursor=cursor[:-2] + "xx")


def test_a_taken_email_is_a_conflict_and_a_missing_owner_a_foreign_key_error(
    faces: Faces,
) -> None:
    with faces.uow() as uow:
        _user(uow)
        with pytest.raises(ConflictError) as conflict, uow.savepoint():
            _user(uow, "ADA@example.com")
        assert conflict.value.fields == ("email",)
        with pytest.raises(ForeignKeyError), uow.savepoint():
            uow.items.create({"title": "Orphan", "owner_id": uuid.uuid4()})
        with pytest.raises(InvalidQueryError, match=r"User\.email cannot be null"):
            _user(uow, None)


def test_upsert_inserts_then_updates_only_the_given_fields(faces: Faces, db: Database) -> None:
    with faces.uow() as uow:
        first = uow.users.upsert({"email": "up@example.com", "hashed_password": "h1",
                                  "full_name": "Up"})  # fmt: skip
        again = uow.users.upsert({"email": "UP@example.com", "hashed_password": "h2"})
        assert again.id == first.id
        uow.commit()
    assert db.scalar("SELECT full_name FROM users") == "Up"
    assert db.scalar("SELECT hashed_password FROM users") == "h2"
    assert db.scalar("SELECT version FROM users") == 2


def test_an_upsert_meeting_another_row_on_another_key_is_a_conflict(
    faces: Faces, db: Database
) -> None:
    with faces.uow() as uow:
        _user(uow)
        with pytest.raises(ConflictError), uow.savepoint():
            uow.users.upsert(
                {"id": uuid.uuid4(), "email": "ada@example.com", "hashed_password": "x"},
                conflict=("id",),
            )
        uow.commit()
    assert db.scalar("SELECT hashed_password FROM users") == "h"
    assert db.count("users") == 1


def test_bulk_writes_take_lists_and_streams(faces: Faces, db: Database) -> None:
    with faces.uow() as uow:
        owner = _user(uow)
        rows = ({"title": f"bulk {n}", "owner_id": owner.id} for n in range(2500))
        assert uow.items.create_many(faces.stream(rows), batch_size=1000) == 2500
        users = [{"email": f"b{n}@example.com", "hashed_password": "h"} for n in range(30)]
        assert uow.users.upsert_many(faces.stream(users), batch_size=7) == 30
        assert uow.users.upsert_many(users[:10]) == 10
        uow.commit()
    assert db.count("items") == 2500
    assert db.count("users") == 31
    assert db.scalar("SELECT max(version) FROM users") == 2


def test_relationships_load_when_named_and_raise_otherwise(faces: Faces) -> None:
    with faces.uow() as uow:
        owner = _user(uow)
        uow.items.create({"title": "Lamp", "owner_id": owner.id})
        uow.commit()
    with faces.uow() as uow:
        loaded = uow.users.get_one(owner.id, load=("items",))
        mine = uow.items.list_by_owner(owner.id)
    assert [item.title for item in loaded.items] == [item.title for item in mine] == ["Lamp"]
    with faces.uow() as uow:
        plain = uow.users.get_one(owner.id)
    with pytest.raises(InvalidRequestError):
        _ = plain.items
