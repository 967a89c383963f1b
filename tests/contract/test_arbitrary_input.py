"""Arbitrary text through every write and read path, in both faces on every backend: each value
comes back exactly as it was written, or the call fails with one of the named errors, stores
nothing, and no value it was given appears in the error's chain or in the statement log."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.db.emails import normalize_email
from app.db.errors import DataLayerError
from app.db.telemetry import split_tags
from tests.contract.conftest import Database, Faces

# A marker in every value, so that a leak is told from a message's own words. Any code point,
# lone surrogates, NUL and other control characters included.
MARK = "Qz7"
ANY_CHARACTER = st.characters(exclude_categories=())
TEXT = st.text(ANY_CHARACTER, max_size=300).map(lambda text: MARK + text)
LONG_TEXT = st.text(ANY_CHARACTER, max_size=3000).map(lambda text: MARK + text)
WRITES_TO_ITEMS = ("INSERT INTO items", "COPY items", "LOAD DATA LOCAL INFILE %s INTO TABLE items")
PATHS = ("create", "create_many", "create_many mixed", "upsert", "upsert_many")
EXAMPLES = settings(
    max_examples=int(os.environ.get("APP_TEST_EXAMPLES", "15")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class _Log(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(autouse=True)
def statement_log() -> Iterator[list[str]]:
    """What SQLAlchemy's engines log (their statements, as DB_ECHO would show). Autouse, so it
    is on before the test's connection opens: a connection decides whether it logs when it
    is made."""
    logger = logging.getLogger("sqlalchemy.engine")
    handler, level = _Log(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _said(error: BaseException) -> str:
    said, seen, pending = [], set(), [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        said += [str(current), repr(current), repr(getattr(current, "args", ()))]
        said += [repr(getattr(current, name, "")) for name in ("statement", "params", "object")]
        pending += [current.__cause__, current.__context__]
    return "\n".join(said)


def _write(path: str, uow: Any, faces: Faces, owner: Any, title: str, description: Any) -> Any:
    row = {"id": uuid.uuid4(), "title": title, "description": description, "owner_id": owner.id}
    if path == "create":
        return uow.items.create(row).id
    if path == "create_many":
        uow.items.create_many(faces.stream([row, {**row, "id": uuid.uuid4()}]))
    elif path == "create_many mixed":  # an id as text: the row-by-row way
        uow.items.create_many([row, {**row, "id": str(uuid.uuid4())}])
    elif path == "upsert":
        uow.items.upsert(row)
    else:
        uow.items.upsert_many(faces.stream([row, {**row, "id": uuid.uuid4()}]))
    return row["id"]


@pytest.mark.parametrize("path", PATHS)
@EXAMPLES
@given(title=TEXT, description=st.one_of(st.none(), LONG_TEXT))
def test_any_text_round_trips_exactly_or_is_refused_leaving_nothing(
    faces: Faces,
    db: Database,
    statement_log: list[str],
    path: str,
    title: str,
    description: str | None,
) -> None:
    with faces.uow() as uow:  # never committed: each example leaves nothing behind
        owner = uow.users.create(
            {"email": f"{uuid.uuid4().hex}@example.com", "hashed_password": "x"}
        )
        statement_log.clear()
        refused: DataLayerError | None = None
        try:
            written = _write(path, uow, faces, owner, title, description)
        except DataLayerError as error:
            refused, written = error, None
        log = list(statement_log)
        if refused is not None:
            said = _said(refused)
            assert title not in said
            assert description is None or description not in said
            assert db.count("items") == 0
        logged = "\n".join(log)
        assert title not in logged
        assert description is None or description not in logged
        if written is None:
            return
        # The log is on: the write's own statement is in it (as a template, without values).
        sent = [split_tags(line)[0] for line in log]
        assert any(line.startswith(WRITES_TO_ITEMS) for line in sent), log
        stored = db.run("SELECT title, description FROM items", {})
        assert {tuple(row) for row in stored} == {(title, description)}
        rows = faces.collect(uow.items.iterate(where={"owner_id": owner.id}))
        assert {(row.title, row.description) for row in rows} == {(title, description)}
        found = uow.items.list(where={"title": title})
        assert {item.title for item in found} == {title}


# Anything a JSON body or a query string may turn into, and then some: numbers of every size,
# floats that are not numbers, nested lists and mappings, and text holding the marker.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.uuids(),
    st.datetimes(),
    TEXT,
    st.binary(max_size=20),
)
STRUCTURES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        | st.tuples(inner, inner)
    ),
    max_leaves=8,
)
FIELDS = ("id", "title", "description", "owner_id", "created_at", "version")
OPERATORS = ("", "__ne", "__lt", "__ge", "__in", "__not_in", "__contains", "__istartswith",
             "__is_null")  # fmt: skip


def _no_leak(error: BaseException, *values: Any) -> None:
    said = _said(error)
    for value in values:
        for text in _texts(value):
            assert text not in said


def _texts(value: Any) -> list[str]:
    """The marked texts inside a value, however deeply nested."""
    if isinstance(value, str):
        return [value] if MARK in value else []
    if isinstance(value, dict):
        return [t for pair in value.items() for part in pair for t in _texts(part)]
    if isinstance(value, list | tuple):
        return [t for part in value for t in _texts(part)]
    return []


def _owner(uow: Any) -> Any:
    return uow.users.create({"email": f"{uuid.uuid4().hex}@example.com", "hashed_password": "x"})


@EXAMPLES
@given(
    field=st.sampled_from(FIELDS), op=st.sampled_from(OPERATORS), value=STRUCTURES,
    limit=st.one_of(st.integers(), STRUCTURES), offset=st.one_of(st.integers(), STRUCTURES),
)  # fmt: skip
def test_any_filter_limit_and_offset_is_a_result_or_an_invalid_query(
    faces: Faces, db: Database, field: str, op: str, value: Any, limit: Any, offset: Any
) -> None:
    with faces.uow() as uow:
        owner = _owner(uow)
        uow.items.create({"title": "kept", "owner_id": owner.id})
        for read in (
            lambda: uow.items.list(where={field + op: value}),
            lambda: uow.items.count(where={field + op: value}),
            lambda: uow.items.list(limit=limit, offset=offset),
            lambda: uow.items.paginate(where={field + op: value}, limit=limit),
        ):
            try:
                read()
            except DataLayerError as error:
                _no_leak(error, value, limit, offset)
        # Whatever was refused, the unit goes on, and nothing changed.
        assert uow.items.count() == 1
        assert db.count("items") == 1


@EXAMPLES
@given(key=STRUCTURES, version=st.one_of(st.integers(), STRUCTURES), data=STRUCTURES)
def test_any_key_version_or_body_of_a_write_is_applied_or_refused_leaving_the_row(
    faces: Faces, db: Database, key: Any, version: Any, data: Any
) -> None:
    with faces.uow() as uow:
        owner = _owner(uow)
        item = uow.items.create({"title": "before", "owner_id": owner.id})
        try:
            found = uow.items.get(key)
        except DataLayerError as error:
            _no_leak(error, key)
        else:
            assert found is None or found.id == item.id
        body = data if isinstance(data, dict) else {"title": data}
        for fields, write in (
            (
                {"title": data},
                lambda: uow.items.update(item.id, {"title": data}, expected_version=version),
            ),
            (body, lambda: uow.items.update(item.id, body)),
            ({"title": data}, lambda: uow.items.create({"title": data, "owner_id": owner.id})),
        ):
            try:
                written = write()
            except DataLayerError as error:
                _no_leak(error, data, version)
                assert db.count("items") == 1
                assert db.scalar("SELECT title FROM items") == "before"
            else:  # applied: exactly as given (the next write would start from another row)
                assert {name: getattr(written, name) for name in fields} == fields
                return


@pytest.mark.parametrize("order", ["title", "-title", "description", "-created_at"])
@EXAMPLES
@given(titles=st.lists(TEXT, min_size=1, max_size=4), limit=st.integers(1, 3))
def test_any_text_updated_filtered_and_paged_comes_back_exactly(
    faces: Faces, order: str, titles: list[str], limit: int
) -> None:
    with faces.uow() as uow:
        owner = _owner(uow)
        stored: dict[Any, str] = {}
        for title in titles:
            item = uow.items.create({"title": "draft", "owner_id": owner.id})
            try:
                updated = uow.items.update(item.id, {"title": title, "description": title})
            except DataLayerError as error:
                _no_leak(error, title)
                assert uow.items.get_one(item.id).title == "draft"
                uow.items.delete(item.id)
                continue
            assert updated.title == title
            stored[item.id] = title
        for item_id, title in stored.items():
            assert item_id in {i.id for i in uow.items.list(where={"title": title})}
            assert item_id in {i.id for i in uow.items.list(where={"title__in": [title]})}
            try:
                near = uow.items.list(where={"title__contains": title[1:9]})
            except DataLayerError as error:  # a fragment a pattern cannot hold (NUL)
                _no_leak(error, title)
            else:
                assert item_id in {i.id for i in near}
        seen: list[Any] = []
        cursor = None
        while True:
            page = uow.items.paginate(order_by=[order], limit=limit, cursor=cursor)
            seen += [(i.id, i.title) for i in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert sorted(seen, key=repr) == sorted(stored.items(), key=repr)


@EXAMPLES
@given(email=st.one_of(TEXT.map(lambda text: text + "@example.com"), TEXT))
def test_any_email_is_stored_in_its_one_form_and_found_by_it_or_refused(
    faces: Faces, db: Database, email: str
) -> None:
    with faces.uow() as uow:
        try:
            user = uow.users.create({"email": email, "hashed_password": "x"})
        except DataLayerError as error:
            _no_leak(error, email)
            assert db.count("users") == 0
            return
        assert user.email == normalize_email(email)
        assert db.scalar("SELECT email FROM users") == user.email
        assert uow.users.get_by_email(email) is not None
        assert uow.users.get_by_email(user.email) is not None
