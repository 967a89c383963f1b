"""Expected failures in the CLI: one line on stderr, an exit code, never a traceback."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import ParamSpec, TypeVar

import click
import typer
from alembic.script.revision import ResolutionError
from alembic.util.exc import CommandError
from pydantic import ValidationError
from rich.markup import escape
from sqlalchemy import exc as sa_exc

from app.cli.console import stderr
from app.config import SettingsError
from app.db.error_codes import code_of, first_line
from app.db.errors import DatabaseUnavailableError, DataLayerError
from app.db.runtime import get_settings
from app.migrations import MigrationCompileError, MigrationFailedError

EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2


P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print `message` as one line and return the exit to raise."""
    # The message is text, not markup: "[mysqld]" in it stays as it is.
    stderr.print(f"[bold red]error:[/] {escape(message)}", markup=True)
    return typer.Exit(code)


def _settings_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]).upper() or "settings"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(message if message.startswith(field) else f"{field}: {message}")
    return "; ".join(parts)


def _unavailable(exc: DatabaseUnavailableError) -> str:
    return f"{exc} (DATABASE_URL={get_settings().masked_database_url})"


@contextmanager
def expected_failures() -> Iterator[None]:
    """Turn the failures a user can fix into one line and an exit code."""
    try:
        yield
    except (SettingsError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    except (MigrationCompileError, MigrationFailedError) as exc:
        raise fail(without_secrets(str(exc)), EXIT_CHECK_FAILED) from None
    except ValidationError as exc:
        raise fail(f"invalid configuration: {_settings_message(exc)}") from None
    except CommandError as exc:
        raise fail(str(exc)) from None
    except ResolutionError as exc:
        raise fail(
            f"the database is at a revision no migration file defines ({exc}): a file was "
            "removed, or another version of the code migrated it; `app db history` lists the "
            "files",
            EXIT_CHECK_FAILED,
        ) from None
    except sa_exc.DBAPIError as exc:
        # Errors a caller can act on arrive translated; this one has no meaning of ours: its
        # code and the database's own words (about the schema, from DDL and the like).
        raise fail(database_error(exc), EXIT_CHECK_FAILED) from None
    except DatabaseUnavailableError as exc:
        raise fail(_unavailable(exc)) from None
    except DataLayerError as exc:
        raise fail(str(exc), EXIT_CHECK_FAILED) from None
    # Typer's own Exit and Abort are not click's (since Typer 0.22): both kinds pass through.
    except (
        typer.Exit,
        typer.Abort,
        click.exceptions.Exit,
        click.exceptions.Abort,
        click.ClickException,
    ):
        raise
    except Exception as exc:
        if debugging():
            raise
        message = without_secrets(str(exc).splitlines()[0] if str(exc) else "")[:300]
        raise fail(
            f"unexpected {type(exc).__name__}{': ' + message if message else ''} "
            "(`app --debug ...` shows the traceback)",
            EXIT_CHECK_FAILED,
        ) from None


def database_error(exc: sa_exc.DBAPIError) -> str:
    """One line for a database error without a meaning of ours: its code and first line."""
    orig = exc.orig
    code = code_of(orig)
    said = (first_line(orig) if orig is not None else "") or type(orig).__name__
    prefix = f"database error {code}" if code is not None else "database error"
    return f"{prefix}: {without_secrets(said)[:300]}"


_DEBUG = "APP_DEBUG"


def debugging() -> bool:
    """Whether `app --debug` (or APP_DEBUG=1) asked for tracebacks."""
    return os.environ.get(_DEBUG, "") not in ("", "0", "false")


def start_debugging() -> None:
    os.environ[_DEBUG] = "1"


_CREDENTIALS = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def without_secrets(text: str) -> str:
    """`text` with every secret of the settings, and any password in a URL, as `***`."""
    text = _CREDENTIALS.sub(r"\1***@", text)
    try:
        settings = get_settings()
    except (ValidationError, SettingsError):
        return text
    secrets = [settings.secret_key.get_secret_value(), settings.seed_password.get_secret_value()]
    for url in [settings.url, *settings.replica_urls]:
        if url.password:
            secrets.append(str(url.password))
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def handles_expected_failures(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a command so expected failures print one line instead of a traceback."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with expected_failures():
            return fn(*args, **kwargs)

    return wrapper
