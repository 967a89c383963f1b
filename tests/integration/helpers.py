"""Plain-SQL views of the database, so tests do not check the code with itself."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session, sessionmaker

from app import migrations
from app.db.errors import DataLayerError
from app.db.session import make_session_factory
from app.repositories import ItemRepository, UserRepository, run_in_transaction
from tests.backends import ROOT


def count_rows(connection: Connection, table: str, where: str = "", **params: Any) -> int:
    """How many rows of `table` match a SQL condition."""
    sql = f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else "")
    return int(connection.execute(text(sql), params).scalar_one())


def emails(connection: Connection) -> list[str]:
    """Every stored email, sorted."""
    return sorted(connection.execute(text("SELECT email FROM users")).scalars())


def run_app(
    *args: str, database_url: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the `app` command line in a separate process, as a user would (from `cwd`)."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": database_url, "APP_ENV": "test", **(env or {})},
        timeout=180,
        check=False,
        cwd=cwd,
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


class WriteStream:
    """`threads` writers creating items of `owner` through run_in_transaction for as long as the
    `with` block runs, as request handlers would: a failed unit is counted and the next one is a
    new attempt. What committed (when, which id) and what failed, for the tests to check."""

    def __init__(self, factory: sessionmaker[Session], owner: uuid.UUID, threads: int = 3) -> None:
        self.factory = factory
        self.owner = owner
        self.committed: list[tuple[float, uuid.UUID]] = []
        self.failures: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._writers = [threading.Thread(target=self._write) for _ in range(threads)]

    def _write(self) -> None:
        while not self._stop.is_set():
            try:
                item = run_in_transaction(
                    lambda uow: uow.items.create({"title": "w", "owner_id": self.owner}),
                    session_factory=self.factory,
                )
            except DataLayerError as exc:
                self.failures.append((time.monotonic(), type(exc).__name__))
                time.sleep(0.05)
                continue
            self.committed.append((time.monotonic(), item.id))

    def __enter__(self) -> WriteStream:
        for writer in self._writers:
            writer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for writer in self._writers:
            writer.join(timeout=60)
        assert not any(writer.is_alive() for writer in self._writers), "a writer hung"

    def committed_ids(self) -> set[str]:
        return {item_id.hex for _, item_id in self.committed}

    def longest_pause(self) -> float:
        """The longest time between two commits of the stream, in seconds."""
        times = sorted(at for at, _ in self.committed)
        return max(later - earlier for earlier, later in itertools.pairwise(times))


def stored_item_ids(engine: Engine) -> set[str]:
    """The ids of every stored item, as hex."""
    with engine.connect() as connection:
        return {
            uuid.UUID(str(value)).hex for value in connection.scalars(text("SELECT id FROM items"))
        }


def alembic_ini_with(tmp_path: Path, fixture: str, file_name: str, **fields: str) -> Path:
    """A copy of the project's migrations with the migration in tests/fixtures/`fixture` on top
    (`{head}` and each of `fields` filled in)."""
    shutil.copytree(ROOT / "migrations", tmp_path / "migrations",
                    ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)  # fmt: skip
    shutil.copy(ROOT / "alembic.ini", tmp_path / "alembic.ini")
    head = migrations.revisions()[0].revision
    text_of = (ROOT / "tests" / "fixtures" / fixture).read_text()
    for name, value in {"head": head, **fields}.items():
        text_of = text_of.replace("{" + name + "}", value)
    (tmp_path / "migrations" / "versions" / file_name).write_text(text_of)
    return tmp_path / "alembic.ini"


def resolve_a_commit_held_open(engine: Engine) -> str:
    """A unit writes a user and signs its COMMIT, which never reaches the server (a silent
    network): the server's session is still in the transaction. Telling the outcome must end
    that session within 5 s, instead of waiting for the server to notice, and say it was not
    applied; the unit can then commit nothing. The user's email, for the caller to look for."""
    import pytest

    from app.db.errors import CommitOutcomeUnknownError, ConnectionLostError
    from app.db.errors import DatabaseUnavailableError as Unavailable
    from app.repositories import UnitOfWork, commit_outcome

    email = f"{uuid.uuid4().hex}@example.com"
    with UnitOfWork(make_session_factory(engine)) as uow:
        uow.users.create({"email": email, "hashed_password": "x"})
        receipt = commit_outcome.sign(uow.session)
        assert receipt is not None
        started = time.monotonic()
        with pytest.raises(ConnectionLostError):
            commit_outcome.resolve(receipt, CommitOutcomeUnknownError("lost"))
        # (A lock wait for the open transaction would take 50 s on MariaDB; PostgreSQL would
        # say "in progress", which tells nothing.)
        assert time.monotonic() - started < 5
        with pytest.raises(Unavailable):
            uow.commit()  # its session is gone: nothing can commit it any more
    return email
