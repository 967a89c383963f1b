"""Native enum types: PostgreSQL keeps one as a type of its own (CREATE TYPE), which dropping
the tables that use it leaves behind."""

from __future__ import annotations

from alembic import op


def drop_enum_type(name: str) -> None:
    """Drop PostgreSQL's enum type `name` if it is there; nothing on the other backends, where
    an enum lives in its column."""
    context = op.get_context()
    if context.dialect.name != "postgresql":
        return
    op.execute(f"DROP TYPE IF EXISTS {context.dialect.identifier_preparer.quote(name)}")
