"""Query tags: sqlcommenter's format, and nothing a name holds can end the value, the comment or
the statement, or read as a placeholder."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.db.telemetry import render_tags, split_tags, tag_value
from app.dialects.mariadb import MARIADB


def test_tags_are_sorted_by_key_and_quoted() -> None:
    rendered = render_tags({"application": "app", "action": "GET /items/{item_id}"})
    assert rendered == "/*action='GET_/items/{item_id}',application='app'*/"


def test_a_name_cannot_break_out_of_its_value_or_read_as_a_placeholder() -> None:
    hostile = "x'*/; DROP TABLE users; --%s %(a)s,b=c\\"
    value = tag_value(hostile)
    for dangerous in ("'", "*", "%", ",", ";", "\\", " "):
        assert dangerous not in value
    assert value == "x_/_DROP_TABLE_users_--_s_a_s_b_c_"


@given(st.text(max_size=300))
def test_any_name_round_trips_through_a_statement_as_its_safe_form(name: str) -> None:
    statement = f"SELECT 1 {render_tags({'action': name, 'application': 'app'})}"
    text, tags = split_tags(statement)
    assert text == "SELECT 1"
    safe = tag_value(name)
    assert tags == ({"action": safe, "application": "app"} if safe else {"application": "app"})


def test_a_statement_without_tags_is_left_as_it_is() -> None:
    assert split_tags("SELECT '/*x*/' FROM t") == ("SELECT '/*x*/' FROM t", {})


@given(st.text(max_size=300))
def test_tags_a_backend_puts_after_the_first_keyword_are_found_there(name: str) -> None:
    insert = "INSERT INTO items (title) VALUES (%s)"
    comment = render_tags({"action": name, "application": "app"})
    placed = MARIADB.with_comment(insert, comment, executemany=True)
    assert placed.startswith("INSERT /*")
    text, tags = split_tags(placed)
    assert text == insert
    safe = tag_value(name)
    assert tags == ({"action": safe, "application": "app"} if safe else {"application": "app"})
