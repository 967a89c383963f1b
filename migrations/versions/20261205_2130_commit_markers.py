"""commit markers

Revision ID: c41d7e9a2b65
Revises: 8f2b6c1d0e57
Create Date: 2026-12-05 21:30:00.000000+00:00

The table of marker rows by which `run_in_transaction` tells, on MariaDB and Galera,
whether a transaction whose COMMIT got no answer was applied (`app.dialects.commit_markers`).
Made on every backend, so that the schema is the same everywhere; a new, empty table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c41d7e9a2b65"
down_revision: str | Sequence[str] | None = "8f2b6c1d0e57"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "app_commit_markers",
        # A UUIDv7 in hex: time-ordered, so old markers are a range of the key.
        sa.Column("id", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_app_commit_markers"),
    )


def downgrade() -> None:
    op.drop_table("app_commit_markers")
