"""Alembic driven from Python: the project's configuration and where a database stands."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

_SOURCE_ROOT = Path(__file__).resolve().parents[2]


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
    """The project's Alembic configuration."""
    return Config(str(find_alembic_ini()))


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
