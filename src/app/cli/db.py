"""`app db ...` migration commands: upgrade, downgrade, current, history, status, revision,
check, sql."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import Engine

from app import migrations
from app.cli.console import stdout
from app.cli.errors import EXIT_CHECK_FAILED, fail, handles_expected_failures
from app.db.errors import RetryableError
from app.db.runtime import get_engine, get_settings
from app.db.session import migration_engine
from app.dialects import backend_for
from app.migrations.offline_sql import range_sql

db_app = typer.Typer(help="Database operations: migrations, checks, seeding.", no_args_is_help=True)


def existing_engine() -> Engine:
    """The engine of DATABASE_URL for a command that reads the database: a database file that
    is not there is refused, where connecting would make an empty one at a mistyped path (the
    servers' databases are refused by the server alike)."""
    engine = get_engine()
    url = engine.url
    database = url.database or ""
    file_database = backend_for(url.get_backend_name()).file_database
    in_memory = database in ("", ":memory:") or database.startswith("file:")
    if file_database and not in_memory and not Path(database).exists():
        raise fail(
            f"the database named in DATABASE_URL does not exist (no file {database}); "
            "`app db create` makes it"
        )
    return engine


def describe_revisions(revisions: tuple[str, ...]) -> str:
    return ", ".join(revisions) if revisions else "base (no migrations applied)"


@contextmanager
def _busy_tables_explained() -> Iterator[None]:
    try:
        yield
    except (RetryableError, migrations.MigrationFailedError) as exc:
        failed = exc if isinstance(exc, migrations.MigrationFailedError) else None
        if failed is not None and not isinstance(failed.__cause__, RetryableError):
            raise
        settings = get_settings()
        who = failed.location if failed is not None else "the migration"
        raise fail(
            f"{who} waited longer than DB_MIGRATION_LOCK_TIMEOUT "
            f"({settings.db_migration_lock_timeout:g} s) for a lock on a busy table and was "
            "rolled back; run it again when the table is quieter",
            EXIT_CHECK_FAILED,
        ) from None


def refuse_in_production(what: str, *, force: bool | None = None) -> None:
    """Refuse `what` with APP_ENV=production, unless `force` (None: a command without --force,
    refused there always)."""
    if get_settings().app_env != "production" or force:
        return
    if force is None:
        raise fail(f"refusing to {what} with APP_ENV=production: it is never done there")
    raise fail(f"refusing to {what} with APP_ENV=production; pass --force if you mean it")


@db_app.command()
@handles_expected_failures
def upgrade(
    revision: Annotated[str, typer.Argument(help="Revision to upgrade to.")] = "heads",
) -> None:
    """Apply migrations up to REVISION (default: the newest of every branch), holding the
    migration lock."""
    with _busy_tables_explained():
        applied = migrations.upgrade(migration_engine(get_settings()), revision)
    for migration in applied:
        stdout.print(f"applied {migration}", markup=False)
    state = migrations.migration_state(get_engine())
    nothing = "" if applied else "nothing to apply: "
    stdout.print(
        f"{nothing}database at {describe_revisions(state.current)} "
        f"({get_settings().masked_database_url})"
    )


# Relative revisions look like options ("-1"): unknown options are taken as the argument.
@db_app.command(context_settings={"ignore_unknown_options": True})
@handles_expected_failures
def downgrade(
    revision: Annotated[
        str, typer.Argument(help="Revision to go down to: an id, -N (steps back) or 'base'.")
    ],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask before going to base.")
    ] = False,
    force: Annotated[bool, typer.Option(help="Allow this when APP_ENV=production.")] = False,
) -> None:
    """Revert migrations down to REVISION."""
    refuse_in_production("downgrade", force=force)
    # A database at a revision no file defines (ahead of this code) is told so before anything.
    migrations.migration_state(existing_engine())
    settings = get_settings()
    if revision == "base" and not yes:
        typer.confirm(f"Drop every table of {settings.masked_database_url}?", abort=True, err=True)
    with _busy_tables_explained():
        reverted = migrations.downgrade(migration_engine(get_settings()), revision)
    for migration in reverted:
        stdout.print(f"reverted {migration}", markup=False)
    state = migrations.migration_state(get_engine())
    stdout.print(
        f"database at {describe_revisions(state.current)} ({settings.masked_database_url})"
    )


@db_app.command()
@handles_expected_failures
def current() -> None:
    """Show the revision the database is at; exit 1 when it is behind the newest one."""
    state = migrations.migration_state(existing_engine())
    # The heads it has not reached (with a team's branch, the project's head may be reached).
    behind = tuple(head for head in state.heads if head not in state.current)
    status = "at head" if state.at_head else f"behind head {describe_revisions(behind)}"
    stdout.print(f"{describe_revisions(state.current)} ({status})")
    if not state.at_head:
        raise typer.Exit(EXIT_CHECK_FAILED)


@db_app.command()
@handles_expected_failures
def history() -> None:
    """List the migration scripts, newest first (no database needed)."""
    table = Table("revision", "revises", "created (UTC)", "message")
    for rev in migrations.revisions():
        table.add_row(rev.revision, rev.down_revision or "-", rev.created, rev.message)
    stdout.print(table)


@db_app.command()
@handles_expected_failures
def status(
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 when any migration is pending.")
    ] = False,
) -> None:
    """Every revision, applied or pending, with its date and message; and the renames whose
    old name still works (expand step run, contract step not yet)."""
    revisions = migrations.revisions(existing_engine())
    table = Table("revision", "created (UTC)", "message", "state")
    for rev in revisions:
        state = "[green]applied[/]" if rev.applied else "[yellow]pending[/]"
        table.add_row(rev.revision, rev.created, rev.message, state)
    stdout.print(table)
    pending = [rev for rev in revisions if not rev.applied]
    stdout.print(f"{len(pending)} pending" if pending else "up to date")
    for rename in migrations.renames_in_progress(get_engine()):
        stdout.print(f"in progress: {rename}", highlight=False)
    if check and pending:
        raise typer.Exit(EXIT_CHECK_FAILED)


@db_app.command()
@handles_expected_failures
def revision(
    message: Annotated[str, typer.Option("--message", "-m", help="What the migration does.")],
    autogenerate: Annotated[
        bool, typer.Option(help="Fill it in from the difference between models and database.")
    ] = False,
    branch: Annotated[
        str,
        typer.Option(help="The branch it extends: 'app', or an extension package's own."),
    ] = migrations.MAIN_BRANCH,
) -> None:
    """Write a new migration, named YYYYMMDD_HHMM_<slug>.py and formatted, on top of BRANCH
    (and in its directory)."""
    try:
        written = migrations.new_revision(message, autogenerate=autogenerate, branch=branch)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if not written:
        stdout.print("nothing written: the models and the database have no difference")
    for path in written:
        stdout.print(f"wrote {path}")


@db_app.command()
@handles_expected_failures
def check() -> None:
    """Compare the models with the database; exit 1 and list the differences if they drift."""
    engine = existing_engine()
    state = migrations.migration_state(engine)
    problems = (
        []
        if state.at_head
        else [f"pending migrations: database at {describe_revisions(state.current)}"]
    )
    problems += migrations.drift(engine)
    for problem in problems:
        stdout.print(f"drift: {problem}")
    if problems:
        raise typer.Exit(EXIT_CHECK_FAILED)
    stdout.print("the database matches the models")


@db_app.command()
@handles_expected_failures
def sql(
    revision_range: Annotated[
        str, typer.Argument(help="FROM:TO, or TO alone (from base).", metavar="[FROM:TO]")
    ] = "heads",
) -> None:
    """Print the SQL of the migrations in a range, for review, without touching the database
    (a downgrade's, where TO is older than FROM)."""
    try:
        sql = range_sql(revision_range, url=get_settings().database_url)
    except ValueError as exc:
        raise fail(str(exc)) from None
    typer.echo(sql, nl=False)
