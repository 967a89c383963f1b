"""Plain-SQL views of the database, so tests do not check the code with itself."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text


def count_rows(connection: Connection, table: str, where: str = "", **params: Any) -> int:
    """How many rows of `table` match a SQL condition."""
    sql = f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else "")
    return int(connection.execute(text(sql), params).scalar_one())


def emails(connection: Connection) -> list[str]:
    """Every stored email, sorted."""
    return sorted(connection.execute(text("SELECT email FROM users")).scalars())
