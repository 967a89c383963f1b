"""The database servers the tests may use, and throwaway databases on them."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from app.db.admin import create_database, drop_database
from app.db.session import make_engine

ROOT = Path(__file__).resolve().parent.parent
ALL_BACKENDS = ("sqlite", "postgresql", "mariadb", "galera", "pgbouncer")
# "galera" is a node of a three-node MariaDB Galera cluster that the run starts (TEST_GALERA_URL
# points at an existing one instead). It runs the tests that differ on a synchronous multi-master
# cluster: the repository and unit-of-work contract, bulk paths, and the cluster's own tests. The
# rest (CLI, migration helpers, text semantics, ...) send the same SQL as on one MariaDB server.
GALERA_SUITE = (
    "tests/contract/",
    "tests/integration/test_unit_of_work.py",
    "tests/integration/test_bulk_paths.py",
    "tests/integration/test_galera.py",
    "tests/integration/test_statement_statistics.py",
)

# "pgbouncer" is the PostgreSQL server reached through a PgBouncer in transaction mode that the
# run starts (stock settings): the contract suite, both faces, and the pooler's own tests run
# there. Its databases default to another time zone and statement timeout than ours, so that
# the tests prove ours are in force in every transaction.
POOLED_SUITE = ("tests/contract/", "tests/integration/test_pooler.py")
DATABASE_DEFAULTS = {"TimeZone": "Asia/Kathmandu", "statement_timeout": "987s"}

# Where each server is; the environment can point the tests elsewhere.
SERVER_URLS = {
    "postgresql": os.environ.get(
        "TEST_POSTGRESQL_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
if "TEST_GALERA_URL" in os.environ:
    SERVER_URLS["galera"] = os.environ["TEST_GALERA_URL"]


def pooler_of(backend: str) -> str | None:
    """The DATABASE_POOLER mode `backend` is reached through, if any."""
    return "transaction" if backend == "pgbouncer" else None


def direct_url(url: URL) -> URL:
    """`url` without the pooler in between: the PostgreSQL server's own address (a URL of
    another backend is its own)."""
    if url.port is None or url.port != make_url(SERVER_URLS.get("pgbouncer", "sqlite://")).port:
        return url
    server = make_url(SERVER_URLS["postgresql"])
    return url.set(host=server.host, port=server.port)


def is_mariadb(backend: str) -> bool:
    """Whether `backend` is a MariaDB server, alone or in a Galera cluster."""
    return backend in ("mariadb", "galera")


def required_backends() -> set[str]:
    """The backends REQUIRE_BACKENDS names ("all", or a comma-separated list): no test that
    needs one of them may skip."""
    value = os.environ.get("REQUIRE_BACKENDS", "").strip()
    if value == "all":
        return set(ALL_BACKENDS)
    return {name.strip() for name in value.split(",") if name.strip()}


def unreachable_reason(backend: str) -> str | None:
    """Why `backend` cannot be used now, or None when it answers."""
    if backend == "sqlite":
        return None
    if backend not in SERVER_URLS:
        return f"{backend} has no server"
    engine = make_engine(
        SERVER_URLS[backend], poolclass=NullPool, connect_timeout=3, pooler=pooler_of(backend)
    )
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except Exception as exc:  # any failure to connect means "not reachable"
        masked = make_url(SERVER_URLS[backend]).render_as_string(hide_password=True)
        return f"{backend} at {masked} is not reachable: {type(exc).__name__}"
    finally:
        engine.dispose()
    return None


@dataclass
class ThrowawayDatabases:
    """Databases made for this test run and dropped at its end."""

    tmp_dir: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def __post_init__(self) -> None:
        self.created: list[URL] = []

    def new_url(self, backend: str, label: str) -> URL:
        """A URL for a new, empty database on `backend`."""
        name = f"app_test_{self.run_id}_{label}"
        if backend == "sqlite":
            url = make_url(f"sqlite:///{self.tmp_dir / name}.db")
            create_database(url)  # its file, empty, as a server's database is
        elif backend == "pgbouncer":
            server = make_url(SERVER_URLS["postgresql"]).set(database=name)
            create_database(server)
            _set_database_defaults(server)
            self.created.append(server)
            return make_url(SERVER_URLS["pgbouncer"]).set(database=name)
        else:
            url = make_url(SERVER_URLS[backend]).set(database=name)
            create_database(url)
        self.created.append(url)
        return url

    def new_linguistic_url(self, backend: str, label: str) -> URL:
        """A URL for a new, empty database whose default collation is linguistic: it equates
        case variants (MariaDB's utf8mb4_general_ci) or sorts 'a' before 'B' (PostgreSQL ICU)."""
        if backend == "sqlite":
            return self.new_url(backend, label)
        url = make_url(SERVER_URLS[backend]).set(database=f"app_test_{self.run_id}_{label}")
        default = (
            "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'und' LOCALE 'C.UTF-8'"
            if backend == "postgresql"
            else "CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        )
        server = make_engine(
            url.set(database="postgres" if backend == "postgresql" else "information_schema"),
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
        )
        try:
            with server.connect() as connection:
                connection.exec_driver_sql(f"CREATE DATABASE {url.database} {default}")
        finally:
            server.dispose()
        self.created.append(url)
        return url

    def drop_all(self) -> None:
        for url in self.created:
            drop_database(url)
        self.created.clear()


def _set_database_defaults(url: URL) -> None:
    engine = make_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            for name, value in DATABASE_DEFAULTS.items():
                connection.exec_driver_sql(f"ALTER DATABASE {url.database} SET {name} = '{value}'")
    finally:
        engine.dispose()
