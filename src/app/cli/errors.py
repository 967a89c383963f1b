"""Expected failures in the CLI: one line on stderr, an exit code, never a traceback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import ParamSpec, TypeVar

import typer
from alembic.util.exc import CommandError
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc

from app.cli.console import stderr
from app.config import SettingsError
from app.db.errors import DatabaseUnavailableError, DataLayerError
from app.db.runtime import get_settings

EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2


P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print `message` as one line and return the exit to raise."""
    stderr.print(f"[bold red]error:[/] {message}", markup=True)
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
    except ValidationError as exc:
        raise fail(f"invalid configuration: {_settings_message(exc)}") from None
    except CommandError as exc:
        raise fail(str(exc)) from None
    except sa_exc.DBAPIError as exc:
        # Errors a caller can act on arrive translated; this one has no meaning of ours.
        cause = exc.orig or exc
        raise fail(f"database error: {type(cause).__name__}", EXIT_CHECK_FAILED) from None
    except DatabaseUnavailableError as exc:
        raise fail(_unavailable(exc)) from None
    except DataLayerError as exc:
        raise fail(str(exc), EXIT_CHECK_FAILED) from None


def handles_expected_failures(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a command so expected failures print one line instead of a traceback."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with expected_failures():
            return fn(*args, **kwargs)

    return wrapper
