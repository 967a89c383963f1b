"""Schema changes that keep a large table usable while they run, for Alembic migrations.

    from app import migration_ops

    def upgrade() -> None:
        migration_ops.add_not_null_column(
            "items", sa.Column("slug", sa.String(255), server_default=""),
            backfill=sa.func.lower(sa.column("title")),
        )
        migration_ops.create_index("ix_items_slug", "items", ["slug"])
        migration_ops.create_unique_constraint("uq_items_slug", "items", ["slug"])
        migration_ops.alter_column("items", "version", type_=sa.BigInteger())

Each helper works on PostgreSQL, MariaDB and SQLite, takes table locks only for an instant
(waiting for them briefly and trying again), and can be run again after it was interrupted.
"""

from app.migrations.ops.backfill import backfill
from app.migrations.ops.columns import add_not_null_column, drop_column
from app.migrations.ops.constraints import (
    ConstraintRefusedError,
    create_check_constraint,
    create_foreign_key,
    create_unique_constraint,
    drop_foreign_key,
)
from app.migrations.ops.ddl import NotNullRefusedError
from app.migrations.ops.enums import drop_enum_type
from app.migrations.ops.indexes import create_index, drop_index
from app.migrations.ops.rename_column import (
    finish_rename_column,
    rename_column,
    undo_rename_column,
)
from app.migrations.ops.rename_table import (
    finish_rename_table,
    rename_table,
    undo_rename_table,
)
from app.migrations.ops.retype import alter_column

__all__ = [
    "ConstraintRefusedError",
    "NotNullRefusedError",
    "add_not_null_column",
    "alter_column",
    "backfill",
    "create_check_constraint",
    "create_foreign_key",
    "create_index",
    "create_unique_constraint",
    "drop_column",
    "drop_enum_type",
    "drop_foreign_key",
    "drop_index",
    "finish_rename_column",
    "finish_rename_table",
    "rename_column",
    "rename_table",
    "undo_rename_column",
    "undo_rename_table",
]
