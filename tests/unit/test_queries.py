"""Statement builders: names checked, values bound, order total."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import postgresql

from app.db.errors import InvalidQueryError
from app.db.models import Item
from app.repositories.queries import column_names, order_clauses, select_page, where_clause


def _sql(clause: object) -> str:
    return str(clause.compile(dialect=postgresql.dialect()))  # type: ignore[attr-defined]


def test_values_are_bound_never_inlined() -> None:
    clause = where_clause(Item, {"title": "x' OR '1'='1"}, allowed=column_names(Item))
    assert "OR" not in _sql(clause)
    assert "%(title_1)s" in _sql(clause)


def test_none_means_is_null() -> None:
    clause = where_clause(Item, {"description": None}, allowed=column_names(Item))
    assert _sql(clause) == "items.description IS NULL"


def test_unknown_fields_name_the_allowed_ones() -> None:
    with pytest.raises(InvalidQueryError, match=r"allowed fields: .*title"):
        where_clause(Item, {"titel": "x"}, allowed=column_names(Item))


def test_the_primary_key_ends_every_order() -> None:
    terms = order_clauses(Item, ["-created_at", "title"], allowed=column_names(Item))
    assert [_sql(term) for term in terms] == [
        "items.created_at DESC",
        "items.title ASC",
        "items.id ASC",
    ]


def test_sorting_by_the_primary_key_does_not_repeat_it() -> None:
    terms = order_clauses(Item, ["-id"], allowed=column_names(Item))
    assert [_sql(term) for term in terms] == ["items.id DESC"]


def test_page_statement_has_limit_and_offset() -> None:
    statement = select_page(
        Item,
        where=None,
        order_by=None,
        limit=10,
        offset=20,
        filterable=column_names(Item),
        sortable=column_names(Item),
    )
    sql = _sql(statement)
    assert "LIMIT" in sql
    assert "OFFSET" in sql
