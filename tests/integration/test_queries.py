"""Filters, sorting, offset and keyset pagination, upserts and loading, on every backend."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session, sessionmaker

from app.db.errors import InvalidQueryError
from app.db.models import Item
from app.repositories import ItemRepository, UserRepository, run_in_transaction
from tests.integration.helpers import count_rows
from tests.integration.query_counting import assert_max_queries

KEY = b"test-cursor-key-0123456789abcdef"
BASE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
# Letters of both cases, digits and LIKE's own wildcards: ASCII, so every backend's binary
# collation and lower() agree with Python's.
ALPHABET = "aAbB_%z9éÉ"
# icontains and istartswith fold ASCII letters only, on every backend ("é" is not "É").
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
HYPOTHESIS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

item_rows = st.lists(
    st.tuples(
        st.text(ALPHABET, min_size=1, max_size=3),
        st.none() | st.text(ALPHABET, max_size=3),
        st.integers(0, 3).map(lambda n: BASE + dt.timedelta(microseconds=n * 250_001)),
    ),
    max_size=25,
)
SORTABLE = ["title", "description", "created_at"]
sort_orders = st.lists(st.sampled_from(SORTABLE), unique=True, max_size=3).flatmap(
    lambda names: st.tuples(*[st.sampled_from([n, f"-{n}"]) for n in names]).map(list)
)


@pytest.fixture
def owner(session: Session) -> uuid.UUID:
    return UserRepository(session).create({"email": "owner@example.com", "hashed_password": "h"}).id


@pytest.fixture
def items(session: Session) -> ItemRepository:
    return ItemRepository(session, cursor_key=KEY)


def _insert(items: ItemRepository, owner: uuid.UUID, rows: list[tuple[Any, ...]]) -> list[Item]:
    return [
        items.create({"title": t, "description": d, "created_at": c, "owner_id": owner})
        for t, d, c in rows
    ]


def _python_order(rows: list[Item], order: list[str]) -> list[uuid.UUID]:
    """The order the repository promises: NULL the largest value, the id last (in the
    direction of the key before it)."""
    descending = bool(order) and order[-1].startswith("-")
    ordered = sorted(rows, key=lambda item: item.id, reverse=descending)
    for spec in reversed(order):
        name = spec.lstrip("-")

        def key(item: Item, name: str = name) -> tuple[bool, Any]:
            value = getattr(item, name)
            return (value is None, value if value is not None else "")

        ordered = sorted(ordered, key=key, reverse=spec.startswith("-"))
    return [item.id for item in ordered]


def _in_savepoint(session: Session, check: Callable[[], None]) -> None:
    savepoint = session.begin_nested()
    try:
        check()
    finally:
        savepoint.rollback()
        session.expunge_all()


@HYPOTHESIS
@given(rows=item_rows, order=sort_orders, limit=st.integers(1, 7))
def test_keyset_pages_return_every_row_once_in_order(
    session: Session,
    items: ItemRepository,
    owner: uuid.UUID,
    rows: list[tuple[Any, ...]],
    order: list[str],
    limit: int,
) -> None:
    def check() -> None:
        created = _insert(items, owner, rows)
        seen: list[uuid.UUID] = []
        cursor = None
        for _ in range(len(rows) + 2):
            page = items.paginate(order_by=order, limit=limit, cursor=cursor)
            seen += [item.id for item in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == _python_order(created, order)

    _in_savepoint(session, check)


short_text = st.text(ALPHABET, max_size=2)
some_text = st.text(ALPHABET, min_size=1, max_size=2)
text_lists = st.lists(short_text, max_size=3)
maybe_text = st.none() | short_text
instants = st.sampled_from([BASE, BASE + dt.timedelta(microseconds=250_001)])

FILTERS: list[tuple[str, Callable[[Item, Any], bool], st.SearchStrategy[Any]]] = [
    ("title", lambda i, v: i.title == v, some_text),
    ("title__ne", lambda i, v: i.title != v, some_text),
    ("title__lt", lambda i, v: i.title < v, some_text),
    ("title__ge", lambda i, v: i.title >= v, some_text),
    ("title__in", lambda i, v: i.title in v, text_lists),
    ("title__not_in", lambda i, v: i.title not in v, text_lists),
    ("title__contains", lambda i, v: v in i.title, short_text),
    (
        "title__icontains",
        lambda i, v: v.translate(ASCII_LOWER) in i.title.translate(ASCII_LOWER),
        short_text,
    ),
    ("title__startswith", lambda i, v: i.title.startswith(v), short_text),
    (
        "title__istartswith",
        lambda i, v: i.title.translate(ASCII_LOWER).startswith(v.translate(ASCII_LOWER)),
        short_text,
    ),
    ("description", lambda i, v: i.description == v, maybe_text),
    ("description__ne", lambda i, v: i.description != v, maybe_text),
    ("description__is_null", lambda i, v: (i.description is None) == v, st.booleans()),
    ("created_at__gt", lambda i, v: i.created_at > v, instants),
]


@HYPOTHESIS
@given(rows=item_rows, data=st.data())
def test_filters_match_a_plain_python_reference(
    session: Session,
    items: ItemRepository,
    owner: uuid.UUID,
    rows: list[tuple[Any, ...]],
    data: st.DataObject,
) -> None:
    chosen = data.draw(
        st.lists(st.sampled_from(FILTERS), min_size=1, max_size=2, unique_by=lambda f: f[0])
    )
    where = {key: data.draw(values) for key, _, values in chosen}

    def check() -> None:
        created = _insert(items, owner, rows)
        expected = {
            item.id for item in created if all(test(item, where[key]) for key, test, _ in chosen)
        }
        found = {item.id for item in items.list(where=where, limit=1000)}
        assert found == expected, where
        assert items.count(where=where) == len(expected)

    _in_savepoint(session, check)


def test_filters_of_one_shape_with_other_values_or_forms_find_their_own_rows(
    items: ItemRepository, owner: uuid.UUID
) -> None:
    """A filtered statement is kept per shape and its values are parameters: one after another,
    filters of the same fields with other values, None, other list lengths, or the other
    is_null find exactly their rows, on every read path."""
    created = _insert(items, owner, [("a", None, BASE), ("b", "x", BASE), ("c", "y", BASE)])
    by_title = {item.title: item.id for item in created}
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({"description": "x"}, {"b"}),
        ({"description": "y"}, {"c"}),
        ({"description": None}, {"a"}),
        ({"description__ne": None}, {"b", "c"}),
        ({"description__ne": "x"}, {"a", "c"}),
        ({"description__is_null": True}, {"a"}),
        ({"description__is_null": False}, {"b", "c"}),
        ({"title__in": ["a"]}, {"a"}),
        ({"title__in": ["a", "b", "c"]}, {"a", "b", "c"}),
        ({"title__in": []}, set()),
        ({"title__not_in": ["a", "b"]}, {"c"}),
        ({"description__not_in": ["x"]}, {"a", "c"}),
        ({"title__gt": "a", "description": "y"}, {"c"}),
        ({"description": "y", "title__gt": "a"}, {"c"}),
        ({"title__gt": "b", "description": "x"}, set()),
        # None in a list is matched as Python's `in` matches it: NULL is in [None].
        ({"description__in": ["x", None]}, {"a", "b"}),
        ({"description__in": [None]}, {"a"}),
        ({"description__not_in": ["x", None]}, {"c"}),
        ({"description__not_in": [None]}, {"b", "c"}),
        ({"description__not_in": []}, {"a", "b", "c"}),
    ]
    for where, titles in cases * 2:  # the second time round, every shape is kept already
        expected = {by_title[title] for title in titles}
        assert {item.id for item in items.list(where=where)} == expected, where
        assert {item.id for item in items.paginate(where=where).items} == expected, where
        assert {row.id for row in items.iterate(where=where)} == expected, where
        assert items.count(where=where) == len(expected), where
        assert items.exists(where=where) is bool(expected), where


def test_like_wildcards_in_values_match_literally(items: ItemRepository, owner: uuid.UUID) -> None:
    _insert(
        items,
        owner,
        [
            ("50% off", None, BASE),
            ("500 off", None, BASE),
            ("a_b", None, BASE),
            ("axb", None, BASE),
        ],
    )
    assert [i.title for i in items.list(where={"title__contains": "0%"})] == ["50% off"]
    assert [i.title for i in items.list(where={"title__startswith": "a_"})] == ["a_b"]
    assert items.list(where={"title__icontains": "%' OR '1'='1"}) == []


def test_case_insensitive_matches_fold_ascii_letters_only_on_every_backend(
    items: ItemRepository, owner: uuid.UUID
) -> None:
    titles = ["été", "ÉTÉ", "Lamp", "LAMP", "İnfo", "info"]
    _insert(items, owner, [(title, None, BASE) for title in titles])

    def found(where: dict[str, str]) -> list[str]:
        return sorted(item.title for item in items.list(where=where))

    assert found({"title__icontains": "é"}) == ["été"]
    assert found({"title__icontains": "TÉ"}) == ["ÉTÉ"]
    assert found({"title__icontains": "amp"}) == ["LAMP", "Lamp"]
    assert found({"title__istartswith": "I"}) == ["info"]
    assert found({"title__istartswith": "lAm"}) == ["LAMP", "Lamp"]


def test_a_text_filter_longer_than_any_like_pattern_still_matches(
    items: ItemRepository, owner: uuid.UUID
) -> None:
    """A needle of 30,000 characters (SQLite takes LIKE patterns of 50,000 bytes at most, and
    escaping doubles `%`, `_` and `/`) matches as a short one does, on every backend; one
    longer than any stored value matches nothing, without an error."""
    long = "a%_/" * 7_500 + "end"
    _insert(items, owner, [("long", long, BASE), ("short", "a%_/", BASE)])
    for op, needle in [
        ("contains", long[1:]),
        ("icontains", long.upper()),
        ("startswith", long[:-3]),
        ("istartswith", long.upper()[:-1]),
    ]:
        found = items.list(where={f"description__{op}": needle})
        assert [item.title for item in found] == ["long"], op
        assert items.list(where={f"description__{op}": needle + "x" * 30_000}) == [], op
        assert items.list(where={f"description__{op}": needle[:3]}, order_by=["title"]) == [
            *found,
            *items.list(where={"title": "short"}),
        ], op


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"where": {"title; DROP TABLE items": "x"}}, "allowed fields"),
        ({"where": {"title__regex": ".*"}}, "unknown operator"),
        ({"order_by": ["title desc"]}, "allowed fields"),
        ({"order_by": ["-owner_id--"]}, "allowed fields"),
        ({"cursor": "garbage"}, "invalid cursor"),
        ({"cursor": "x" * 5000}, "invalid cursor"),
        ({"limit": 0}, "limit must be"),
        ({"load": ["owner; --"]}, "no relationship"),
    ],
)
def test_bad_queries_are_refused_with_a_clear_error(
    items: ItemRepository, kwargs: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(InvalidQueryError, match=complaint):
        items.paginate(**kwargs)


def test_a_cursor_only_works_for_its_own_query(items: ItemRepository, owner: uuid.UUID) -> None:
    _insert(items, owner, [(f"t{n}", None, BASE) for n in range(5)])
    page = items.paginate(order_by=["title"], limit=2)
    assert page.next_cursor is not None
    with pytest.raises(InvalidQueryError, match="invalid cursor"):
        items.paginate(order_by=["-title"], limit=2, cursor=page.next_cursor)
    with pytest.raises(InvalidQueryError, match="invalid cursor"):
        items.paginate(
            order_by=["title"], where={"title__ne": "t0"}, limit=2, cursor=page.next_cursor
        )
    other_key = ItemRepository(items.session, cursor_key=b"another-key")
    with pytest.raises(InvalidQueryError, match="invalid cursor"):
        other_key.paginate(order_by=["title"], limit=2, cursor=page.next_cursor)


def test_offset_pages_can_carry_the_total(items: ItemRepository, owner: uuid.UUID) -> None:
    _insert(items, owner, [(f"t{n}", None, BASE) for n in range(7)])
    first = items.list_page(order_by=["title"], limit=3, with_total=True)
    assert ([i.title for i in first.items], first.total) == (["t0", "t1", "t2"], 7)
    beyond = items.list_page(limit=3, offset=10, with_total=True)
    assert (beyond.items, beyond.total) == ([], 7)
    assert items.list_page(limit=3).total is None


def test_loading_relationships_takes_a_fixed_number_of_queries(
    session: Session, connection: Connection
) -> None:
    users = UserRepository(session, cursor_key=KEY)
    items = ItemRepository(session)
    for n in range(6):
        user = users.create({"email": f"u{n}@example.com", "hashed_password": "h"})
        for j in range(3):
            items.create({"title": f"{n}-{j}", "owner_id": user.id})
    session.expire_all()
    with assert_max_queries(connection, 2):
        listed = users.list(load=("items",))
        assert sum(len(user.items) for user in listed) == 18
    session.expire_all()
    with assert_max_queries(connection, 2):
        page = users.paginate(limit=4, load=("items",))
        assert sum(len(user.items) for user in page.items) == 12
    first_id = listed[0].id
    session.expire_all()
    with assert_max_queries(connection, 2):
        one = users.get_one(first_id, load=("items",))
        assert len(one.items) == 3
    # Rows the session holds, their relationships loaded already: `load` reads them again.
    items.create({"title": "another", "owner_id": first_id})
    assert len(users.get_one(first_id, load=("items",)).items) == 4
    assert len(users.list(where={"id": first_id}, load=("items",))[0].items) == 4
    assert len(users.paginate(where={"id": first_id}, load=("items",)).items[0].items) == 4


def test_upsert_inserts_then_updates_the_same_row(session: Session, connection: Connection) -> None:
    users = UserRepository(session)
    first = users.upsert({"email": "Up@Example.com", "hashed_password": "h1", "full_name": "One"})
    assert (first.version, first.full_name) == (1, "One")
    second = users.upsert({"email": "up@example.com", "hashed_password": "h2", "full_name": "Two"})
    assert second.id == first.id
    assert (second.version, second.full_name, second.hashed_password) == (2, "Two", "h2")
    assert second.updated_at > second.created_at
    assert count_rows(connection, "users", "email = 'up@example.com' AND version = 2") == 1


def test_upsert_needs_a_unique_conflict_target(session: Session) -> None:
    with pytest.raises(InvalidQueryError, match="not a unique key"):
        UserRepository(session).upsert(
            {"email": "a@example.com", "hashed_password": "h"}, conflict=("full_name",)
        )


def test_upsert_many_and_create_many_stream_any_iterable(
    session: Session, connection: Connection
) -> None:
    users = UserRepository(session)
    generated = ({"email": f"s{n}@example.com", "hashed_password": "h"} for n in range(2500))
    assert users.create_many(generated, batch_size=1000) == 2500
    changed = (
        {"email": f"S{n}@example.com", "hashed_password": "h", "full_name": "x"}
        for n in range(2000, 3000)
    )
    assert users.upsert_many(changed, batch_size=300) == 1000
    assert count_rows(connection, "users") == 3000
    assert count_rows(connection, "users", "full_name = 'x' AND version = 2") == 500
    assert count_rows(connection, "users", "full_name = 'x' AND version = 1") == 500


def test_concurrent_upserts_of_one_email_leave_one_row(
    committing_factory: sessionmaker[Session], committed_engine: Any
) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            run_in_transaction(
                lambda uow: uow.users.upsert(
                    {"email": "race@example.com", "hashed_password": f"h{n}"}
                ),
                session_factory=committing_factory,
                retries=10,
            )
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    with committed_engine.connect() as connection:
        rows = connection.execute(
            text("SELECT version FROM users WHERE email = 'race@example.com'")
        ).all()
    assert [row.version for row in rows] == [8]
