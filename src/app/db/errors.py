"""Database failures a caller can act on, as named errors decided by the database's own codes.

The decision is made from SQLSTATE (PostgreSQL), the error number (MariaDB) or the extended
result code (SQLite), never from message text. The original exception is always chained.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect
from sqlalchemy.orm.exc import StaleDataError


class DataLayerError(Exception):
    """Base of every error the data layer raises on purpose."""


class NotFoundError(DataLayerError, LookupError):
    """The row asked for does not exist."""


class ConflictError(DataLayerError):
    """A unique constraint refused the write; `.constraint` and `.fields` say which."""

    def __init__(
        self, message: str, *, constraint: str | None = None, fields: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.constraint = constraint
        self.fields = fields


class ForeignKeyError(DataLayerError):
    """A foreign key refused the write: the referenced row is missing (or still referenced)."""


class StaleObjectError(DataLayerError):
    """Optimistic lock lost: the row changed or vanished since it was read."""


class RetryableError(DataLayerError):
    """The database gave up on the transaction because of a concurrent one; run it again."""


class DatabaseUnavailableError(DataLayerError):
    """The database cannot be reached, or the connection was lost."""


class InvalidQueryError(DataLayerError, ValueError):
    """The request is wrong: an unknown field, a bad argument, a value the column refuses."""


_KIND_CONFLICT = "conflict"
_KIND_FOREIGN_KEY = "foreign_key"
_KIND_RETRYABLE = "retryable"
_KIND_UNAVAILABLE = "unavailable"
_KIND_INVALID = "invalid"
_KIND_LOGIN = "login"
_KIND_CANNOT_CONNECT = "cannot_connect"
_KIND_NO_DATABASE = "no_database"

# SQLSTATE classes and codes: https://www.postgresql.org/docs/current/errcodes-appendix.html
_PG_CODES = {
    "23505": _KIND_CONFLICT,
    "23503": _KIND_FOREIGN_KEY,
    "40001": _KIND_RETRYABLE,  # serialization_failure
    "40P01": _KIND_RETRYABLE,  # deadlock_detected
    "55P03": _KIND_RETRYABLE,  # lock_not_available (lock_timeout)
    "57P01": _KIND_UNAVAILABLE,  # admin_shutdown
    "57P02": _KIND_UNAVAILABLE,  # crash_shutdown
    "57P03": _KIND_UNAVAILABLE,  # cannot_connect_now
    "23502": _KIND_INVALID,  # not_null_violation
    "23514": _KIND_INVALID,  # check_violation
}
_PG_CODES["3D000"] = _KIND_NO_DATABASE  # invalid_catalog_name
_PG_CLASSES = {"08": _KIND_UNAVAILABLE, "22": _KIND_INVALID, "28": _KIND_LOGIN}

_MARIADB_ERRNOS = {
    1062: _KIND_CONFLICT,  # ER_DUP_ENTRY
    1451: _KIND_FOREIGN_KEY,  # ER_ROW_IS_REFERENCED_2
    1452: _KIND_FOREIGN_KEY,  # ER_NO_REFERENCED_ROW_2
    1213: _KIND_RETRYABLE,  # ER_LOCK_DEADLOCK
    1205: _KIND_RETRYABLE,  # ER_LOCK_WAIT_TIMEOUT
    1020: _KIND_RETRYABLE,  # ER_CHECKREAD: record changed since last read
    2002: _KIND_CANNOT_CONNECT,  # CR_CONNECTION_ERROR
    2003: _KIND_CANNOT_CONNECT,  # CR_CONN_HOST_ERROR
    2006: _KIND_UNAVAILABLE,  # CR_SERVER_GONE_ERROR
    2013: _KIND_UNAVAILABLE,  # CR_SERVER_LOST
    2055: _KIND_UNAVAILABLE,  # CR_SERVER_LOST_EXTENDED
    1927: _KIND_UNAVAILABLE,  # ER_CONNECTION_KILLED
    1053: _KIND_UNAVAILABLE,  # ER_SERVER_SHUTDOWN
    1040: _KIND_UNAVAILABLE,  # ER_CON_COUNT_ERROR
    1045: _KIND_LOGIN,  # ER_ACCESS_DENIED_ERROR
    1044: _KIND_LOGIN,  # ER_DBACCESS_DENIED_ERROR
    1049: _KIND_NO_DATABASE,  # ER_BAD_DB_ERROR
    1048: _KIND_INVALID,  # ER_BAD_NULL_ERROR
    1264: _KIND_INVALID,  # ER_WARN_DATA_OUT_OF_RANGE
    1292: _KIND_INVALID,  # ER_TRUNCATED_WRONG_VALUE
    1366: _KIND_INVALID,  # ER_TRUNCATED_WRONG_VALUE_FOR_FIELD
    1406: _KIND_INVALID,  # ER_DATA_TOO_LONG
    4025: _KIND_INVALID,  # ER_CONSTRAINT_FAILED (CHECK)
}

_SQLITE_CODES = {
    2067: _KIND_CONFLICT,  # SQLITE_CONSTRAINT_UNIQUE
    1555: _KIND_CONFLICT,  # SQLITE_CONSTRAINT_PRIMARYKEY
    787: _KIND_FOREIGN_KEY,  # SQLITE_CONSTRAINT_FOREIGNKEY
    5: _KIND_RETRYABLE,  # SQLITE_BUSY
    261: _KIND_RETRYABLE,  # SQLITE_BUSY_RECOVERY
    517: _KIND_RETRYABLE,  # SQLITE_BUSY_SNAPSHOT
    773: _KIND_RETRYABLE,  # SQLITE_BUSY_TIMEOUT
    6: _KIND_RETRYABLE,  # SQLITE_LOCKED
    262: _KIND_RETRYABLE,  # SQLITE_LOCKED_SHAREDCACHE
    14: _KIND_UNAVAILABLE,  # SQLITE_CANTOPEN
    1299: _KIND_INVALID,  # SQLITE_CONSTRAINT_NOTNULL
    275: _KIND_INVALID,  # SQLITE_CONSTRAINT_CHECK
    18: _KIND_INVALID,  # SQLITE_TOOBIG
    20: _KIND_INVALID,  # SQLITE_MISMATCH
    25: _KIND_INVALID,  # SQLITE_RANGE
}


def _classify(orig: BaseException | None) -> str | None:
    """The kind of a DBAPI exception, from the code the driver exposes."""
    if orig is None:
        return None
    module = type(orig).__module__
    if module.startswith("psycopg"):
        sqlstate = getattr(orig, "sqlstate", None)
        if sqlstate is None:
            # No SQLSTATE means the server never answered: the client could not connect.
            return _KIND_CANNOT_CONNECT if type(orig).__name__ == "OperationalError" else None
        return _PG_CODES.get(sqlstate) or _PG_CLASSES.get(sqlstate[:2])
    sqlite_code = getattr(orig, "sqlite_errorcode", None)  # sqlite3
    if isinstance(sqlite_code, int):
        return _SQLITE_CODES.get(sqlite_code) or _SQLITE_CODES.get(sqlite_code & 0xFF)
    args = getattr(orig, "args", ())
    if module.startswith("pymysql") and args and isinstance(args[0], int):
        return _MARIADB_ERRNOS.get(args[0])
    return None


def _constraint_columns(
    exc: sa_exc.DBAPIError, model: type[Any] | None
) -> tuple[str | None, tuple[str, ...]]:
    """Which unique constraint refused the row, as its name and columns, where the driver says.

    Only detail for the message: the kind of error was already decided by its code.
    """
    orig = exc.orig
    name: str | None = None
    diag = getattr(orig, "diag", None)
    if diag is not None:
        name = getattr(diag, "constraint_name", None)
    elif orig is not None and orig.args:
        # MariaDB: "Duplicate entry ... for key 'uq_users_email'";
        # SQLite: "UNIQUE constraint failed: users.email".
        text = str(orig.args[-1])
        if match := re.search(r"for key '(?:[^'.]+\.)?([^']+)'", text):
            name = match.group(1)
        elif match := re.search(r"failed: ((?:\w+\.\w+(?:, )?)+)$", text):
            columns = tuple(part.split(".")[1] for part in match.group(1).split(", "))
            return _constraint_by_columns(model, columns), columns
    if name is None or model is None:
        return name, ()
    table = inspect(model).local_table
    for constraint in table.constraints:
        if constraint.name == name:
            return name, tuple(column.name for column in constraint.columns)
    return name, ()


def _constraint_by_columns(model: type[Any] | None, columns: tuple[str, ...]) -> str | None:
    if model is None:
        return None
    for constraint in inspect(model).local_table.constraints:
        names = tuple(column.name for column in constraint.columns)
        if names == columns:
            return str(constraint.name)
    return None


def _entity_name(model: type[Any] | None) -> str:
    return model.__name__.lower() if model is not None else "row"


def translate(
    exc: Exception, *, model: type[Any] | None = None, values: Mapping[str, Any] | None = None
) -> Exception:
    """The data-layer error for `exc`, or `exc` itself when the caller cannot act on it.

    `model` and `values` only make the message speak of what the caller was writing.
    """
    entity = _entity_name(model)
    if isinstance(exc, StaleDataError):
        return StaleObjectError(
            f"the {entity} was changed or deleted by someone else since it was read; "
            "load it again and retry"
        )
    if isinstance(exc, sa_exc.TimeoutError):
        return DatabaseUnavailableError(f"no database connection became free in time: {exc}")
    if not isinstance(exc, sa_exc.DBAPIError):
        return exc
    if exc.connection_invalidated:
        return DatabaseUnavailableError("the database connection was lost; try again")
    kind = _classify(exc.orig)
    if kind == _KIND_CONFLICT:
        constraint, fields = _constraint_columns(exc, model)
        return ConflictError(
            _conflict_message(entity, fields, values), constraint=constraint, fields=fields
        )
    if kind == _KIND_FOREIGN_KEY:
        return ForeignKeyError(
            f"the {entity} refers to a row that does not exist, or is still referred to"
        )
    if kind == _KIND_RETRYABLE:
        return RetryableError(
            "the database aborted the transaction because of a concurrent one "
            "(serialization failure, deadlock, lock timeout or busy); run it again"
        )
    if kind == _KIND_UNAVAILABLE:
        return DatabaseUnavailableError(
            f"the database is unavailable ({type(exc.orig).__name__}); check that it is running"
        )
    if kind == _KIND_CANNOT_CONNECT:
        return DatabaseUnavailableError(
            "cannot connect to the database: check that it is running, that the database in "
            "DATABASE_URL exists (`app db create`) and that its user and password are right"
        )
    if kind == _KIND_LOGIN:
        return DatabaseUnavailableError(
            "the database refused the login: check the user and password in DATABASE_URL"
        )
    if kind == _KIND_NO_DATABASE:
        return DatabaseUnavailableError(
            "the database named in DATABASE_URL does not exist; `app db create` makes it"
        )
    if kind == _KIND_INVALID:
        return InvalidQueryError(f"the database refused a value of the {entity}: {exc.orig}")
    return exc


def _conflict_message(
    entity: str, fields: tuple[str, ...], values: Mapping[str, Any] | None
) -> str:
    if not fields:
        return f"a {entity} with the same unique value already exists"
    described = ", ".join(
        f"{field} {values[field]!r}" if values and field in values else field for field in fields
    )
    return f"a {entity} with {described} already exists"


@contextmanager
def translating_errors(
    *, model: type[Any] | None = None, values: Mapping[str, Any] | None = None
) -> Iterator[None]:
    """Re-raise database errors raised inside the block as data-layer errors, chained."""
    try:
        yield
    except (sa_exc.DBAPIError, sa_exc.TimeoutError, StaleDataError) as exc:
        translated = translate(exc, model=model, values=values)
        if translated is exc:
            raise
        raise translated from exc


__all__ = [
    "ConflictError",
    "DataLayerError",
    "DatabaseUnavailableError",
    "ForeignKeyError",
    "InvalidQueryError",
    "NotFoundError",
    "RetryableError",
    "StaleObjectError",
    "translate",
    "translating_errors",
]
