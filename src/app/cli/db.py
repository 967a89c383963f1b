"""`app db ...`: migrations and a look at what the database holds."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, inspect, select, table

from app import migrations
from app.cli.errors import EXIT_CHECK_FAILED, fail, handles_expected_failures
from app.cli.seed import seed
from app.config import get_settings
from app.db.session import get_engine

db_app = typer.Typer(help="Database operations: migrations and what the database holds.")
stdout = Console(highlight=False)
db_app.command(name="seed")(seed)


@db_app.command()
@handles_expected_failures
def upgrade(
    revision: Annotated[str, typer.Argument(help="Revision to upgrade to.")] = "head",
) -> None:
    """Apply migrations up to REVISION (default: head)."""
    migrations.upgrade(get_engine(), revision)
    state = migrations.migration_state(get_engine())
    stdout.print(f"database at {_revisions(state.current)} ({get_settings().masked_database_url})")


@db_app.command()
@handles_expected_failures
def downgrade(
    revision: Annotated[str, typer.Argument(help="Revision to go down to ('base' for none).")],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask before going to base.")
    ] = False,
    force: Annotated[bool, typer.Option(help="Allow this when APP_ENV=production.")] = False,
) -> None:
    """Revert migrations down to REVISION."""
    settings = get_settings()
    if settings.app_env == "production" and not force:
        raise fail("refusing to downgrade with APP_ENV=production; pass --force if you mean it")
    if revision == "base" and not yes:
        typer.confirm(f"Drop every table of {settings.masked_database_url}?", abort=True, err=True)
    migrations.downgrade(get_engine(), revision)
    state = migrations.migration_state(get_engine())
    stdout.print(f"database at {_revisions(state.current)} ({settings.masked_database_url})")


@db_app.command()
@handles_expected_failures
def current() -> None:
    """Show the revision the database is at; exit 1 when it is behind the newest one."""
    state = migrations.migration_state(get_engine())
    status = "at head" if state.at_head else f"behind head {_revisions(state.heads)}"
    stdout.print(f"{_revisions(state.current)} ({status})")
    if not state.at_head:
        raise typer.Exit(EXIT_CHECK_FAILED)


@db_app.command()
@handles_expected_failures
def info() -> None:
    """Show the database, its revision, and every table with its row count."""
    engine = get_engine()
    state = migrations.migration_state(engine)
    stdout.print(f"database: {get_settings().masked_database_url}")
    stdout.print(
        f"revision: {_revisions(state.current)}"
        + ("" if state.at_head else " (pending migrations)")
    )
    listing = Table("table", "rows")
    with engine.connect() as connection:
        for name in sorted(inspect(connection).get_table_names()):
            if name == "alembic_version":
                continue
            count = connection.scalar(select(func.count()).select_from(table(name)))
            listing.add_row(name, f"{count:,}")
    stdout.print(listing)


def _revisions(revisions: tuple[str, ...]) -> str:
    return ", ".join(revisions) if revisions else "base (no migrations applied)"
