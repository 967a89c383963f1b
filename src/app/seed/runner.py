"""Running the seed: refusals first, then batches, each committed, with progress."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, Table

from app import migrations
from app.config import PLACEHOLDER_SEED_PASSWORD, Settings
from app.db.emails import normalize_email
from app.db.errors import ConflictError
from app.db.models import Item, User
from app.dialects import Batch, backend_of
from app.seed.data import ITEM_COLUMNS, USER_COLUMNS, Row, SeedPlan
from app.seed.writer import count_present, insert_skipping_existing, present_keys
from app.services.passwords import hash_password

DEFAULT_DEMO_USERS = 5
DEFAULT_ITEMS_PER_USER = 3
DEFAULT_BATCH_SIZE = 10_000

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
    # Rows left out because a row the seed does not own holds one of their unique values (a
    # person registered as user3@example.com), or because their owner was left out.
    skipped: int = 0
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return self.inserted + self.already_present + self.skipped


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
    admin = plan.admin_row(normalize_email(settings.seed_admin_email))
    _commit(engine, [_TableBatch.of_rows(USERS, USER_COLUMNS, [admin])], summary)
    report(1)
    for first, last in _ranges(options.users, options.batch_size):
        numbers = range(first, last + 1)
        batches = [_user_batch(plan, numbers)]
        if plan.items_per_user:
            batches.append(_item_batch(plan, numbers))
        report(_commit(engine, batches, summary))
    summary.seconds = time.perf_counter() - started
    return summary


def _ranges(count: int, size: int) -> Iterator[tuple[int, int]]:
    for first in range(1, count + 1, size):
        yield first, min(first + size - 1, count)


@dataclass(frozen=True)
class _TableBatch:
    """Rows for one table, produced on demand: as Python rows, or column by column for the
    backend's bulk load."""

    table: Table
    columns: tuple[str, ...]
    size: int
    keys: Callable[[], list[uuid.UUID]]
    edge_keys: Callable[[], list[uuid.UUID]]  # the first and the last key, cheaply
    rows: Callable[[], list[Row]]
    bulk: Callable[[], Batch]
    # The column (by position) that refers to a row of another seeded table, and that table.
    parent: tuple[int, Table] | None = None

    @classmethod
    def of_rows(cls, table: Table, columns: tuple[str, ...], rows: list[Row]) -> _TableBatch:
        keys = [_id(row) for row in rows]
        by_column = {
            name: list(values)
            for name, values in zip(columns, zip(*rows, strict=True), strict=True)
        }
        return cls(table, columns, len(rows), lambda: keys, lambda: keys[:: max(len(keys) - 1, 1)],
                   lambda: rows, lambda: Batch(len(rows), by_column))  # fmt: skip


# Ids given to the bulk load as 32 hex digits, the storage form of a UUID.
_HEX_IDS = frozenset({"id"})
_HEX_ITEM_IDS = frozenset({"id", "owner_id"})


def _user_batch(plan: SeedPlan, numbers: range) -> _TableBatch:
    return _TableBatch(
        USERS,
        USER_COLUMNS,
        len(numbers),
        keys=lambda: [plan.user_id(n) for n in numbers],
        edge_keys=lambda: [plan.user_id(numbers[0]), plan.user_id(numbers[-1])],
        rows=lambda: [plan.user_row(n) for n in numbers],
        bulk=lambda: Batch(len(numbers), plan.user_columns(numbers), _HEX_IDS),
    )


def _item_batch(plan: SeedPlan, numbers: range) -> _TableBatch:
    per_user = plan.items_per_user
    return _TableBatch(
        ITEMS,
        ITEM_COLUMNS,
        len(numbers) * per_user,
        keys=lambda: [plan.item_id(n, j) for n in numbers for j in range(per_user)],
        edge_keys=lambda: [plan.item_id(numbers[0], 0), plan.item_id(numbers[-1], per_user - 1)],
        rows=lambda: [row for n in numbers for row in plan.item_rows(n)],
        bulk=lambda: Batch(len(numbers) * per_user, plan.item_columns(numbers), _HEX_ITEM_IDS),
        parent=(ITEM_COLUMNS.index("owner_id"), USERS),
    )


def _commit(engine: Engine, batches: list[_TableBatch], summary: SeedSummary) -> int:
    """Write one batch (users, then their items) in its own transaction; returns its size.

    A crash loses at most this batch.
    """
    try:
        with engine.begin() as connection:
            written = _write(connection, batches, fast=True)
    except ConflictError:
        # Some rows exist after all (another run, or rows we did not look for): write the
        # batch again, letting the database skip what is there.
        with engine.begin() as connection:
            written = _write(connection, batches, fast=False)
    size = sum(batch.size for batch in batches)
    summary.inserted += written.inserted
    summary.skipped += written.skipped
    summary.already_present += size - written.inserted - written.skipped
    return size


@dataclass(frozen=True)
class _Written:
    inserted: int
    skipped: int


def _write(connection: Connection, batches: list[_TableBatch], *, fast: bool) -> _Written:
    """Write the tables in order; returns how many rows were new and how many left out."""
    inserted = skipped = 0
    owners_all_new = False
    for batch in batches:
        # Items cannot exist without their owner: when every user was new, so is every item.
        written = _write_table(connection, batch, fast=fast, known_absent=owners_all_new)
        owners_all_new = fast and written.inserted == batch.size
        inserted += written.inserted
        skipped += written.skipped
    return _Written(inserted, skipped)


def _write_table(
    connection: Connection, batch: _TableBatch, *, fast: bool, known_absent: bool
) -> _Written:
    """Write one table's rows: the bulk path when none exist, else skip existing ones.

    Batches are written in id order, so one whose first and last rows are missing is almost
    surely new: it goes the bulk way, and should a row exist after all, the database refuses
    it (ConflictError) and the whole batch is written again the careful way. The careful way
    leaves alone rows the seed does not own, and leaves out rows whose parent is missing.
    """
    if batch.size == 0:
        return _Written(0, 0)
    if fast and (known_absent or _edges_absent(connection, batch)):
        backend_of(connection).insert_batches(connection, batch.table, [batch.bulk()])
        return _Written(batch.size, 0)
    keys = batch.keys()
    present = count_present(connection, batch.table, "id", keys)
    if present == batch.size:
        return _Written(0, 0)
    rows = batch.rows()
    if batch.parent is not None:
        position, parent = batch.parent
        parents = present_keys(connection, parent, "id", list({row[position] for row in rows}))
        rows = [row for row in rows if row[position] in parents]
    insert_skipping_existing(connection, batch.table, batch.columns, rows)
    after = count_present(connection, batch.table, "id", keys)
    return _Written(after - present, batch.size - after)


def _edges_absent(connection: Connection, batch: _TableBatch) -> bool:
    return count_present(connection, batch.table, "id", batch.edge_keys()) == 0


def _id(row: Row) -> uuid.UUID:
    value = row[0]
    assert isinstance(value, uuid.UUID)
    return value
