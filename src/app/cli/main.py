"""The `app` command line."""

from __future__ import annotations

from typing import Annotated

import typer

from app import __version__
from app.cli import maintenance  # noqa: F401 - registers its commands on db_app
from app.cli.db import db_app
from app.cli.errors import start_debugging

cli = typer.Typer(
    name="app",
    help="Operate the data layer of app.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
cli.add_typer(db_app, name="db")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"app {__version__}")
        raise typer.Exit()


@cli.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Show the version."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of an unexpected failure.")
    ] = False,
) -> None:
    """Operate the data layer of app."""
    if debug:
        start_debugging()


def main() -> None:
    """Entry point of the `app` console script."""
    cli()
