"""Alembic driven from Python: the project's configuration, where a database stands, upgrade
and downgrade."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from app.db.models import Base
from app.migrations.lock import compared_with_models

_SOURCE_ROOT = Path(__file__).resolve().parents[3]


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
    """The project's Alembic configuration; logging stays as the caller set it up."""
    config = Config(str(find_alembic_ini()))
    config.attributes["configure_logger"] = False
    return config


@dataclass(frozen=True)
class MigrationState:
    """Where a database stands against the migration scripts."""

    current: tuple[str, ...]
    heads: tuple[str, ...]

    @property
    def at_head(self) -> bool:
        return bool(self.heads) and set(self.current) == set(self.heads)


def migration_state(engine: Engine) -> MigrationState:
    """The revisions the database is at and the newest ones the scripts define."""
    script = ScriptDirectory.from_config(alembic_config())
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    return MigrationState(current=tuple(current), heads=tuple(script.get_heads()))


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
        current = migration_state(engine).current
        for head in current:
            applied.update(rev.revision for rev in script.iterate_revisions(head, "base"))
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
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "target_metadata": Base.metadata,
                "include_name": compared_with_models,
            },
        )
        return [_describe(diff) for diff in compare_metadata(context, Base.metadata)]


def _describe(diff: Any) -> str:
    """One autogenerate difference in words, e.g. `modify_type users.full_name: A -> B`."""
    if isinstance(diff, list):  # column-level changes come grouped per column
        return "; ".join(_describe(part) for part in diff)
    action = diff[0]
    if action.startswith("modify_"):
        _, _schema, table, column, _existing, old, new = diff
        return f"{action} {table}.{column}: {old} -> {new}"
    if action in ("add_column", "remove_column"):
        _, _schema, table, column = diff
        return f"{action} {table}.{column.name}"
    subject = diff[1]
    table = getattr(subject, "table", None)
    where = f" on {table.name}" if table is not None and table.name != subject.name else ""
    return f"{action} {subject.name}{where}"


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database behind `engine` up to `revision`."""
    _run(engine, lambda config: command.upgrade(config, revision))


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database behind `engine` down to `revision`."""
    _run(engine, lambda config: command.downgrade(config, revision))


def _run(engine: Engine, action: Callable[[Config], None]) -> None:
    config = alembic_config()
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        action(config)
        if connection.in_transaction():
            connection.commit()
