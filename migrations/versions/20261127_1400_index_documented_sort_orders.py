"""index the documented sort orders

Revision ID: 5d1e2a7c4b90
Revises: 3c5e0b7d9a41
Create Date: 2026-11-27 14:00:00.000000+00:00

Each order README documents gets an index that the keyset condition can range over: users and
items by creation time (either way: the primary key follows the direction of the order), items
by title, and one owner's items by creation time, which also takes over from `ix_items_owner_id`
as the index behind the foreign key. Built without blocking writes (`app.migration_ops`).
"""

from collections.abc import Sequence

from app import migration_ops

revision: str = "5d1e2a7c4b90"
down_revision: str | Sequence[str] | None = "3c5e0b7d9a41"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = [
    ("ix_users_created_at", "users", ["created_at", "id"]),
    ("ix_items_created_at", "items", ["created_at", "id"]),
    ("ix_items_title", "items", ["title", "id"]),
    ("ix_items_owner_id_created_at", "items", ["owner_id", "created_at", "id"]),
]


def upgrade() -> None:
    for name, table, columns in INDEXES:
        migration_ops.create_index(name, table, columns)
    # Dropped only once its replacement exists: MariaDB needs an index behind the foreign key.
    migration_ops.drop_index("ix_items_owner_id", "items")


def downgrade() -> None:
    migration_ops.create_index("ix_items_owner_id", "items", ["owner_id"])
    for name, table, _columns in reversed(INDEXES):
        migration_ops.drop_index(name, table)
