"""SQLite rebuilds tables to alter them; the rebuild must not cascade through foreign keys."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text
from sqlalchemy.pool import NullPool

from app.db.session import make_engine
from tests.backends import ROOT, ThrowawayDatabases

REBUILD_USERS = '''
"""rebuild users"""
from alembic import op
import sqlalchemy as sa

revision = "rebuild_users"
down_revision = {head!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", recreate="always") as batch_op:
        batch_op.add_column(sa.Column("nickname", sa.String(50), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", recreate="always") as batch_op:
        batch_op.drop_column("nickname")
'''


def _migrated_with_an_owned_item(engine: Engine, tmp_path: Path, migration: str) -> Config:
    """The project's migrations applied to `engine` (a user owning an item added), then
    `migration` (a template taking the head revision) written on top, not yet applied."""
    scripts = tmp_path / "migrations"
    shutil.copytree(ROOT / "migrations", scripts, ignore=shutil.ignore_patterns("__pycache__"))
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(scripts))
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        connection.commit()
        head = connection.scalar(text("SELECT version_num FROM alembic_version"))
        connection.execute(
            text(
                "INSERT INTO users (id, email, hashed_password, created_at, updated_at) "
                "VALUES ('u1', 'owner@example.com', 'x', '2026-01-01', '2026-01-01')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO items (id, title, owner_id, created_at, updated_at) "
                "VALUES ('i1', 'kept', 'u1', '2026-01-01', '2026-01-01')"
            )
        )
        connection.commit()
    (scripts / "versions" / "99999999_9999_on_top.py").write_text(migration.format(head=head))
    config.attributes["head"] = head
    return config


@pytest.mark.backends("sqlite")
def test_rebuilding_users_in_batch_mode_keeps_every_item(
    raw_engine: Engine, tmp_path: Path
) -> None:
    config = _migrated_with_an_owned_item(raw_engine, tmp_path, REBUILD_USERS)
    with raw_engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        command.downgrade(config, str(config.attributes["head"]))
        connection.commit()
        assert connection.scalar(text("SELECT count(*) FROM items")) == 1
        assert connection.scalar(text("PRAGMA foreign_keys")) == 1


ORPHAN_ITEMS = '''
"""delete users but not their items"""
from alembic import op

revision = "orphan_items"
down_revision = {head!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM users")


def downgrade() -> None:
    pass
'''


@pytest.mark.backends("sqlite")
def test_a_migration_that_breaks_references_is_refused_before_it_commits(
    databases: ThrowawayDatabases, tmp_path: Path
) -> None:
    raw_engine = make_engine(databases.new_url("sqlite", "orphans"), poolclass=NullPool)
    config = _migrated_with_an_owned_item(raw_engine, tmp_path, ORPHAN_ITEMS)
    head = config.attributes["head"]
    with raw_engine.connect() as connection:
        config.attributes["connection"] = connection
        with pytest.raises(RuntimeError, match="foreign keys point to no row; nothing was applied"):
            command.upgrade(config, "head")
    with raw_engine.connect() as connection:
        assert connection.scalar(text("SELECT version_num FROM alembic_version")) == head
        assert connection.scalar(text("SELECT count(*) FROM users")) == 1
        assert connection.scalar(text("PRAGMA foreign_keys")) == 1
