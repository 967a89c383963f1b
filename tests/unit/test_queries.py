"""Statement builders, filters, sort orders and cursors, without a database."""

from __future__ import annotations

import base64
import string

import pytest
from sqlalchemy.dialects import postgresql

from app.db.errors import InvalidQueryError
from app.db.models import Item, User
from app.dialects import backend_for
from app.repositories._cursors import decode_cursor, encode_cursor, query_fingerprint
from app.repositories._filters import where_clause
from app.repositories._ordering import after, after_parameters, order_terms, sort_keys
from app.repositories._statements import loader_options
from app.repositories._values import conflict_target, row_values, rules_for

ITEMS = rules_for(Item)
USERS = rules_for(User)
ITEM_FIELDS = ITEMS.columns
PG = backend_for("postgresql")
KEY = b"k" * 32


def _sql(clause: object, dialect: object = None) -> str:
    return str(clause.compile(dialect=dialect))  # type: ignore[attr-defined]


def test_values_are_bound_never_inlined() -> None:
    clause = where_clause(ITEMS, {"title": "x' OR '1'='1"}, allowed=ITEM_FIELDS, backend=PG)
    assert _sql(clause) == "items.title = :title_1"


def test_none_means_is_null() -> None:
    assert _sql(where_clause(ITEMS, {"description": None}, allowed=ITEM_FIELDS, backend=PG)) == (
        "items.description IS NULL"
    )


def test_like_patterns_are_escaped() -> None:
    clause = where_clause(ITEMS, {"title__icontains": "50%"}, allowed=ITEM_FIELDS, backend=PG)
    assert "ILIKE" in _sql(clause, postgresql.dialect())
    assert "ESCAPE '/'" in _sql(clause, postgresql.dialect())


def test_unknown_fields_name_the_allowed_ones() -> None:
    with pytest.raises(InvalidQueryError, match=r"allowed fields: .*title"):
        where_clause(ITEMS, {"titel": "x"}, allowed=ITEM_FIELDS, backend=PG)


def test_unknown_operators_name_the_known_ones() -> None:
    with pytest.raises(InvalidQueryError, match=r"unknown operator 'like'.*icontains"):
        where_clause(ITEMS, {"title__like": "x%"}, allowed=ITEM_FIELDS, backend=PG)


def test_a_related_models_field_is_not_taken_for_an_operator() -> None:
    with pytest.raises(InvalidQueryError, match=r"cannot filter Item by 'owner__email'; allowed"):
        where_clause(ITEMS, {"owner__email": "x"}, allowed=ITEM_FIELDS, backend=PG)


HOSTILE_NAMES = ["K" * 200_000, "x\u202ey\x00z", "title; DROP TABLE items", "ti tle", "é" * 65]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_name_that_is_not_a_short_identifier_is_not_echoed(name: str) -> None:
    refusals = (
        lambda: row_values(ITEMS, {name: 1}, writable=ITEMS.updatable, prepare=dict),
        lambda: where_clause(ITEMS, {name: "x"}, allowed=ITEM_FIELDS, backend=PG),
        lambda: where_clause(ITEMS, {f"title__{name}": "x"}, allowed=ITEM_FIELDS, backend=PG),
        lambda: sort_keys(ITEMS, [name], allowed=ITEM_FIELDS),
        lambda: conflict_target(ITEMS, [name]),
    )
    for refuse in refusals:
        with pytest.raises(InvalidQueryError) as refused:
            refuse()
        message = str(refused.value)
        assert name not in message
        assert "(a name not shown)" in message
        assert len(message) < 400


def test_unknown_writable_fields_are_named_five_at_most() -> None:
    body = {f"extra{n}": n for n in range(1000)}
    with pytest.raises(InvalidQueryError) as refused:
        row_values(ITEMS, body, writable=ITEMS.updatable, prepare=dict)
    assert "'extra0', 'extra1', 'extra2', 'extra3', 'extra4' and 995 more" in str(refused.value)
    with pytest.raises(InvalidQueryError, match="has no writable field 'titel'"):
        row_values(ITEMS, {"titel": "x"}, writable=ITEMS.updatable, prepare=dict)


@pytest.mark.parametrize(
    ("where", "complaint"),
    [
        ({"title__lt": None}, "needs a value"),
        ({"title__in": "abc"}, "list of values"),
        ({"title__contains": 5}, "needs a string"),
        ({"description__is_null": "yes"}, "true or false"),
        ({"owner_id": "not-a-uuid"}, "not a valid id"),
    ],
)
def test_bad_filter_values_are_refused(where: dict[str, object], complaint: str) -> None:
    with pytest.raises(InvalidQueryError, match=complaint):
        where_clause(ITEMS, where, allowed=ITEM_FIELDS, backend=PG)


def test_the_primary_key_ends_every_order_in_the_direction_of_the_key_before_it() -> None:
    keys = sort_keys(ITEMS, ["-created_at", "description"], allowed=ITEM_FIELDS)
    assert [key.spec for key in keys] == ["-created_at", "description", "id"]
    newest_first = sort_keys(ITEMS, ["-created_at"], allowed=ITEM_FIELDS)
    assert [key.spec for key in newest_first] == ["-created_at", "-id"]
    assert [key.spec for key in sort_keys(ITEMS, None, allowed=ITEM_FIELDS)] == ["id"]


def test_an_order_that_reaches_a_unique_required_column_ends_there() -> None:
    fields = {"email", "full_name", "created_at", "id"}
    assert [k.spec for k in sort_keys(USERS, ["-email"], allowed=fields)] == ["-email"]
    assert [k.spec for k in sort_keys(USERS, ["full_name"], allowed=fields)] == ["full_name", "id"]


@pytest.mark.parametrize(
    ("dialect", "null_terms"), [("sqlite", True), ("mysql", True), ("postgresql", False)]
)
def test_nulls_sort_last_and_postgresql_needs_no_term_for_it(
    dialect: str, null_terms: bool
) -> None:
    keys = sort_keys(ITEMS, ["-created_at", "description"], allowed=ITEM_FIELDS)
    expected = ["items.created_at DESC", "items.description ASC", "items.id ASC"]
    if null_terms:
        expected.insert(1, "items.description IS NULL ASC")
    assert [_sql(term) for term in order_terms(ITEMS, keys, backend_for(dialect))] == expected


def test_sorting_twice_by_one_field_is_refused() -> None:
    with pytest.raises(InvalidQueryError, match="twice"):
        sort_keys(ITEMS, ["title", "-title"], allowed=ITEM_FIELDS)


def test_keyset_condition_is_a_row_value_when_all_keys_run_one_way() -> None:
    keys = sort_keys(ITEMS, ["-created_at"], allowed=ITEM_FIELDS)
    assert _sql(after(ITEMS, keys, [False, False], backend_for("postgresql"))) == (
        "(items.created_at, items.id) < (:app_after_0, :app_after_1)"
    )
    assert _sql(after(ITEMS, keys, [False, False], backend_for("mysql"))) == (
        "items.created_at <= :app_after_0 AND (items.created_at < :app_after_0 "
        "OR items.created_at = :app_after_0 AND items.id < :app_after_1)"
    )
    assert after_parameters(["2026-01-01", "x"]) == {
        "app_after_0": "2026-01-01",
        "app_after_1": "x",
    }


def test_keyset_condition_is_lexicographic_with_a_bound_otherwise() -> None:
    keys = sort_keys(ITEMS, ["title", "-created_at"], allowed=ITEM_FIELDS)
    assert _sql(after(ITEMS, keys, [False] * 3, backend_for("postgresql"))) == (
        "items.title >= :app_after_0 AND (items.title > :app_after_0 OR items.title = "
        ":app_after_0 AND items.created_at < :app_after_1 OR items.title = :app_after_0 "
        "AND items.created_at = :app_after_1 AND items.id < :app_after_2)"
    )


def test_a_null_sort_value_is_compared_with_is_and_never_bound() -> None:
    keys = sort_keys(ITEMS, ["description"], allowed=ITEM_FIELDS)
    assert _sql(after(ITEMS, keys, [True, False], backend_for("postgresql"))) == (
        "false OR items.description IS NULL AND items.id > :app_after_1"
    )
    assert after_parameters([None, "x"]) == {"app_after_1": "x"}


def test_users_are_never_sorted_or_filtered_by_password_hash() -> None:
    from app.repositories.users import UserRepository

    assert "hashed_password" not in (UserRepository.sortable_fields or ())
    assert "hashed_password" not in (UserRepository.filterable_fields or ())


def test_loads_are_checked_against_the_relationships() -> None:
    assert len(loader_options(User, ["items"])) == 1
    with pytest.raises(InvalidQueryError, match="relationships: items"):
        loader_options(User, ["orders"])


def _stray_bits(cursor: str) -> list[str]:
    """`cursor` with its last character changed in bits that encode nothing: the same bytes."""
    alphabet = string.ascii_letters + string.digits + "-_"
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    edits = [cursor[:-1] + other for other in alphabet if other != cursor[-1]]
    return [
        edit for edit in edits if base64.urlsafe_b64decode(edit + "=" * (-len(edit) % 4)) == raw
    ]


def test_cursors_round_trip_and_refuse_tampering() -> None:
    fingerprint = query_fingerprint("Item", ["title", "id"], [["title", "ne", "x"]])
    cursor = encode_cursor(["lamp", "0190"], fingerprint=fingerprint, key=KEY)
    assert decode_cursor(cursor, fingerprint=fingerprint, key=KEY, size=2) == ["lamp", "0190"]
    tampered = cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1]
    foreign = query_fingerprint("Item", ["-title", "id"], [])
    for bad, kwargs in [
        (tampered, {"fingerprint": fingerprint, "key": KEY}),
        (cursor, {"fingerprint": foreign, "key": KEY}),
        (cursor, {"fingerprint": fingerprint, "key": b"other-key"}),
        ("%%%not base64", {"fingerprint": fingerprint, "key": KEY}),
        ("", {"fingerprint": fingerprint, "key": KEY}),
        *((cursor + padding, {"fingerprint": fingerprint, "key": KEY}) for padding in ("=", "==")),
        *((stray, {"fingerprint": fingerprint, "key": KEY}) for stray in _stray_bits(cursor)),
    ]:
        with pytest.raises(InvalidQueryError, match="invalid cursor"):
            decode_cursor(bad, size=2, **kwargs)  # type: ignore[arg-type]
