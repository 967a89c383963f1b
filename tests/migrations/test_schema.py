"""What the migrations build, checked against what the models declare, on every backend."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pytest_alembic import MigrationContext
from sqlalchemy import Engine, inspect, text

from app.db.models import Base

OUR_TABLES = set(Base.metadata.tables)


def _unique_constraint_names(inspector: Any, table: str) -> set[str]:
    names = {uc["name"] for uc in inspector.get_unique_constraints(table)}
    # MariaDB reports unique constraints as unique indexes as well.
    names |= {ix["name"] for ix in inspector.get_indexes(table) if ix["unique"]}
    return names


def test_head_has_the_tables_columns_and_named_constraints_of_the_models(
    alembic_runner: MigrationContext, alembic_engine: Engine, backend: str
) -> None:
    alembic_runner.migrate_up_to("heads")
    inspector = inspect(alembic_engine)
    assert set(inspector.get_table_names()) >= OUR_TABLES
    for table in Base.metadata.sorted_tables:
        reflected = {column["name"]: column for column in inspector.get_columns(table.name)}
        assert set(reflected) == set(table.columns.keys()), table.name
        for column in table.columns:
            assert reflected[column.name]["nullable"] == column.nullable, (table.name, column.name)
        declared_indexes = {index.name for index in table.indexes}
        reflected_indexes = {ix["name"] for ix in inspector.get_indexes(table.name)}
        assert declared_indexes <= reflected_indexes, table.name
        declared_fks = {fk.name for fk in table.foreign_key_constraints}
        assert declared_fks == {fk["name"] for fk in inspector.get_foreign_keys(table.name)}
        declared_uniques = {
            c.name for c in table.constraints if c.__class__.__name__ == "UniqueConstraint"
        }
        assert declared_uniques <= _unique_constraint_names(inspector, table.name)
        if backend != "mariadb":  # MariaDB names every primary key PRIMARY
            assert inspector.get_pk_constraint(table.name)["name"] == f"pk_{table.name}"


def test_the_sort_order_indexes_and_cascading_foreign_key_exist(
    alembic_runner: MigrationContext, alembic_engine: Engine
) -> None:
    alembic_runner.migrate_up_to("heads")
    inspector = inspect(alembic_engine)
    indexes = {ix["name"]: ix["column_names"] for ix in inspector.get_indexes("items")}
    assert indexes["ix_items_owner_id_created_at"] == ["owner_id", "created_at", "id"]
    assert indexes["ix_items_created_at"] == ["created_at", "id"]
    assert indexes["ix_items_title"] == ["title", "id"]
    assert "ix_items_owner_id" not in indexes  # the three-column index serves the foreign key
    users = {ix["name"]: ix["column_names"] for ix in inspector.get_indexes("users")}
    assert users["ix_users_created_at"] == ["created_at", "id"]
    (foreign_key,) = inspector.get_foreign_keys("items")
    assert foreign_key["referred_table"] == "users"
    assert (foreign_key.get("options") or {}).get("ondelete", "").upper() == "CASCADE"


def test_downgrade_to_base_leaves_none_of_our_tables(
    alembic_runner: MigrationContext, alembic_engine: Engine
) -> None:
    alembic_runner.migrate_up_to("heads")
    alembic_runner.migrate_down_to("base")
    assert not OUR_TABLES & set(inspect(alembic_engine).get_table_names())


def test_rows_survive_every_later_revision_going_down_and_up(
    alembic_runner: MigrationContext, alembic_engine: Engine
) -> None:
    """Rows written at head survive down/up of every revision newer than the one that made
    their table (while the initial revision is the only one, that is an empty round trip)."""
    owner = _first_revision_with_table(alembic_runner, alembic_engine, "users")
    alembic_runner.migrate_up_to("heads")
    with alembic_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (id, email, hashed_password, created_at, updated_at) "
                "VALUES (:id, 'kept@example.com', 'x', :now, :now)"
            ),
            {"id": "0190a0a0000070008000000000000001", "now": "2026-01-01 00:00:00"},
        )
    alembic_runner.migrate_down_to(owner)
    alembic_runner.migrate_up_to("heads")
    with alembic_engine.connect() as connection:
        emails = connection.scalars(text("SELECT email FROM users")).all()
    assert emails == ["kept@example.com"]


def _first_revision_with_table(runner: MigrationContext, engine: Engine, table: str) -> str:
    for revision in runner.history.revisions:
        if revision in ("base", "heads"):
            continue
        runner.migrate_up_to(revision)
        if table in inspect(engine).get_table_names():
            return revision
    pytest.fail(f"no revision creates the table {table!r}")


def test_stored_emails_take_their_normal_form_and_look_alikes_are_left_and_reported(
    alembic_runner: MigrationContext,
    alembic_engine: Engine,
    backend: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alembic_runner.migrate_up_to("5d1e2a7c4b90")  # before the emails were normalized
    rows = {
        "0190a0a0000070008000000000000001": "jose\u0301@example.com",  # NFD: becomes NFC
        "0190a0a0000070008000000000000002": "ada@example.com.",  # trailing dot
        "0190a0a0000070008000000000000003": "bob@example.com",  # the same as the next
        "0190a0a0000070008000000000000004": "bob@\uff45xample.com",  # a fullwidth e
        "0190a0a0000070008000000000000005": "zero\u200bwidth@example.com",  # refused now
    }
    native = backend == "postgresql"
    with alembic_engine.begin() as connection:
        for user_id, email in rows.items():
            connection.execute(
                text(
                    "INSERT INTO users (id, email, hashed_password, created_at, updated_at) "
                    "VALUES (:id, :email, 'x', :now, :now)"
                ),
                {
                    "id": str(uuid.UUID(user_id)) if native else user_id,
                    "email": email,
                    "now": "2026-01-01 00:00:00",
                },
            )
    with caplog.at_level("WARNING", logger="alembic.runtime.migration"):
        alembic_runner.migrate_up_to("heads")
    with alembic_engine.connect() as connection:
        stored = set(connection.scalars(text("SELECT email FROM users")))
    assert stored == {
        "josé@example.com",
        "ada@example.com",
        "bob@example.com",
        "bob@\uff45xample.com",
        "zero\u200bwidth@example.com",
    }
    warnings = " ".join(record.getMessage() for record in caplog.records)
    assert "read the same" in warnings
    assert "refuses" in warnings
    assert "bob@" not in warnings  # ids, never the addresses
