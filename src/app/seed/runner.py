"""Running the seed: refusals first, then batches, each committed, with progress."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, Table

from app import migrations
from app.config import PLACEHOLDER_SEED_PASSWORD, Settings
from app.db.errors import ConflictError, translating_errors
from app.db.models import Item, User
from app.seed.data import ITEM_COLUMNS, USER_COLUMNS, Row, SeedPlan
from app.seed.writer import count_present, insert_new, insert_skipping_existing
from app.services.passwords import hash_password

DEFAULT_DEMO_USERS = 5
DEFAULT_ITEMS_PER_USER = 3
DEFAULT_BATCH_SIZE = 5_000

USERS: Table = User.__table__  # type: ignore[assignment]
ITEMS: Table = Item.__table__  # type: ignore[assignment]


class SeedRefusedError(Exception):
    """The seed will not run here; the message says why and what to do."""


@dataclass(frozen=True)
class SeedOptions:
    """What to seed."""

    users: int = DEFAULT_DEMO_USERS
    items_per_user: int = DEFAULT_ITEMS_PER_USER
    seed: int = 0
    batch_size: int = DEFAULT_BATCH_SIZE
    force: bool = False


@dataclass
class SeedSummary:
    """What a seed run did."""

    inserted: int = 0
    already_present: int = 0
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return self.inserted + self.already_present


ProgressCallback = Callable[[int], None]


def check_can_seed(engine: Engine, settings: Settings, options: SeedOptions) -> None:
    """Refuse production without --force, placeholder passwords outside development, and
    databases that are not at the newest migration."""
    if options.users < 0 or options.items_per_user < 0 or options.batch_size < 1:
        raise SeedRefusedError("--users and --items-per-user must be >= 0 and --batch-size >= 1")
    if settings.app_env == "production" and not options.force:
        raise SeedRefusedError(
            "refusing to seed with APP_ENV=production; pass --force if you mean it"
        )
    placeholder = settings.seed_password.get_secret_value() == PLACEHOLDER_SEED_PASSWORD
    if placeholder and settings.app_env == "production":
        raise SeedRefusedError("SEED_PASSWORD is the development placeholder; set a real one")
    state = migrations.migration_state(engine)
    if not state.at_head:
        raise SeedRefusedError(
            "the database is not at the newest migration; run `app db upgrade` first"
        )


def total_rows(options: SeedOptions) -> int:
    """How many rows a run with `options` covers (admin, demo users, their items)."""
    return 1 + options.users * (1 + options.items_per_user)


def seed_database(
    engine: Engine,
    settings: Settings,
    options: SeedOptions,
    *,
    on_progress: ProgressCallback | None = None,
) -> SeedSummary:
    """Fill the database with the admin, demo users and their items; safe to run again."""
    check_can_seed(engine, settings, options)
    started = time.perf_counter()
    plan = SeedPlan(
        users=options.users,
        items_per_user=options.items_per_user,
        seed=options.seed,
        # One hash for every seeded user: argon2 is slow on purpose.
        hashed_password=hash_password(settings.seed_password.get_secret_value()),
    )
    summary = SeedSummary()
    report = on_progress or (lambda _rows: None)
    admin = plan.admin_row(settings.seed_admin_email.strip().lower())
    _commit_batch(engine, [admin], [], summary)
    report(1)
    for first, last in _ranges(options.users, options.batch_size):
        users = [plan.user_row(n) for n in range(first, last + 1)]
        items = [row for n in range(first, last + 1) for row in plan.item_rows(n)]
        _commit_batch(engine, users, items, summary)
        report(len(users) + len(items))
    summary.seconds = time.perf_counter() - started
    return summary


def _ranges(count: int, size: int) -> Iterator[tuple[int, int]]:
    for first in range(1, count + 1, size):
        yield first, min(first + size - 1, count)


def _commit_batch(engine: Engine, users: list[Row], items: list[Row], summary: SeedSummary) -> None:
    """Write one batch in its own transaction: a crash loses at most this batch."""
    try:
        with translating_errors(), engine.begin() as connection:
            inserted = _write(connection, users, items, fast=True)
    except ConflictError:
        # Someone else wrote some of these rows since we counted: let the database skip them.
        with translating_errors(), engine.begin() as connection:
            inserted = _write(connection, users, items, fast=False)
    summary.inserted += inserted
    summary.already_present += len(users) + len(items) - inserted


def _write(connection: Connection, users: list[Row], items: list[Row], *, fast: bool) -> int:
    """Write the batch; returns how many rows were new."""
    new_users = _write_table(connection, USERS, USER_COLUMNS, users, fast=fast)
    # Items cannot exist without their owner: when every user was new, so is every item.
    items_absent = new_users == len(users)
    return new_users + _write_table(
        connection, ITEMS, ITEM_COLUMNS, items, fast=fast, known_absent=items_absent
    )


def _write_table(
    connection: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: list[Row],
    *,
    fast: bool,
    known_absent: bool = False,
) -> int:
    """Write rows to one table: the bulk path when none exist, else skip existing ones."""
    if not rows:
        return 0
    keys = [row[0] for row in rows]
    present = 0 if known_absent else count_present(connection, table, "id", keys)
    if present == len(rows):
        return 0
    if fast and present == 0:
        insert_new(connection, table, columns, rows)
        return len(rows)
    insert_skipping_existing(connection, table, columns, rows)
    return count_present(connection, table, "id", keys) - present
