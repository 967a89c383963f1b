"""Settings read from the environment and `.env`, validated; the process's own are
`app.db.runtime.get_settings()`."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import quote, unquote

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

AppEnv = Literal["development", "test", "production"]

PLACEHOLDER_SECRET_KEY = "development-only-secret-key"  # noqa: S105 - refused in production
PLACEHOLDER_SEED_PASSWORD = "changethis"  # noqa: S105 - the known placeholder, refused in production
# Anyone holding SECRET_KEY can forge cursors: production wants a long one that is nobody's
# example (the ones below are, as are the placeholders of well-known templates).
MIN_SECRET_KEY_BYTES = 32
KNOWN_PLACEHOLDERS = frozenset(
    {
        PLACEHOLDER_SECRET_KEY,
        PLACEHOLDER_SEED_PASSWORD,
        "changeme",
        "change-me",
        "secret",
        "secret-key",
        "secretkey",
        "your-secret-key",
        "supersecret",
    }
)

ACCEPTED_URL_FORMS = (
    "sqlite:///path/to/file.db, sqlite:// (in memory), "
    "postgresql+psycopg://user:password@host:5432/dbname, "
    "mysql+pymysql://user:password@host:3306/dbname (MariaDB and MySQL); the asyncio drivers "
    "(sqlite+aiosqlite, mysql+asyncmy) are accepted too"
)

# The drivers this project installs, for each backend: one for blocking code, one for asyncio
# (psycopg 3 is both). A URL may name either; each kind of engine gets its own.
_SYNC_DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg", "mysql": "pymysql"}
_ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "psycopg", "mysql": "asyncmy"}
_DRIVER_KIND = {"psycopg_async": "psycopg"}


_DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class SettingsError(ValueError):
    """The configuration cannot be used; the message names the variable and never a secret."""


def parse_database_url(raw: str | URL, *, asynchronous: bool = False) -> URL:
    """Parse a database URL and refuse unsupported backends; the driver becomes the installed
    one for blocking code, or for asyncio when `asynchronous`."""
    try:
        parsed: URL | None = make_url(_credentials_encoded(raw) if isinstance(raw, str) else raw)
    except (ArgumentError, ValueError):  # not a URL; a port that is not a number
        parsed = None  # refused below, so that its error (which quotes the URL) is not chained
    if parsed is None:
        raise SettingsError(
            f"DATABASE_URL is not a valid database URL; accepted forms: {ACCEPTED_URL_FORMS}"
        )
    url = _password_out_of_query(parsed)
    backend = "mysql" if url.get_backend_name() == "mariadb" else url.get_backend_name()
    if backend not in _SYNC_DRIVERS:
        raise SettingsError(
            f"DATABASE_URL names the unsupported backend {url.get_backend_name()!r}; "
            f"accepted forms: {ACCEPTED_URL_FORMS}"
        )
    if "+" in url.drivername:
        driver = _DRIVER_KIND.get(url.get_driver_name(), url.get_driver_name())
        if driver not in (_SYNC_DRIVERS[backend], _ASYNC_DRIVERS[backend]):
            raise SettingsError(
                f"DATABASE_URL names the driver {driver!r}, which this project does not "
                f"install; accepted forms: {ACCEPTED_URL_FORMS}"
            )
    if backend == "mysql":
        mysql_servers(url)  # refuses a malformed list of servers now, not at the first connect
    driver = (_ASYNC_DRIVERS if asynchronous else _SYNC_DRIVERS)[backend]
    return url.set(drivername=f"{url.get_backend_name()}+{driver}")


MYSQL_DEFAULT_PORT = 3306


def mysql_servers(url: URL) -> list[tuple[str, int]]:
    """The MariaDB servers a URL names, in the order to try them: each `host=name:port` of its
    query (several nodes of one cluster), or else its own host and port."""
    given = url.query.get("host")
    if given is None:
        return [(url.host or "localhost", url.port or MYSQL_DEFAULT_PORT)]
    servers = []
    for entry in (given,) if isinstance(given, str) else given:
        name, _, port = entry.rpartition(":") if ":" in entry else (entry, "", "")
        if not name or not (port.isdigit() or port == ""):
            raise SettingsError(
                f"DATABASE_URL names the server {entry!r}; write each as host=name:port"
            )
        servers.append((name, int(port) if port else MYSQL_DEFAULT_PORT))
    return servers


# Query parameters the drivers take as the password (psycopg: password; PyMySQL: password, passwd).
_PASSWORD_KEYS = ("password", "passwd")
# Characters that end a password early when written unencoded in a URL.
_BREAKS_A_PASSWORD = frozenset("@/?#")


def _credentials_encoded(raw: str) -> str:
    """`raw` with a password that holds '@', '/', '?' or '#' unencoded percent-encoded, as RFC
    3986 wants it: the credentials end at the last '@' of the URL. (Read as written, the first
    '@' would end them and the rest of the password would pass for the host.)"""
    scheme, sep, rest = raw.partition("://")
    at = rest.rfind("@")
    if not sep or at < 0:
        return raw
    credentials, host_and_rest = rest[:at], rest[at + 1 :]
    user, colon, password = credentials.partition(":")
    if not colon or not _BREAKS_A_PASSWORD & set(password) or "%" in password:
        return raw
    return f"{scheme}://{user}:{quote(password, safe='')}@{host_and_rest}"


def _password_out_of_query(url: URL) -> URL:
    """A password given as `?password=` moved to where URLs keep one, so that every rendering of
    the URL (ours, SQLAlchemy's, an engine's repr) hides it."""
    given = [key for key in _PASSWORD_KEYS if key in url.query]
    if not given:
        return url
    value = url.query[given[0]]
    password = value if isinstance(value, str) else value[0]
    return url.difference_update_query(given).set(password=url.password or password)


def mask_url(url: str | URL) -> str:
    """Render a URL for people: the password, wherever it was given, becomes `***`."""
    try:
        parsed = make_url(_credentials_encoded(url) if isinstance(url, str) else url)
    except ArgumentError:
        return "<unparseable database URL>"
    rendered = _password_out_of_query(parsed).render_as_string(hide_password=True)
    # Servers listed in the query read as written (host=a:3306), not percent-encoded.
    address, question, query = rendered.partition("?")
    return address + question + unquote(query)


class Settings(BaseSettings):
    """Everything the data layer reads from the environment (or a `.env` file)."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # A validation error must never echo DATABASE_URL back: it may hold a password.
        hide_input_in_errors=True,
    )

    database_url: str = Field(default="sqlite:///./app.db", repr=False)
    # Streaming replicas of the PostgreSQL primary (comma-separated URLs): read-only units of
    # work run there while a replica is up and no more than DB_REPLICA_MAX_LAG seconds behind.
    database_replica_urls: str = Field(default="", repr=False)
    db_replica_max_lag: float = Field(default=5.0, gt=0)
    # A connection pooler between the application and PostgreSQL (PgBouncer, or a managed one
    # that behaves like it): "transaction" (a server connection per transaction: the session
    # settings go with every transaction, and no statement is prepared on the server) or
    # "session" (the settings once per connection); empty: none. README "Behind a connection
    # pooler".
    database_pooler: Literal["", "transaction", "session"] = ""
    # The PostgreSQL server's own address, for the work that needs a session a transaction
    # pooler does not keep: migrations (their lock) and creating the database.
    database_direct_url: str = Field(default="", repr=False)
    app_env: AppEnv = "development"
    db_pool_size: int = Field(default=5, ge=1, le=100)
    db_max_overflow: int = Field(default=10, ge=0, le=100)
    db_pool_timeout: float = Field(default=30.0, gt=0)
    db_connect_timeout: int = Field(default=10, ge=1, le=600)
    # Seconds one statement may run (0: no limit), so a lost server or a runaway query ends in
    # an error (StatementTimeoutError) rather than a hang; waiting for a lock counts too.
    db_statement_timeout: float = Field(default=60.0, ge=0)
    # Seconds a transaction may sit idle between statements (0: no limit) before the server
    # ends it, so a unit of work whose client vanished does not hold its row locks for hours.
    db_idle_transaction_timeout: float = Field(default=60.0, ge=0)
    # On a Galera node, every transaction first waits until the node has applied what the cluster
    # committed before it started (wsrep_sync_wait), so a unit of work sees the commits made before
    # it on any node. Off: reads may miss a commit made a moment ago on another node.
    db_causal_reads: bool = True
    db_echo: bool = False
    # Every statement ends with a sqlcommenter comment naming the application (APP_NAME) and the
    # unit of work that sent it (`/*action='GET /items/{item_id}',application='app'*/`), as
    # pg_stat_activity, the process list and pg_stat_statements show it.
    db_query_tags: bool = True
    app_name: str = Field(default="app", pattern=r"^[A-Za-z0-9._~/:{}<>@+-]{1,64}$")
    # Statements slower than this (milliseconds; 0: none) are logged at WARNING by the logger
    # "app.db.slow", with their tags and without values.
    db_slow_statement_ms: float = Field(default=0, ge=0)
    # Statement parameters (row values, password hashes) stay out of logs and error text unless
    # this is switched on, for debugging on a development database.
    db_echo_parameters: bool = False
    # run_in_transaction: the first retry waits about this long (seconds), doubling each time up
    # to the maximum, with as much again of random jitter so contenders spread out. MariaDB's
    # row-lock deadlocks clear in milliseconds; raise these for long-running contended units.
    db_retry_backoff: float = Field(default=0.01, gt=0, le=60)
    db_retry_max_backoff: float = Field(default=1.0, gt=0, le=600)
    # Migrations on PostgreSQL: how long DDL may wait for a table lock and run, in seconds, so a
    # migration stuck behind a busy table fails fast instead of queueing traffic behind it.
    db_migration_lock_timeout: float = Field(default=10.0, gt=0)
    db_migration_statement_timeout: float = Field(default=600.0, gt=0)
    # How long a second migrator waits for the first to finish, in seconds.
    db_migration_wait: float = Field(default=120.0, gt=0)
    # Signs pagination cursors. The placeholder is refused when APP_ENV=production.
    secret_key: SecretStr = SecretStr(PLACEHOLDER_SECRET_KEY)
    seed_admin_email: str = "admin@example.com"
    # Development only: the seed refuses this placeholder outside development and test.
    seed_password: SecretStr = SecretStr(PLACEHOLDER_SEED_PASSWORD)
    # A team's own packages of models, comma-separated: each is imported before the models are
    # read, and its `migrations/` directory (if it has one) is a branch of the migrations
    # (README "Adding a model").
    app_extensions: str = ""
    # The unit-of-work class (`package.module:Class`) that run_in_transaction, transactional,
    # the FastAPI dependencies and the pytest plugin build; empty: app.repositories.UnitOfWork.
    app_unit_of_work: str = ""

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        return parse_database_url(value).render_as_string(hide_password=False)

    @field_validator("database_direct_url")
    @classmethod
    def _check_direct_url(cls, value: str) -> str:
        if not value:
            return value
        try:
            parsed = parse_database_url(value)
        except SettingsError as exc:
            raise SettingsError(str(exc).replace("DATABASE_URL", "DATABASE_DIRECT_URL")) from None
        return parsed.render_as_string(hide_password=False)

    @field_validator("database_replica_urls")
    @classmethod
    def _check_replica_urls(cls, value: str) -> str:
        urls = [part.strip() for part in value.split(",") if part.strip()]
        for url in urls:
            try:
                parsed = parse_database_url(url)
            except SettingsError as exc:
                problem = str(exc).replace("DATABASE_URL", "DATABASE_REPLICA_URLS")
            else:
                problem = ""
            if problem:
                raise SettingsError(problem)
            if parsed.get_backend_name() != "postgresql":
                raise SettingsError(
                    "DATABASE_REPLICA_URLS names a replica that is not PostgreSQL; read replicas "
                    "are supported on PostgreSQL"
                )
        return ",".join(urls)

    @field_validator("app_extensions")
    @classmethod
    def _check_extensions(cls, value: str) -> str:
        names = [part.strip() for part in value.split(",") if part.strip()]
        for name in names:
            if not _DOTTED_NAME.fullmatch(name):
                raise SettingsError(
                    f"APP_EXTENSIONS names {name!r}, which is not a module name "
                    "(write them as package.module, comma-separated)"
                )
        return ",".join(names)

    @field_validator("app_unit_of_work")
    @classmethod
    def _check_unit_of_work(cls, value: str) -> str:
        value = value.strip()
        module, colon, name = value.partition(":")
        if value and not (
            colon and _DOTTED_NAME.fullmatch(module) and _DOTTED_NAME.fullmatch(name)
        ):
            raise SettingsError(
                f"APP_UNIT_OF_WORK is {value!r}; write it as package.module:ClassName"
            )
        return value

    @model_validator(mode="after")
    def _pooler_of_postgresql(self) -> Settings:
        if self.database_pooler and self.url.get_backend_name() != "postgresql":
            raise SettingsError(
                f"DATABASE_POOLER is {self.database_pooler!r}, but DATABASE_URL names "
                f"{self.url.get_backend_name()}: poolers are supported in front of PostgreSQL"
            )
        return self

    @model_validator(mode="after")
    def _no_placeholder_secrets_in_production(self) -> Settings:
        key = self.secret_key.get_secret_value()
        weak = len(key.encode()) < MIN_SECRET_KEY_BYTES or key.strip().lower() in KNOWN_PLACEHOLDERS
        if self.app_env == "production" and weak:
            raise ValueError(
                f"SECRET_KEY must be a real secret of at least {MIN_SECRET_KEY_BYTES} bytes when "
                "APP_ENV=production (for example `python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))'`)"
            )
        return self

    @property
    def signs_with_a_public_key(self) -> bool:
        """Whether cursors are signed with the placeholder key everyone can read in this code."""
        return self.secret_key.get_secret_value() == PLACEHOLDER_SECRET_KEY

    @property
    def extensions(self) -> list[str]:
        """The modules APP_EXTENSIONS names, in order."""
        return [name for name in self.app_extensions.split(",") if name]

    @property
    def url(self) -> URL:
        """The database URL as a SQLAlchemy `URL`."""
        return make_url(self.database_url)

    @property
    def session_url(self) -> str:
        """Where work that needs a session of its own connects: DATABASE_DIRECT_URL when
        given, else DATABASE_URL."""
        return self.database_direct_url or self.database_url

    @property
    def replica_urls(self) -> list[URL]:
        """The replicas' URLs (none when DATABASE_REPLICA_URLS is empty)."""
        return [make_url(url) for url in self.database_replica_urls.split(",") if url]

    @property
    def masked_database_url(self) -> str:
        """The database URL with its password hidden, for messages and logs."""
        return mask_url(self.database_url)

    def __repr_args__(self) -> list[tuple[str | None, object]]:
        return [("database_url", self.masked_database_url), *super().__repr_args__()]
