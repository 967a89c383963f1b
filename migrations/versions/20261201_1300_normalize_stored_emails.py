"""normalize stored emails

Revision ID: 8f2b6c1d0e57
Revises: 5d1e2a7c4b90
Create Date: 2026-12-01 13:00:00.000000+00:00

Emails written before `app.db.emails` were trimmed and lower-cased only: the NFD spelling of an
address, a fullwidth domain or a trailing dot could be a second account. Each stored email
becomes its one normal form (every address is read once, the changes written in batches). Two accounts whose addresses now read the same are
never merged: both are left as they are and reported (by id) for a person to decide; an email
that is no longer accepted (it holds an invisible character) is reported and left as well.

The normal form is the application's own (`normalize_email`): the point of this migration is to
bring stored rows to the form the code compares, whatever that form is when it runs.
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.emails import EmailError, normalize_email

revision: str = "8f2b6c1d0e57"
down_revision: str | Sequence[str] | None = "5d1e2a7c4b90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1_000
log = logging.getLogger("alembic.runtime.migration")
users = sa.table("users", sa.column("id", sa.Uuid()), sa.column("email", sa.String()))


def upgrade() -> None:
    if op.get_context().as_sql:
        # Written out as SQL for review (`app db sql`): what changes depends on the stored
        # rows, which only a live run reads.
        return
    connection = op.get_bind()
    stored = dict(connection.execute(sa.select(users.c.email, users.c.id)).all())
    wanted: dict[str, list[object]] = {}
    refused: list[object] = []
    for email, user_id in stored.items():
        try:
            wanted.setdefault(normalize_email(email), []).append(user_id)
        except EmailError:
            refused.append(user_id)
    changes = []
    for normal, ids in wanted.items():
        owners = ids + ([stored[normal]] if normal in stored and stored[normal] not in ids else [])
        if len(owners) > 1:
            log.warning(
                "normalize emails: users %s have addresses that read the same; left as they are",
                ", ".join(sorted(map(str, owners))),
            )
            continue
        if normal not in stored:
            changes.append({"user_id": ids[0], "normal": normal})
    if refused:
        log.warning(
            "normalize emails: users %s have addresses this version refuses; left as they are",
            ", ".join(sorted(map(str, refused))),
        )
    statement = (
        sa.update(users)
        .where(users.c.id == sa.bindparam("user_id"))
        .values(email=sa.bindparam("normal"))
    )
    for start in range(0, len(changes), BATCH):
        connection.execute(statement, changes[start : start + BATCH])


def downgrade() -> None:
    """Nothing to undo: the earlier form (trimmed, lower case) holds the normal one too."""
