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

from app.db.errors import DataLayerError
from tests.contract.conftest import Database, Faces

# A marker in every value, so that a leak is told from a message's own words. Any code point,
# lone surrogates, NUL and other control characters included.
MARK = "Qz7"
ANY_CHARACTER = st.characters(exclude_categories=())
TEXT = st.text(ANY_CHARACTER, max_size=300).map(lambda text: MARK + text)
LONG_TEXT = st.text(ANY_CHARACTER, max_size=3000).map(lambda text: MARK + text)
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
        assert any(line.startswith(("INSERT INTO items", "COPY items")) for line in log), log
        stored = db.run("SELECT title, description FROM items", {})
        assert {tuple(row) for row in stored} == {(title, description)}
        rows = faces.collect(uow.items.iterate(where={"owner_id": owner.id}))
        assert {(row.title, row.description) for row in rows} == {(title, description)}
        found = uow.items.list(where={"title": title})
        assert {item.title for item in found} == {title}
