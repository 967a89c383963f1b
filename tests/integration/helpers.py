"""Plain-SQL views of the database, so tests do not check the code with itself."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from sqlalchemy import Connection, text


def count_rows(connection: Connection, table: str, where: str = "", **params: Any) -> int:
    """How many rows of `table` match a SQL condition."""
    sql = f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else "")
    return int(connection.execute(text(sql), params).scalar_one())


def emails(connection: Connection) -> list[str]:
    """Every stored email, sorted."""
    return sorted(connection.execute(text("SELECT email FROM users")).scalars())


def run_app(
    *args: str, database_url: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the `app` command line in a separate process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": database_url, "APP_ENV": "test", **(env or {})},
        timeout=180,
        check=False,
    )
