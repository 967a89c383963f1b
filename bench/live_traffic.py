"""Units of work running against a table while a migration changes it, and what they saw.

Shared by the live-migration test (tests/integration/test_migration_ops.py) and the benchmark
(bench/online_migration.py): threads read items by key, update them and insert new ones through
the public API (`run_in_transaction`), recording every request's latency and every failure.
"""

from __future__ import annotations

import random
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Item
from app.migrations import alembic_config, find_alembic_ini
from app.repositories import UnitOfWork, run_in_transaction

# A migration through the helpers: a NOT NULL column filled from each row's title, and an index.
ONLINE_MIGRATION = """
import sqlalchemy as sa

from app import migration_ops


def upgrade() -> None:
    migration_ops.add_not_null_column(
        "items",
        sa.Column("title_length", sa.Integer(), server_default="0"),
        backfill=sa.func.length(sa.column("title")),
    )
    migration_ops.create_index(
        "ix_items_owner_id_title_length", "items", ["owner_id", "title_length"]
    )
"""

# Constraints through the helpers: a foreign key on a column filled from another, a unique
# constraint on a column filled with unique values, and a check. Every call a second time is a
# no-op (what a migration run again after it was killed does).
CONSTRAINTS_MIGRATION = """
import sqlalchemy as sa
from alembic import op

from app import migration_ops
from app.db.types import UUIDColumn


def upgrade() -> None:
    op.add_column("items", sa.Column("reviewer_id", UUIDColumn(), nullable=True))
    op.add_column("items", sa.Column("code", sa.String(40), nullable=True))
    migration_ops.backfill("items", {"reviewer_id": sa.column("owner_id")})
    code = sa.func.lower(sa.cast(sa.column("id"), sa.String(40)))
    migration_ops.backfill("items", {"code": code})
    for _ in range(2):
        migration_ops.create_foreign_key(
            "fk_items_reviewer_id_users", "items", "users", ["reviewer_id"], ["id"],
            ondelete="SET NULL",
        )
        migration_ops.create_unique_constraint("uq_items_code", "items", ["code"])
        migration_ops.create_check_constraint("version_positive", "items", "version > 0")
"""

# The same constraints as `op` writes them: each a statement that checks every row while it
# holds a lock that stops the table's writers (PostgreSQL, and MariaDB's COPY for the check).
NAIVE_CONSTRAINTS_MIGRATION = """
import sqlalchemy as sa
from alembic import op

from app.db.types import UUIDColumn


def upgrade() -> None:
    op.add_column("items", sa.Column("reviewer_id", UUIDColumn(), nullable=True))
    op.add_column("items", sa.Column("code", sa.String(40), nullable=True))
    op.execute("UPDATE items SET reviewer_id = owner_id, code = lower(CAST(id AS CHAR(40)))")
    op.create_foreign_key(
        "fk_items_reviewer_id_users", "items", "users", ["reviewer_id"], ["id"],
        ondelete="SET NULL",
    )
    op.create_unique_constraint("uq_items_code", "items", ["code"])
    op.create_check_constraint("version_positive", "items", "version > 0")
"""

# `items.version` from Integer to BigInteger through the helper, and back.
RETYPE_MIGRATION = """
import sqlalchemy as sa

from app import migration_ops


def upgrade() -> None:
    migration_ops.alter_column(
        "items", "version", type_=sa.BigInteger(), existing_type=sa.Integer()
    )


def downgrade() -> None:
    migration_ops.alter_column(
        "items", "version", type_=sa.Integer(), existing_type=sa.BigInteger()
    )
"""

# The same as autogenerate writes it: the table rewritten (copied, on MariaDB) under a lock.
NAIVE_RETYPE_MIGRATION = """
import sqlalchemy as sa
from alembic import op


def upgrade() -> None:
    op.alter_column("items", "version", type_=sa.BigInteger(), existing_type=sa.Integer())
"""

# `items.title` renamed `name` through the helper: the expand step, both names working.
RENAME_MIGRATION = """
from app import migration_ops


def upgrade() -> None:
    migration_ops.rename_column("items", "title", "name")
"""

# The same as autogenerate writes it: instant, and every statement of the running code that
# names `title` fails from then on.
NAIVE_RENAME_MIGRATION = """
import sqlalchemy as sa
from alembic import op


def upgrade() -> None:
    op.alter_column(
        "items", "title", new_column_name="name", existing_type=sa.String(255),
        existing_nullable=False,
    )
"""

# `items` renamed `things` through the helper (the old name a view of it), and naively.
RENAME_TABLE_MIGRATION = """
from app import migration_ops


def upgrade() -> None:
    migration_ops.rename_table("items", "things")
"""
NAIVE_RENAME_TABLE_MIGRATION = """
from alembic import op


def upgrade() -> None:
    op.rename_table("items", "things")
"""

# The same change as autogenerate and habit write it: a NOT NULL column with a per-row default
# (the table is rewritten under an exclusive lock), one UPDATE, a plain CREATE INDEX.
NAIVE_MIGRATION = """
import sqlalchemy as sa
from alembic import op

PER_ROW_DEFAULT = {"postgresql": "(floor(random() * 100))::int", "mysql": "(floor(rand() * 100))"}


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    default = PER_ROW_DEFAULT.get(dialect, PER_ROW_DEFAULT["mysql"])
    op.add_column(
        "items",
        sa.Column("title_length", sa.Integer(), nullable=False, server_default=sa.text(default)),
    )
    op.execute("UPDATE items SET title_length = length(title)")
    op.create_index("ix_items_owner_id_title_length", "items", ["owner_id", "title_length"])
"""


@dataclass
class Request:
    """One unit of work: when it started, how long it took, what it did, how it ended."""

    started: float
    seconds: float
    kind: str
    error: BaseException | None = None


@dataclass
class Traffic:
    """`threads` threads running units of work until the block ends."""

    factory: sessionmaker[Session]
    item_ids: list[uuid.UUID]
    owner_ids: list[uuid.UUID]
    threads: int = 4
    # The model the units work through and its title attribute: a later release's model can
    # name the column otherwise (a rename in progress).
    model: type[Any] = Item
    title: str = "title"
    requests: list[Request] = field(default_factory=list)
    attempts: int = 0
    inserted: list[uuid.UUID] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Traffic:
        for number in range(self.threads):
            worker = threading.Thread(target=self._run, args=(number,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=60)

    def during(self, start: float, end: float) -> list[Request]:
        """The requests that were running at some time between `start` and `end`."""
        return [r for r in self.requests if r.started <= end and r.started + r.seconds >= start]

    @property
    def errors(self) -> list[BaseException]:
        return [r.error for r in self.requests if r.error is not None]

    def _run(self, number: int) -> None:
        chooser = random.Random(number)
        kinds: dict[str, Callable[[UnitOfWork], object]] = {
            "read": lambda uow: uow.repository(self.model).get(chooser.choice(self.item_ids)),
            "update": lambda uow: uow.repository(self.model).update(
                chooser.choice(self.item_ids), {"description": f"changed {chooser.random():.6f}"}
            ),
            "insert": self._insert(chooser),
        }
        while not self._stop.is_set():
            kind = chooser.choice(("read", "read", "update", "insert"))
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                run_in_transaction(self._counted(kinds[kind]), session_factory=self.factory)
            except Exception as exc:  # every failure is recorded and judged
                error = exc
            with self._lock:
                self.requests.append(Request(started, time.perf_counter() - started, kind, error))

    def _counted(self, fn: Callable[[UnitOfWork], object]) -> Callable[[UnitOfWork], object]:
        def attempt(uow: UnitOfWork) -> object:
            with self._lock:
                self.attempts += 1
            return fn(uow)

        return attempt

    def _insert(self, chooser: random.Random) -> Callable[[UnitOfWork], object]:
        def insert(uow: UnitOfWork) -> object:
            item = uow.repository(self.model).create(
                {
                    self.title: f"new {chooser.random():.6f}",
                    "owner_id": chooser.choice(self.owner_ids),
                }
            )
            with self._lock:
                self.inserted.append(item.id)
            return item

        return insert


def sample_ids(engine: Engine, count: int = 5_000) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """Some item ids and owner ids to work on."""
    with engine.connect() as connection:
        items = list(connection.scalars(select(Item.id).limit(count)))
        owners = list(connection.scalars(select(Item.owner_id).distinct().limit(count)))
    return items, owners


def run_extra_migration(
    engine: Engine,
    body: str,
    *,
    revision: str = "f00dfeed0001",
    downgrade_to: str | None = None,
    after: Sequence[str] = (),
) -> float:
    """Apply one more migration (`body` is its code) on top of the project's, or with
    `downgrade_to` go down from it to there; the seconds it took. `after`: the code of extra
    migrations that come before this one (applied by an earlier call, or now)."""
    project = find_alembic_ini().parent / "migrations"
    with TemporaryDirectory() as scratch:
        scripts = Path(scratch) / "migrations"
        shutil.copytree(project, scripts, ignore=shutil.ignore_patterns("__pycache__"))
        config = alembic_config()
        config.set_main_option("script_location", str(scripts))
        down = _head(config)
        chain = [(f"{revision[:-4]}{number:04d}", code) for number, code in enumerate(after, 1)]
        chain.append((f"{revision[:-4]}{len(after) + 1:04d}" if after else revision, body))
        for name, code in chain:
            header = f'"""extra"""\nrevision = "{name}"\ndown_revision = "{down}"\n'
            (scripts / "versions" / f"29991231_2359_{name}.py").write_text(header + code)
            down = name
        started = time.perf_counter()
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            if downgrade_to is None:
                command.upgrade(config, chain[-1][0])
            else:
                command.downgrade(config, downgrade_to)
            if connection.in_transaction():
                connection.commit()
        return time.perf_counter() - started


def _head(config: Config) -> str:
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head
