"""The online migration helpers, on every backend, and under live traffic on the servers.

The live-traffic test runs four threads of units of work against a table of
APP_TEST_LIVE_ROWS items (default 50,000; the benchmark uses a million) while a migration
adds a NOT NULL column with a backfill and a two-column index through `app.migration_ops`.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from bench.live_traffic import (
    CONSTRAINTS_MIGRATION,
    ONLINE_MIGRATION,
    RETYPE_MIGRATION,
    Traffic,
    run_extra_migration,
    sample_ids,
)
from sqlalchemy import Engine, inspect, text
from sqlalchemy.orm import sessionmaker

from app.db.errors import ConflictError, ForeignKeyError, InvalidQueryError, RetryableError
from app.db.models import Base
from app.db.types import exact_text
from app.migration_ops import ConstraintRefusedError
from app.migrations import compare, drift
from app.migrations.ops.ddl import column_collation
from tests.integration.helpers import load_items

ROOT = Path(__file__).resolve().parents[2]
LIVE_ROWS = int(os.environ.get("APP_TEST_LIVE_ROWS", "50000"))
INDEX = "ix_items_owner_id_title_length"
ONLINE_WITH_DOWNGRADE = (
    ONLINE_MIGRATION
    + """

def downgrade() -> None:
    migration_ops.drop_index("ix_items_owner_id_title_length", "items")
    migration_ops.drop_column("items", "title_length")
"""
)


def extended_metadata() -> sa.MetaData:
    """The models' schema plus what the migration adds: the target `app db check` compares."""
    metadata = sa.MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(metadata)
    items = metadata.tables["items"]
    items.append_column(sa.Column("title_length", sa.Integer(), nullable=False))
    sa.Index(INDEX, items.c.owner_id, items.c.title_length)
    return metadata


def schema_differences(engine: Engine, metadata: sa.MetaData) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            # The project's own comparison (`app db check`), which leaves out the tables that
            # are not the models' (the commit markers).
            connection,
            opts={**compare.OPTIONS, "target_metadata": metadata},
        )
        return list(compare_metadata(context, metadata))


def index_is_valid(engine: Engine, name: str = INDEX) -> bool:
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            return bool(
                connection.scalar(
                    text(
                        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c "
                        "ON c.oid = i.indexrelid WHERE c.relname = :name"
                    ),
                    {"name": name},
                )
            )
        return any(index["name"] == name for index in inspect(connection).get_indexes("items"))


def wrong_lengths(engine: Engine, skip: set[uuid.UUID]) -> int:
    """Rows (other than `skip`) whose title_length is not their title's length."""
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, title, title_length FROM items")).all()
    ids = {str(value).replace("-", "") for value in skip}
    return sum(
        1
        for row in rows
        if str(row.id).replace("-", "") not in ids and row.title_length != len(row.title)
    )


def test_helpers_add_and_remove_a_column_and_an_index(loaded: Engine) -> None:
    load_items(loaded, 3_000)

    run_extra_migration(loaded, ONLINE_WITH_DOWNGRADE)

    assert schema_differences(loaded, extended_metadata()) == []
    assert index_is_valid(loaded)
    assert wrong_lengths(loaded, set()) == 0
    with loaded.connect() as connection:
        nullable = {c["name"]: c["nullable"] for c in inspect(connection).get_columns("items")}
    assert nullable["title_length"] is False

    run_extra_migration(loaded, ONLINE_WITH_DOWNGRADE, downgrade_to="-1")

    assert drift(loaded) == []
    with loaded.connect() as connection:
        assert "title_length" not in {c["name"] for c in inspect(connection).get_columns("items")}


def test_backfill_runs_in_batches_and_skips_rows_already_done(loaded: Engine) -> None:
    load_items(loaded, 2_500)
    body = """
import sqlalchemy as sa
from app import migration_ops


def upgrade() -> None:
    migration_ops.backfill(
        "items", {"description": sa.func.upper(sa.column("title"))},
        where=sa.column("owner_id").is_not(None), batch_size=1_000,
    )
"""
    with loaded.begin() as connection:  # some rows already hold the value
        connection.execute(text("UPDATE items SET description = upper(title) WHERE title = 't'"))
    run_extra_migration(loaded, body)

    with loaded.connect() as connection:
        wrong = connection.scalar(
            text(
                "SELECT count(*) FROM items "
                "WHERE description IS NULL OR description <> upper(title)"
            )
        )
    assert wrong == 0


def migrate_under_traffic(engine: Engine, body: str) -> Traffic:
    """LIVE_ROWS items, four threads of units of work on them, and the migration `body` run in
    the middle of that traffic; asserts what every such test asserts: no request failed (a
    retry absorbed by `run_in_transaction` is fine) and none waited a second."""
    load_items(engine, LIVE_ROWS)
    item_ids, owner_ids = sample_ids(engine)
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    with Traffic(factory, item_ids, owner_ids) as traffic:
        time.sleep(1.0)  # traffic first, then the migration in the middle of it
        started = time.perf_counter()
        run_extra_migration(engine, body)
        ended = time.perf_counter()
        time.sleep(0.5)  # and the requests after it (on PostgreSQL: old plans made anew)
    during = traffic.during(started, ended)
    longest = max(request.seconds for request in during)
    assert traffic.errors == []
    assert len(during) > 50, "the traffic ran while the migration did"
    assert longest < 1.0, f"a request waited {longest:.2f} s during the migration"
    return traffic


def kill_half_way(url: str, body: str, progress: Callable[[], int], enough: int) -> None:
    """Run the migration `body` in a child process and SIGKILL it once `progress()` reached
    `enough` (or after a minute)."""
    script = (
        "import sys\n"
        "from app.db.session import make_engine\n"
        "from bench.live_traffic import run_extra_migration\n"
        "run_extra_migration(make_engine(sys.argv[1]), sys.stdin.read())\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, url], cwd=ROOT, stdin=subprocess.PIPE, text=True
    )
    assert child.stdin is not None
    child.stdin.write(body)
    child.stdin.close()
    deadline = time.monotonic() + 60
    while progress() < enough and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()


@pytest.mark.backends("postgresql", "mariadb")
def test_online_migration_under_live_traffic(loaded: Engine) -> None:
    traffic = migrate_under_traffic(loaded, ONLINE_MIGRATION)

    assert traffic.attempts >= len(traffic.requests)  # retries, if any, were absorbed
    assert not any(isinstance(e, RetryableError) for e in traffic.errors)
    assert index_is_valid(loaded)
    assert schema_differences(loaded, extended_metadata()) == []
    assert wrong_lengths(loaded, set(traffic.inserted)) == 0
    with loaded.connect() as connection:
        missing = connection.scalar(text("SELECT count(*) FROM items WHERE title_length IS NULL"))
    assert missing == 0


@pytest.mark.backends("postgresql", "mariadb")
def test_a_killed_migration_continues_where_it_stopped(loaded: Engine, fresh_url: str) -> None:
    load_items(loaded, 40_000)
    body = ONLINE_MIGRATION.replace(
        'backfill=sa.func.length(sa.column("title")),',
        'backfill=sa.func.length(sa.column("title")), batch_size=200,',
    )
    kill_half_way(fresh_url, body, lambda: filled_rows(loaded), 2_000)
    assert 0 < filled_rows(loaded) < 40_000, "killed half-way through the backfill"
    kept = row_versions(loaded)

    run_extra_migration(loaded, body)

    assert wrong_lengths(loaded, set()) == 0
    assert index_is_valid(loaded)
    assert schema_differences(loaded, extended_metadata()) == []
    if kept:  # PostgreSQL: rows filled by the killed run were not written again
        after = row_versions(loaded)
        assert all(after[key] == version for key, version in kept.items())


def filled_rows(engine: Engine) -> int:
    with engine.connect() as connection:
        columns = {c["name"] for c in inspect(connection).get_columns("items")}
        if "title_length" not in columns:
            return 0
        return int(
            connection.scalar(text("SELECT count(*) FROM items WHERE title_length IS NOT NULL"))
            or 0
        )


def row_versions(engine: Engine) -> dict[str, str]:
    """PostgreSQL: each filled row's xmin, which changes when the row is written again."""
    if engine.dialect.name != "postgresql":
        return {}
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT id::text, xmin::text FROM items WHERE title_length IS NOT NULL")
        ).all()
    return {row[0]: row[1] for row in rows}


CONSTRAINTS = ("fk_items_reviewer_id_users", "uq_items_code", "ck_items_version_positive")


def constraints_in_force(engine: Engine) -> dict[str, bool]:
    """Each of CONSTRAINTS: whether the table has it (on PostgreSQL: validated)."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            rows = connection.execute(
                text(
                    "SELECT conname, convalidated FROM pg_constraint "
                    "WHERE conrelid = 'items'::regclass"
                )
            ).all()
            found = {str(name): bool(valid) for name, valid in rows}
        else:
            found = dict.fromkeys(constraint_names(engine), True)
    return {name: found.get(name, False) for name in CONSTRAINTS}


def constraint_names(engine: Engine) -> set[str]:
    """The names of the constraints and indexes `items` has, valid or not."""
    with engine.connect() as connection:
        inspector = inspect(connection)
        names = (
            [key["name"] for key in inspector.get_foreign_keys("items")]
            + [key["name"] for key in inspector.get_unique_constraints("items")]
            + [check["name"] for check in inspector.get_check_constraints("items")]
            + [index["name"] for index in inspector.get_indexes("items")]
        )
    return {str(name) for name in names}


def constraints_metadata() -> sa.MetaData:
    """The models' schema plus the columns and constraints CONSTRAINTS_MIGRATION adds."""
    metadata = sa.MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(metadata)
    items = metadata.tables["items"]
    users = metadata.tables["users"]
    reviewer = sa.Column("reviewer_id", users.c.id.type, nullable=True)
    items.append_column(reviewer)
    items.append_column(sa.Column("code", sa.String(40), nullable=True))
    items.append_constraint(
        sa.ForeignKeyConstraint(
            [reviewer], [users.c.id], name="fk_items_reviewer_id_users", ondelete="SET NULL"
        )
    )
    items.append_constraint(sa.UniqueConstraint(items.c.code, name="uq_items_code"))
    return metadata


def test_constraint_helpers_add_keys_and_checks_that_hold(loaded: Engine) -> None:
    load_items(loaded, 3_000)

    run_extra_migration(loaded, CONSTRAINTS_MIGRATION)

    assert constraints_in_force(loaded) == dict.fromkeys(CONSTRAINTS, True)
    assert schema_differences(loaded, constraints_metadata()) == []
    items = constraints_metadata().tables["items"]
    with loaded.connect() as connection:
        (item_id, _), (_, taken) = connection.execute(sa.select(items.c.id, items.c.code)).all()[:2]
    refusals = {
        ForeignKeyError: {"reviewer_id": uuid.uuid4()},
        ConflictError: {"code": taken},
        InvalidQueryError: {"version": 0},
    }
    for error, values in refusals.items():
        with pytest.raises(error), loaded.begin() as connection:
            connection.execute(sa.update(items).where(items.c.id == item_id).values(values))


@pytest.mark.parametrize("broken", CONSTRAINTS)
def test_a_constraint_rows_break_is_refused_in_one_line_and_left_out(
    loaded: Engine, broken: str
) -> None:
    load_items(loaded, 500)
    secret = uuid.uuid4()
    body = CONSTRAINTS_MIGRATION.replace(
        "    for _ in range(2):\n", "    spoil()\n    for _ in range(1):\n"
    )
    spoilers = {
        "fk_items_reviewer_id_users": f"UPDATE items SET reviewer_id = '{secret.hex}' "
        "WHERE id IN (SELECT id FROM (SELECT id FROM items ORDER BY id LIMIT 3) a)",
        "uq_items_code": "UPDATE items SET code = 'same' "
        "WHERE id IN (SELECT id FROM (SELECT id FROM items ORDER BY id LIMIT 3) a)",
        "ck_items_version_positive": "UPDATE items SET version = 0 "
        "WHERE id IN (SELECT id FROM (SELECT id FROM items ORDER BY id LIMIT 3) a)",
    }
    body += f"""

def spoil() -> None:
    op.execute({spoilers[broken]!r})
"""
    if loaded.dialect.name == "postgresql":
        body = body.replace(f"'{secret.hex}'", f"'{secret}'")

    with pytest.raises(ConstraintRefusedError) as refused:
        run_extra_migration(loaded, body)

    said = str(refused.value)
    assert "\n" not in said
    expected = {
        "fk_items_reviewer_id_users": "items: rows that refer to no users row: 3",
        "uq_items_code": "items: values of (code) held by more than one row: 1",
        "ck_items_version_positive": (
            "items: rows that break the check ck_items_version_positive: 3"
        ),
    }[broken]
    assert said.startswith(expected), said
    chain = [refused.value.__cause__, refused.value.__context__]
    assert all(secret.hex not in str(link) and str(secret) not in str(link) for link in chain)
    assert broken not in constraint_names(loaded), f"{broken} was left behind"


@pytest.mark.backends("postgresql", "mariadb")
def test_constraints_added_under_live_traffic(loaded: Engine) -> None:
    migrate_under_traffic(loaded, CONSTRAINTS_MIGRATION)

    assert constraints_in_force(loaded) == dict.fromkeys(CONSTRAINTS, True)
    assert schema_differences(loaded, constraints_metadata()) == []


def version_column(engine: Engine) -> tuple[str, bool, list[str]]:
    """`items.version`'s type (as SQL), whether it is nullable, and the columns `items` has."""
    with engine.connect() as connection:
        columns = inspect(connection).get_columns("items")
    (version,) = [c for c in columns if c["name"] == "version"]
    spelled = version["type"].compile(engine.dialect).upper()
    return spelled, bool(version["nullable"]), [str(c["name"]) for c in columns]


def retyped_metadata() -> sa.MetaData:
    """The models' schema with `items.version` a BigInteger."""
    metadata = sa.MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(metadata)
    metadata.tables["items"].c.version.type = sa.BigInteger()
    return metadata


def test_alter_column_changes_a_type_and_back(loaded: Engine) -> None:
    load_items(loaded, 3_000)

    run_extra_migration(loaded, RETYPE_MIGRATION)

    spelled, nullable, columns = version_column(loaded)
    assert spelled.startswith("BIGINT"), spelled
    assert nullable is False
    assert "_version_retyped" not in columns
    assert schema_differences(loaded, retyped_metadata()) == []
    items = Base.metadata.tables["items"]
    with loaded.begin() as connection:  # the default came along
        owner = connection.scalar(sa.select(items.c.owner_id).limit(1))
        now = dt.datetime.now(dt.UTC)
        row = {"id": uuid.uuid4(), "title": "x", "owner_id": owner, "created_at": now}
        connection.execute(sa.insert(items.c.id.table).values({**row, "updated_at": now}))
        assert connection.scalar(text("SELECT count(*) FROM items WHERE version = 1")) == 3_001
    if loaded.dialect.name != "sqlite":
        with loaded.connect() as connection:
            assert not _triggers(connection)

    run_extra_migration(loaded, RETYPE_MIGRATION, downgrade_to="-1")

    spelled, nullable, _ = version_column(loaded)
    assert spelled.startswith("INT"), spelled
    assert drift(loaded) == []


def _triggers(connection: sa.Connection) -> list[str]:
    if connection.dialect.name == "postgresql":
        query = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
    else:
        query = (
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()"
        )
    return [str(name) for name in connection.scalars(text(query))]


@pytest.mark.backends("postgresql", "mariadb")
def test_alter_column_refuses_a_column_a_foreign_key_uses(loaded: Engine) -> None:
    body = """
import sqlalchemy as sa
from app import migration_ops


def upgrade() -> None:
    migration_ops.alter_column("items", "owner_id", type_=sa.String(64))
"""
    refused = r"^alter_column items\.owner_id: foreign key fk_items_owner_id_users uses it; drop it"
    with pytest.raises(ValueError, match=refused):
        run_extra_migration(loaded, body)
    with loaded.connect() as connection:
        assert "_owner_id_retyped" not in {
            c["name"] for c in inspect(connection).get_columns("items")
        }


LONGER_TEXT = """
from app import migration_ops
from app.db.types import exact_text as text


def upgrade() -> None:
    migration_ops.alter_column("items", "title", type_=text(500), existing_type=text(255))
    migration_ops.alter_column("users", "email", type_=text(400), existing_type=text(320))


def downgrade() -> None:
    migration_ops.alter_column("users", "email", type_=text(320), existing_type=text(400))
    migration_ops.alter_column("items", "title", type_=text(255), existing_type=text(500))
"""


def test_alter_column_builds_again_the_indexes_and_unique_keys_the_column_is_in(
    loaded: Engine,
) -> None:
    load_items(loaded, 2_000)
    with loaded.connect() as connection:
        before = {t: _index_names(connection, t) for t in ("items", "users")}

    run_extra_migration(loaded, LONGER_TEXT)

    metadata = sa.MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(metadata)
    metadata.tables["items"].c.title.type = exact_text(500)
    metadata.tables["users"].c.email.type = exact_text(400)
    assert schema_differences(loaded, metadata) == []
    with loaded.connect() as connection:
        assert {t: _index_names(connection, t) for t in ("items", "users")} == before
    assert index_is_valid(loaded, "ix_items_title")
    with loaded.begin() as connection, pytest.raises(ConflictError):
        email = connection.scalar(text("SELECT email FROM users LIMIT 1"))
        connection.execute(
            text("UPDATE users SET email = :email WHERE email <> :email"), {"email": email}
        )

    run_extra_migration(loaded, LONGER_TEXT, downgrade_to="-1")

    assert drift(loaded) == []


def _index_names(connection: sa.Connection, table: str) -> set[str]:
    inspector = inspect(connection)
    names = {str(index["name"]) for index in inspector.get_indexes(table)}
    return names | {str(unique["name"]) for unique in inspector.get_unique_constraints(table)}


@pytest.mark.backends("postgresql", "mariadb")
def test_alter_column_loses_no_write_made_while_it_runs(loaded: Engine) -> None:
    load_items(loaded, 20_000)
    with loaded.connect() as connection:
        watched = list(connection.scalars(text("SELECT id FROM items LIMIT 20")))
    increments = dict.fromkeys(watched, 0)
    stop = threading.Event()

    def writer() -> None:
        # One writer, one increment per statement, counted only once it committed.
        autocommit = loaded.execution_options(isolation_level="AUTOCOMMIT")
        with autocommit.connect() as connection:
            while not stop.is_set():
                for item_id in watched:
                    try:
                        result = connection.execute(
                            text("UPDATE items SET version = version + 1 WHERE id = :id"),
                            {"id": item_id},
                        )
                    except RetryableError:
                        continue
                    increments[item_id] += result.rowcount

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        time.sleep(0.3)
        run_extra_migration(loaded, RETYPE_MIGRATION.replace(
            "existing_type=sa.Integer()", "existing_type=sa.Integer(), batch_size=500"
        ))  # fmt: skip
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(timeout=30)

    with loaded.connect() as connection:
        stored = dict(
            connection.execute(
                text("SELECT id, version FROM items WHERE id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)
                ),
                {"ids": watched},
            ).all()
        )
    assert sum(increments.values()) > 100, "the writer ran while the column changed"
    assert {key: stored[key] - 1 for key in watched} == increments
    assert version_column(loaded)[0].startswith("BIGINT")


@pytest.mark.backends("postgresql", "mariadb")
def test_a_type_change_under_live_traffic(loaded: Engine) -> None:
    migrate_under_traffic(loaded, RETYPE_MIGRATION)

    assert version_column(loaded)[0].startswith("BIGINT")
    assert schema_differences(loaded, retyped_metadata()) == []
    with loaded.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM items WHERE version < 1")) == 0


@pytest.mark.backends("postgresql")
def test_constraints_an_interrupted_run_left_unvalidated_are_finished(loaded: Engine) -> None:
    load_items(loaded, 2_000)
    with loaded.begin() as connection:  # where a run killed during VALIDATE stopped
        connection.execute(text("ALTER TABLE items ADD COLUMN reviewer_id uuid"))
        connection.execute(text("UPDATE items SET reviewer_id = owner_id"))
        connection.execute(
            text(
                "ALTER TABLE items ADD CONSTRAINT fk_items_reviewer_id_users FOREIGN KEY "
                "(reviewer_id) REFERENCES users (id) NOT VALID"
            )
        )
        connection.execute(
            text(
                "ALTER TABLE items ADD CONSTRAINT ck_items_version_positive "
                "CHECK (version > 0) NOT VALID"
            )
        )
    body = """
from app import migration_ops


def upgrade() -> None:
    migration_ops.create_foreign_key(
        "fk_items_reviewer_id_users", "items", "users", ["reviewer_id"], ["id"]
    )
    migration_ops.create_check_constraint("version_positive", "items", "version > 0")
"""
    run_extra_migration(loaded, body)

    in_force = constraints_in_force(loaded)
    assert in_force["fk_items_reviewer_id_users"] is True
    assert in_force["ck_items_version_positive"] is True


@pytest.mark.backends("postgresql", "mariadb")
def test_a_type_change_killed_half_way_continues_when_run_again(
    loaded: Engine, fresh_url: str
) -> None:
    load_items(loaded, 40_000)
    with loaded.begin() as connection:
        connection.execute(text("UPDATE items SET version = 2 WHERE title = 'tt'"))
        before = dict(connection.execute(text("SELECT id, version FROM items")).all())
    body = RETYPE_MIGRATION.replace(
        "existing_type=sa.Integer()", "existing_type=sa.Integer(), batch_size=200", 1
    )
    kill_half_way(fresh_url, body, lambda: retyped_rows(loaded), 2_000)
    assert 0 < retyped_rows(loaded) < 40_000, "killed half-way through the fill"

    run_extra_migration(loaded, body)

    spelled, nullable, columns = version_column(loaded)
    assert spelled.startswith("BIGINT")
    assert nullable is False
    assert "_version_retyped" not in columns
    with loaded.connect() as connection:
        assert not _triggers(connection)
        after = dict(connection.execute(text("SELECT id, version FROM items")).all())
    assert after == before


def retyped_rows(engine: Engine) -> int:
    with engine.connect() as connection:
        columns = {c["name"] for c in inspect(connection).get_columns("items")}
        if "_version_retyped" not in columns:
            return 0
        query = "SELECT count(*) FROM items WHERE _version_retyped IS NOT NULL"
        return int(connection.scalar(text(query)) or 0)


@pytest.mark.backends("postgresql", "mariadb")
def test_a_type_that_names_no_collation_keeps_the_columns(loaded: Engine) -> None:
    body = """
import sqlalchemy as sa
from app import migration_ops


def upgrade() -> None:
    migration_ops.alter_column("items", "title", type_=sa.String(500))
"""
    with loaded.connect() as connection:
        before = column_collation(connection, "items", "title")
    assert before is not None, "the models' text compares exactly: a collation of its own"

    run_extra_migration(loaded, body)

    with loaded.connect() as connection:
        assert column_collation(connection, "items", "title") == before
        (title,) = [c for c in inspect(connection).get_columns("items") if c["name"] == "title"]
    assert getattr(title["type"], "length", None) == 500


@pytest.mark.backends("postgresql", "mariadb")
def test_a_text_column_added_by_hand_compares_exactly_as_the_models_do(loaded: Engine) -> None:
    """A migration's own `sa.String(3)` names no collation: the column gets the exact one the
    models' text columns have, not the server's default (which may equate "eur" and "EUR")."""
    body = """
import sqlalchemy as sa
from app import migration_ops


def upgrade() -> None:
    migration_ops.add_not_null_column(
        "items", sa.Column("currency", sa.String(3), server_default="EUR"), backfill="EUR"
    )
"""
    load_items(loaded, 10)

    run_extra_migration(loaded, body)

    with loaded.connect() as connection:
        assert column_collation(connection, "items", "currency") == column_collation(
            connection, "items", "title"
        )
        assert connection.scalar(text("SELECT count(*) FROM items WHERE currency = 'eur'")) == 0
        assert connection.scalar(text("SELECT count(*) FROM items WHERE currency = 'EUR'")) == 10


def test_backfill_and_a_type_change_batch_a_key_of_two_columns(loaded: Engine) -> None:
    """A table whose key is two columns is batched by that key, compared as a row value: every
    row is filled, in batches whose bounds fall inside a region as well as between regions."""
    pairs = sa.Table(
        "probe_pairs",
        sa.MetaData(),
        sa.Column("region", sa.String(8), primary_key=True),
        sa.Column("num", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("note", sa.String(20)),
    )
    pairs.create(loaded)
    with loaded.begin() as connection:
        connection.execute(
            pairs.insert(),
            [{"region": region, "num": n, "note": f"{region}{n}"}
             for region in ("eu", "us", "zz") for n in range(20)],
        )  # fmt: skip
    body = """
import sqlalchemy as sa
from app import migration_ops


def upgrade() -> None:
    migration_ops.add_not_null_column(
        "probe_pairs", sa.Column("weight", sa.Integer()), backfill=sa.column("num") * 10,
        batch_size=7,
    )
    migration_ops.alter_column(
        "probe_pairs", "note", type_=sa.String(40), existing_type=sa.String(20), batch_size=7
    )
"""
    run_extra_migration(loaded, body)
    with loaded.connect() as connection:
        rows = connection.execute(text("SELECT region, num, note, weight FROM probe_pairs")).all()
        note = next(
            c for c in inspect(connection).get_columns("probe_pairs") if c["name"] == "note"
        )
    assert sorted(tuple(row) for row in rows) == [
        (region, n, f"{region}{n}", n * 10) for region in ("eu", "us", "zz") for n in range(20)
    ]
    assert getattr(note["type"], "length", None) == 40


def test_a_foreign_key_the_helper_added_is_dropped_and_leaves_the_table_as_it_was(
    loaded: Engine,
) -> None:
    metadata = sa.MetaData()
    sa.Table("probe_parents", metadata, sa.Column("id", sa.Integer(), primary_key=True))
    sa.Table(
        "probe_children",
        metadata,
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("parent_id", sa.Integer()),
    )
    metadata.create_all(loaded)
    body = """
from app import migration_ops


def upgrade() -> None:
    migration_ops.create_foreign_key(
        "fk_probe_children_parent_id", "probe_children", "probe_parents", ["parent_id"], ["id"]
    )


def downgrade() -> None:
    migration_ops.drop_foreign_key("fk_probe_children_parent_id", "probe_children")
"""

    def shape() -> tuple[set[str], set[str]]:
        with loaded.connect() as connection:
            inspector = inspect(connection)
            keys = {str(key["name"]) for key in inspector.get_foreign_keys("probe_children")}
            indexes = {str(index["name"]) for index in inspector.get_indexes("probe_children")}
        return keys, indexes

    before = shape()
    run_extra_migration(loaded, body)
    assert "fk_probe_children_parent_id" in shape()[0]
    run_extra_migration(loaded, body, downgrade_to="-1")
    assert shape() == before  # MariaDB's index for the key went with it


def test_a_check_the_helper_added_is_dropped_by_its_full_name_in_batch_mode(
    loaded: Engine,
) -> None:
    """The downgrade README's "Writing a migration" gives for a helper's check, whose name the
    naming convention completed (`op.f` keeps the convention from being applied twice)."""
    body = """
from alembic import op
from app import migration_ops


def upgrade() -> None:
    migration_ops.create_check_constraint("version_floor", "items", "version > -100")


def downgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.drop_constraint(op.f("ck_items_version_floor"), type_="check")
"""
    load_items(loaded, 10)

    def checks() -> set[str]:
        with loaded.connect() as connection:
            return {str(c["name"]) for c in inspect(connection).get_check_constraints("items")}

    run_extra_migration(loaded, body)
    assert "ck_items_version_floor" in checks()

    run_extra_migration(loaded, body, downgrade_to="-1")
    assert "ck_items_version_floor" not in checks()
    assert drift(loaded) == []
