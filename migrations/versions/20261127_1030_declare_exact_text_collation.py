"""declare exact text collation

Revision ID: 3c5e0b7d9a41
Revises: 97f9fca95565
Create Date: 2026-11-27 10:30:00.000000+00:00

Every text column compares, matches and sorts by code point with no trailing-space padding,
whatever the server's or the database's default collation: `utf8mb4_nopad_bin` on MariaDB,
`C` on PostgreSQL. SQLite's default (BINARY) already means that, so it has nothing to change.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = "3c5e0b7d9a41"
down_revision: str | Sequence[str] | None = "97f9fca95565"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, VARCHAR length or None for TEXT, nullable)
TEXT_COLUMNS = [
    ("users", "email", 320, False),
    ("users", "full_name", 255, True),
    ("users", "hashed_password", 255, False),
    ("items", "title", 255, False),
    ("items", "description", None, True),
]


def _exact(length: int | None, dialect: str) -> sa.types.TypeEngine[str]:
    if dialect == "postgresql":
        return (
            postgresql.VARCHAR(length, collation="C") if length else postgresql.TEXT(collation="C")
        )
    if length is None:
        return mysql.TEXT(charset="utf8mb4", collation="utf8mb4_nopad_bin")
    return mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_nopad_bin")


def _before(table: str, column: str, length: int | None, dialect: str) -> sa.types.TypeEngine[str]:
    if (table, column) == ("users", "email") and dialect != "postgresql":
        return mysql.VARCHAR(length, collation="utf8mb4_bin")
    return sa.String(length) if length else sa.Text()


# lint: allow squawk/changing-column-type: only the collation changes; PostgreSQL does not rewrite the table for that and rebuilds just the unique index on email, on the small tables of this release


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "sqlite":
        return
    for table, column, length, nullable in TEXT_COLUMNS:
        # lint: allow type-change: the collation changes, not the type; PostgreSQL keeps the table and rebuilds only an index on the column, MariaDB copies the two small tables of this release
        op.alter_column(
            table,
            column,
            type_=_exact(length, dialect),
            existing_type=_before(table, column, length, dialect),
            existing_nullable=nullable,
        )


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "sqlite":
        return
    for table, column, length, nullable in TEXT_COLUMNS:
        op.alter_column(
            table,
            column,
            type_=_before(table, column, length, dialect),
            existing_type=_exact(length, dialect),
            existing_nullable=nullable,
        )
