"""Creating and dropping whole databases on a server (the URL names the database)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from app.config import parse_database_url
from app.db.session import make_engine

# Where a server's maintenance database is: the one we connect to when ours may not exist.
_MAINTENANCE_DATABASE = {"postgresql": "postgres", "mysql": "information_schema"}


def _quoted(url: URL) -> str:
    name = url.database or ""
    if not name or not all(ch.isalnum() or ch in "_-" for ch in name):
        raise ValueError(f"refusing database name {name!r}: use letters, digits, '_' and '-'")
    return f'"{name}"' if url.get_backend_name() == "postgresql" else f"`{name}`"


def _server_url(url: URL) -> URL:
    backend = "mysql" if url.get_backend_name() == "mariadb" else url.get_backend_name()
    return url.set(database=_MAINTENANCE_DATABASE[backend])


def database_exists(url: str | URL) -> bool:
    """Whether the database named in `url` exists (a SQLite file, or one on the server)."""
    parsed = parse_database_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.database in (None, "", ":memory:") or Path(parsed.database).exists()
    engine = make_engine(_server_url(parsed), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            if parsed.get_backend_name() == "postgresql":
                query = text("SELECT 1 FROM pg_database WHERE datname = :name")
            else:
                query = text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :name")
            return connection.scalar(query, {"name": parsed.database}) is not None
    finally:
        engine.dispose()


def create_database(url: str | URL) -> bool:
    """Create the database named in `url` if it is missing; True when it was created."""
    parsed = parse_database_url(url)
    if parsed.get_backend_name() == "sqlite" or database_exists(parsed):
        return False
    # The server's default character set and collation: every text column declares its own
    # (binary, no pad), so what a database default would mean never matters.
    _run_outside_transaction(parsed, f"CREATE DATABASE {_quoted(parsed)}")
    return True


def drop_database(url: str | URL) -> None:
    """Drop the database named in `url` if it exists (a SQLite file is deleted)."""
    parsed = parse_database_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database not in (None, "", ":memory:"):
            for suffix in ("", "-wal", "-shm"):
                Path(f"{parsed.database}{suffix}").unlink(missing_ok=True)
        return
    statement = f"DROP DATABASE IF EXISTS {_quoted(parsed)}"
    if parsed.get_backend_name() == "postgresql":
        statement += " WITH (FORCE)"
    _run_outside_transaction(parsed, statement)


def _run_outside_transaction(url: URL, statement: str) -> None:
    engine = make_engine(_server_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(statement)
    finally:
        engine.dispose()
