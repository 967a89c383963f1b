"""The repository contract, in both faces on every backend: each method on its success and
failure paths, error mapping, keyset pages, upserts and bulk writes; a failure leaves the
database as it was."""

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
from app.schemas import ItemCreate
from tests.contract.conftest import Database, Faces
from tests.integration.query_counting import statements_sent


def _user(uow: Any, email: str = "ada@example.com", **values: Any) -> Any:
    return uow.users.create({"email": email, "hashed_password": "h", **values})


def _draft(faces: Faces) -> Any:
    """An item titled "draft", committed."""
    with faces.uow() as uow:
        item = uow.items.create({"title": "draft", "owner_id": _user(uow).id})
        uow.commit()
    return item


def _user_row(db: Database, email: str) -> tuple[Any, ...]:
    rows = db.run(
        "SELECT email, full_name, hashed_password, is_active, is_superuser, version "
        "FROM users WHERE email = :email",
        {"email": email},
    )
    return tuple(rows[0])


# -- create, get, update, delete ------------------------------------------------------------------


def test_create_flushes_and_get_finds_the_row_by_id_in_either_form(
    faces: Faces, db: Database
) -> None:
    with faces.uow() as uow:
        created = _user(uow, "Ada@Example.com", full_name="Ada")
        assert (created.version, created.created_at is not None) == (1, True)
        assert db.count("users", "email = 'ada@example.com'") == 1  # flushed, normalised
        assert uow.users.get(created.id) is created
        assert uow.users.get(str(created.id)) is created
        assert uow.users.get_one(str(created.id)).email == "ada@example.com"
        assert uow.users.get_by_email("  ADA@Example.Com ").id == created.id
        uow.commit()
    assert db.count("users") == 1


def test_create_takes_a_pydantic_model_and_refuses_what_it_cannot_write(faces: Faces) -> None:
    with faces.uow() as uow:
        owner = _user(uow)
        item = uow.items.create({**ItemCreate(title="Lamp").model_dump(), "owner_id": owner.id})
        assert item.title == "Lamp"
        with pytest.raises(InvalidQueryError, match=r"no writable field 'password'.*email"):
            uow.users.create({"email": "a@example.com", "password": "plain"})
        with pytest.raises(InvalidQueryError, match="mapping or a pydantic model"):
            uow.users.create(["email", "a@example.com"])
        with pytest.raises(
            InvalidQueryError, match="a new user needs hashed_password; given: email"
        ):
            uow.users.create({"email": "x@example.com"})
        # An upsert of a stored row may still insert: what a new row needs is needed.
        needs = "an upsert may insert a new user, which needs hashed_password; given: email"
        with pytest.raises(InvalidQueryError, match=needs):
            uow.users.upsert({"email": owner.email, "full_name": "X"})


def test_a_missing_row_is_none_or_not_found_and_a_bad_id_is_invalid(faces: Faces) -> None:
    with faces.uow() as uow:
        missing = uuid.uuid4()
        assert uow.users.get(missing) is None
        assert uow.users.get_by_email("nobody@example.com") is None
        # The key is the caller's value (a natural key may be an email): never in the text.
        for call in (
            lambda: uow.users.get_one(missing),
            lambda: uow.users.update(missing, {"full_name": "Nobody"}),
            lambda: uow.users.update(missing, {"full_name": "Nobody"}, expected_version=1),
            lambda: uow.users.delete(missing),
        ):
            with pytest.raises(NotFoundError) as not_found:
                call()
            assert str(not_found.value) == "no user with the given id"
        with pytest.raises(InvalidQueryError, match="not a valid id"):
            uow.users.get("1 OR 1=1")


def test_update_changes_only_the_given_fields_and_refuses_an_old_version(
    faces: Faces, db: Database
) -> None:
    with faces.uow() as uow:
        user = _user(uow, full_name="Ada")
        updated = uow.users.update(user.id, {"full_name": "Ada L."}, expected_version=1)
        assert (updated.full_name, updated.email, updated.version) == (
            "Ada L.",
            "ada@example.com",
            2,
        )
        with pytest.raises(StaleObjectError) as caught:
            uow.users.update(user.id, {"full_name": "Old form"}, expected_version=1)
        assert caught.value.lost_race is False
        uow.users.update(user.id, {"email": "Lovelace@Example.com"})
        for field in ("nickname", "version", "id", "created_at"):
            with pytest.raises(InvalidQueryError, match=repr(field)):
                uow.users.update(user.id, {field: "x"})
        with pytest.raises(InvalidQueryError) as null:
            uow.users.update(user.id, {"email": None})
        assert str(null.value) == "User.email cannot be null"
        uow.commit()
    assert _user_row(db, "lovelace@example.com")[1:] == ("Ada L.", "h", True, False, 3)


def test_an_update_at_a_known_version_is_one_statement(
    faces: Faces, db: Database, backend: str
) -> None:
    # MariaDB has no UPDATE ... RETURNING: there the row is read first, as for any update.
    expected = ["UPDATE"] if backend not in ("mariadb", "galera") else ["SELECT", "UPDATE"]
    with faces.uow() as uow:
        user = _user(uow)
        item = uow.items.create({"title": "draft", "owner_id": user.id})
        created = item.updated_at
        uow.commit()
    with faces.uow() as uow:
        with statements_sent() as sent:
            updated = uow.items.update(item.id, {"title": "final"}, expected_version=1)
        assert _work(sent) == expected, sent
        assert (updated.title, updated.version) == ("final", 2)
        assert updated.updated_at > created
        assert uow.items.get(item.id) is updated
        with pytest.raises(StaleObjectError) as stale:
            uow.items.update(item.id, {"title": "old form"}, expected_version=1)
        assert stale.value.lost_race is False
        assert "at version 2, not version 1" in str(stale.value)
        with pytest.raises(NotFoundError):
            uow.items.update(uuid.uuid4(), {"title": "nowhere"}, expected_version=1)
        uow.commit()
    assert db.scalar("SELECT title FROM items") == "final"
    assert db.scalar("SELECT version FROM items") == 2


def test_an_update_with_fields_is_a_new_version_even_with_the_values_stored(
    faces: Faces, db: Database
) -> None:
    with faces.uow() as uow:
        item = uow.items.create({"title": "same", "owner_id": _user(uow).id})
        uow.commit()
    with faces.uow() as uow:  # the one-statement path where the backend has RETURNING
        assert uow.items.update(item.id, {"title": "same"}, expected_version=1).version == 2
        uow.commit()
    with faces.uow() as uow:  # the path that reads the row first
        assert uow.items.update(item.id, {"title": "same"}).version == 3
        uow.commit()
    with faces.uow() as uow:  # no fields: nothing written, the version still checked
        assert uow.items.update(item.id, {}, expected_version=3).version == 3
        with pytest.raises(StaleObjectError):
            uow.items.update(item.id, {}, expected_version=2)
        uow.commit()
    assert db.scalar("SELECT version FROM items") == 3


def test_an_update_of_a_row_read_is_one_update_that_a_fresh_read_agrees_with(
    faces: Faces, db: Database
) -> None:
    item = _draft(faces)
    with faces.uow() as uow:
        held = uow.items.get_one(item.id)
        with statements_sent() as sent:
            updated = uow.items.update(item.id, {"title": "final", "description": None})
        assert _work(sent) == ["UPDATE"], sent
        assert updated is held
        assert (updated.title, updated.description, updated.version) == ("final", None, 2)
        assert updated.updated_at > item.updated_at
        returned = (updated.title, updated.updated_at, updated.version)
        uow.commit()
    with faces.uow() as uow:
        stored = uow.items.get_one(item.id)
        assert (stored.title, stored.updated_at, stored.version) == returned


def test_an_update_writes_the_changes_pending_on_the_row_with_it(
    faces: Faces, db: Database
) -> None:
    item = _draft(faces)
    with faces.uow() as uow:
        uow.items.get_one(item.id).description = "set on the row"
        updated = uow.items.update(item.id, {"title": "final"})
        assert (updated.title, updated.description, updated.version) == (
            "final",
            "set on the row",
            2,
        )
        uow.commit()
    assert db.run("SELECT title, description, version FROM items", {})[0] == (
        "final",
        "set on the row",
        2,
    )


def test_a_version_no_row_can_be_at_is_stale_on_every_backend(faces: Faces, db: Database) -> None:
    # Beyond the version column's 32 bits, and beyond any backend's 64: the same answer as for
    # any other version the row is not at, never the server's refusal of the number.
    item = _draft(faces)
    for version in (2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 10**30):
        with faces.uow() as uow:
            with pytest.raises(StaleObjectError) as stale:
                uow.items.update(item.id, {"title": "x"}, expected_version=version)
            assert stale.value.lost_race is False
            with pytest.raises(NotFoundError):
                uow.items.update(uuid.uuid4(), {"title": "x"}, expected_version=version)
    assert db.scalar("SELECT title FROM items") == "draft"
    assert db.scalar("SELECT version FROM items") == 1


def _work(sent: list[str]) -> list[str]:
    """The kind of each statement that reads or writes rows (not the savepoints around)."""
    kinds = [statement.split()[0].upper() for statement in sent]
    return [kind for kind in kinds if kind in ("SELECT", "INSERT", "UPDATE", "DELETE")]


def test_an_update_at_a_known_version_of_a_model_with_validators_reads_the_row_first(
    faces: Faces,
) -> None:
    with faces.uow() as uow:
        user = _user(uow)
        uow.commit()
    with faces.uow() as uow, statements_sent() as sent:
        updated = uow.users.update(user.id, {"email": "Mixed@Example.COM"}, expected_version=1)
        assert (updated.email, updated.version) == ("mixed@example.com", 2)
        uow.rollback()
    assert _work(sent) == ["SELECT", "UPDATE"], sent


def test_delete_removes_the_row_and_what_it_owns(faces: Faces, db: Database) -> None:
    with faces.uow() as uow:
        user = _user(uow)
        uow.items.create({"title": "one", "owner_id": user.id})
        uow.items.create({"title": "two", "owner_id": user.id})
        uow.commit()
    with faces.uow() as uow:
        uow.users.delete(user.id)
        uow.commit()
    assert db.count("users") == db.count("items") == 0


def test_a_taken_email_is_a_conflict_and_a_missing_owner_a_foreign_key_error(
    faces: Faces, db: Database
) -> None:
    with faces.uow() as uow:
        _user(uow)
        with pytest.raises(ConflictError) as conflict, uow.savepoint():
            _user(uow, "ADA@example.com")
        assert (conflict.value.fields, conflict.value.constraint) == (("email",), "uq_users_email")
        assert str(conflict.value) == "a user with this email already exists"
        with pytest.raises(ForeignKeyError), uow.savepoint():
            uow.items.create({"title": "Orphan", "owner_id": uuid.uuid4()})
        with pytest.raises(InvalidQueryError, match=r"User\.email cannot be null"):
            _user(uow, None)
        uow.commit()
    assert db.count("users") == 1
    assert db.count("items") == 0


# -- reading --------------------------------------------------------------------------------------


def test_list_filters_sorts_pages_counts_and_breaks_ties_by_id(faces: Faces) -> None:
    with faces.uow() as uow:
        for n in range(5):
            _user(uow, f"u{n}@example.com", is_active=n % 2 == 0, full_name="X" if n else None)
        active = uow.users.list(where={"is_active": True}, order_by=["-email"], limit=2)
        assert [u.email for u in active] == ["u4@example.com", "u2@example.com"]
        assert [u.email for u in uow.users.list(where={"full_name": None})] == ["u0@example.com"]
        page = uow.users.list_page(order_by="email", limit=2, offset=2, with_total=True)
        assert ([u.email for u in page.items], page.total) == (
            ["u2@example.com", "u3@example.com"],
            5,
        )
        tied = uow.users.list(order_by=["full_name"])
        assert [u.id for u in tied[:4]] == sorted(u.id for u in tied[:4])
        assert tied[-1].full_name is None  # NULL sorts as the largest value
        assert uow.users.count(where={"email__startswith": "u"}) == 5
        assert uow.users.exists(where={"email": "u3@example.com"}) is True
        assert uow.users.exists(where={"email": "u9@example.com"}) is False


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"where": {"nickname": "x"}}, "allowed fields"),
        ({"where": {"hashed_password": "h"}}, "'hashed_password'"),
        ({"order_by": ["-hashed_password"]}, "'hashed_password'"),
        ({"where": {"email; DROP TABLE users": 1}}, "allowed fields"),
        ({"limit": 0}, "limit must be"),
        ({"limit": 1001}, "limit must be"),
        ({"limit": True}, "limit must be"),
        ({"limit": "10"}, "limit must be"),
        ({"offset": -1}, "offset must be"),
    ],
)
def test_list_refuses_unknown_or_secret_fields_and_bad_bounds(
    faces: Faces, arguments: dict[str, Any], message: str
) -> None:
    with faces.uow() as uow, pytest.raises(InvalidQueryError, match=message):
        uow.users.list(**arguments)


def test_list_by_owner_returns_only_that_owners_items_oldest_first(faces: Faces) -> None:
    with faces.uow() as uow:
        ada, bob = _user(uow, "ada@example.com"), _user(uow, "bob@example.com")
        for title in ("first", "second", "third"):
            uow.items.create({"title": title, "owner_id": ada.id})
        uow.items.create({"title": "bob's", "owner_id": bob.id})
        assert [i.title for i in uow.items.list_by_owner(ada.id)] == ["first", "second", "third"]
        assert [i.title for i in uow.items.list_by_owner(str(ada.id), limit=1, offset=2)] == [
            "third"
        ]


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


def test_rows_that_are_not_rows_and_a_batch_size_out_of_range_are_said_so(faces: Faces) -> None:
    with faces.uow() as uow:
        for rows in (5, {"email": "a@example.com", "hashed_password": "h"}, "rows"):
            for write in (uow.users.create_many, uow.users.upsert_many):
                with pytest.raises(InvalidQueryError, match="rows must be an iterable of rows"):
                    write(rows)
        with pytest.raises(InvalidQueryError, match="batch_size must be an integer from 1"):
            faces.collect(uow.users.iterate(batch_size=0))


def test_every_cursor_the_repository_makes_is_accepted_back(faces: Faces) -> None:
    with faces.uow() as uow:
        owner = _user(uow)
        for n in range(3):
            uow.items.create({"title": f"t{n}", "owner_id": owner.id, "description": f"{n}" * 3000})
        first = uow.items.paginate(order_by=["description"], limit=1)
        assert len(first.next_cursor) > 4096  # as long as the sort value it carries
        second = uow.items.paginate(order_by=["description"], limit=1, cursor=first.next_cursor)
    assert [item.title for item in first.items + second.items] == ["t0", "t1"]


def test_relationships_load_when_named_and_raise_otherwise(faces: Faces) -> None:
    with faces.uow() as uow:
        owner = _user(uow)  # held by the session, its items never loaded
        uow.items.create({"title": "Lamp", "owner_id": owner.id})
        found = uow.users.get_one(owner.id, load=("items",))
        assert found is owner
        assert [item.title for item in found.items] == ["Lamp"]
        uow.commit()
    with faces.uow() as uow:
        loaded = uow.users.get_one(owner.id, load=("items",))
        mine = uow.items.list_by_owner(owner.id)
    assert [item.title for item in loaded.items] == [item.title for item in mine] == ["Lamp"]
    with faces.uow() as uow:
        plain = uow.users.get_one(owner.id)
    with pytest.raises(InvalidRequestError):
        _ = plain.items


# -- upserts --------------------------------------------------------------------------------------


def test_upsert_inserts_with_defaults_then_updates_only_the_given_fields(
    faces: Faces, db: Database
) -> None:
    with faces.uow() as uow:
        first = uow.users.upsert({"email": "up@example.com", "hashed_password": "h1"})
        uow.users.update(first.id, {"full_name": "Up", "is_superuser": True})
        assert _user_row(db, "up@example.com") == ("up@example.com", "Up", "h1", True, True, 2)
        again = uow.users.upsert({"email": "UP@example.com", "hashed_password": "h2"})
        assert again.id == first.id
        new = uow.users.upsert({"email": "new@example.com", "hashed_password": "h"})
        assert new.version == 1
        uow.commit()
    assert _user_row(db, "up@example.com") == ("up@example.com", "Up", "h2", True, True, 3)
    assert _user_row(db, "new@example.com") == ("new@example.com", None, "h", True, False, 1)


def test_upsert_many_with_different_field_sets_keeps_what_each_row_left_out(
    faces: Faces, db: Database
) -> None:
    with faces.uow() as uow:
        _user(uow, "ada@example.com", full_name="Ada", is_superuser=True)
        _user(uow, "bob@example.com", full_name="Bob")
        sent = uow.users.upsert_many(
            [
                {"email": "ada@example.com", "hashed_password": "h2"},
                {"email": "bob@example.com", "hashed_password": "h3", "is_active": False},
                {"email": "cy@example.com", "hashed_password": "h4", "full_name": "Cy"},
            ]
        )
        assert sent == 3
        uow.commit()
    assert _user_row(db, "ada@example.com")[1:] == ("Ada", "h2", True, True, 2)
    assert _user_row(db, "bob@example.com")[1:] == ("Bob", "h3", False, False, 2)
    assert _user_row(db, "cy@example.com")[1:] == ("Cy", "h4", True, False, 1)


def test_a_taken_id_is_a_conflict_that_names_the_key_on_every_write_path(
    faces: Faces, db: Database
) -> None:
    with faces.uow() as uow:
        taken = _user(uow).id
        uow.commit()
    writes = {
        "create": lambda uow, row: uow.users.create(row),
        "create_many": lambda uow, row: uow.users.create_many([row]),
    }
    for write in writes.values():
        with faces.uow() as uow, pytest.raises(ConflictError) as conflict:
            write(uow, {"id": taken, "email": "other@example.com", "hashed_password": "h"})
        refused = conflict.value
        assert (refused.fields, refused.constraint, refused.table) == (("id",), "pk_users", "users")
        assert str(refused) == "a user with this id already exists"
    assert db.count("users") == 1


def test_rows_the_unit_holds_show_what_upsert_many_stored_and_update_on_from_there(
    faces: Faces, db: Database
) -> None:
    with faces.uow() as uow:
        held = _user(uow, "ada@example.com", full_name="Ada")
        uow.users.upsert_many(
            [{"email": "ada@example.com", "hashed_password": "h2", "full_name": "Ada L."}]
        )
        again = uow.users.get_one(held.id)
        assert (again.full_name, again.hashed_password, again.version) == ("Ada L.", "h2", 2)
        uow.users.update(held.id, {"full_name": "Ada Lovelace"})  # no lost lock: version 2
        uow.commit()
    assert _user_row(db, "ada@example.com")[1:] == ("Ada Lovelace", "h2", True, False, 3)


def test_an_upsert_meeting_another_row_on_another_key_is_a_conflict_and_changes_nothing(
    faces: Faces, db: Database
) -> None:
    with faces.uow() as uow:
        ada = _user(uow, "ada@example.com")
        _user(uow, "bob@example.com")
        uow.commit()
    before = [_user_row(db, e) for e in ("ada@example.com", "bob@example.com")]
    with faces.uow() as uow:
        with pytest.raises(ConflictError) as by_id, uow.savepoint():
            uow.users.upsert(
                {"id": uuid.uuid4(), "email": "ada@example.com", "hashed_password": "x"},
                conflict=("id",),
            )
        assert by_id.value.fields == ("email",)
        with pytest.raises(ConflictError) as by_email, uow.savepoint():
            uow.users.upsert({"id": ada.id, "email": "bob@example.com", "hashed_password": "x"})
        assert by_email.value.fields == ("id",)
        assert str(by_email.value) == "a user with this id already exists"  # Ada's
        for upsert in (uow.users.upsert, lambda row: uow.users.upsert_many([row])):
            with pytest.raises(ConflictError) as new_id, uow.savepoint():
                upsert({"id": uuid.uuid4(), "email": "bob@example.com", "hashed_password": "x"})
            # No row has that id: Bob's row has another, which an upsert does not change.
            assert str(new_id.value) == (
                "the user with this email has another id: an upsert does not change a stored "
                "row's id"
            )
            assert new_id.value.fields == ("id",)
        with pytest.raises(ConflictError), uow.savepoint():
            uow.users.upsert_many(
                [
                    {"id": uuid.uuid4(), "email": "fresh@example.com", "hashed_password": "h"},
                    {"id": uuid.uuid4(), "email": "ada@example.com", "hashed_password": "h"},
                ],
                conflict=("id",),
            )
        uow.commit()
    assert [_user_row(db, e) for e in ("ada@example.com", "bob@example.com")] == before
    assert db.count("users") == 2


# -- bulk writes ----------------------------------------------------------------------------------


def test_bulk_writes_take_lists_and_streams_and_fill_what_create_fills(
    faces: Faces, db: Database
) -> None:
    with faces.uow() as uow:
        owner = _user(uow)
        rows = ({"title": f"bulk {n}", "owner_id": owner.id} for n in range(2500))
        assert uow.items.create_many(faces.stream(rows), batch_size=1000) == 2500
        users = [{"email": f"B{n}@Example.com", "hashed_password": "h"} for n in range(30)]
        assert uow.users.upsert_many(faces.stream(users), batch_size=7) == 30
        assert uow.users.upsert_many(users[:10]) == 10
        uow.commit()
    assert db.count("items") == 2500
    assert db.count("items", "id IS NOT NULL AND created_at IS NOT NULL AND version = 1") == 2500
    assert db.count("users") == 31
    assert db.count("users", "email = 'b7@example.com' AND is_active = :yes", yes=True) == 1
    assert db.scalar("SELECT max(version) FROM users") == 2


@pytest.mark.parametrize("method", ["create_many", "upsert_many"])
def test_a_failed_bulk_write_stores_none_of_its_rows_however_it_is_fed(
    faces: Faces, db: Database, method: str
) -> None:
    """Row 2,200 of 2,500 has no owner: none of the call's rows stays, list or stream, blocking
    or asyncio, and the unit goes on."""
    with faces.uow() as uow:
        owner = _user(uow)
        rows = [{"id": uuid.uuid4(), "title": f"t{n}", "owner_id": owner.id} for n in range(2500)]
        rows[2200]["owner_id"] = uuid.uuid4()  # nobody's
        write = getattr(uow.items, method)
        with pytest.raises(ForeignKeyError):
            write(rows, batch_size=1000)
        assert db.count("items") == 0
        with pytest.raises(ForeignKeyError):
            write(faces.stream(rows), batch_size=1000)
        assert db.count("items") == 0
        # A stored email: a conflict for create_many, and for upsert_many (by email) too, as
        # each row names an id of its own that the stored row does not have.
        taken = [
            {"id": uuid.uuid4(), "email": f"n{n}@example.com", "hashed_password": "x"}
            for n in range(40)
        ]
        taken[30]["email"] = "ADA@example.com"
        with pytest.raises(ConflictError):
            getattr(uow.users, method)(faces.stream(taken), batch_size=10)
        assert db.count("users") == 1
        uow.users.create({"email": "after@example.com", "hashed_password": "x"})
        uow.commit()
    assert db.count("users") == 2


@pytest.mark.parametrize("method", ["create_many", "upsert_many"])
def test_a_row_a_bulk_write_refuses_is_named_by_its_index_among_the_rows_given(
    faces: Faces, db: Database, method: str
) -> None:
    """Row 1,700 of 2,500, in the second batch, is refused before it is sent: the error names
    its index in the call, list or stream, where a single write's names none."""
    rows = [{"email": f"r{n}@example.com", "hashed_password": "x"} for n in range(2500)]
    rows[1700]["email"] = "x" * 400 + "@example.com"
    with faces.uow() as uow:
        write = getattr(uow.users, method)
        options = {"conflict": "email"} if method == "upsert_many" else {}
        for given in (rows, faces.stream(rows)):
            with pytest.raises(InvalidQueryError) as refused:
                write(given, batch_size=1000, **options)
            assert refused.value.row == 1700
            assert str(refused.value) == (
                "row 1700 (counting from 0): email is longer than 320 characters (412)"
            )
        with pytest.raises(InvalidQueryError) as single:
            uow.users.create(rows[1700])
        assert single.value.row is None
        assert str(single.value) == "email is longer than 320 characters (412)"
    assert db.count("users") == 0
