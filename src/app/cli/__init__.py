"""The `app` command line."""

from app.cli.main import cli, main

__all__ = ["cli", "main"]
