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
from sqlalchemy.pool import NullPool

from app.config import get_settings
from app.db.models import Base
from app.db.session import make_engine
from app.db.types import UTCDateTime

config = context.config
target_metadata = Base.metadata

# Only the command-line `alembic` configures logging from alembic.ini; callers that hand over a
# connection keep their own logging.
if config.config_file_name is not None and "connection" not in config.attributes:
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
    return False


def _configure(**options: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        render_item=_render_item,
        # SQLite cannot ALTER most things: batch mode copies the table instead.
        render_as_batch=True,
        transaction_per_migration=True,
        **options,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    """Write the SQL to stdout instead of running it."""
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


@contextmanager
def _sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """Switch SQLite's foreign keys off while batch mode copies tables.

    Dropping the old copy of `users` with foreign keys on would cascade-delete every item.
    The pragma has no effect inside a transaction, so it is set before the first BEGIN,
    and the keys are checked once the migrations are done.
    """
    if connection.dialect.name != "sqlite" or connection.in_transaction():
        yield
        return
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None
    dbapi_connection.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        if connection.in_transaction():
            connection.commit()
        dbapi_connection.execute("PRAGMA foreign_keys=ON")
    violations = dbapi_connection.execute("PRAGMA foreign_key_check").fetchall()
    if violations:
        raise RuntimeError(f"migration left rows that break foreign keys: {violations[:5]}")


def _run(connection: Connection) -> None:
    with _sqlite_foreign_keys_off(connection):
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()


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
