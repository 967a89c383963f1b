"""Schema changes under live traffic, for Alembic migrations: the public name of
`app.migrations.ops`, which says how each helper works."""

from app.migrations.ops import (
    NotNullRefusedError,
    add_not_null_column,
    backfill,
    create_index,
    drop_column,
    drop_index,
)

__all__ = [
    "NotNullRefusedError",
    "add_not_null_column",
    "backfill",
    "create_index",
    "drop_column",
    "drop_index",
]
