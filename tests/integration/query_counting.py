"""`assert_max_queries`: pin how many statements a block sends, so an N+1 shows up as a failure."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, event


@contextmanager
def statements_sent(target: Any = Engine) -> Iterator[list[str]]:
    """The statements `target` (a connection, an engine, or every engine: the default, which
    also sees the asyncio face's, run on a synchronous engine inside) sends in the block."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(target, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(target, "before_cursor_execute", record)


@contextmanager
def assert_max_queries(connection: Connection, limit: int) -> Iterator[list[str]]:
    """Fail if the block sends more than `limit` statements on `connection`."""
    with statements_sent(connection) as statements:
        yield statements
    assert len(statements) <= limit, (
        f"{len(statements)} statements, expected at most {limit}:\n" + "\n".join(statements)
    )
