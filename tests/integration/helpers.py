"""Plain-SQL views of the database, so tests do not check the code with itself."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

from sqlalchemy import Connection, Engine, text

from app.db.session import make_session_factory
from app.repositories import ItemRepository, UserRepository


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


def load_items(engine: Engine, count: int, *, owners: int | None = None) -> None:
    """`count` items of `owners` owners (default: one per 100 items), titles of varied length,
    committed."""
    factory = make_session_factory(engine)
    with factory() as session:
        owner_ids = [uuid.uuid4() for _ in range(owners or max(count // 100, 1))]
        UserRepository(session).create_many(
            {"id": owner, "email": f"{owner}@example.com", "hashed_password": "x"}
            for owner in owner_ids
        )
        ItemRepository(session).create_many(
            {"title": "t" * (1 + n % 40), "owner_id": owner_ids[n % len(owner_ids)]}
            for n in range(count)
        )
        session.commit()
