"""Database failures a caller can act on, as named errors decided by the database's own codes.

The decision is made from SQLSTATE (PostgreSQL), the error number (MariaDB) or the extended
result code (SQLite), never from message text (`app.db.error_codes`). Messages name the entity,
the field, the constraint and the rule, never a stored value or the driver's text; the original
exception is always chained for the log.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Table, inspect
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.sql.schema import ColumnCollectionConstraint

from app.db.error_codes import Kind, Meaning, classify


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
    """Optimistic lock lost: the row changed or vanished since it was read.

    `lost_race` is True when another transaction changed the row while this one worked (running
    the unit again can succeed), False when the caller asked for a version the row no longer
    has (`expected_version`): running again cannot succeed, so nothing retries it.
    """

    def __init__(self, message: str, *, lost_race: bool = True) -> None:
        super().__init__(message)
        self.lost_race = lost_race


class RetryableError(DataLayerError):
    """The database gave up on the transaction because of a concurrent one; run it again."""


class DatabaseUnavailableError(DataLayerError):
    """The database cannot serve: unreachable, connection lost, out of connections or storage."""


class ReadOnlyError(DataLayerError):
    """A write was attempted in a read-only unit of work (which may run on a replica)."""


READ_ONLY_MESSAGE = (
    "this unit of work is read-only (UnitOfWork(read_only=True)) and cannot write; "
    "do the write in a read-write unit of work"
)


class StatementTimeoutError(DataLayerError):
    """A statement ran longer than DB_STATEMENT_TIMEOUT (or was cancelled) and was stopped."""


class InvalidQueryError(DataLayerError, ValueError):
    """The request is wrong: an unknown field, a bad argument, a value the column refuses."""


def translate(exc: Exception, *, model: type[Any] | None = None) -> Exception:
    """The data-layer error for `exc`, or `exc` itself when the caller cannot act on it.

    `model` only makes the message speak of what the caller was working on.
    """
    entity = _entity_name(model)
    if isinstance(exc, StaleDataError):
        return StaleObjectError(
            f"the {entity} was changed or deleted by someone else since it was read; "
            "load it again and retry"
        )
    if isinstance(exc, sa_exc.TimeoutError):
        return DatabaseUnavailableError(
            "no database connection became free within DB_POOL_TIMEOUT; every pooled "
            "connection is in use"
        )
    if not isinstance(exc, sa_exc.DBAPIError):
        return exc
    if exc.connection_invalidated:
        return DatabaseUnavailableError("the database connection was lost; try again")
    meaning = classify(exc.orig)
    if meaning is None:
        return exc
    return _error_for(meaning, exc, entity, model)


def _error_for(
    meaning: Meaning, exc: sa_exc.DBAPIError, entity: str, model: type[Any] | None
) -> Exception:
    kind = meaning.kind
    if kind is Kind.CONFLICT:
        constraint, fields = _subject(exc, model)
        message = _conflict_message(entity, fields)
        return ConflictError(message, constraint=constraint, fields=fields)
    if kind is Kind.FOREIGN_KEY:
        return ForeignKeyError(
            f"the {entity} refers to a row that does not exist, or is still referred to"
        )
    if kind is Kind.RETRYABLE:
        return RetryableError(
            "the database aborted the transaction because of a concurrent one "
            "(serialization failure, deadlock, lock timeout or busy); run it again"
        )
    if kind is Kind.READ_ONLY:
        return ReadOnlyError(READ_ONLY_MESSAGE)
    if kind is Kind.TIMEOUT:
        return StatementTimeoutError(
            "the statement ran longer than DB_STATEMENT_TIMEOUT, or was cancelled, and was "
            "stopped; the transaction must be rolled back"
        )
    if kind is Kind.UNAVAILABLE:
        return DatabaseUnavailableError(
            f"the database is unavailable: {meaning.unavailable_because}"
        )
    if kind is Kind.CANNOT_CONNECT:
        return DatabaseUnavailableError(
            "cannot connect to the database: check that it is running, that the database in "
            "DATABASE_URL exists (`app db create`) and that its user and password are right"
        )
    if kind is Kind.LOGIN:
        return DatabaseUnavailableError(
            "the database refused the login: check the user and password in DATABASE_URL"
        )
    if kind is Kind.NO_DATABASE:
        return DatabaseUnavailableError(
            "the database named in DATABASE_URL does not exist; `app db create` makes it"
        )
    assert meaning.rule is not None
    constraint, fields = _subject(exc, model)
    subject = ", ".join(fields) if fields else f"a value of the {entity}"
    where = f" ({constraint})" if constraint and not fields else ""
    return InvalidQueryError(
        f"the database refused the {entity}: {subject} {meaning.rule.value}{where}"
    )


def _conflict_message(entity: str, fields: tuple[str, ...]) -> str:
    if not fields:
        return f"a {entity} with the same unique value already exists"
    return f"a {entity} with this {' and '.join(fields)} already exists"


def _entity_name(model: type[Any] | None) -> str:
    return model.__name__.lower() if model is not None else "row"


# Where drivers name the constraint or column in their text. Only detail for the message: the
# kind was decided by the code, and only names that the model's table really has are kept, so
# no value from the text can reach a message.
_NAMES_IN_TEXT = (
    re.compile(r"for key '(?:[^'.]+\.)?([^']+)'"),  # MariaDB duplicate entry
    re.compile(r"CONSTRAINT `([^`]+)` failed"),  # MariaDB check
    re.compile(r"[Cc]olumn [`'\"]?(?:\w+[`'\"]?\.[`'\"]?)*(\w+)[`'\"]?"),  # MariaDB column
    re.compile(r"constraint failed: (?:\w+\.)?(\w+)"),  # SQLite: "... failed: users.email"
)


def _subject(exc: sa_exc.DBAPIError, model: type[Any] | None) -> tuple[str | None, tuple[str, ...]]:
    """The constraint and the fields the database named, where the model has them."""
    if model is None:
        return None, ()
    table: Table = inspect(model).local_table
    named: list[str] = []
    diag = getattr(exc.orig, "diag", None)
    if diag is not None:
        named = [n for n in (diag.constraint_name, diag.column_name) if n]
    elif exc.orig is not None and exc.orig.args:
        text = str(exc.orig.args[-1])
        named = [match.group(1) for pattern in _NAMES_IN_TEXT for match in pattern.finditer(text)]
        # SQLite names every column of a composite key: "failed: t.a, t.b".
        named += re.findall(r"(?<=, )\w+\.(\w+)", text)
    for constraint in _keyed_constraints(table):
        if constraint.name in named:
            return str(constraint.name), tuple(column.key for column in constraint.columns)
    for index in table.indexes:
        if index.name in named:
            return str(index.name), tuple(column.key for column in index.columns)
    columns = tuple(dict.fromkeys(c.key for c in table.columns if c.name in named))
    return constraint_for_columns(table, columns), columns


def _keyed_constraints(table: Table) -> list[ColumnCollectionConstraint]:
    return [c for c in table.constraints if isinstance(c, ColumnCollectionConstraint)]


def constraint_for_columns(table: Table, columns: tuple[str, ...]) -> str | None:
    """The name of the constraint of `table` over exactly `columns`, if there is one."""
    for constraint in _keyed_constraints(table):
        if columns and tuple(column.key for column in constraint.columns) == columns:
            return str(constraint.name)
    return None


@contextmanager
def translating_errors(*, model: type[Any] | None = None) -> Iterator[None]:
    """Re-raise database errors raised inside the block as data-layer errors, chained."""
    try:
        yield
    except (sa_exc.DBAPIError, sa_exc.TimeoutError, StaleDataError) as exc:
        translated = translate(exc, model=model)
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
    "ReadOnlyError",
    "RetryableError",
    "StaleObjectError",
    "StatementTimeoutError",
    "translate",
    "translating_errors",
]
