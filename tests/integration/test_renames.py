"""Renames in two steps: the expand step serves the old name and the new one at once, the
contract step removes the old one; each undone by its downgrade. Under live traffic on the
servers, two releases of the application (the models before and after) run side by side."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from bench.live_traffic import Traffic, run_extra_migration, sample_ids
from sqlalchemy import Engine, inspect, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from app.db.models import Base, IdMixin, TimestampMixin, VersionMixin, exact_text
from app.db.session import make_async_engine, make_async_session_factory
from app.migrations import drift
from app.migrations.ops.rename_column import ADDED_MARK, column_renames
from app.migrations.ops.rename_table import (
    PLACEHOLDER_COMMENT,
    TableRename,
    scratch_name,
    table_renames,
)
from app.repositories import AsyncUnitOfWork, run_in_transaction
from tests.integration.helpers import alembic_ini_with, load_items, run_app
from tests.integration.test_migration_ops import (
    kill_half_way,
    migrate_under_traffic,
    schema_differences,
)

EXPAND = """
from app import migration_ops


def upgrade() -> None:
    migration_ops.rename_column("items", "title", "name")


def downgrade() -> None:
    migration_ops.undo_rename_column("items", "title", "name")
"""
CONTRACT = """
from app import migration_ops


def upgrade() -> None:
    migration_ops.finish_rename_column("items", "title", "name")


def downgrade() -> None:
    migration_ops.rename_column("items", "title", "name")
"""


class NextRelease(DeclarativeBase):
    """The models of the release that calls the column `name`."""

    metadata = sa.MetaData(naming_convention=Base.metadata.naming_convention)


class RenamedItem(IdMixin, TimestampMixin, VersionMixin, NextRelease):
    __tablename__ = "items"

    name: Mapped[str] = mapped_column(exact_text(255))
    description: Mapped[str | None] = mapped_column(exact_text())
    owner_id: Mapped[uuid.UUID]


def renamed_metadata() -> sa.MetaData:
    """The models' schema after the rename: what `app db check` compares against."""
    metadata = sa.MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        if table.name != "items":
            table.to_metadata(metadata)
    items = Base.metadata.tables["items"]
    columns = [
        sa.Column("name" if c.name == "title" else c.name, c.type, nullable=c.nullable,
                  server_default=c.server_default, primary_key=c.primary_key)
        for c in items.columns
    ]  # fmt: skip
    renamed = sa.Table("items", metadata, *columns)
    renamed.append_constraint(
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE")
    )
    sa.Index("ix_items_created_at", renamed.c.created_at, renamed.c.id)
    sa.Index("ix_items_name", renamed.c.name, renamed.c.id)
    sa.Index("ix_items_owner_id_created_at", renamed.c.owner_id, renamed.c.created_at, renamed.c.id)
    return metadata


def columns_of(engine: Engine) -> dict[str, bool]:
    with engine.connect() as connection:
        return {c["name"]: c["nullable"] for c in inspect(connection).get_columns("items")}


def out_of_step(engine: Engine) -> int:
    """Rows whose two names hold different values."""
    with engine.connect() as connection:
        return int(
            connection.scalar(
                text("SELECT count(*) FROM items WHERE name <> title OR name IS NULL")
            )
            or 0
        )


def owner(engine: Engine) -> uuid.UUID:
    with engine.connect() as connection:
        found = connection.scalar(text("SELECT owner_id FROM items LIMIT 1"))
    return found if isinstance(found, uuid.UUID) else uuid.UUID(str(found))


@pytest.mark.backends("postgresql", "mariadb")
def test_during_a_column_rename_each_name_sees_the_others_writes(loaded: Engine) -> None:
    load_items(loaded, 2_000)
    run_extra_migration(loaded, EXPAND)

    assert columns_of(loaded)["name"] is False, "NOT NULL like the old column"
    assert out_of_step(loaded) == 0
    owner_id = owner(loaded)
    old = sessionmaker(bind=loaded, expire_on_commit=False)
    # The release before writes the old name; the one after, the new name.
    before = run_in_transaction(
        lambda uow: uow.items.create({"title": "written as title", "owner_id": owner_id}),
        session_factory=old,
    )
    after = run_in_transaction(
        lambda uow: uow.repository(RenamedItem).create(
            {"name": "written as name", "owner_id": owner_id}
        ),
        session_factory=old,
    )
    seen_after = run_in_transaction(
        lambda uow: uow.repository(RenamedItem).get(before.id), session_factory=old
    )
    seen_before = run_in_transaction(lambda uow: uow.items.get(after.id), session_factory=old)
    assert seen_after.name == "written as title"
    assert seen_before.title == "written as name"
    run_in_transaction(
        lambda uow: uow.items.update(after.id, {"title": "changed as title"}), session_factory=old
    )
    run_in_transaction(
        lambda uow: uow.repository(RenamedItem).update(before.id, {"name": "changed as name"}),
        session_factory=old,
    )
    assert (
        run_in_transaction(
            lambda uow: uow.repository(RenamedItem).get(after.id), session_factory=old
        ).name
        == "changed as title"
    )
    assert (
        run_in_transaction(lambda uow: uow.items.get(before.id), session_factory=old).title
        == "changed as name"
    )
    assert out_of_step(loaded) == 0
    with loaded.connect() as connection:
        assert [str(r) for r in column_renames(connection)] == [
            "items.title and items.name are kept in step (a column rename in progress: "
            "finish_rename_column or undo_rename_column ends it)"
        ]


def test_a_column_rename_finishes_and_every_step_is_undone(loaded: Engine) -> None:
    load_items(loaded, 1_000)
    with loaded.connect() as connection:
        titles = dict(connection.execute(text("SELECT id, title FROM items")).all())

    run_extra_migration(loaded, EXPAND)
    run_extra_migration(loaded, CONTRACT, after=[EXPAND])

    assert "title" not in columns_of(loaded)
    assert schema_differences(loaded, renamed_metadata()) == []
    with loaded.connect() as connection:
        assert dict(connection.execute(text("SELECT id, name FROM items")).all()) == titles
        assert column_renames(connection) == []

    run_extra_migration(loaded, CONTRACT, after=[EXPAND], downgrade_to="f00dfeed0001")
    if loaded.dialect.name != "sqlite":
        assert set(columns_of(loaded)) >= {"title", "name"}
        assert out_of_step(loaded) == 0
    run_extra_migration(loaded, CONTRACT, after=[EXPAND], downgrade_to="-1")

    assert drift(loaded) == []
    with loaded.connect() as connection:
        assert dict(connection.execute(text("SELECT id, title FROM items")).all()) == titles
        assert column_renames(connection) == []
        assert "name" not in columns_of(loaded)


@pytest.mark.backends("postgresql", "mariadb")
def test_a_column_rename_under_live_traffic_of_two_releases(loaded: Engine) -> None:
    migrate_under_traffic(loaded, EXPAND)  # the release before, while the expand step runs
    assert out_of_step(loaded) == 0

    both_releases_then_the_contract(
        loaded, EXPAND, CONTRACT, model=RenamedItem, title="name",
        in_step=lambda: out_of_step(loaded) == 0,
    )  # fmt: skip

    assert schema_differences(loaded, renamed_metadata()) == []


def both_releases_then_the_contract(
    engine: Engine,
    expand: str,
    contract: str,
    *,
    model: type[Any],
    title: str = "title",
    in_step: Callable[[], bool] | None = None,
) -> None:
    """The release before and the release after (`model`, its title attribute `title`) side
    by side, two threads each, then the contract step while only the release after runs;
    asserts that no request failed, that the two names are `in_step` after both releases
    wrote, and that no request waited a second during the contract step."""
    item_ids, owner_ids = sample_ids(engine)
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    old = Traffic(factory, item_ids, owner_ids, threads=2)
    new = Traffic(factory, item_ids, owner_ids, threads=2, model=model, title=title)
    with old, new:
        time.sleep(1.5)
    assert old.errors == []
    assert new.errors == []
    assert len(old.requests) > 20
    assert len(new.requests) > 20
    if in_step is not None:
        assert in_step(), "a write of one release is not seen by the other"

    after = Traffic(factory, item_ids, owner_ids, threads=4, model=model, title=title)
    with after:
        time.sleep(0.5)
        started = time.perf_counter()
        run_extra_migration(engine, contract, after=[expand])
        ended = time.perf_counter()
        time.sleep(0.3)
    during = after.during(started, ended)
    assert after.errors == []
    assert during
    assert max(r.seconds for r in during) < 1.0


@pytest.mark.backends("postgresql", "mariadb")
def test_a_column_rename_killed_half_way_continues_when_run_again(
    loaded: Engine, fresh_url: str
) -> None:
    load_items(loaded, 40_000)
    body = EXPAND.replace(
        '"name")\n\n\ndef downgrade', '"name", batch_size=200)\n\n\ndef downgrade'
    )

    def copied() -> int:
        with loaded.connect() as connection:
            if "name" not in {c["name"] for c in inspect(connection).get_columns("items")}:
                return 0
            return int(connection.scalar(text("SELECT count(name) FROM items")) or 0)

    kill_half_way(fresh_url, body, copied, 2_000)
    assert 0 < copied() < 40_000, "killed half-way through the copy"

    run_extra_migration(loaded, body)

    assert out_of_step(loaded) == 0
    assert columns_of(loaded)["name"] is False
    with loaded.connect() as connection:
        assert len(column_renames(connection)) == 1
    run_extra_migration(loaded, CONTRACT, after=[body])
    assert schema_differences(loaded, renamed_metadata()) == []


@pytest.mark.backends("postgresql", "mariadb")
def test_a_column_the_primary_key_uses_is_refused(loaded: Engine) -> None:
    body = EXPAND.replace('"title", "name"', '"id", "key"')
    with pytest.raises(
        ValueError, match=r"^rename_column items\.id: it is part of the primary key"
    ):
        run_extra_migration(loaded, body)
    assert "key" not in columns_of(loaded)


EXPAND_TABLE = """
from app import migration_ops


def upgrade() -> None:
    migration_ops.rename_table("items", "things")


def downgrade() -> None:
    migration_ops.undo_rename_table("items", "things")
"""
CONTRACT_TABLE = """
from app import migration_ops


def upgrade() -> None:
    migration_ops.finish_rename_table("items", "things")


def downgrade() -> None:
    migration_ops.rename_table("items", "things")
"""


class Thing(IdMixin, TimestampMixin, VersionMixin, NextRelease):
    __tablename__ = "things"

    title: Mapped[str] = mapped_column(exact_text(255))
    description: Mapped[str | None] = mapped_column(exact_text())
    owner_id: Mapped[uuid.UUID]


def things_metadata() -> sa.MetaData:
    """The models' schema with `items` called `things`, its indexes named after it."""
    metadata = sa.MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        if table.name != "items":
            table.to_metadata(metadata)
    items = Base.metadata.tables["items"]
    columns = [
        sa.Column(c.name, c.type, nullable=c.nullable, server_default=c.server_default,
                  primary_key=c.primary_key)
        for c in items.columns
    ]  # fmt: skip
    things = sa.Table("things", metadata, *columns)
    things.append_constraint(
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE")
    )
    for index in items.indexes:
        name = str(index.name).replace("_items_", "_things_")
        sa.Index(name, *(things.c[c.name] for c in index.columns))
    return metadata


def rows_of(engine: Engine, table: str) -> dict[object, object]:
    with engine.connect() as connection:
        return dict(connection.execute(text(f"SELECT id, title FROM {table}")).all())


@pytest.mark.backends("postgresql", "mariadb")
def test_during_a_table_rename_both_names_read_and_write(loaded: Engine) -> None:
    load_items(loaded, 1_000)
    run_extra_migration(loaded, EXPAND_TABLE)
    owner_id = owner(loaded)
    factory = sessionmaker(bind=loaded, expire_on_commit=False)

    def both(fn: Any) -> Any:
        return run_in_transaction(fn, session_factory=factory)

    # The release before uses `items` (the view), the one after `things` (the table).
    before = both(lambda uow: uow.items.create({"title": "as items", "owner_id": owner_id}))
    after = both(
        lambda uow: uow.repository(Thing).create({"title": "as things", "owner_id": owner_id})
    )
    assert both(lambda uow: uow.repository(Thing).get(before.id)).title == "as items"
    assert both(lambda uow: uow.items.get(after.id)).title == "as things"
    both(lambda uow: uow.items.update(after.id, {"title": "changed as items"}))
    assert both(lambda uow: uow.repository(Thing).get(after.id)).title == "changed as items"
    bulk = both(
        lambda uow: uow.items.create_many(
            [{"title": f"bulk {n}", "owner_id": owner_id} for n in range(50)]
        )
    )
    assert bulk == 50
    upserted = both(
        lambda uow: uow.items.upsert_many(
            [{"id": after.id, "title": "upserted as items", "owner_id": owner_id}]
        )
    )
    assert upserted == 1
    assert both(lambda uow: uow.repository(Thing).get(after.id)).title == "upserted as items"
    page = both(lambda uow: uow.items.paginate(limit=10))
    assert len(page.items) == 10
    both(lambda uow: uow.items.delete(before.id))
    assert both(lambda uow: uow.repository(Thing).get(before.id)) is None
    assert len(rows_of(loaded, "things")) == 1_000 + 1 + 50
    with loaded.connect() as connection:
        assert [str(r) for r in table_renames(connection)] == [
            "items is a view of table things (a table rename in progress: "
            "finish_rename_table or undo_rename_table ends it)"
        ]


def test_a_table_rename_finishes_and_every_step_is_undone(loaded: Engine) -> None:
    load_items(loaded, 500)
    titles = rows_of(loaded, "items")

    run_extra_migration(loaded, EXPAND_TABLE)
    run_extra_migration(loaded, CONTRACT_TABLE, after=[EXPAND_TABLE])

    assert rows_of(loaded, "things") == titles
    assert schema_differences(loaded, things_metadata()) == []
    with loaded.connect() as connection:
        assert table_renames(connection) == []
        assert not inspect(connection).has_table("items")

    run_extra_migration(loaded, CONTRACT_TABLE, after=[EXPAND_TABLE], downgrade_to="f00dfeed0001")
    if loaded.dialect.name != "sqlite":
        assert rows_of(loaded, "items") == titles
    run_extra_migration(loaded, CONTRACT_TABLE, after=[EXPAND_TABLE], downgrade_to="-1")

    assert drift(loaded) == []
    assert rows_of(loaded, "items") == titles
    with loaded.connect() as connection:
        assert table_renames(connection) == []
        assert not inspect(connection).has_table("things")


@pytest.mark.backends("postgresql", "mariadb")
def test_a_table_rename_under_live_traffic_of_two_releases(loaded: Engine) -> None:
    migrate_under_traffic(loaded, EXPAND_TABLE)  # the release before, while the expand step runs

    both_releases_then_the_contract(loaded, EXPAND_TABLE, CONTRACT_TABLE, model=Thing)

    assert schema_differences(loaded, things_metadata()) == []


@pytest.mark.backends("postgresql", "mariadb")
def test_status_shows_each_rename_in_progress(tmp_path: Path, fresh_url: str) -> None:
    ini = alembic_ini_with(tmp_path, "rename_expand_migration.py", "20261206_1200_renames.py")
    env = {"ALEMBIC_CONFIG": str(ini)}
    assert run_app("db", "upgrade", database_url=fresh_url, env=env).returncode == 0

    result = run_app("db", "status", database_url=fresh_url, env=env)

    assert result.returncode == 0, result.stderr
    said = " ".join(result.stdout.split())
    assert "in progress: users is a view of table people (a table rename in progress" in said
    assert "in progress: items.title and items.name are kept in step" in said
    assert run_app("db", "downgrade", "-1", database_url=fresh_url, env=env).returncode == 0
    after = run_app("db", "status", database_url=fresh_url, env=env)
    assert "in progress" not in after.stdout


@pytest.mark.backends("mariadb")
def test_a_table_rename_killed_before_its_atomic_step_starts_again(loaded: Engine) -> None:
    load_items(loaded, 300)
    titles = rows_of(loaded, "items")
    scratch = scratch_name(TableRename("items", "things"))
    with loaded.begin() as connection:  # what a run killed after its first two statements left
        connection.exec_driver_sql(
            f"CREATE TABLE things COMMENT = '{PLACEHOLDER_COMMENT}' AS SELECT * FROM items LIMIT 0"
        )
        connection.exec_driver_sql(f"CREATE VIEW {scratch} AS SELECT * FROM things")

    run_extra_migration(loaded, EXPAND_TABLE)

    assert rows_of(loaded, "things") == titles
    assert rows_of(loaded, "items") == titles
    with loaded.connect() as connection:
        assert table_renames(connection) == [TableRename("items", "things")]
        assert scratch not in inspect(connection).get_view_names()


@pytest.mark.backends("postgresql", "mariadb")
def test_a_table_rename_onto_a_table_of_the_new_name_is_refused(loaded: Engine) -> None:
    with loaded.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE things (id INT PRIMARY KEY)")
        connection.exec_driver_sql("INSERT INTO things VALUES (1)")

    with pytest.raises(ValueError, match=r"^rename_table: items and things are both tables$"):
        run_extra_migration(loaded, EXPAND_TABLE)
    with loaded.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM things")) == 1
        assert inspect(connection).has_table("items")


@pytest.mark.backends("postgresql", "mariadb")
def test_the_asyncio_face_writes_in_bulk_through_the_old_name_of_a_renamed_table(
    loaded: Engine, fresh_url: str
) -> None:
    load_items(loaded, 10)
    run_extra_migration(loaded, EXPAND_TABLE)
    owner_id = owner(loaded)

    async def scenario() -> int:
        engine = make_async_engine(fresh_url)
        try:
            async with AsyncUnitOfWork(make_async_session_factory(engine)) as uow:
                rows = [{"title": f"async bulk {n}", "owner_id": owner_id} for n in range(30)]
                count = await uow.items.create_many(rows)
                await uow.commit()
            return count
        finally:
            await engine.dispose()

    assert asyncio.run(scenario()) == 30
    assert len(rows_of(loaded, "things")) == 40


def migration(body: str) -> str:
    """A migration whose upgrade is `body` (statements through migration_ops)."""
    return f"\nfrom app import migration_ops\n\n\ndef upgrade() -> None:\n    {body}\n"


REFUSED = {
    'migration_ops.rename_column("items", "nope", "name")': r"^rename_column: items has no "
    r"column nope$",
    'migration_ops.rename_column("items", "title", "description")': r"^rename_column: items has a "
    r"column description already; rename onto a new name$",
    'migration_ops.rename_column("items", "id", "key")': r"^rename_column items\.id: it is part "
    r"of the primary key",
    'migration_ops.finish_rename_column("items", "title", "name")': r"^items\.title: no rename to "
    r"name in progress",
    'migration_ops.rename_table("nope", "things")': r"^rename_table: there is no table nope$",
    'migration_ops.rename_table("items", "users")': r"^rename_table: items and users are both "
    r"tables$",
}


@pytest.mark.parametrize("call", REFUSED)
def test_a_rename_of_what_is_missing_or_onto_what_is_taken_is_refused_and_changes_nothing(
    loaded: Engine, call: str
) -> None:
    load_items(loaded, 20)
    with loaded.connect() as connection:
        before = dict(connection.execute(text("SELECT id, description FROM items")).all())

    with pytest.raises(ValueError, match=REFUSED[call]):
        run_extra_migration(loaded, migration(call))

    assert drift(loaded) == []
    with loaded.connect() as connection:
        assert dict(connection.execute(text("SELECT id, description FROM items")).all()) == before
        assert column_renames(connection) == []
        assert table_renames(connection) == []


@pytest.mark.backends("postgresql", "mariadb")
def test_a_table_with_a_column_rename_in_progress_is_not_renamed(loaded: Engine) -> None:
    run_extra_migration(loaded, EXPAND)

    refused = r"^rename_table items: a rename of its column title is in progress; finish"
    with pytest.raises(ValueError, match=refused):
        run_extra_migration(loaded, EXPAND_TABLE, after=[EXPAND])
    with loaded.connect() as connection:
        assert inspect(connection).has_table("items")
        assert len(column_renames(connection)) == 1


@pytest.mark.backends("mariadb")
def test_a_column_rename_killed_before_its_triggers_starts_again(loaded: Engine) -> None:
    load_items(loaded, 200)
    with loaded.begin() as connection:  # what a run killed after adding the column left
        connection.exec_driver_sql(
            "ALTER TABLE items ADD COLUMN name VARCHAR(255) COLLATE utf8mb4_nopad_bin NULL "
            f"COMMENT '{ADDED_MARK}'"
        )

    run_extra_migration(loaded, EXPAND)

    assert out_of_step(loaded) == 0
    with loaded.connect() as connection:
        assert len(column_renames(connection)) == 1
        (name,) = [c for c in inspect(connection).get_columns("items") if c["name"] == "name"]
    assert not name.get("comment")


NAMED_TABLE = """
import sqlalchemy as sa
from alembic import op


def upgrade() -> None:
    op.create_table(
        "probe_tags",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("code", sa.String(40), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.UniqueConstraint("code", name="uq_probe_tags_code"),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name="fk_probe_tags_owner_id_users", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("probe_tags")
"""
RENAME_NAMED = """
from app import migration_ops


def upgrade() -> None:
    migration_ops.rename_column("probe_tags", "code", "label")
    migration_ops.rename_column("probe_tags", "owner_id", "holder_id")


def downgrade() -> None:
    migration_ops.undo_rename_column("probe_tags", "owner_id", "holder_id")
    migration_ops.undo_rename_column("probe_tags", "code", "label")
"""


def test_a_renamed_columns_constraints_take_its_new_name_on_every_backend(loaded: Engine) -> None:
    """The unique constraint and foreign key of a renamed column are named after the new name
    (the servers' copies always were; SQLite kept the old names, which `app db check` then
    listed as drift), and the foreign key keeps its ON DELETE."""
    run_extra_migration(loaded, NAMED_TABLE)
    run_extra_migration(loaded, RENAME_NAMED, after=[NAMED_TABLE])
    with loaded.connect() as connection:
        found = inspect(connection)
        uniques = {
            str(u["name"]): u["column_names"] for u in found.get_unique_constraints("probe_tags")
        }
        keys = {str(k["name"]): k for k in found.get_foreign_keys("probe_tags")}
    assert uniques["uq_probe_tags_label"] == ["label"]
    assert "uq_probe_tags_code" not in uniques or loaded.dialect.name != "sqlite"
    key = keys["fk_probe_tags_holder_id_users"]
    assert key["constrained_columns"] == ["holder_id"]
    assert key["options"].get("ondelete") == "CASCADE"
    if loaded.dialect.name == "sqlite":  # renamed in place: nothing of the old names is left
        assert set(uniques) == {"uq_probe_tags_label"}
        assert set(keys) == {"fk_probe_tags_holder_id_users"}
