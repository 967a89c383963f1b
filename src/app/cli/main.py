"""The `app` command line."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from app import __version__
from app.cli import maintenance  # noqa: F401 - registers its commands on db_app
from app.cli.db import db_app
from app.cli.errors import EXIT_CHECK_FAILED, EXIT_USAGE, fail, start_debugging
from app.cli.interrupt import EXIT_INTERRUPTED, interrupted

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


def run() -> None:
    """Run the command line (`app.cli.main`): every failure it expects ends with one line on
    stderr and an exit code, usage errors (a bad flag, value or command) and Ctrl-C included."""
    try:
        code = cli(prog_name="app", standalone_mode=False)
    except Exception as exc:
        sys.exit(_failed(exc))
    if code == EXIT_INTERRUPTED:  # Typer's exit for a KeyboardInterrupt in a command
        interrupted()
    sys.exit(code if isinstance(code, int) else 0)


def _failed(exc: Exception) -> int:
    """Say in one line why the command line could not run as asked; its exit code. Typer
    raises the errors of the Click it carries (not the click package's), told here by their
    kind's name, which both share."""
    kinds = {kind.__name__ for kind in type(exc).__mro__}
    context: Any = getattr(exc, "ctx", None)
    if "NoArgsIsHelpError" in kinds and context is not None:
        typer.echo(context.get_help())  # `app` or `app db` alone: what there is to run
        return EXIT_USAGE
    if "UsageError" in kinds:
        shown = context.command_path if context is not None else "app"
        message: str = exc.format_message()  # type: ignore[attr-defined]
        return fail(f"{message} (`{shown} --help` lists what it takes)").exit_code
    if "ClickException" in kinds:
        return fail(exc.format_message(), exc.exit_code).exit_code  # type: ignore[attr-defined]
    if "Abort" in kinds:
        return fail("aborted: nothing was done", EXIT_CHECK_FAILED).exit_code
    raise exc
