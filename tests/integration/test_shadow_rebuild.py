"""MariaDB's CHECK added on a shadow copy of the table: every write made meanwhile arrives, a
killed run continues, and a table the copy cannot stand in for is refused with nothing left."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from bench.live_traffic import run_extra_migration
from sqlalchemy import Engine, inspect, text

from app.db.errors import RetryableError
from tests.integration.helpers import load_items
from tests.integration.test_migration_ops import kill_half_way

pytestmark = pytest.mark.backends("mariadb")

CHECK = """
from app import migration_ops


def upgrade() -> None:
    migration_ops.create_check_constraint("version_positive", "items", "version > 0")
"""


def leftovers(engine: Engine) -> list[str]:
    """Tables and triggers of a shadow copy still in the database."""
    with engine.connect() as connection:
        tables = [t for t in inspect(connection).get_table_names() if t.startswith("app_shadow")]
        triggers = connection.scalars(
            text(
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
                "WHERE TRIGGER_SCHEMA = DATABASE()"
            )
        ).all()
    return [*tables, *map(str, triggers)]


def foreign_keys(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return {str(key["name"]) for key in inspect(connection).get_foreign_keys("items")}


def checks(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return {str(c["name"]) for c in inspect(connection).get_check_constraints("items")}


def test_no_write_made_while_the_copy_runs_is_lost(loaded: Engine) -> None:
    load_items(loaded, 20_000)
    with loaded.connect() as connection:
        rows = connection.execute(text("SELECT id, owner_id FROM items LIMIT 60")).all()
    watched = [row.id for row in rows[:20]]
    doomed = [row.id for row in rows[20:]]
    owner = rows[0].owner_id
    increments = dict.fromkeys(watched, 0)
    inserted: list[str] = []
    deleted: list[object] = []
    stop = threading.Event()

    def writer() -> None:
        # Increments, inserts and deletes, each counted once it committed.
        autocommit = loaded.execution_options(isolation_level="AUTOCOMMIT")
        with autocommit.connect() as connection:
            while not stop.is_set():
                for item_id in watched:
                    try:
                        result = connection.execute(
                            text("UPDATE items SET version = version + 1 WHERE id = :id"),
                            {"id": item_id},
                        )
                        increments[item_id] += result.rowcount
                        new_id = uuid.uuid4().hex
                        connection.execute(
                            text(
                                "INSERT INTO items (id, title, owner_id, created_at, "
                                "updated_at) VALUES (:id, 'new', :owner, now(), now())"
                            ),
                            {"id": new_id, "owner": owner},
                        )
                        inserted.append(new_id)
                        if doomed:
                            gone = doomed.pop()
                            connection.execute(
                                text("DELETE FROM items WHERE id = :id"), {"id": gone}
                            )
                            deleted.append(gone)
                    except RetryableError:
                        continue

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        time.sleep(0.3)
        run_extra_migration(loaded, CHECK)
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(timeout=30)

    with loaded.connect() as connection:
        select = text("SELECT id, version FROM items WHERE id IN :ids").bindparams(
            sa.bindparam("ids", expanding=True)
        )
        stored = dict(connection.execute(select, {"ids": watched}).all())
        present = connection.scalar(
            text("SELECT count(*) FROM items WHERE id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": inserted},
        )
        still = connection.scalar(
            text("SELECT count(*) FROM items WHERE id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": deleted or ["none"]},
        )
        total = connection.scalar(text("SELECT count(*) FROM items"))
    assert sum(increments.values()) > 100, "the writer ran while the table was copied"
    assert {key: stored[key] - 1 for key in watched} == increments
    assert present == len(inserted)
    assert still == 0
    assert total == 20_000 + len(inserted) - len(deleted)
    assert "ck_items_version_positive" in checks(loaded)
    assert foreign_keys(loaded) == {"fk_items_owner_id_users"}
    assert leftovers(loaded) == []


def test_a_copy_killed_half_way_continues_when_run_again(loaded: Engine, fresh_url: str) -> None:
    load_items(loaded, 40_000)
    with loaded.connect() as connection:
        before = dict(connection.execute(text("SELECT id, title FROM items")).all())

    def copied() -> int:
        with loaded.connect() as connection:
            shadows = [
                t for t in inspect(connection).get_table_names() if t.startswith("app_shadow")
            ]
            if not shadows:
                return 0
            return int(connection.scalar(text(f"SELECT count(*) FROM {shadows[0]}")) or 0)

    kill_half_way(fresh_url, CHECK, copied, 5_000)
    assert 0 < copied() < 40_000, "killed half-way through the copy"

    run_extra_migration(loaded, CHECK)

    with loaded.connect() as connection:
        assert dict(connection.execute(text("SELECT id, title FROM items")).all()) == before
    assert "ck_items_version_positive" in checks(loaded)
    assert foreign_keys(loaded) == {"fk_items_owner_id_users"}
    assert leftovers(loaded) == []


def test_a_table_other_tables_refer_to_is_refused_with_nothing_left(loaded: Engine) -> None:
    body = CHECK.replace('"version_positive", "items"', '"version_positive", "users"')

    with pytest.raises(ValueError, match=r"^users: items\.fk_items_owner_id_users refers to it"):
        run_extra_migration(loaded, body)

    assert leftovers(loaded) == []
