"""What the models store and give back, on every backend."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import InvalidRequestError, StatementError
from sqlalchemy.orm import Session

from app.db.models import Item, User
from tests.integration.helpers import count_rows


def _user(email: str = "Ada@Example.COM") -> User:
    return User(email=email, hashed_password="hash")


def test_ids_are_uuid7_generated_before_insert(session: Session) -> None:
    user = _user()
    session.add(user)
    session.flush()
    assert user.id.version == 7


def test_emails_are_stored_in_lower_case(session: Session, connection: Connection) -> None:
    session.add(_user("  Ada@Example.COM "))
    session.flush()
    stored = connection.execute(text("SELECT email FROM users")).scalar_one()
    assert stored == "ada@example.com"


def _stored_and_reloaded(session: Session, user: User) -> User:
    """Flush `user`, forget everything, and read it back from the database."""
    session.add(user)
    session.flush()
    session.expire_all()
    loaded = session.get(User, user.id)
    assert loaded is not None
    return loaded


def test_defaults_apply(session: Session) -> None:
    loaded = _stored_and_reloaded(session, _user())
    assert (loaded.is_active, loaded.is_superuser, loaded.version, loaded.full_name) == (
        True,
        False,
        1,
        None,
    )


def test_timestamps_come_back_aware_utc_with_microseconds(session: Session) -> None:
    moment = dt.datetime(2026, 3, 1, 10, 30, 15, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    user = _user()
    user.created_at = moment
    loaded = _stored_and_reloaded(session, user)
    assert loaded.created_at.tzinfo == dt.UTC
    assert loaded.created_at == moment
    assert loaded.created_at.hour == 8


def test_naive_datetimes_are_refused(session: Session) -> None:
    user = _user()
    user.created_at = dt.datetime(2026, 3, 1, 10, 30)
    session.add(user)
    with pytest.raises(StatementError, match="naive datetime"):
        session.flush()


def test_updates_move_updated_at_and_the_version(session: Session) -> None:
    user = _user()
    session.add(user)
    session.flush()
    created, updated = user.created_at, user.updated_at
    user.full_name = "Ada Lovelace"
    session.flush()
    assert user.version == 2
    assert user.updated_at > updated
    assert user.created_at == created


def test_relationships_refuse_to_load_lazily(session: Session) -> None:
    loaded = _stored_and_reloaded(session, _user())
    with pytest.raises(InvalidRequestError, match="lazy='raise'"):
        _ = loaded.items


def test_deleting_a_user_deletes_its_items_in_the_database(
    session: Session, connection: Connection
) -> None:
    user = _user()
    session.add(user)
    session.flush()
    session.add_all([Item(title=f"item {n}", owner_id=user.id) for n in range(3)])
    session.flush()
    session.expire_all()
    session.delete(session.get(User, user.id))
    session.flush()
    assert count_rows(connection, "items") == 0
