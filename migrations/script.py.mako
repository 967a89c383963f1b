"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision if isinstance(down_revision, str) else ", ".join(down_revision or ()) or "none"}
Create Date: ${create_date}
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}

revision: str = ${repr(up_revision)}
down_revision: str | Sequence[str] | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}
% if "exact_text(" in (upgrades or "") + (downgrades or ""):


def exact_text(length: int | None = None) -> sa.types.TypeEngine[str]:
    """Text compared by code point without padding on every backend (VARCHAR(length), or TEXT),
    as the models declared it when this migration was written."""
    if length is None:
        return (
            sa.Text()
            .with_variant(
                mysql.TEXT(charset="utf8mb4", collation="utf8mb4_nopad_bin"), "mysql", "mariadb"
            )
            .with_variant(postgresql.TEXT(collation="C"), "postgresql")
        )
    return (
        sa.String(length)
        .with_variant(
            mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_nopad_bin"),
            "mysql",
            "mariadb",
        )
        .with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")
    )
% endif


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
