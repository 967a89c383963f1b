"""Migration machinery: where a database stands and moving it (`state`), the lock that
serialises migrators (`lock`), safety checks (`lint`), the schema diagram (`diagram`) and
schema changes under live traffic (`ops`, public as `app.migration_ops`)."""

from app.migrations.progress import MigrationCompileError, MigrationFailedError
from app.migrations.state import (
    MAIN_BRANCH,
    MigrationState,
    RevisionInfo,
    alembic_config,
    downgrade,
    drift,
    find_alembic_ini,
    migration_state,
    new_revision,
    renames_in_progress,
    revisions,
    upgrade,
)

__all__ = [
    "MAIN_BRANCH",
    "MigrationCompileError",
    "MigrationFailedError",
    "MigrationState",
    "RevisionInfo",
    "alembic_config",
    "downgrade",
    "drift",
    "find_alembic_ini",
    "migration_state",
    "new_revision",
    "renames_in_progress",
    "revisions",
    "upgrade",
]
