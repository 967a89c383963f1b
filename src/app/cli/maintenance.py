"""`app db ...` maintenance: create, wait, reset, info, diagram, lint, top."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from alembic.script.revision import ResolutionError
from rich.table import Table
from sqlalchemy import MetaData, func, inspect, select, table
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from app import migrations
from app.cli.console import stdout
from app.cli.db import db_app, describe_revisions, existing_engine, refuse_in_production
from app.cli.errors import EXIT_CHECK_FAILED, fail, handles_expected_failures
from app.cli.seed import seed
from app.db.admin import create_database
from app.db.errors import DatabaseUnavailableError
from app.db.runtime import get_engine, get_extensions, get_replicas, get_settings
from app.db.session import migration_engine
from app.dialects import backend_of
from app.dialects.commit_markers import MARKER_TABLE
from app.dialects.galera import LOCK_TABLE, cluster_state
from app.migrations.diagram import schema_markdown
from app.migrations.lint import lint as lint_migrations
from app.migrations.progress import UNDER_WAY_TABLE

DIAGRAM_PATH = Path("docs/schema.md")


@db_app.command()
@handles_expected_failures
def create() -> None:
    """Create the database named in DATABASE_URL if it is missing (on SQLite, its file)."""
    settings = get_settings()
    if create_database(settings.session_url):
        stdout.print(f"created {settings.masked_database_url}")
    else:
        stdout.print(f"{settings.masked_database_url} already exists")


@db_app.command()
@handles_expected_failures
def wait(
    timeout: Annotated[float, typer.Option(min=0, help="Seconds to keep trying.")] = 30.0,
) -> None:
    """Wait until the database answers, retrying with backoff (for container start-up)."""
    engine = get_engine()

    def ping() -> None:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")

    retrying = Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_exponential(multiplier=0.1, max=2.0),
        retry=retry_if_exception_type(DatabaseUnavailableError),
        reraise=True,
    )
    retrying(ping)
    attempts = retrying.statistics.get("attempt_number", 1)
    stdout.print(f"database is up ({attempts} attempt{'s' if attempts != 1 else ''})")


@db_app.command()
@handles_expected_failures
def reset(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first.")] = False,
) -> None:
    """Drop every table, migrate to head and seed: a clean development database."""
    refuse_in_production("reset the database")
    settings = get_settings()
    if not yes:
        typer.confirm(f"Drop every table of {settings.masked_database_url}?", abort=True, err=True)
    engine = get_engine()
    everything = MetaData()
    with engine.begin() as connection:
        everything.reflect(connection)
        everything.drop_all(connection)
    stdout.print(f"dropped {len(everything.tables)} tables")
    migrations.upgrade(migration_engine(settings))
    seed()


@db_app.command()
@handles_expected_failures
def info() -> None:
    """Show the database, its revision, and every table with its row count."""
    engine = existing_engine()
    stdout.print(f"database: {get_settings().masked_database_url}")
    try:
        state = migrations.migration_state(engine)
    except ResolutionError as exc:
        # Ahead of this code: its tables are still worth seeing.
        stdout.print(
            f"revision: {exc.argument} (no migration file defines it: a file was removed, or "
            "another version of the code migrated it)",
            markup=False,
        )
    else:
        pending = "" if state.at_head else " (pending migrations)"
        stdout.print(f"revision: {describe_revisions(state.current)}{pending}")
    listing = Table("table", "rows")
    with engine.connect() as connection:
        cluster = cluster_state(connection)
        if cluster is not None:
            stdout.print(
                f"cluster: Galera, {cluster.size} nodes, {cluster.status}; this node "
                f"{cluster.local_state}{'' if cluster.ready else ', not ready'}"
            )
        _print_replicas()
        for name in sorted(inspect(connection).get_table_names()):
            if name not in ("alembic_version", LOCK_TABLE, MARKER_TABLE, UNDER_WAY_TABLE):
                count = connection.scalar(select(func.count()).select_from(table(name)))
                listing.add_row(name, f"{count:,}")
    stdout.print(listing)


def _print_replicas() -> None:
    replicas = get_replicas()
    if replicas is None:
        return
    replicas.check()
    for replica in replicas.replicas:
        lag = "" if replica.lag is None else f", lag {replica.lag:.1f} s"
        use = "in use" if replica.healthy else f"passed over ({replica.problem})"
        stdout.print(f"replica {replica.masked_url}: {use}{lag}", markup=False)


@db_app.command()
@handles_expected_failures
def diagram(
    output: Annotated[
        Path | None,
        typer.Option(help="Where to write it (default: docs/schema.md of the project)."),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if the file is out of date.")
    ] = False,
) -> None:
    """Write the schema as a Mermaid ER diagram (docs/schema.md)."""
    get_extensions()  # the packages of APP_EXTENSIONS: their tables are the schema's too
    # The project's, where its alembic.ini is (as for migrations), wherever this runs from.
    output = output or migrations.find_alembic_ini().parent / DIAGRAM_PATH
    wanted = schema_markdown()
    current = output.read_text() if output.exists() else None
    if check:
        if current != wanted:
            raise fail(f"{output} is out of date; run `app db diagram`", EXIT_CHECK_FAILED)
        stdout.print(f"{output} is up to date")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(wanted)
    stdout.print(f"wrote {output}")


@db_app.command()
@handles_expected_failures
def lint(
    revision_range: Annotated[
        str | None, typer.Argument(help="FROM:TO (default: every revision).", metavar="[FROM:TO]")
    ] = None,
) -> None:
    """Check migrations for operations that lock or break a live database; exit 1 on any."""
    try:
        findings = lint_migrations(revision_range)
    except ValueError as exc:
        raise fail(str(exc)) from None
    for finding in findings:
        stdout.print(str(finding), markup=False)
    if findings:
        raise typer.Exit(EXIT_CHECK_FAILED)
    stdout.print("no unsafe operations found")


db_app.command(name="seed")(seed)


@db_app.command()
@handles_expected_failures
def top(
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many statements.")] = 10,
) -> None:
    """The statements that took the most time in all, with the unit of work that sent them,
    from the server's statistics (pg_stat_statements, MariaDB's performance schema)."""
    with existing_engine().connect() as connection:
        heaviest = backend_of(connection).heaviest_statements(connection, limit)
    if not heaviest:
        stdout.print("no statements counted in this database yet")
        return
    rows = [
        (
            found.tags.get("action") or found.tags.get("application") or "-",
            f"{found.calls:,}",
            f"{found.total_ms:,.1f}",
            f"{found.total_ms / max(found.calls, 1):,.2f}",
            f"{found.rows:,}",
            " ".join(found.statement.split()),
        )
        for found in heaviest
    ]
    headings = ("unit of work", "calls", "total ms", "mean ms", "rows")
    if not stdout.is_terminal:
        # Into a pipe or a file: a line a statement, tab-separated, each statement whole.
        for line in [(*headings, "statement"), *rows]:
            typer.echo("\t".join(line))
        return
    # On a terminal: a line a statement (cut to the width left), the other columns whole.
    listing = Table()
    used = 0
    for index, heading in enumerate(headings):
        widest = max(len(heading), *(len(row[index]) for row in rows))
        listing.add_column(heading, no_wrap=True, min_width=widest)
        used += widest + 3  # its padding and border
    room = max(stdout.width - used - 4, 20)
    listing.add_column("statement", no_wrap=True, overflow="ellipsis", max_width=room)
    for row in rows:
        listing.add_row(*row)
    stdout.print(listing)
