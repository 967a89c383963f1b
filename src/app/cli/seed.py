"""`app db seed` (and scripts/seed.py): fill a development database, safe to run again."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from app.cli.console import stdout
from app.cli.errors import fail, handles_expected_failures
from app.db.runtime import get_engine, get_settings
from app.seed import SeedOptions, SeedRefusedError, seed_database, total_rows
from app.seed.runner import DEFAULT_BATCH_SIZE, DEFAULT_DEMO_USERS, DEFAULT_ITEMS_PER_USER


@handles_expected_failures
def seed(
    users: Annotated[
        int, typer.Option(min=0, help="Demo users to create (besides the admin).")
    ] = DEFAULT_DEMO_USERS,
    items_per_user: Annotated[
        int, typer.Option(min=0, help="Items for each demo user.")
    ] = DEFAULT_ITEMS_PER_USER,
    seed: Annotated[int, typer.Option(help="Picks the generated names and titles.")] = 0,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Users per committed batch (with their items).")
    ] = DEFAULT_BATCH_SIZE,
    force: Annotated[bool, typer.Option(help="Allow seeding when APP_ENV=production.")] = False,
) -> None:
    """Create the admin, demo users and their items; rows already there are left alone."""
    options = SeedOptions(
        users=users, items_per_user=items_per_user, seed=seed, batch_size=batch_size, force=force
    )
    progress = Progress(
        TextColumn("seeding"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=stdout,
        disable=not stdout.is_terminal,
    )
    task = progress.add_task("seed", total=total_rows(options), rate="")

    def advance(rows: int) -> None:
        progress.advance(task, rows)
        speed = progress.tasks[task].speed
        progress.update(task, rate=f"{speed:,.0f} rows/s" if speed else "")

    try:
        with progress:
            summary = seed_database(get_engine(), get_settings(), options, on_progress=advance)
    except SeedRefusedError as exc:
        raise fail(str(exc)) from None
    skipped = (
        f", {summary.skipped:,} left out (their email belongs to a user the seed did not "
        "create, or their owner was left out)"
        if summary.skipped
        else ""
    )
    stdout.print(
        f"seeded: {summary.inserted:,} rows inserted, {summary.already_present:,} already present"
        f"{skipped}, {summary.seconds:.1f} s"
    )
