"""The `app` command line.

`main` is the console script's entry point. It imports the commands itself, so that Ctrl-C
while they load (SQLAlchemy, Alembic: a second or two) ends as any interruption does: one
line and exit code 130 (`interrupt`), not a traceback.
"""

from __future__ import annotations

from app.cli.interrupt import interrupted


def main() -> None:
    """Run the `app` command line."""
    try:
        from app.cli.main import run

        run()
    except KeyboardInterrupt:
        interrupted()


__all__ = ["main"]
