"""What a driver's exception means, decided by the code the database gives, never by its text,
and which table, constraint and columns it names.

PostgreSQL: SQLSTATE (https://www.postgresql.org/docs/current/errcodes-appendix.html) and the
error's diagnostic fields. MariaDB: the error number, and the names its message puts in fixed
places (anchored at the message's end, so a stored value quoted earlier in it cannot pose as
one). SQLite: the extended result code (its primary code as a fallback) and the names its
constraint messages list (made from the schema, never from values).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Kind(Enum):
    """What a caller can do about a failure; each kind becomes one data-layer error."""

    CONFLICT = "conflict"
    FOREIGN_KEY = "foreign_key"
    RETRYABLE = "retryable"
    UNAVAILABLE = "unavailable"
    CANNOT_CONNECT = "cannot_connect"
    LOGIN = "login"
    NO_DATABASE = "no_database"
    TIMEOUT = "timeout"
    INVALID = "invalid"
    READ_ONLY = "read_only"
    NOT_SENT = "not_sent"  # the driver refused the statement before it reached the server
    POOLER = "pooler"  # a connection pooler refused what a direct connection sends
    TOO_LARGE = "too_large"  # a statement larger than the server takes; it closed the connection
    ABORTED = "aborted"  # a statement sent after an error in its transaction, before a rollback
    SCHEMA = "schema"  # a table or column the statement names is not in the database


class Rule(Enum):
    """Which rule a refused value broke, for the message; the kind is INVALID."""

    NOT_NULL = "cannot be null"
    CHECK = "breaks a check constraint"
    TOO_LONG = "is too long for its column"
    OUT_OF_RANGE = "is out of the column's range"
    MALFORMED = "is not a valid value for its column"


@dataclass(frozen=True)
class Meaning:
    """The kind of a failure and, for refused values, the rule; `unavailable_because` says
    in a few words why the database cannot serve (for DatabaseUnavailableError)."""

    kind: Kind
    rule: Rule | None = None
    unavailable_because: str = ""


def _invalid(rule: Rule) -> Meaning:
    return Meaning(Kind.INVALID, rule)


def _unavailable(because: str) -> Meaning:
    return Meaning(Kind.UNAVAILABLE, unavailable_because=because)


CONFLICT = Meaning(Kind.CONFLICT)
READ_ONLY = Meaning(Kind.READ_ONLY)
FOREIGN_KEY = Meaning(Kind.FOREIGN_KEY)
RETRYABLE = Meaning(Kind.RETRYABLE)
CANNOT_CONNECT = Meaning(Kind.CANNOT_CONNECT)
LOGIN = Meaning(Kind.LOGIN)
NO_DATABASE = Meaning(Kind.NO_DATABASE)
TIMEOUT = Meaning(Kind.TIMEOUT)
NOT_SENT = Meaning(Kind.NOT_SENT)
POOLER = Meaning(Kind.POOLER)
TOO_LARGE = Meaning(Kind.TOO_LARGE)
ABORTED = Meaning(Kind.ABORTED)
SCHEMA = Meaning(Kind.SCHEMA)
# PgBouncer's answer to the startup parameter that carries our session settings.
_POOLER_REFUSAL = "unsupported startup parameter"
SERVER_GONE = _unavailable("the connection was lost or the server is shutting down")
TOO_MANY_CONNECTIONS = _unavailable("the server has no free connection slots")
IDLE_TIMEOUT = _unavailable(
    "the server closed a transaction that stayed idle too long (idle-in-transaction timeout)"
)
STORAGE = _unavailable("the database cannot write: its disk is full, it is read-only or I/O failed")

POSTGRESQL_CODES = {
    "23505": CONFLICT,  # unique_violation
    "23503": FOREIGN_KEY,  # foreign_key_violation
    "40001": RETRYABLE,  # serialization_failure
    "40P01": RETRYABLE,  # deadlock_detected
    "55P03": RETRYABLE,  # lock_not_available (lock_timeout)
    "57014": TIMEOUT,  # query_canceled (statement_timeout, or a cancel request)
    "57P01": SERVER_GONE,  # admin_shutdown
    "57P02": SERVER_GONE,  # crash_shutdown
    "57P03": SERVER_GONE,  # cannot_connect_now
    "53300": TOO_MANY_CONNECTIONS,  # too_many_connections
    "25P03": IDLE_TIMEOUT,  # idle_in_transaction_session_timeout
    "25006": READ_ONLY,  # read_only_sql_transaction (also any write on a hot standby)
    "25P02": ABORTED,  # in_failed_sql_transaction
    "3D000": NO_DATABASE,  # invalid_catalog_name
    "42703": SCHEMA,  # undefined_column
    "42P01": SCHEMA,  # undefined_table
    "23502": _invalid(Rule.NOT_NULL),  # not_null_violation
    "23514": _invalid(Rule.CHECK),  # check_violation
    "22001": _invalid(Rule.TOO_LONG),  # string_data_right_truncation
    "22003": _invalid(Rule.OUT_OF_RANGE),  # numeric_value_out_of_range
    "22008": _invalid(Rule.OUT_OF_RANGE),  # datetime_field_overflow
    "2200H": _invalid(Rule.OUT_OF_RANGE),  # sequence_generator_limit_exceeded
}
POSTGRESQL_CLASSES = {
    "08": SERVER_GONE,  # connection_exception
    "22": _invalid(Rule.MALFORMED),  # data_exception
    "28": LOGIN,  # invalid_authorization_specification
    "53": _unavailable("the server is out of resources (disk, memory or connections)"),
}

MARIADB_ERRNOS = {
    1062: CONFLICT,  # ER_DUP_ENTRY
    1451: FOREIGN_KEY,  # ER_ROW_IS_REFERENCED_2
    1452: FOREIGN_KEY,  # ER_NO_REFERENCED_ROW_2
    1213: RETRYABLE,  # ER_LOCK_DEADLOCK; also a Galera certification failure
    1205: RETRYABLE,  # ER_LOCK_WAIT_TIMEOUT
    1020: RETRYABLE,  # ER_CHECKREAD: record changed since last read
    1969: TIMEOUT,  # ER_STATEMENT_TIMEOUT (max_statement_time)
    1317: TIMEOUT,  # ER_QUERY_INTERRUPTED (KILL QUERY: a cancelled statement)
    2002: CANNOT_CONNECT,  # CR_CONNECTION_ERROR
    2003: CANNOT_CONNECT,  # CR_CONN_HOST_ERROR
    2006: SERVER_GONE,  # CR_SERVER_GONE_ERROR
    2013: SERVER_GONE,  # CR_SERVER_LOST
    2055: SERVER_GONE,  # CR_SERVER_LOST_EXTENDED
    1927: SERVER_GONE,  # ER_CONNECTION_KILLED
    1053: SERVER_GONE,  # ER_SERVER_SHUTDOWN
    # The server gave up on the client's packets (a file or statement cut off mid-send) and
    # closed the connection.
    1158: SERVER_GONE,  # ER_NET_READ_ERROR
    1159: SERVER_GONE,  # ER_NET_READ_INTERRUPTED (net_read_timeout)
    1160: SERVER_GONE,  # ER_NET_ERROR_ON_WRITE
    1161: SERVER_GONE,  # ER_NET_WRITE_INTERRUPTED
    # A Galera node outside the cluster's primary component, or still joining it.
    1047: _unavailable("the Galera node is not ready (not synced with its cluster)"),
    1153: TOO_LARGE,  # ER_NET_PACKET_TOO_LARGE (max_allowed_packet)
    1040: TOO_MANY_CONNECTIONS,  # ER_CON_COUNT_ERROR
    1203: TOO_MANY_CONNECTIONS,  # ER_TOO_MANY_USER_CONNECTIONS
    1226: TOO_MANY_CONNECTIONS,  # ER_USER_LIMIT_REACHED (max_user_connections)
    1021: STORAGE,  # ER_DISK_FULL
    1114: STORAGE,  # ER_RECORD_FILE_FULL (table full)
    1290: STORAGE,  # ER_OPTION_PREVENTS_STATEMENT (read_only)
    1792: READ_ONLY,  # ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
    1045: LOGIN,  # ER_ACCESS_DENIED_ERROR
    1698: LOGIN,  # ER_ACCESS_DENIED_NO_PASSWORD_ERROR (a user who logs in by another plugin)
    1044: LOGIN,  # ER_DBACCESS_DENIED_ERROR
    1049: NO_DATABASE,  # ER_BAD_DB_ERROR
    1054: SCHEMA,  # ER_BAD_FIELD_ERROR (an unknown column)
    1146: SCHEMA,  # ER_NO_SUCH_TABLE
    1048: _invalid(Rule.NOT_NULL),  # ER_BAD_NULL_ERROR
    1364: _invalid(Rule.NOT_NULL),  # ER_NO_DEFAULT_FOR_FIELD
    1406: _invalid(Rule.TOO_LONG),  # ER_DATA_TOO_LONG
    1264: _invalid(Rule.OUT_OF_RANGE),  # ER_WARN_DATA_OUT_OF_RANGE
    167: _invalid(Rule.OUT_OF_RANGE),  # HA_ERR_AUTOINC_ERANGE: numbering past the column's top
    1265: _invalid(Rule.MALFORMED),  # WARN_DATA_TRUNCATED ('1abc' for a number)
    1292: _invalid(Rule.MALFORMED),  # ER_TRUNCATED_WRONG_VALUE
    1366: _invalid(Rule.MALFORMED),  # ER_TRUNCATED_WRONG_VALUE_FOR_FIELD
    4025: _invalid(Rule.CHECK),  # ER_CONSTRAINT_FAILED
}

SQLITE_CODES = {
    2067: CONFLICT,  # SQLITE_CONSTRAINT_UNIQUE
    1555: CONFLICT,  # SQLITE_CONSTRAINT_PRIMARYKEY
    787: FOREIGN_KEY,  # SQLITE_CONSTRAINT_FOREIGNKEY
    5: RETRYABLE,  # SQLITE_BUSY
    261: RETRYABLE,  # SQLITE_BUSY_RECOVERY
    517: RETRYABLE,  # SQLITE_BUSY_SNAPSHOT
    773: RETRYABLE,  # SQLITE_BUSY_TIMEOUT
    6: RETRYABLE,  # SQLITE_LOCKED
    262: RETRYABLE,  # SQLITE_LOCKED_SHAREDCACHE
    14: _unavailable("the database file cannot be opened"),  # SQLITE_CANTOPEN
    8: STORAGE,  # SQLITE_READONLY
    10: STORAGE,  # SQLITE_IOERR
    13: STORAGE,  # SQLITE_FULL
    1299: _invalid(Rule.NOT_NULL),  # SQLITE_CONSTRAINT_NOTNULL
    275: _invalid(Rule.CHECK),  # SQLITE_CONSTRAINT_CHECK
    18: _invalid(Rule.TOO_LONG),  # SQLITE_TOOBIG
    20: _invalid(Rule.MALFORMED),  # SQLITE_MISMATCH
    25: _invalid(Rule.OUT_OF_RANGE),  # SQLITE_RANGE
}


_SQLITE_ERROR = 1
_SQLITE_NO_SUCH = re.compile(r"^(no such (table|column)|table \S+ has no column named)\b")


def _driver(orig: BaseException) -> str:
    module = type(orig).__module__
    if module.startswith("psycopg"):
        return "postgresql"
    if isinstance(getattr(orig, "sqlite_errorcode", None), int):  # sqlite3
        return "sqlite"
    # PyMySQL and asyncmy (its asyncio twin) both carry MariaDB's error number first.
    args = getattr(orig, "args", ())
    if module.startswith(("pymysql", "asyncmy")) and args and isinstance(args[0], int):
        return "mariadb"
    return ""


def code_of(orig: BaseException | None) -> str | int | None:
    """The code a driver's exception carries: SQLSTATE, MariaDB errno or SQLite result code."""
    if orig is None:
        return None
    driver = _driver(orig)
    if driver == "postgresql":
        sqlstate: str | None = getattr(orig, "sqlstate", None)
        return sqlstate
    if driver == "sqlite":
        code: int = orig.sqlite_errorcode  # type: ignore[attr-defined]
        return code
    if driver == "mariadb":
        errno: int = orig.args[0]
        return errno
    return None


def first_line(orig: BaseException) -> str:
    """The first line of the database's words in a driver's exception (MariaDB's without its
    `(errno, ...)` wrapping), for errors about the schema; empty when it has none."""
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    if _driver(orig) == "mariadb" and len(args) >= 2 and isinstance(args[1], str):
        said = args[1]
    else:
        said = str(orig)
    return said.splitlines()[0] if said else ""


def _stale_plan(orig: BaseException) -> bool:
    """A prepared statement refused because a column it returns changed type since (a
    migration): the transaction is aborted, and run again it is planned anew."""
    diag = getattr(orig, "diag", None)
    return getattr(diag, "source_function", None) == "RevalidateCachedQuery"


# What a PostgreSQL server answers a connection it refuses: libpq keeps only the text (no
# SQLSTATE comes with a failed connection), in the server's language, so these are matched in
# its default English; in another, the refusal is told as a connection that failed.
_STARTUP_REFUSALS = (
    (re.compile(r'FATAL:\s+database ".*" does not exist'), NO_DATABASE),  # 3D000
    (
        re.compile(
            r"FATAL:\s+(password authentication failed|role \".*\" does not exist|"
            r"no pg_hba\.conf entry|\w+ authentication failed)"
        ),
        LOGIN,  # 28P01, 28000
    ),
    # libpq's own refusal of a server that does not take writes where the URL asks for one
    # that does (target_session_attrs=read-write or primary): every host said so, or was down.
    (
        re.compile(r"failed: (session is read-only|server is in hot standby mode)"),
        _unavailable(
            "no server named in DATABASE_URL takes writes now (read-only or a standby; a "
            "failover may be under way)"
        ),
    ),
)


# A connection attempt the server never answered within the connect timeout.
CONNECT_TIMED_OUT = Meaning(
    Kind.CANNOT_CONNECT,
    unavailable_because=(
        "it did not answer within DB_CONNECT_TIMEOUT (a host that drops packets, a firewall, "
        "or a server too busy to accept)"
    ),
)
# How each driver says it gave up waiting for the server while connecting: psycopg's
# ConnectionTimeout, PyMySQL's "(timed out)" and asyncmy's "(read timeout)" after a 2013.
_CONNECT_TIMEOUT_WORDS = re.compile(r"timeout expired|\((timed out|read timeout)\)")


def timed_out_connecting(orig: BaseException | None) -> bool:
    """Whether a driver's failure to connect was the connect timeout running out."""
    return orig is not None and bool(_CONNECT_TIMEOUT_WORDS.search(str(orig)))


def _refused_at_startup(message: str) -> Meaning:
    if _POOLER_REFUSAL in message:
        return POOLER
    for pattern, meaning in _STARTUP_REFUSALS:
        if pattern.search(message):
            return meaning
    return CANNOT_CONNECT


def classify(orig: BaseException | None) -> Meaning | None:
    """The meaning of a DBAPI exception, from the code the driver exposes; None if unknown."""
    if orig is None:
        return None
    driver, code = _driver(orig), code_of(orig)
    if driver == "postgresql":
        if not isinstance(code, str):
            # No SQLSTATE: the server never answered; the client could not connect, or timed
            # out connecting (ConnectionTimeout is an OperationalError), or, on a connection
            # that is still sound, refused the statement itself (`translate` knows). A pooler
            # says why in words only.
            kinds = {kind.__name__ for kind in type(orig).__mro__}
            if "OperationalError" in kinds:
                return _refused_at_startup(str(orig))
            # psycopg's own refusal of a value it cannot send (text with a NUL).
            return NOT_SENT if "DataError" in kinds else None
        if code == "0A000" and _stale_plan(orig):
            return RETRYABLE
        return POSTGRESQL_CODES.get(code) or POSTGRESQL_CLASSES.get(code[:2])
    if driver == "sqlite" and isinstance(code, int):
        found = SQLITE_CODES.get(code) or SQLITE_CODES.get(code & 0xFF)
        # SQLITE_ERROR is any error; a missing table or column is told in words only.
        if found is None and code == _SQLITE_ERROR and _SQLITE_NO_SUCH.search(str(orig)):
            return SCHEMA
        return found
    if driver == "mariadb" and isinstance(code, int):
        return MARIADB_ERRNOS.get(code)
    return None


# MariaDB errors whose message quotes the statement near where it failed. PyMySQL and asyncmy
# put the values into the statement's text before sending it, so the quote may hold them.
_MARIADB_QUOTING_THE_STATEMENT = frozenset({1064, 1149})  # ER_PARSE_ERROR, ER_SYNTAX_ERROR


def quotes_the_statement(orig: BaseException | None) -> bool:
    """Whether a driver's error quotes the text of the statement that failed (and so may
    quote the values in it)."""
    if orig is None or _driver(orig) != "mariadb":
        return False
    return code_of(orig) in _MARIADB_QUOTING_THE_STATEMENT


@dataclass(frozen=True)
class Named:
    """What a driver's error names: a table, a constraint (or index), columns. Only names; the
    caller keeps those its schema really has."""

    table: str | None = None
    constraint: str | None = None
    columns: tuple[str, ...] = ()
    primary_key: bool = False  # the table's primary key, whatever the schema calls it


# MariaDB messages by errno, each anchored at the end of the message: `table` and `constraint`
# and `column` groups, as the message has them.
_COLUMN_AT_ROW = (
    r"column (?:`[^`]*`\.)?(?:`(?P<table>[^`]*)`\.)?[`']?(?P<column>[^`'.]+)[`']? at row \d+$"
)
_MARIADB_NAMES = {
    1062: re.compile(r"for key '(?:[^'.]*\.)?(?P<constraint>[^'.]+)'$"),
    4025: re.compile(r"CONSTRAINT `(?P<constraint>[^`]+)` failed for `[^`]*`\.`(?P<table>[^`]+)`$"),
    1451: re.compile(
        r"\(`[^`]*`\.`(?P<table>[^`]+)`, CONSTRAINT `(?P<constraint>[^`]+)` FOREIGN KEY"
    ),
    1452: re.compile(
        r"\(`[^`]*`\.`(?P<table>[^`]+)`, CONSTRAINT `(?P<constraint>[^`]+)` FOREIGN KEY"
    ),
    1048: re.compile(r"^Column '(?P<column>[^']+)' cannot be null$"),
    1364: re.compile(r"^Field '(?P<column>[^']+)' doesn't have a default value$"),
    1406: re.compile(_COLUMN_AT_ROW),
    1264: re.compile(_COLUMN_AT_ROW),
    1265: re.compile(_COLUMN_AT_ROW),
    167: re.compile(r"^Out of range value for column '(?P<column>[^']+)'"),
    1292: re.compile(_COLUMN_AT_ROW),
    1366: re.compile(_COLUMN_AT_ROW),
}
# What MariaDB calls every primary key, whatever name the schema gave it.
_MARIADB_PRIMARY_KEY = "PRIMARY"
# SQLite: "UNIQUE constraint failed: users.email" (every column of a composite key, comma-
# separated), "NOT NULL constraint failed: items.title", "CHECK constraint failed: ck_name".
_SQLITE_FAILED = re.compile(r"constraint failed: (?P<names>.+)$")


def names_in(orig: BaseException | None) -> Named:
    """What the driver's exception names (see `Named`)."""
    if orig is None:
        return Named()
    driver = _driver(orig)
    if driver == "postgresql":
        diag = getattr(orig, "diag", None)
        if diag is None:
            return Named()
        column = diag.column_name
        return Named(diag.table_name, diag.constraint_name, (column,) if column else ())
    text = str(orig.args[-1]) if orig.args else ""
    if driver == "mariadb":
        pattern = _MARIADB_NAMES.get(code_of(orig))  # type: ignore[arg-type]
        match = pattern.search(text) if pattern is not None else None
        if match is None:
            return Named()
        found = match.groupdict()
        column = found.get("column")
        constraint = found.get("constraint")
        if constraint == _MARIADB_PRIMARY_KEY:
            return Named(found.get("table"), None, (), primary_key=True)
        return Named(found.get("table"), constraint, (column,) if column else ())
    if driver == "sqlite":
        match = _SQLITE_FAILED.search(text)
        if match is None:
            return Named()
        parts = [part.strip() for part in match.group("names").split(",")]
        qualified = [part.split(".", 1) for part in parts if "." in part]
        if qualified:
            return Named(qualified[0][0], None, tuple(name for _, name in qualified))
        return Named(None, parts[0], ())
    return Named()
