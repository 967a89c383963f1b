"""PostgreSQL: a unit's transaction begins with its first statement that needs one.

Every transaction of ours runs at READ COMMITTED unless its unit asks for another level, and at
READ COMMITTED each statement reads a snapshot of its own whether or not a transaction encloses
it: a SELECT run before a unit's first write sees what it would have seen inside the
transaction. So while a unit only reads, its driver connection stays in autocommit, and psycopg
sends BEGIN (with the unit's isolation level and access mode) right before the first statement
that writes, locks rows, streams from a server-side cursor, or might do any of these (text,
functions not known to be pure). A unit that only reads sends its SELECTs and nothing else: no
BEGIN and no ROLLBACK, two round trips fewer. Its rows are still read under the session's
statement timeout and time zone, which are set per connection.

A unit that will sign its COMMIT (`run_in_transaction`'s receipt) begins with
`BEGIN; SELECT txid_current()` in one round trip instead: its receipt then costs no statement
of its own (`transaction_id`). psycopg stays in autocommit around that transaction, which it
ends all the same (its COMMIT and ROLLBACK look at the server's transaction status), until the
connection's next transaction or its return to the pool.

Left as it was: a unit at REPEATABLE READ or SERIALIZABLE (its snapshot spans its statements),
a connection the caller put in autocommit itself, and a transaction pooler's connections (the
settings ride on each transaction there).
"""

from __future__ import annotations

import weakref
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, Select, event
from sqlalchemy.sql import visitors
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.util import await_only

from app.db import telemetry

_DEFERRED = "app_begin_deferred"
# Set while psycopg's autocommit is ours, around a transaction begun with its id.
_BEGUN_WITH_ID = "app_begun_with_id"
_TRANSACTION_ID = "app_transaction_id"
_BEGIN_WITH_ID = "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT txid_current()"

# Functions a plain read may call: none of them writes, locks or depends on being in a
# transaction. Anything else begins one: nextval, an advisory lock, a function of the team's,
# and now() and its kin, which give the transaction's start inside one.
_PURE_FUNCTIONS = frozenset(
    {
        "abs", "avg", "bool_and", "bool_or", "ceil", "char_length", "coalesce", "concat",
        "count", "floor", "greatest", "least", "length", "lower", "max", "min", "nullif",
        "round", "sum", "trim", "upper",
    }
)  # fmt: skip

_plain: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def install(engine: Engine) -> None:
    """Defer the BEGIN of `engine`'s transactions as the module describes."""

    @event.listens_for(engine, "begin")
    def _defer(connection: Connection) -> None:
        fairy = connection.connection
        if fairy.info.get(_DEFERRED):
            return
        driver: Any = fairy.driver_connection
        if fairy.info.pop(_BEGUN_WITH_ID, False) and not _autocommit_asked(connection):
            # The autocommit a transaction begun with its id left is ours: off, as at first.
            fairy.dbapi_connection.autocommit = False  # type: ignore[union-attr]
        if driver.autocommit or driver.isolation_level not in _READ_COMMITTED:
            return
        fairy.dbapi_connection.autocommit = True  # type: ignore[union-attr]
        fairy.info[_DEFERRED] = True

    @event.listens_for(engine, "before_cursor_execute")
    def _begin_if_needed(
        connection: Connection, _cursor: Any, _statement: str, _p: Any, context: Any, _m: bool
    ) -> None:
        fairy = connection.connection
        if not fairy.info.get(_DEFERRED) or _is_plain_read(context):
            return
        fairy.info[_DEFERRED] = False
        unit = telemetry.unit_of(connection)
        driver: Any = fairy.driver_connection
        if unit is not None and unit.signs and driver.read_only is None:
            fairy.info[_TRANSACTION_ID] = _begun_with_id(connection, driver)
            fairy.info[_BEGUN_WITH_ID] = True
            return
        # psycopg sends BEGIN before this statement, as it does outside autocommit.
        fairy.dbapi_connection.autocommit = False  # type: ignore[union-attr]

    if not engine.dialect.is_async:  # the asyncio face's checkin may run outside its loop

        @event.listens_for(engine, "checkin")
        def _autocommit_off(dbapi_connection: Any, record: Any) -> None:
            # Back as psycopg's default for whoever takes it next, the raw driver included.
            ours = record.info.pop(_BEGUN_WITH_ID, False)
            if ours and dbapi_connection is not None and _idle(dbapi_connection):
                dbapi_connection.autocommit = False

    def _end(connection: Connection) -> None:
        if connection.invalidated:
            return  # its driver connection is gone, and the pool's record with it
        fairy = connection.connection
        fairy.info.pop(_TRANSACTION_ID, None)
        if not fairy.info.pop(_DEFERRED, False):
            return
        driver: Any = fairy.driver_connection
        # Nothing began: back out of autocommit, which the commit or rollback that follows
        # then finds with nothing to end. A broken connection is left to its own error.
        if _idle(driver):
            fairy.dbapi_connection.autocommit = False  # type: ignore[union-attr]

    event.listen(engine, "commit", _end)
    event.listen(engine, "rollback", _end)


_READ_COMMITTED = (None, psycopg.IsolationLevel.READ_COMMITTED)
_IDLE = psycopg.pq.TransactionStatus.IDLE


def _autocommit_asked(connection: Connection) -> bool:
    return connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT"


def _idle(driver: Any) -> bool:
    """Whether the psycopg connection `driver` is open and outside a transaction."""
    return not driver.closed and driver.info.transaction_status == _IDLE


def _begun_with_id(connection: Connection, driver: Any) -> int:
    """Begin a transaction on `connection`'s psycopg connection `driver` (in autocommit), and
    return its id: both in one round trip, tagged and observed as any statement."""
    with telemetry.observation_of(connection).driver_statement(connection, _BEGIN_WITH_ID) as sent:
        if connection.dialect.is_async:
            cursor = await_only(driver.execute(sent, prepare=False))
            cursor.nextset()
            row = await_only(cursor.fetchone())
        else:
            cursor = driver.execute(sent, prepare=False)
            cursor.nextset()
            row = cursor.fetchone()
    return int(row[0])


def transaction_id(connection: Connection) -> int | None:
    """The id of the transaction on `connection`, if it began with it (else None: ask)."""
    found: int | None = connection.connection.info.get(_TRANSACTION_ID)
    return found


def begin_now(connection: Connection) -> None:
    """Make the next statement on `connection` begin its transaction, if it has not: for
    statements sent through the driver below SQLAlchemy's events (COPY, commit receipts),
    which would otherwise run, and commit, on their own. No effect on other connections."""
    fairy = connection.connection
    if fairy.info.get(_DEFERRED):
        fairy.info[_DEFERRED] = False
        fairy.dbapi_connection.autocommit = False  # type: ignore[union-attr]


def _is_plain_read(context: Any) -> bool:
    """Whether the statement is a SELECT that needs no transaction: no rows locked, no
    server-side cursor, nothing written (a data-modifying CTE), no function that might."""
    compiled = getattr(context, "compiled", None)
    if compiled is None or context.isinsert or context.isupdate or context.isdelete:
        return False
    if getattr(context, "_is_server_side", False):
        return False
    known = _plain.get(compiled)
    if known is None:
        known = _plain[compiled] = _plain_select(compiled.statement)
    return known


def _plain_select(statement: Any) -> bool:
    if not isinstance(statement, Select) or statement._for_update_arg is not None:
        return False
    for element in visitors.iterate(statement):
        if isinstance(element, UpdateBase):
            return False
        if isinstance(element, FunctionElement) and (
            getattr(element, "name", "").lower() not in _PURE_FUNCTIONS
        ):
            return False
    return True
