"""Creating and dropping whole databases on a server (the URL names the database)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from app.config import parse_database_url
from app.db.session import make_engine
from app.dialects import Backend, backend_for


def _backend(url: URL) -> Backend:
    return backend_for(url.get_backend_name())


def _server_url(url: URL) -> URL:
    """The server's maintenance database: the one to connect to when ours may not exist."""
    return url.set(database=_backend(url).maintenance_database)


def database_exists(url: str | URL) -> bool:
    """Whether the database named in `url` exists (a SQLite file, or one on the server)."""
    parsed = parse_database_url(url)
    backend = _backend(parsed)
    if backend.file_database:
        return parsed.database in (None, "", ":memory:") or Path(parsed.database).exists()
    engine = make_engine(_server_url(parsed), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return backend.database_exists(connection, parsed.database or "")
    finally:
        engine.dispose()


def create_database(url: str | URL) -> bool:
    """Create the database named in `url` if it is missing; True when it was created."""
    parsed = parse_database_url(url)
    backend = _backend(parsed)
    if backend.file_database:
        return _create_file(parsed)
    if database_exists(parsed):
        return False
    # The server's default character set and collation: every text column declares its own
    # (binary, no pad), so what a database default would mean never matters.
    _run_outside_transaction(parsed, f"CREATE DATABASE {backend.quoted_database(parsed)}")
    return True


def _create_file(url: URL) -> bool:
    """A database file made by a first connection, where it is missing (None: in memory)."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or Path(database).exists():
        return False
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.connect():
            return True
    finally:
        engine.dispose()


def drop_database(url: str | URL) -> None:
    """Drop the database named in `url` if it exists (a SQLite file is deleted)."""
    parsed = parse_database_url(url)
    backend = _backend(parsed)
    if backend.file_database:
        if parsed.database not in (None, "", ":memory:"):
            for suffix in ("", "-wal", "-shm"):
                Path(f"{parsed.database}{suffix}").unlink(missing_ok=True)
        return
    _run_outside_transaction(parsed, backend.drop_database_sql(parsed))


def _run_outside_transaction(url: URL, statement: str) -> None:
    engine = make_engine(_server_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(statement)
    finally:
        engine.dispose()
