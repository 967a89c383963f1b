"""Database failures a caller can act on, as named errors decided by the database's own codes,
and the one place where a driver's exception becomes one of them (`translate`).

The decision is made from SQLSTATE (PostgreSQL), the error number (MariaDB) or the extended
result code (SQLite), never from message text (`app.db.error_codes`). Messages name the entity,
the field, the constraint and the rule, never a stored value or the driver's text; the original
exception is always chained for the log.

Every engine the project builds translates as its statements fail (`app.db.error_events`: a
`handle_error` listener, so raw SQL on `uow.session` is translated as well as repository calls,
flushes and commits); its sessions translate a lost optimistic lock and its pool a checkout that
timed out. `translating_errors` is for code that runs statements on engines made elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from sqlalchemy import Table
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.sql.schema import ColumnCollectionConstraint, ForeignKeyConstraint

from app.db import types
from app.db.error_codes import (
    CANNOT_CONNECT,
    CONNECT_TIMED_OUT,
    NOT_SENT,
    SERVER_GONE,
    Kind,
    Meaning,
    Named,
    classify,
    code_of,
    names_in,
    timed_out_connecting,
)
from app.db.models import Base


class DataLayerError(Exception):
    """Base of every error the data layer raises on purpose.

    One made from a database's refusal also carries, for logs, the database's code (`code`:
    SQLSTATE, MariaDB errno or SQLite result code) and the table it named (`table`); the
    driver's exception stays chained, its text and diagnostics cleared of stored values.

    One that refuses a row of a bulk call (`create_many`, `upsert_many`) before it is sent says
    which in `row`: its index among the rows given, counting from 0 (its message says so too).
    """

    code: str | int | None = None
    table: str | None = None
    row: int | None = None

    def at_row(self, index: int) -> None:
        """Say this error of the row at `index` of a bulk call's rows."""
        self.row = index
        self.args = (f"row {index} (counting from 0): {self.args[0]}",)


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
    """A foreign key refused the write: the referenced row is missing (or still referenced).
    `.constraint` and `.fields` (its columns, on the referring table) say which."""

    def __init__(
        self, message: str, *, constraint: str | None = None, fields: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.constraint = constraint
        self.fields = fields


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


class ConnectionLostError(DatabaseUnavailableError):
    """The connection was lost while it was in use, before any COMMIT was sent: the
    transaction it was in was not applied, and running it again on a new connection is safe
    (`run_in_transaction` does). (A statement run outside a transaction, in autocommit mode,
    may have been applied.)"""


CONNECTION_LOST = "the database connection was lost; try again"


class CommitOutcomeUnknownError(DatabaseUnavailableError):
    """The connection was lost after COMMIT was sent and before the database answered: the
    transaction may have been applied or not. Repeating it blindly may apply it twice."""


COMMIT_OUTCOME_UNKNOWN = (
    "the database connection was lost while the transaction was committing: it may or may not "
    "have been applied; check whether it was before doing it again"
)


class ReadOnlyError(DataLayerError):
    """A write was refused as read-only: by a read-only unit of work (which may run on a
    replica), by a transaction begun read-only, or by a server that takes no writes now."""


READ_ONLY_MESSAGE = (
    "this unit of work is read-only (UnitOfWork(read_only=True)) and cannot write; "
    "do the write in a read-write unit of work"
)
SERVER_TAKES_NO_WRITES = (
    "the database server takes no writes now (a standby, a primary that a failover demoted, "
    "or a database read-only by default): the write was refused and its transaction rolled "
    "back; the pool's connections to that server are replaced, so a unit run again reaches "
    "the server that takes writes where DATABASE_URL names it"
)
READ_ONLY_TRANSACTION = (
    "the database refused the write as read-only: the transaction was begun READ ONLY, or "
    "its server takes no writes (a standby); do the write in a read-write transaction on the "
    "server that takes writes"
)
TRANSACTION_ABORTED = (
    "the transaction was aborted by an earlier error in it: roll it back (or leave the unit of "
    "work) before sending more statements; `uow.savepoint()` keeps a write that may fail apart"
)
# An execution option on a read-only unit's connection: its refused writes are the unit's.
READ_ONLY_UNIT = "app_read_only_unit"


class StatementTimeoutError(DataLayerError):
    """A statement ran longer than DB_STATEMENT_TIMEOUT (or was cancelled) and was stopped."""


class InvalidQueryError(DataLayerError, ValueError):
    """The request is wrong: an unknown field, a bad argument, a value the column refuses."""


class SchemaMismatchError(DataLayerError):
    """A table or column a statement names is not in the database: its schema is not the one
    the code expects (a migration not run, or run ahead of the code), or a hand-written
    statement names one that does not exist."""


SCHEMA_MISMATCH = (
    "a table or column the statement names is not in the database: its schema is not the one "
    "this code expects (`app db current` says whether migrations are pending, `app db check` "
    "what differs), or a hand-written statement names one that does not exist"
)


def _unknown_member(owner: str) -> SchemaMismatchError:
    return SchemaMismatchError(
        f"the database holds a value of {owner} that this code does not know (one of its "
        "members added by newer code, or a value written by hand)"
    )


types.unknown_member = _unknown_member


class StatisticsUnavailableError(DataLayerError):
    """The server keeps no statement statistics (`app db top`); the message says how to turn
    them on."""


class MigrationLockedError(DataLayerError):
    """Another process held the migration lock for longer than we were willing to wait."""

    @classmethod
    def after(cls, wait_seconds: float) -> MigrationLockedError:
        return cls(
            f"another process is migrating this database; gave up waiting after {wait_seconds:g} s"
        )


def translate(
    exc: Exception,
    *,
    model: type[Any] | None = None,
    table: Table | None = None,
    connected: bool = False,
    connecting: bool = False,
    query: bool = False,
    read_only_because: str = READ_ONLY_TRANSACTION,
) -> Exception:
    """The data-layer error for `exc`, or `exc` itself when the caller cannot act on it.

    `model` or `table` (what the failed statement wrote) says what the message speaks of;
    without them it is found from the names in the driver's error. `connected`: the error
    came from a sound connection, so one without the server's answer is the driver refusing
    the statement, not a failure to connect. `connecting`: the error came while a connection
    was being made, so one the server dropped was never made, not lost. `query`: the
    statement was a SELECT, so a value it refused is one it computed or compared, not one of
    a row written.
    `read_only_because`: the message of a write refused as read-only (the unit's, the
    server's or the transaction's; see `app.db.error_events`).
    """
    if table is None and model is not None:
        table = model.__table__
    if isinstance(exc, StaleDataError):
        return StaleObjectError(
            f"the {_entity(table)} was changed or deleted by someone else since it was read; "
            "load it again and retry"
        )
    if isinstance(exc, sa_exc.PendingRollbackError):
        # The session's own refusal, after an error it has not been rolled back from.
        return InvalidQueryError(TRANSACTION_ABORTED)
    if isinstance(exc, UnicodeError):  # encoding a value for the driver: nothing was sent
        return InvalidQueryError(
            "a text value of the statement is not valid Unicode (a lone surrogate, say): the "
            "statement was not sent"
        )
    if isinstance(exc, OverflowError):  # a number the driver has no form for: nothing was sent
        return InvalidQueryError(
            "a number in the statement is larger than the database driver can send: the "
            "statement was not sent"
        )
    if isinstance(exc, sa_exc.TimeoutError):
        return DatabaseUnavailableError(
            "no database connection became free within DB_POOL_TIMEOUT; every pooled "
            "connection is in use"
        )
    if not isinstance(exc, sa_exc.DBAPIError):
        return exc
    meaning = classify(exc.orig)
    if connecting and (exc.connection_invalidated or meaning is SERVER_GONE):
        meaning = CANNOT_CONNECT  # a login the server never finished: no connection was lost
    elif exc.connection_invalidated:
        return ConnectionLostError(CONNECTION_LOST)
    if meaning is None:
        return exc
    if meaning.kind is Kind.CANNOT_CONNECT and connected:
        meaning = NOT_SENT
    elif meaning.kind is Kind.CANNOT_CONNECT and timed_out_connecting(exc.orig):
        meaning = CONNECT_TIMED_OUT
    named = names_in(exc.orig)
    if table is None:
        table = _table_named(named)
    error = _error_for(meaning, named, table, query=query, read_only_because=read_only_because)
    if isinstance(error, DataLayerError):
        error.code = code_of(exc.orig)
        error.table = table.name if table is not None else named.table
    return error


def _error_for(
    meaning: Meaning, named: Named, table: Table | None, *, query: bool, read_only_because: str
) -> Exception:
    kind = meaning.kind
    table = table if table is not None else _table_named(named)
    entity = _entity(table)
    if kind is Kind.CONFLICT:
        constraint, fields = _subject(named, table)
        return ConflictError(
            _conflict_message(entity, fields), constraint=constraint, fields=fields
        )
    if kind is Kind.FOREIGN_KEY:
        key = _foreign_key_named(named.constraint)
        fields = tuple(column.key for column in key.columns) if key is not None else ()
        return ForeignKeyError(
            f"the {entity} refers to a row that does not exist, or is still referred to",
            constraint=str(key.name) if key is not None else None,
            fields=fields,
        )
    if kind is Kind.RETRYABLE:
        return RetryableError(
            "the database aborted the transaction because of a concurrent one "
            "(serialization failure, deadlock, lock timeout, busy, or a statement planned before a "
            "schema change); run it again"
        )
    if kind is Kind.READ_ONLY:
        return ReadOnlyError(read_only_because)
    if kind is Kind.TIMEOUT:
        return StatementTimeoutError(
            "the statement ran longer than DB_STATEMENT_TIMEOUT, or was cancelled, and was "
            "stopped; the transaction must be rolled back"
        )
    if kind is Kind.UNAVAILABLE:
        return DatabaseUnavailableError(
            f"the database is unavailable: {meaning.unavailable_because}"
        )
    if kind is Kind.CANNOT_CONNECT and meaning.unavailable_because:
        return DatabaseUnavailableError(
            f"cannot connect to the database: {meaning.unavailable_because}"
        )
    if kind is Kind.CANNOT_CONNECT:
        return DatabaseUnavailableError(
            "cannot connect to the database: check that it is running, that the database in "
            "DATABASE_URL exists (`app db create`) and that its user and password are right"
        )
    if kind is Kind.POOLER:
        return DatabaseUnavailableError(
            "the database refused a startup parameter, as a connection pooler such as PgBouncer "
            "does: set DATABASE_POOLER=transaction (or session, as the pooler runs)"
        )
    if kind is Kind.LOGIN:
        return DatabaseUnavailableError(
            "the database refused the login: check the user and password in DATABASE_URL"
        )
    if kind is Kind.NO_DATABASE:
        return DatabaseUnavailableError(
            "the database named in DATABASE_URL does not exist; `app db create` makes it"
        )
    if kind is Kind.ABORTED:
        return InvalidQueryError(TRANSACTION_ABORTED)
    if kind is Kind.SCHEMA:
        return SchemaMismatchError(SCHEMA_MISMATCH)
    if kind is Kind.TOO_LARGE:
        return InvalidQueryError(
            "the statement with its values is larger than the database takes at once "
            "(max_allowed_packet): send fewer or smaller values; the transaction was rolled back"
        )
    if kind is Kind.NOT_SENT:
        return InvalidQueryError(
            "the database driver refused the statement before sending it: too many values for "
            "one statement, or a value it cannot send"
        )
    assert meaning.rule is not None
    if query and table is None:
        return InvalidQueryError(
            "the database refused the query: a value it computes or compares is out of range "
            "or not valid for its type (a division by zero, text that is not a number, ...)"
        )
    constraint, fields = _subject(named, table)
    subject = ", ".join(fields) if fields else f"a value of the {entity}"
    where = f" ({constraint})" if constraint and not fields else ""
    return InvalidQueryError(
        f"the database refused the {entity}: {subject} {meaning.rule.value}{where}"
    )


def conflict_on(table: Table, columns: tuple[str, ...]) -> ConflictError:
    """The `ConflictError` of a write that met a stored row on the unique key over `columns`
    (found before the database said so), as the database's refusal would be told."""
    constraint, fields = constraint_for_columns(table, columns)
    return ConflictError(
        _conflict_message(_entity(table), fields), constraint=constraint, fields=fields
    )


def kept_key(table: Table, target: tuple[str, ...], columns: tuple[str, ...]) -> ConflictError:
    """The `ConflictError` of an upsert that matched a stored row on `target` and gave that row
    other values for its unique key over `columns`, which no row holds: an upsert keeps a
    stored row's keys."""
    constraint, fields = constraint_for_columns(table, columns)
    entity = _entity(table)
    named = " and ".join(fields or columns)
    return ConflictError(
        f"the {entity} with this {' and '.join(target)} has another {named}: an upsert does "
        f"not change a stored row's {named}",
        constraint=constraint,
        fields=fields,
    )


def _conflict_message(entity: str, fields: tuple[str, ...]) -> str:
    if not fields:
        return f"{_a(entity)} with the same unique value already exists"
    return f"{_a(entity)} with this {' and '.join(fields)} already exists"


def _a(noun: str) -> str:
    """`noun` with its indefinite article, by its first letter ("an order", "a user")."""
    return f"an {noun}" if noun[:1] in ("a", "e", "i", "o") else f"a {noun}"


@cache
def _mapped_classes() -> dict[Table, str]:
    return {
        mapper.local_table: mapper.class_.__name__  # type: ignore[misc]
        for mapper in Base.registry.mappers
    }


def _entity(table: Table | None) -> str:
    """What the message calls a row of `table`: its model's name, lower case."""
    if table is None:
        return "row"
    return _mapped_classes().get(table, table.name).lower()


def _table_named(named: Named) -> Table | None:
    """The models' table the driver's error speaks of, by its name or its constraint's."""
    tables = Base.metadata.tables
    if named.table is not None:
        return tables.get(named.table)
    if named.constraint is not None:
        for table in tables.values():
            names = {c.name for c in table.constraints} | {i.name for i in table.indexes}
            if named.constraint in names:
                return table
    if named.columns:
        # Only columns named (MariaDB's "Column 'email' cannot be null"): the one table that
        # has them all, if there is just one.
        having = [t for t in tables.values() if set(named.columns) <= set(t.columns.keys())]
        if len(having) == 1:
            return having[0]
    return None


def _foreign_key_named(name: str | None) -> ForeignKeyConstraint | None:
    """The models' foreign key of that name (on the referring table, whichever was written)."""
    if name is None:
        return None
    for table in Base.metadata.tables.values():
        for key in table.foreign_key_constraints:
            if key.name == name:
                return key
    return None


def _subject(named: Named, table: Table | None) -> tuple[str | None, tuple[str, ...]]:
    """The constraint and the fields the database named, where the table has them (only
    names the schema really has are kept, so no value can reach a message)."""
    if table is None:
        return None, ()
    if named.primary_key and table.primary_key.columns:
        key = table.primary_key
        return str(key.name) if key.name else None, tuple(column.key for column in key.columns)
    if named.constraint is not None:
        for constraint in _keyed(table):
            if constraint.name == named.constraint:
                return str(constraint.name), tuple(column.key for column in constraint.columns)
        for index in table.indexes:
            if index.name == named.constraint:
                return str(index.name), tuple(column.key for column in index.columns)
    by_name = {column.name: column.key for column in table.columns}
    columns = tuple(dict.fromkeys(by_name[name] for name in named.columns if name in by_name))
    return constraint_for_columns(table, columns)


def _keyed(table: Table) -> list[ColumnCollectionConstraint]:
    return [c for c in table.constraints if isinstance(c, ColumnCollectionConstraint)]


def constraint_for_columns(
    table: Table, columns: tuple[str, ...]
) -> tuple[str | None, tuple[str, ...]]:
    """The constraint (or unique index) of `table` over exactly `columns`, in whatever order
    they were named, and its fields in the constraint's own order; else no constraint and the
    fields as named."""
    wanted = set(columns)
    if wanted:
        keyed = [(c.name, c.columns) for c in _keyed(table)]
        keyed += [(i.name, i.columns) for i in table.indexes if i.unique]
        for name, key_columns in keyed:
            ordered = tuple(column.key for column in key_columns)
            if set(ordered) == wanted and len(ordered) == len(wanted):
                return str(name), ordered
    return None, columns


@contextmanager
def translating_errors(*, model: type[Any] | None = None) -> Iterator[None]:
    """Re-raise database errors raised inside the block as data-layer errors, chained (for
    statements run on an engine that `app.db.session` did not build)."""
    try:
        yield
    except (sa_exc.DBAPIError, sa_exc.TimeoutError, StaleDataError) as exc:
        translated = translate(exc, model=model)
        if translated is exc:
            raise
        raise translated from exc


__all__ = [
    "CommitOutcomeUnknownError",
    "ConflictError",
    "ConnectionLostError",
    "DataLayerError",
    "DatabaseUnavailableError",
    "ForeignKeyError",
    "InvalidQueryError",
    "MigrationLockedError",
    "NotFoundError",
    "ReadOnlyError",
    "RetryableError",
    "SchemaMismatchError",
    "StaleObjectError",
    "StatementTimeoutError",
    "StatisticsUnavailableError",
    "conflict_on",
    "constraint_for_columns",
    "kept_key",
    "translate",
    "translating_errors",
]
