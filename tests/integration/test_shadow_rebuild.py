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
from app.db.models import Base
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


def test_a_run_stopped_after_its_swap_is_finished_by_the_next(
    loaded: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.migrations.ops import shadow

    def stopped(*_args: object) -> None:
        raise RuntimeError("stopped after the swap")

    with monkeypatch.context() as patched:
        patched.setattr(shadow, "_names_back", stopped)
        with pytest.raises(RuntimeError, match="stopped after the swap"):
            run_extra_migration(loaded, CHECK)
    assert "ck_items_version_positive" in checks(loaded)  # swapped: the change is in place
    assert foreign_keys(loaded) == {"fk_items_owner_id_users_shadow"}

    run_extra_migration(loaded, CHECK)

    assert "ck_items_version_positive" in checks(loaded)
    assert foreign_keys(loaded) == {"fk_items_owner_id_users"}
    assert leftovers(loaded) == []


def test_a_table_other_tables_refer_to_is_refused_with_nothing_left(loaded: Engine) -> None:
    body = CHECK.replace('"version_positive", "items"', '"version_positive", "users"')

    with pytest.raises(ValueError, match=r"^users: items\.fk_items_owner_id_users refers to it"):
        run_extra_migration(loaded, body)

    assert leftovers(loaded) == []


def test_a_table_whose_own_foreign_key_refers_to_it_is_refused_with_nothing_left(
    loaded: Engine,
) -> None:
    """A self-referencing table (an invoice and the one it corrects): on a copy, its key would
    refer to the old table after the swap, and the old table could not be dropped."""
    metadata = sa.MetaData(naming_convention=Base.metadata.naming_convention)
    invoices = sa.Table(
        "invoices", metadata,
        sa.Column("number", sa.String(40), primary_key=True),
        sa.Column("corrects", sa.String(40), sa.ForeignKey("invoices.number", ondelete="SET NULL")),
        sa.Column("amount", sa.Integer, nullable=False),
    )  # fmt: skip
    metadata.create_all(loaded)
    with loaded.begin() as connection:
        rows = [{"number": "P", "corrects": None, "amount": 1},
                {"number": "C", "corrects": "P", "amount": 1}]  # fmt: skip
        connection.execute(invoices.insert(), rows)
    body = CHECK.replace('"version_positive", "items", "version > 0"',
                         '"amount_floor", "invoices", "amount > -100"')  # fmt: skip

    with pytest.raises(
        ValueError,
        match=r"^invoices: its own foreign key fk_invoices_corrects_invoices refers to it",
    ):
        run_extra_migration(loaded, body)

    assert leftovers(loaded) == []
    assert {str(key["referred_table"]) for key in inspect(loaded).get_foreign_keys("invoices")} == {
        "invoices"
    }


PLACEMENTS = "shelf_placements_of_the_library_annex"
PLACEMENT_CHECK = f"""
from app import migration_ops


def upgrade() -> None:
    migration_ops.create_check_constraint("copies_positive", "{PLACEMENTS}", "copies > 0")
"""


def test_a_table_of_a_composite_key_with_a_long_foreign_key_name_is_rebuilt(
    loaded: Engine,
) -> None:
    """A team's table keyed by two columns, whose foreign key the naming convention names past
    what the scratch suffix fits: copied by its key, every write made meanwhile arrives, and
    the key gets its own name back."""
    metadata = sa.MetaData(naming_convention=Base.metadata.naming_convention)
    shelves = sa.Table(
        "shelves", metadata,
        sa.Column("region", sa.String(8), primary_key=True),
        sa.Column("num", sa.Integer, primary_key=True),
    )  # fmt: skip
    placements = sa.Table(
        PLACEMENTS, metadata,
        sa.Column("region", sa.String(8), primary_key=True),
        sa.Column("num", sa.Integer, primary_key=True),
        sa.Column("slot", sa.Integer, primary_key=True),
        sa.Column("copies", sa.Integer, nullable=False),
        sa.ForeignKeyConstraint(["region", "num"], [shelves.c.region, shelves.c.num]),
    )  # fmt: skip
    metadata.create_all(loaded)
    (key_name,) = {str(key["name"]) for key in inspect(loaded).get_foreign_keys(PLACEMENTS)}
    assert len(key_name) + len("_shadow") > 64  # past what the scratch suffix fits
    regions = ("eu", "us")
    rows = [
        {"region": region, "num": num, "slot": slot, "copies": 1}
        for region in regions
        for num in range(150)
        for slot in range(100)
    ]  # three batches of the copy, one of them across both regions
    with loaded.begin() as connection:
        shelved = [{"region": region, "num": num} for region in regions for num in range(150)]
        connection.execute(shelves.insert(), shelved)
        connection.execute(placements.insert(), rows)
    watched = [("eu", 0, slot) for slot in range(10)] + [("us", 149, slot) for slot in range(10)]
    doomed = [("eu", 75, slot) for slot in range(100)]
    increments = dict.fromkeys(watched, 0)
    deleted: list[tuple[str, int, int]] = []
    stop = threading.Event()

    def writer() -> None:
        autocommit = loaded.execution_options(isolation_level="AUTOCOMMIT")
        with autocommit.connect() as connection:
            while not stop.is_set():
                for region, num, slot in watched:
                    try:
                        where = {"region": region, "num": num, "slot": slot}
                        changed = connection.execute(
                            placements.update()
                            .where(*(placements.c[name] == value for name, value in where.items()))
                            .values(copies=placements.c.copies + 1)
                        ).rowcount
                        increments[(region, num, slot)] += changed
                        if doomed:
                            gone = doomed.pop()
                            connection.execute(
                                placements.delete().where(
                                    placements.c.region == gone[0],
                                    placements.c.num == gone[1],
                                    placements.c.slot == gone[2],
                                )
                            )
                            deleted.append(gone)
                    except RetryableError:
                        continue

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        time.sleep(0.3)
        run_extra_migration(loaded, PLACEMENT_CHECK)
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(timeout=30)

    with loaded.connect() as connection:
        stored = {
            (row.region, row.num, row.slot): row.copies
            for row in connection.execute(sa.select(placements))
        }
    assert sum(increments.values()) > 50, "the writer ran while the table was copied"
    expected = {(row["region"], row["num"], row["slot"]): 1 for row in rows}
    for gone in deleted:
        del expected[gone]
    for place, count in increments.items():
        expected[place] += count
    assert stored == expected
    with loaded.connect() as connection:
        inspector = inspect(connection)
        assert {str(key["name"]) for key in inspector.get_foreign_keys(PLACEMENTS)} == {key_name}
        names = {str(c["name"]) for c in inspector.get_check_constraints(PLACEMENTS)}
    assert f"ck_{PLACEMENTS}_copies_positive" in names
    assert leftovers(loaded) == []
