"""A migration under live traffic: the `app.migration_ops` helpers against the naive migration.

Four threads run units of work (reads by key, updates, inserts) against a table of `rows` items
while each migration runs, each on a fresh table: a NOT NULL column filled from every row and a
two-column index; two filled columns with a foreign key, a unique and a check constraint; a type
change; a column renamed; the table renamed. Printed: how long the migration took, the longest
request while it ran, the requests that failed, and those that failed in the half second after
(where a naive rename breaks the code that still uses the old name).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.orm import sessionmaker

from app.config import Settings
from app.migrations import alembic_config
from app.migrations.ops.rename_column import column_renames
from app.seed import SeedOptions, seed_database
from bench.harness import console
from bench.ingest import reset
from bench.live_traffic import (
    CONSTRAINTS_MIGRATION,
    NAIVE_CONSTRAINTS_MIGRATION,
    NAIVE_MIGRATION,
    NAIVE_RENAME_MIGRATION,
    NAIVE_RENAME_TABLE_MIGRATION,
    NAIVE_RETYPE_MIGRATION,
    ONLINE_MIGRATION,
    RENAME_MIGRATION,
    RENAME_TABLE_MIGRATION,
    RETYPE_MIGRATION,
    Traffic,
    run_extra_migration,
    sample_ids,
)

RESULTS = Path(__file__).resolve().parent / "results" / "online_migration.json"
MIGRATIONS = {
    "naive": NAIVE_MIGRATION,
    "migration_ops": ONLINE_MIGRATION,
    "naive constraints": NAIVE_CONSTRAINTS_MIGRATION,
    "migration_ops constraints": CONSTRAINTS_MIGRATION,
    "naive retype": NAIVE_RETYPE_MIGRATION,
    "migration_ops retype": RETYPE_MIGRATION,
    "naive rename": NAIVE_RENAME_MIGRATION,
    "migration_ops rename": RENAME_MIGRATION,
    "naive rename table": NAIVE_RENAME_TABLE_MIGRATION,
    "migration_ops rename table": RENAME_TABLE_MIGRATION,
}
# How long the traffic goes on after a migration: a rename breaks the running code only then.
_AFTER = 0.5


def run_online_migration(
    backend: str, engine: Engine, *, rows: int, only: set[str] | None = None
) -> list[dict[str, object]]:
    """Each migration of MIGRATIONS (or of `only`, by name), on a freshly seeded table of
    `rows` items."""
    figures = []
    for name, body in MIGRATIONS.items():
        if only is not None and name not in only:
            continue
        _fresh_table(engine, rows)
        item_ids, owner_ids = sample_ids(engine)
        factory = sessionmaker(bind=engine, expire_on_commit=False)
        with Traffic(factory, item_ids, owner_ids) as traffic:
            time.sleep(1.0)
            started = time.perf_counter()
            error = None
            try:
                run_extra_migration(engine, body)
            except Exception as exc:  # the naive one may be refused (a statement timeout)
                error = type(exc).__name__
            ended = time.perf_counter()
            time.sleep(_AFTER)
        during = traffic.during(started, ended)
        after = [r for r in traffic.requests if r.started > ended]
        figure = {
            "backend": backend,
            "migration": name,
            "rows": rows,
            "migration_seconds": round(ended - started, 2),
            "migration_error": error,
            "requests_during": len(during),
            "longest_request_seconds": round(max(r.seconds for r in during), 3) if during else None,
            "failed_requests": len([r for r in during if r.error is not None]),
            "failed_after": len([r for r in after if r.error is not None]),
        }
        console.print(
            f"  {backend:<10} online   {name:<26} {rows:,} rows: migration "
            f"{figure['migration_seconds']} s{' (' + error + ')' if error else ''}, "
            f"{len(during)} requests meanwhile, longest {figure['longest_request_seconds']} s, "
            f"{figure['failed_requests']} failed, {figure['failed_after']} of {len(after)} "
            f"failed in the {_AFTER} s after"
        )
        figures.append(figure)
    return figures


def _fresh_table(engine: Engine, rows: int) -> None:
    """Back at the project's head (no column, no index of an earlier round), `rows` items."""
    mysql = engine.dialect.name == "mysql"
    _renamed_back(engine)
    with engine.begin() as connection:
        inspector = inspect(connection)
        columns = {c["name"] for c in inspector.get_columns("items")}
        if "title_length" in columns:
            on_table = " ON items" if mysql else ""
            connection.exec_driver_sql(
                f"DROP INDEX IF EXISTS ix_items_owner_id_title_length{on_table}"
            )
            connection.exec_driver_sql("ALTER TABLE items DROP COLUMN title_length")
        if mysql and "reviewer_id" in columns:
            connection.exec_driver_sql(
                "ALTER TABLE items DROP FOREIGN KEY IF EXISTS fk_items_reviewer_id_users"
            )
        connection.exec_driver_sql(
            "ALTER TABLE items DROP CONSTRAINT IF EXISTS ck_items_version_positive"
        )
        for column in ("reviewer_id", "code"):
            if column in columns:
                connection.exec_driver_sql(f"ALTER TABLE items DROP COLUMN {column}")
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        connection.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head})
    reset(engine)
    with engine.begin() as connection:  # `items.version` back to its type, on an empty table
        connection.exec_driver_sql(
            "ALTER TABLE items MODIFY version INTEGER NOT NULL DEFAULT 1"
            if mysql
            else "ALTER TABLE items ALTER COLUMN version TYPE integer"
        )
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False))
    users = max(rows // 100, 1)
    seed_database(engine, settings, SeedOptions(users=users, items_per_user=rows // users))


def _renamed_back(engine: Engine) -> None:
    """`items` and its `title` as before an earlier round's renames (naive or helper)."""
    mysql = engine.dialect.name == "mysql"
    with engine.begin() as connection:
        if inspect(connection).has_table("things"):
            connection.exec_driver_sql("DROP VIEW IF EXISTS items")
            connection.exec_driver_sql(
                "RENAME TABLE things TO items" if mysql else "ALTER TABLE things RENAME TO items"
            )
        for rename in column_renames(connection):
            for trigger in (f"{rename.trigger}_ins", f"{rename.trigger}_upd") if mysql else ():
                connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trigger}")
            if not mysql:
                connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {rename.trigger} ON items")
                connection.exec_driver_sql(f"DROP FUNCTION IF EXISTS {rename.trigger}_fn()")
        columns = {c["name"] for c in inspect(connection).get_columns("items")}
        if "name" not in columns:
            return
        on_table = " ON items" if mysql else ""
        connection.exec_driver_sql(f"DROP INDEX IF EXISTS ix_items_name{on_table}")
        if "title" in columns:
            connection.exec_driver_sql("ALTER TABLE items DROP COLUMN name")
        else:
            connection.exec_driver_sql("ALTER TABLE items RENAME COLUMN name TO title")


def save(figures: list[dict[str, object]], path: Path = RESULTS) -> None:
    """Write `figures` over the earlier ones of the same backend, migration and rows."""

    def key(figure: dict[str, object]) -> tuple[object, ...]:
        return figure["backend"], figure["migration"], figure["rows"]

    earlier = json.loads(path.read_text()) if path.exists() else []
    fresh = {key(figure) for figure in figures}
    kept = [figure for figure in earlier if key(figure) not in fresh]
    path.write_text(json.dumps(kept + figures, indent=2) + "\n")
