"""Error translation decides by the drivers' codes, never by message text.

These build exceptions by hand for codes no test can provoke on a real server here (SQLite I/O
errors, say); tests/integration/test_error_codes.py provokes every one a server can give.
"""

from __future__ import annotations

import sqlite3

import psycopg
import pymysql
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm.exc import StaleDataError

from app.db.errors import (
    ConflictError,
    DatabaseUnavailableError,
    ForeignKeyError,
    InvalidQueryError,
    ReadOnlyError,
    RetryableError,
    StaleObjectError,
    StatementTimeoutError,
    translate,
)
from app.db.models import Item, User


def _wrapped(orig: BaseException) -> sa_exc.DBAPIError:
    return sa_exc.DBAPIError.instance("INSERT ...", {}, orig, Exception)  # type: ignore[arg-type]


def _sqlite_error(code: int, message: str = "misleading text") -> sqlite3.Error:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code
    return error


@pytest.mark.parametrize(
    ("orig", "expected"),
    [
        (psycopg.errors.UniqueViolation("whatever"), ConflictError),
        (psycopg.errors.ForeignKeyViolation("whatever"), ForeignKeyError),
        (psycopg.errors.SerializationFailure("whatever"), RetryableError),
        (psycopg.errors.DeadlockDetected("whatever"), RetryableError),
        (psycopg.errors.AdminShutdown("whatever"), DatabaseUnavailableError),
        (psycopg.errors.ReadOnlySqlTransaction("whatever"), ReadOnlyError),
        (pymysql.err.OperationalError(1792, "whatever"), ReadOnlyError),
        (psycopg.errors.StringDataRightTruncation("whatever"), InvalidQueryError),
        (psycopg.OperationalError("connection refused"), DatabaseUnavailableError),
        (pymysql.err.OperationalError(1045, "whatever"), DatabaseUnavailableError),
        (pymysql.err.OperationalError(1049, "whatever"), DatabaseUnavailableError),
        (pymysql.err.IntegrityError(1062, "whatever"), ConflictError),
        (pymysql.err.IntegrityError(1452, "whatever"), ForeignKeyError),
        (pymysql.err.OperationalError(1213, "whatever"), RetryableError),
        (pymysql.err.OperationalError(1205, "whatever"), RetryableError),
        (pymysql.err.OperationalError(2003, "whatever"), DatabaseUnavailableError),
        (pymysql.err.OperationalError(1047, "whatever"), DatabaseUnavailableError),
        (pymysql.err.DataError(1406, "whatever"), InvalidQueryError),
        (_sqlite_error(2067), ConflictError),
        (_sqlite_error(787), ForeignKeyError),
        (_sqlite_error(5), RetryableError),
        (_sqlite_error(517), RetryableError),
        (_sqlite_error(1299), InvalidQueryError),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else "",
)
def test_classifies_by_code(orig: BaseException, expected: type[Exception]) -> None:
    assert isinstance(translate(_wrapped(orig)), expected)


def test_message_text_alone_decides_nothing() -> None:
    orig = pymysql.err.OperationalError(9999, "Deadlock found; Duplicate entry; UNIQUE failed")
    wrapped = _wrapped(orig)
    assert translate(wrapped) is wrapped


def test_conflicts_name_the_constraint_and_fields_but_never_the_value() -> None:
    orig = pymysql.err.IntegrityError(1062, "Duplicate entry 'a@b.c' for key 'uq_users_email'")
    error = translate(_wrapped(orig), model=User)
    assert isinstance(error, ConflictError)
    assert (error.constraint, error.fields) == ("uq_users_email", ("email",))
    assert str(error) == "a user with this email already exists"
    on_items = translate(
        _wrapped(pymysql.err.IntegrityError(1062, "Duplicate entry 'x' for key 'PRIMARY'")),
        model=Item,
    )
    assert str(on_items) == "an item with this id already exists"


def test_a_value_in_the_drivers_text_that_looks_like_a_column_never_reaches_the_message() -> None:
    orig = pymysql.err.DataError(
        1366, "Incorrect integer value: 'email' for column `app`.`users`.`version` at row 1"
    )
    error = translate(_wrapped(orig), model=User)
    assert (
        str(error) == "the database refused the user: version is not a valid value for its column"
    )


@pytest.mark.parametrize(
    ("orig", "expected"),
    [
        (
            psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
            StatementTimeoutError,
        ),
        (
            pymysql.err.OperationalError(1969, "Query execution was interrupted"),
            StatementTimeoutError,
        ),
        (psycopg.errors.TooManyConnections("whatever"), DatabaseUnavailableError),
        (psycopg.errors.IdleInTransactionSessionTimeout("whatever"), DatabaseUnavailableError),
        (_sqlite_error(13), DatabaseUnavailableError),
        (_sqlite_error(8), DatabaseUnavailableError),
        (_sqlite_error(10), DatabaseUnavailableError),
        (_sqlite_error(266), DatabaseUnavailableError),  # SQLITE_IOERR_READ: the primary code
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else "",
)
def test_timeouts_and_exhausted_or_broken_servers_have_named_errors(
    orig: BaseException, expected: type[Exception]
) -> None:
    assert isinstance(translate(_wrapped(orig)), expected)


def test_stale_data_becomes_stale_object() -> None:
    assert isinstance(translate(StaleDataError("0 rows matched"), model=User), StaleObjectError)


def test_invalid_query_is_also_a_value_error() -> None:
    assert issubclass(InvalidQueryError, ValueError)


@pytest.mark.parametrize(
    "errno", [1158, 1159, 1160, 1161], ids=["read", "read timeout", "write", "write timeout"]
)
def test_mariadb_giving_up_on_the_clients_packets_is_a_lost_server(errno: int) -> None:
    """The server closed the connection after a file or statement stopped mid-send."""
    error = translate(_wrapped(pymysql.err.OperationalError(errno, "misleading text")))
    assert isinstance(error, DatabaseUnavailableError)
    assert "connection was lost" in str(error)
