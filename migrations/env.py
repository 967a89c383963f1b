"""Alembic environment: the app's settings give the URL and `Base.metadata` the target schema.

The database comes, in order of precedence, from a connection (or engine) handed over in
`config.attributes["connection"]` (tests, the `app` CLI), from `-x url=...`, and from the
app's settings (`DATABASE_URL`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from logging.config import fileConfig

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from app.config import get_settings
from app.db.locks import compared_with_models, migration_lock
from app.db.models import Base
from app.db.session import make_engine
from app.db.types import UTCDateTime, UUIDColumn

config = context.config
target_metadata = Base.metadata

# Only the command-line `alembic` configures logging from alembic.ini; the app and the tests
# keep their own.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    return context.get_x_argument(as_dictionary=True).get("url") or get_settings().database_url


def _render_item(type_: str, obj: object, autogen_context: AutogenContext) -> str | bool:
    """Render the app's column types as plain SQLAlchemy types.

    A migration must keep meaning what it meant when it was written, so it does not import
    the app's types, which may change later.
    """
    if type_ == "type" and isinstance(obj, UTCDateTime):
        autogen_context.imports.add("from sqlalchemy.dialects import mysql")
        return 'sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")'
    if type_ == "type" and isinstance(obj, UUIDColumn):
        return "sa.Uuid()"
    return False


def _configure(**options: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        include_name=compared_with_models,
        render_item=_render_item,
        # SQLite cannot ALTER most things: batch mode copies the table instead.
        render_as_batch=True,
        **options,  # type: ignore[arg-type]
    )


def _postgresql_timeouts() -> list[str]:
    settings = get_settings()
    return [
        f"SET lock_timeout = '{int(settings.db_migration_lock_timeout * 1000)}ms'",
        f"SET statement_timeout = '{int(settings.db_migration_statement_timeout * 1000)}ms'",
    ]


def run_migrations_offline() -> None:
    """Write the SQL to stdout instead of running it."""
    url = config.attributes.get("url") or _url()
    _configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        if make_url(url).get_backend_name() == "postgresql":
            for statement in _postgresql_timeouts():
                context.execute(statement)
        context.run_migrations()


@contextmanager
def _sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """Switch SQLite's foreign keys off while batch mode copies tables.

    Dropping the old copy of `users` with foreign keys on would cascade-delete every item.
    The pragma has no effect inside a transaction, so it is set before the first BEGIN; the
    keys are checked inside the run's transaction, before it commits (`_check_foreign_keys`).
    """
    if connection.dialect.name != "sqlite" or connection.in_transaction():
        yield
        return
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None
    dbapi_connection.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    except BaseException:
        if connection.in_transaction():
            connection.rollback()
        raise
    else:
        if connection.in_transaction():
            connection.commit()
    finally:
        dbapi_connection.execute("PRAGMA foreign_keys=ON")


class ForeignKeyCheckError(RuntimeError):
    """A migration left rows whose references point nowhere; nothing of the run was kept."""


def _check_foreign_keys(connection: Connection) -> None:
    """SQLite: refuse to commit a run that left broken references (the keys were off)."""
    if connection.dialect.name != "sqlite":
        return
    violations = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if violations:
        tables = sorted({str(row[0]) for row in violations})
        raise ForeignKeyCheckError(
            f"the migrations left {len(violations)} rows in {', '.join(tables)} whose foreign "
            "keys point to no row; nothing was applied"
        )


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    with (
        migration_lock(connection, wait_seconds=get_settings().db_migration_wait),
        _sqlite_foreign_keys_off(connection),
        _postgresql_session_timeouts(connection),
    ):
        # One transaction per migration, except on SQLite: there the whole run is one write
        # transaction, which is what holds SQLite's write lock against a second migrator, and
        # what lets the foreign keys be checked before anything commits. SQLite's DDL is
        # transactional once pysqlite's own transaction handling is off (app.db.session);
        # Alembic assumes otherwise and would commit after every migration.
        _configure(
            connection=connection,
            transaction_per_migration=not sqlite,
            **({"transactional_ddl": True} if sqlite else {}),
        )
        with context.begin_transaction():
            context.run_migrations()
            _check_foreign_keys(connection)


@contextmanager
def _postgresql_session_timeouts(connection: Connection) -> Iterator[None]:
    """Session timeouts for the migrations, reset afterwards (the connection may be pooled)."""
    if connection.dialect.name != "postgresql":
        yield
        return
    owned_transaction = not connection.in_transaction()
    for statement in _postgresql_timeouts():
        connection.exec_driver_sql(statement)
    if owned_transaction:
        connection.commit()  # SET outlives the transaction; alembic opens its own
    try:
        yield
    except BaseException:
        if owned_transaction and connection.in_transaction():
            connection.rollback()
        _reset_timeouts(connection, commit=owned_transaction)
        raise
    _reset_timeouts(connection, commit=owned_transaction)


def _reset_timeouts(connection: Connection, *, commit: bool) -> None:
    try:
        connection.exec_driver_sql("RESET lock_timeout")
        connection.exec_driver_sql("RESET statement_timeout")
        if commit:
            connection.commit()
    except DBAPIError:
        connection.invalidate()  # never hand a pooled session back with migration timeouts


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
