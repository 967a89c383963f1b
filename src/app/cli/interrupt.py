"""How the command line ends when Ctrl-C interrupts it. Light on purpose: the console script's
entry point (`app.cli.main`) uses it before the commands, and what they import, are loaded."""

from __future__ import annotations

import sys
from typing import NoReturn

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C ended


def interrupted() -> NoReturn:
    """End the command line as interrupted: one line on stderr, exit code 130."""
    sys.stderr.write("error: interrupted (Ctrl-C); what was committed before it stays\n")
    sys.exit(EXIT_INTERRUPTED)
