"""Migration helpers written as SQL (`app db sql`, `app db lint`) without a database."""

from __future__ import annotations

import datetime as dt
import io

import pytest
import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext

from app import migration_ops


@pytest.mark.parametrize("dialect", ["postgresql", "mysql", "sqlite"])
def test_a_backfill_of_plain_values_is_written_as_sql(dialect: str) -> None:
    """The README's form, a Python value per column, written for a table it cannot ask about:
    each value a literal of its own type."""
    written = io.StringIO()
    context = MigrationContext.configure(
        dialect_name=dialect,
        opts={"as_sql": True, "output_buffer": written, "literal_binds": True},
    )
    with Operations.context(context):
        migration_ops.backfill(
            "items",
            {"version": 5, "title": "it's", "updated_at": dt.datetime(2026, 1, 2, 3, 4, 5)},
            where=sa.column("version").is_(None),
        )
    sql = written.getvalue()
    assert "UPDATE items SET" in sql
    assert "5" in sql
    assert "'it''s'" in sql
    assert "2026-01-02" in sql
