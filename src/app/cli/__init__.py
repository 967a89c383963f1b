"""The `app` command line.

`main` is the console script's entry point. It imports the commands itself, so that Ctrl-C
while they load (SQLAlchemy, Alembic: a second or two) ends as any interruption does: one
line and exit code 130, not a traceback.
"""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C ended


def main() -> None:
    """Run the `app` command line."""
    try:
        from app.cli.main import run

        run()
    except KeyboardInterrupt:
        interrupted()


def interrupted() -> None:
    """End the command line as interrupted: one line on stderr, exit code 130."""
    sys.stderr.write("error: interrupted (Ctrl-C); what was committed before it stays\n")
    sys.exit(EXIT_INTERRUPTED)


__all__ = ["EXIT_INTERRUPTED", "interrupted", "main"]
