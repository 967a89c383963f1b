"""Migration machinery: where a database stands and moving it (`state`), the lock that
serialises migrators (`lock`), safety checks (`lint`), the schema diagram (`diagram`) and
schema changes under live traffic (`ops`, public as `app.migration_ops`)."""

from app.migrations.state import (
    MigrationState,
    RevisionInfo,
    alembic_config,
    downgrade,
    drift,
    find_alembic_ini,
    migration_state,
    revisions,
    upgrade,
)

__all__ = [
    "MigrationState",
    "RevisionInfo",
    "alembic_config",
    "downgrade",
    "drift",
    "find_alembic_ini",
    "migration_state",
    "revisions",
    "upgrade",
]
