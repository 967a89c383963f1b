"""The lock that serialises migrations of one database, held for a whole run.

Each backend holds it its own way (`Backend.migration_lock`): PostgreSQL a session advisory
lock, MariaDB GET_LOCK on a name derived from the database's, a Galera node a lease row the
cluster certifies, SQLite its own write lock taken up front. A second migrator waits up to
DB_MIGRATION_WAIT, then fails with `MigrationLockedError`; once it has the lock it finds the
migrations applied and does nothing.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from sqlalchemy import Connection

from app.dialects import backend_of


def migration_lock(connection: Connection, *, wait_seconds: float) -> AbstractContextManager[None]:
    """Hold the migration lock of the database behind `connection` inside the block."""
    return backend_of(connection).migration_lock(connection, wait_seconds=wait_seconds)
