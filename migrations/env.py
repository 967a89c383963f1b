"""Alembic environment: the app's settings give the URL and `Base.metadata` the target schema.

The database comes, in order of precedence, from a connection (or engine) handed over in
`config.attributes["connection"]` (tests, the `app` CLI), from `-x url=...`, and from the
app's settings (`DATABASE_URL`).
"""

from __future__ import annotations

from functools import partial
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from app.db.models import Base
from app.db.runtime import get_extensions, get_settings
from app.db.session import make_engine
from app.dialects import backend_for, backend_of
from app.migrations import compare
from app.migrations.autogenerate import process_revision_directives
from app.migrations.lock import migration_lock
from app.migrations.progress import PROGRESS, Progress
from app.migrations.render import render_item

config = context.config
get_extensions()  # a team's packages of models (APP_EXTENSIONS) join the metadata
target_metadata = Base.metadata

# Only the command-line `alembic` configures logging from alembic.ini; the app and the tests
# keep their own.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    return context.get_x_argument(as_dictionary=True).get("url") or get_settings().database_url


def _autogenerating() -> bool:
    """Whether this run fills a new script in from the models (`app db revision
    --autogenerate`, or alembic's own command line)."""
    asked = config.attributes.get("autogenerate")
    return bool(asked if asked is not None else getattr(config.cmd_opts, "autogenerate", False))


def _configure(**options: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        **compare.OPTIONS,
        render_item=render_item,
        process_revision_directives=partial(
            process_revision_directives, skip_empty=_autogenerating()
        ),
        # SQLite cannot ALTER most things: batch mode copies the table instead.
        render_as_batch=True,
        **options,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    """Write the SQL to stdout instead of running it."""
    url = config.attributes.get("url") or _url()
    _configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        transaction_per_migration=True,
    )
    settings = get_settings()
    backend = backend_for(make_url(url).get_backend_name())
    with context.begin_transaction():
        # The settings a migration's session gets online, written into the SQL.
        for statement in backend.migration_settings(
            lock_timeout=settings.db_migration_lock_timeout,
            statement_timeout=settings.db_migration_statement_timeout,
        ):
            context.execute(statement)
        context.run_migrations()


def _run(connection: Connection) -> None:
    settings = get_settings()
    backend = backend_of(connection)
    with (
        migration_lock(connection, wait_seconds=settings.db_migration_wait),
        backend.migration_session(
            connection,
            lock_timeout=settings.db_migration_lock_timeout,
            statement_timeout=settings.db_migration_statement_timeout,
        ),
    ):
        # One transaction per migration, except where the whole run is one (SQLite): there it
        # is what holds the write lock against a second migrator, and what lets the foreign
        # keys be checked before anything commits. SQLite's DDL is transactional once
        # pysqlite's own transaction handling is off (app.dialects.sqlite); Alembic assumes
        # otherwise and would commit after every migration.
        whole_run = backend.one_transaction_per_run
        progress = config.attributes.get("progress") or Progress()
        progress.follow(context.script)
        _configure(
            connection=connection,
            transaction_per_migration=not whole_run,
            on_version_apply=progress.next_migration,
            **{PROGRESS: progress},
            **({"transactional_ddl": True} if whole_run else {}),
        )
        with context.begin_transaction():
            context.run_migrations()
            backend.check_migrations(connection)


def run_migrations_online() -> None:
    """Run the migrations on a live connection."""
    given = config.attributes.get("connection")
    if isinstance(given, Connection):
        _run(given)
        return
    engine = given if isinstance(given, Engine) else make_engine(_url(), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            _run(connection)
            if connection.in_transaction():
                connection.commit()
    finally:
        if engine is not given:
            engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
