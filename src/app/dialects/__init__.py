"""What differs between the databases: one module per backend behind one interface
(`app.dialects.base.Backend`).

Each backend says how its connections are set up, how it loads rows in bulk, how it writes an
upsert, which keyset condition its planner turns into an index range, where a commit stands for
replicas, how migrations lock the database and what a migration's session needs. The code above
this package asks `backend_of(...)` and does not branch on a backend's name: adding a backend
means adding a module here (and its error table in `app.db.error_codes`). Galera is a variant
of MariaDB, told apart per connection.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from app.db.errors import InvalidQueryError
from app.dialects.base import Backend, Batch, UniformUpsert
from app.dialects.galera import GALERA, is_galera
from app.dialects.mariadb import MARIADB
from app.dialects.postgresql import POSTGRESQL
from app.dialects.sqlite import SQLITE
from app.dialects.streams import is_streaming, streaming

# By SQLAlchemy's dialect name. A MariaDB engine is set up by the Galera variant, which does
# what MariaDB needs and, on a node of a cluster, what Galera needs as well.
_ENGINES: dict[str, Backend] = {
    "postgresql": POSTGRESQL,
    "sqlite": SQLITE,
    "mysql": GALERA,
    "mariadb": GALERA,
}


def backend_for(name: str) -> Backend:
    """The backend that sets up engines of SQLAlchemy dialect `name`."""
    try:
        return _ENGINES[name]
    except KeyError:
        raise InvalidQueryError(f"no backend for the database {name!r}") from None


def backend_of(bind: Connection | Engine | Session) -> Backend:
    """The backend behind a connection, an engine or a session. A MariaDB connection to a
    Galera node is the Galera variant's, any other MariaDB connection plain MariaDB's (an
    engine or session, which may reach either, is the Galera variant's)."""
    if isinstance(bind, Session):
        bind = bind.get_bind()  # no connection is opened for it
    backend = backend_for(bind.dialect.name)
    if backend is GALERA and isinstance(bind, Connection) and not is_galera(bind):
        return MARIADB
    return backend


__all__ = [
    "Backend",
    "Batch",
    "UniformUpsert",
    "backend_for",
    "backend_of",
    "is_streaming",
    "streaming",
]
