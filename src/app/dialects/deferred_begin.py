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

The BEGIN goes with that first statement: both are sent in one pipeline (libpq's pipeline
mode) and answered in one round trip, so a unit that writes pays no round trip for its BEGIN
either. A unit that will sign its COMMIT (`run_in_transaction`'s receipt) also asks for its
transaction's id in the same round trip: its receipt then costs no statement of its own
(`transaction_id`). For a batch (executemany) and a statement without parameters (sent as a
simple query, which a pipeline does not take), BEGIN is a round trip of its own, and a signing
unit's is `BEGIN; SELECT txid_current()`. Wherever the BEGIN is ours, psycopg stays in
autocommit around that transaction, which it ends all the same (its COMMIT and ROLLBACK look at
the server's transaction status), until the connection's next transaction or its return to the
pool.

Left as it was: a unit at REPEATABLE READ or SERIALIZABLE (its snapshot spans its statements),
a connection the caller put in autocommit itself (`isolation_level="AUTOCOMMIT"`), and a
transaction pooler's connections (the settings ride on each transaction there).
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
from app.dialects.postgresql_plans import stale_plan

_DEFERRED = "app_begin_deferred"
# Set while psycopg's autocommit is ours, around a transaction whose BEGIN we sent.
_BEGUN_BY_US = "app_begun_by_us"
# On a statement's execution context, from its before_cursor_execute to its execution, which
# then sends the BEGIN with it: whether to ask for the transaction's id too.
_BEGIN_WITH_IT = "app_begin_with_it"
_TRANSACTION_ID = "app_transaction_id"
_BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"
_ASK_ID = "SELECT txid_current()"
_BEGIN_WITH_ID = f"{_BEGIN}; {_ASK_ID}"

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
        fairy.info.pop(_BEGUN_BY_US, None)
        if _autocommit_asked(connection):
            return
        # Any other autocommit is ours: left by a BEGIN of ours, or by a unit that never
        # reached its end here (a cancelled task's). Taken as it is where the unit defers its
        # BEGIN again, else turned off; never trusted to mean the caller's autocommit, which
        # would commit each statement of the unit on its own.
        if driver.isolation_level not in _READ_COMMITTED:
            if driver.autocommit:
                fairy.dbapi_connection.autocommit = False  # type: ignore[union-attr]
            return
        if not driver.autocommit:
            fairy.dbapi_connection.autocommit = True  # type: ignore[union-attr]
        fairy.info[_DEFERRED] = True

    pipelined = psycopg.Pipeline.is_supported()

    @event.listens_for(engine, "before_cursor_execute")
    def _begin_if_needed(
        connection: Connection, _cursor: Any, _statement: str, _p: Any, context: Any, many: bool
    ) -> None:
        fairy = connection.connection
        if not fairy.info.get(_DEFERRED) or _is_plain_read(context):
            return
        fairy.info[_DEFERRED] = False
        unit = telemetry.unit_of(connection)
        driver: Any = fairy.driver_connection
        signs = unit is not None and unit.signs and driver.read_only is None
        if pipelined and not many and not _server_side(context) and driver.read_only is None:
            setattr(context, _BEGIN_WITH_IT, signs)  # sent by `_pipelined`
            return
        if signs:
            fairy.info[_BEGUN_BY_US] = True
            fairy.info[_TRANSACTION_ID] = _begun_with_id(connection, driver)
            return
        # psycopg sends BEGIN before this statement, as it does outside autocommit.
        fairy.dbapi_connection.autocommit = False  # type: ignore[union-attr]

    if pipelined:

        @event.listens_for(engine, "do_execute")
        def _execute_after_begin(
            cursor: Any, statement: str, parameters: Any, context: Any
        ) -> bool:
            return _pipelined(context, cursor, statement, parameters)

        @event.listens_for(engine, "do_execute_no_params")
        def _execute_after_begin_alone(cursor: Any, statement: str, context: Any) -> bool:
            return _pipelined(context, cursor, statement, None)

    if not engine.dialect.is_async:  # the asyncio face's checkin may run outside its loop

        @event.listens_for(engine, "checkin")
        def _autocommit_off(dbapi_connection: Any, record: Any) -> None:
            # Back as psycopg's default for whoever takes it next, the raw driver included.
            ours = record.info.pop(_BEGUN_BY_US, False)
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
_TUPLES_OK = psycopg.pq.ExecStatus.TUPLES_OK


def _autocommit_asked(connection: Connection) -> bool:
    """Whether the caller asked for autocommit: for this connection, or for every connection
    of its engine (`make_engine(..., isolation_level="AUTOCOMMIT")`)."""
    asked = connection.get_execution_options().get("isolation_level")
    if asked is None:
        asked = getattr(connection.dialect, "_on_connect_isolation_level", None)
    return bool(asked == "AUTOCOMMIT")


def _idle(driver: Any) -> bool:
    """Whether the psycopg connection `driver` is open and outside a transaction."""
    return not driver.closed and driver.info.transaction_status == _IDLE


def _pipelined(context: Any, cursor: Any, statement: str, parameters: Any) -> bool:
    """Run `statement` on `cursor` after its transaction's BEGIN (and the query of its id, for a
    unit that signs), all in one round trip, if `_begin_if_needed` asked for it; else leave the
    statement to the dialect."""
    signs = getattr(context, _BEGIN_WITH_IT, None)
    if signs is None:
        return False
    if not parameters:
        # Without parameters psycopg sends the text as a simple query, which may hold several
        # statements; a pipeline takes one statement per message. BEGIN on its own, then.
        context.root_connection.connection.dbapi_connection.autocommit = False
        return False
    fairy = context.root_connection.connection
    driver: Any = fairy.driver_connection
    fairy.info[_BEGUN_BY_US] = True  # from here on, whatever the pipeline's outcome
    if context.dialect.is_async:
        xid = await_only(_pipelined_async(driver, cursor, statement, parameters, signs))
    else:
        xid = _pipelined_blocking(driver, cursor, statement, parameters, signs)
    if xid is not None:
        fairy.info[_TRANSACTION_ID] = xid
    return True


def _pipelined_blocking(
    driver: Any, cursor: Any, statement: str, parameters: Any, signs: bool
) -> int | None:
    """`_pipelined` on the blocking face; the transaction's id if asked for."""
    try:
        asked = _begin_and_run(driver, cursor, statement, parameters, signs)
    except psycopg.errors.FeatureNotSupported as exc:
        if not stale_plan(exc):
            raise
        # The transaction held only this statement: rolled back (psycopg forgets its prepared
        # statements with it), it is begun and run again, planned anew.
        driver.rollback()
        asked = _begin_and_run(driver, cursor, statement, parameters, signs)
    return int(asked.fetchone()[0]) if asked is not None else None


def _begin_and_run(driver: Any, cursor: Any, statement: str, parameters: Any, signs: bool) -> Any:
    with driver.pipeline():
        driver.execute(_BEGIN, prepare=False)
        asked = driver.execute(_ASK_ID, prepare=False) if signs else None
        cursor.execute(statement, parameters)
    return asked


async def _pipelined_async(
    driver: Any, adapted: Any, statement: str, parameters: Any, signs: bool
) -> int | None:
    """`_pipelined` on the asyncio face, whose cursor is SQLAlchemy's adapter around psycopg's:
    the statement runs on psycopg's cursor inside the pipeline, and its rows are then handed
    to the adapter, which would have fetched them all as it executed."""
    cursor = adapted._cursor
    try:
        asked = await _begin_and_run_async(driver, cursor, statement, parameters, signs)
    except psycopg.errors.FeatureNotSupported as exc:
        if not stale_plan(exc):
            raise
        await driver.rollback()  # as `_pipelined_blocking` does
        asked = await _begin_and_run_async(driver, cursor, statement, parameters, signs)
    if cursor.pgresult is not None and cursor.pgresult.status == _TUPLES_OK:
        adapted._rows = type(adapted._rows)(await cursor.fetchall())
    return int((await asked.fetchone())[0]) if asked is not None else None


async def _begin_and_run_async(
    driver: Any, cursor: Any, statement: str, parameters: Any, signs: bool
) -> Any:
    async with driver.pipeline():
        await driver.execute(_BEGIN, prepare=False)
        asked = await driver.execute(_ASK_ID, prepare=False) if signs else None
        await cursor.execute(statement, parameters)
    return asked


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


def _server_side(context: Any) -> bool:
    return bool(getattr(context, "_is_server_side", False))


def _is_plain_read(context: Any) -> bool:
    """Whether the statement is a SELECT that needs no transaction: no rows locked, no
    server-side cursor, nothing written (a data-modifying CTE), no function that might."""
    compiled = getattr(context, "compiled", None)
    if compiled is None or context.isinsert or context.isupdate or context.isdelete:
        return False
    if _server_side(context):
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
