"""Alembic driven from Python: the project's configuration, where a database stands, upgrade
and downgrade."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine

from app.db.models import Base
from app.db.runtime import get_extensions, get_settings
from app.dialects import backend_of
from app.migrations import compare
from app.migrations.ops.rename_column import column_renames
from app.migrations.ops.rename_table import table_renames
from app.migrations.progress import Progress, check_compiles, failure, pending_oldest_first

_SOURCE_ROOT = Path(__file__).resolve().parents[3]
# The branch label of the project's own migrations; an extension's migrations are a branch of
# their own (README "Adding a model").
MAIN_BRANCH = "app"


def find_alembic_ini() -> Path:
    """alembic.ini: from ALEMBIC_CONFIG, the working directory, or the source tree."""
    candidates = [Path(os.environ["ALEMBIC_CONFIG"])] if "ALEMBIC_CONFIG" in os.environ else []
    candidates += [Path.cwd() / "alembic.ini", _SOURCE_ROOT / "alembic.ini"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "alembic.ini not found; run from the project directory or set ALEMBIC_CONFIG"
    )


def alembic_config() -> Config:
    """The project's Alembic configuration, with the migrations of every extension package
    (APP_EXTENSIONS) as branches of their own; logging stays as the caller set it up."""
    config = Config(str(find_alembic_ini()))
    config.attributes["configure_logger"] = False
    extra = extension_migrations()
    if extra:
        script = ScriptDirectory.from_config(config)
        own = config.get_main_option("version_locations") or str(Path(script.dir) / "versions")
        locations = [own, *map(str, extra.values())]
        config.set_main_option("version_locations", os.pathsep.join(locations))
    return config


def extension_migrations() -> dict[str, Path]:
    """The `migrations/` directory of each extension package that has one, by the package's
    name in APP_EXTENSIONS (its branch label), in that order."""
    found = {}
    for name, package in zip(get_settings().extensions, get_extensions(), strict=True):
        for directory in getattr(package, "__path__", ()):
            migrations = Path(directory) / "migrations"
            if migrations.is_dir():
                found[name] = migrations
                break
    return found


def new_revision(message: str, *, autogenerate: bool, branch: str = MAIN_BRANCH) -> list[Path]:
    """Write a migration on top of `branch` (the project's own, or an extension package's), in
    that branch's directory; an extension's first one starts its branch, after the project's
    newest revision (its tables may refer to the project's). The files written: none where
    autogenerate found no difference between the models and the database."""
    if not re.search(r"\w", message):
        raise ValueError("a migration's message names what it does (-m), and its file after it")
    config = alembic_config()
    config.attributes["autogenerate"] = autogenerate
    script = ScriptDirectory.from_config(config)
    options: dict[str, Any] = {"head": f"{branch}@head"}
    if not any(branch in rev.branch_labels for rev in script.walk_revisions()):
        directory = extension_migrations().get(branch)
        if directory is None:
            known = ", ".join([MAIN_BRANCH, *extension_migrations()])
            raise ValueError(
                f"no migration branch {branch!r}: the branches are {known} (an extension "
                "package needs a migrations/ directory)"
            )
        (main_head,) = script.get_revisions(f"{MAIN_BRANCH}@head")
        assert main_head is not None
        options = {
            "head": "base",
            "branch_label": branch,
            "version_path": str(directory),
            "depends_on": main_head.revision,
        }
    try:
        written = command.revision(config, message=message, autogenerate=autogenerate, **options)
    except CommandError as exc:
        if "not up to date" not in str(exc):
            raise
        raise ValueError(
            "the database is not at the newest migration: `app db upgrade` first (autogenerate "
            "compares the models with a database that has every migration applied)"
        ) from None
    scripts = written if isinstance(written, list) else [written]
    return [Path(found.path) for found in scripts if found is not None]


@dataclass(frozen=True)
class MigrationState:
    """Where a database stands against the migration scripts: the revisions it records, the
    newest ones the scripts define, and those it has not applied yet."""

    current: tuple[str, ...]
    heads: tuple[str, ...]
    pending: tuple[str, ...] = ()

    @property
    def at_head(self) -> bool:
        return bool(self.heads) and not self.pending


def migration_state(engine: Engine) -> MigrationState:
    """The revisions the database is at and the newest ones the scripts define."""
    script = ScriptDirectory.from_config(alembic_config())
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    applied = _applied(script, current)
    pending = tuple(rev.revision for rev in script.walk_revisions() if rev.revision not in applied)
    return MigrationState(current=tuple(current), heads=tuple(script.get_heads()), pending=pending)


def _applied(script: ScriptDirectory, current: tuple[str, ...]) -> set[str]:
    """Every revision the database has: those it records and all they stand on (a branch's
    revision stands on the revisions it depends on, which the database then does not record)."""
    applied: set[str] = set()
    for head in current:
        applied.update(rev.revision for rev in script.iterate_revisions(head, "base"))
    return applied


@dataclass(frozen=True)
class RevisionInfo:
    """One migration script, and whether the database has it."""

    revision: str
    down_revision: str | None
    created: str
    message: str
    applied: bool
    path: str


_CREATE_DATE = re.compile(r"^Create Date: (.+)$", re.MULTILINE)


def revisions(engine: Engine | None = None) -> list[RevisionInfo]:
    """Every revision, newest first; `applied` is known when an engine is given."""
    script = ScriptDirectory.from_config(alembic_config())
    applied: set[str] = set()
    if engine is not None:
        applied = _applied(script, migration_state(engine).current)
    found = []
    for rev in script.walk_revisions():
        match = _CREATE_DATE.search(rev.longdoc or rev.module.__doc__ or "")
        down = rev.down_revision
        found.append(
            RevisionInfo(
                revision=rev.revision,
                down_revision=down if isinstance(down, str) or down is None else ",".join(down),
                created=match.group(1)[:16] if match else "",
                message=rev.doc or "",
                applied=rev.revision in applied,
                path=rev.path,
            )
        )
    return found


def drift(engine: Engine) -> list[str]:
    """What autogenerate would change to make the database match the models (empty: none)."""
    get_extensions()  # their models are part of what the database should match
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={"target_metadata": Base.metadata, **compare.OPTIONS},
        )
        differences = compare_metadata(context, Base.metadata)
        collations = partial(_collation_change, connection)
        return [_describe(diff, collations) for diff in differences]


def renames_in_progress(engine: Engine) -> list[str]:
    """The renames whose expand step ran and whose contract step did not (both names work),
    in words (`app.migration_ops.rename_column`, `rename_table`)."""
    with engine.connect() as connection:
        found = [*table_renames(connection), *column_renames(connection)]
    return [str(rename) for rename in found]


def _collation_change(connection: Connection, table: str, column: str, new: Any) -> str:
    """The words " (collation A -> B)" where the column's stored collation is not the one its
    model declares (a type that reads the same either way), else nothing."""
    wanted = compare.declared_collation(new, connection.dialect)
    stored = backend_of(connection).column_collations(connection, table).get(column)
    if wanted is None or stored is None or stored == wanted:
        return ""
    return f" (collation {stored} -> {wanted})"


def _describe(diff: Any, collations: Callable[[str, str, Any], str]) -> str:
    """One autogenerate difference in words, e.g. `modify_type users.full_name: A -> B`."""
    if isinstance(diff, list):  # column-level changes come grouped per column
        return "; ".join(_describe(part, collations) for part in diff)
    action = diff[0]
    if action.startswith("modify_"):
        _, _schema, table, column, _existing, old, new = diff
        changed = collations(table, column, new) if action == "modify_type" else ""
        return f"{action} {table}.{column}: {old} -> {new}{changed}"
    if action in ("add_column", "remove_column"):
        _, _schema, table, column = diff
        return f"{action} {table}.{column.name}"
    subject = diff[1]
    table = getattr(subject, "table", None)
    where = f" on {table.name}" if table is not None and table.name != subject.name else ""
    return f"{action} {subject.name}{where}"


def upgrade(engine: Engine, revision: str = "heads") -> list[str]:
    """Migrate the database behind `engine` up to `revision`; the migrations applied, in order
    (`<revision> <message>`).

    First every pending migration is written in the database's SQL without running
    (`MigrationCompileError` names one that cannot be); a migration that fails says which, at
    which operation and why (`MigrationFailedError`)."""
    state = migration_state(engine)
    script = ScriptDirectory.from_config(alembic_config())
    check_compiles(script, pending_oldest_first(script, state.pending), engine.dialect)
    return _run(engine, lambda config: command.upgrade(config, revision))


def downgrade(engine: Engine, revision: str) -> list[str]:
    """Migrate the database behind `engine` down to `revision`; the migrations reverted, in
    order."""
    return _run(engine, lambda config: command.downgrade(config, revision))


def _run(engine: Engine, action: Callable[[Config], None]) -> list[str]:
    config = alembic_config()
    progress = Progress()
    config.attributes["progress"] = progress
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        try:
            action(config)
        except Exception as exc:
            told = failure(exc, progress, ScriptDirectory.from_config(config))
            if told is None:
                raise
            raise told from exc
        if connection.in_transaction():
            connection.commit()
    return progress.finished
