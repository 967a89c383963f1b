"""Where translation happens: the events by which every engine the project builds sends its
failures through `app.db.errors.translate`, as they fail.

A statement's failure (raw SQL on `uow.session` as well as repository calls, flushes and
commits) becomes the data-layer error, chained to the driver's exception, which is scrubbed of
the stored values its text may quote. A connection lost while a COMMIT was on its way is told
as an unknown outcome; a write refused as read-only is told by who refused it; a statement the
server closed the connection over is never pooled again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import partial
from typing import Any

from sqlalchemy import Connection, Engine, Select, Table, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import ExceptionContext

from app.db.error_codes import TOO_LARGE, Kind, classify, code_of, quotes_the_statement
from app.db.errors import (
    COMMIT_OUTCOME_UNKNOWN,
    READ_ONLY_MESSAGE,
    READ_ONLY_TRANSACTION,
    READ_ONLY_UNIT,
    SERVER_TAKES_NO_WRITES,
    CommitOutcomeUnknownError,
    DatabaseUnavailableError,
    translate,
)
from app.db.models import Base

RefusesWrites = Callable[[Any], bool]


def install_translation(engine: Engine, refuses_writes: RefusesWrites) -> None:
    """Make every statement `engine` runs (and every connection it opens) fail with the
    data-layer error for the database's refusal, chained to the driver's exception.
    `refuses_writes` tells, from a driver connection, whether its server takes no writes at
    all now (the backend's `refuses_writes`)."""
    event.listen(engine, "handle_error", partial(_on_error, refuses_writes=refuses_writes))
    # Whether a connection's failure came while a COMMIT was on its way (see `_on_error`).
    event.listen(engine, "commit", partial(_mark_committing, committing=True))
    event.listen(engine, "begin", partial(_mark_committing, committing=False))
    event.listen(engine, "rollback", partial(_mark_committing, committing=False))


_COMMITTING = "app_committing"


def _mark_committing(connection: Connection, *, committing: bool) -> None:
    if not connection.invalidated:  # a lost connection's rollback has nothing to mark
        connection.info[_COMMITTING] = committing


def _on_error(context: ExceptionContext, *, refuses_writes: RefusesWrites) -> BaseException | None:
    # A failed pre-ping is the pool's to handle: it reconnects.
    if context.is_pre_ping:
        return None
    original = context.original_exception
    interrupted = raised_behind(original, (KeyboardInterrupt, SystemExit))
    if interrupted is not None and interrupted is not original:
        # The driver failed on its way out of an interruption (Ctrl-C): the interruption is
        # what the caller sees, and the connection, cut mid-conversation, is not used again.
        context.is_disconnect = True
        return interrupted
    wrapped = context.sqlalchemy_exception
    # A statement's values stay out of the error SQLAlchemy raises, translated or not.
    hides = context.engine is None or context.engine.hide_parameters
    if hides and isinstance(wrapped, sa_exc.StatementError):
        wrapped.params = None
    if not isinstance(wrapped, sa_exc.DBAPIError):
        return _unsendable(context, hides)
    execution = context.execution_context
    if execution is not None and execution.execution_options.get("skip_user_error_events"):
        # SQLAlchemy's own probe, which catches the driver's error it expects (MySQL's has_table
        # runs DESCRIBE and takes "no such table" for False): left as the driver's.
        return None
    meaning = classify(context.original_exception)
    if meaning is TOO_LARGE:
        # The server closed the connection after refusing the statement: never pooled again.
        context.is_disconnect = True
    read_only_because = READ_ONLY_TRANSACTION
    if meaning is not None and meaning.kind is Kind.READ_ONLY:
        read_only_because = _why_read_only(context, refuses_writes)
    connected = context.connection is not None and not context.is_disconnect
    translated = translate(
        wrapped,
        table=_written_table(context),
        connected=connected,
        connecting=context.connection is None,
        query=_is_query(context),
        read_only_because=read_only_because,
    )
    statement = context.connection is not None
    if translated is wrapped:  # no meaning of ours: SQLAlchemy's error, the database's words
        orig = context.original_exception
        if statement and hides and quotes_the_statement(orig):
            scrub(orig)
            # Its message was copied into SQLAlchemy's when that was made: copied again.
            kind = type(orig)
            wrapped.args = (f"({kind.__module__}.{kind.__name__}) {orig}",)
        return None
    if isinstance(translated, DatabaseUnavailableError) and _lost_committing(context):
        unknown = CommitOutcomeUnknownError(COMMIT_OUTCOME_UNKNOWN)
        unknown.code = translated.code
        translated = unknown
    # A statement's error may quote stored values; a failed connection's does not.
    if statement and hides:
        scrub(context.original_exception)
    return translated


def raised_behind(
    error: BaseException | None, kinds: type[BaseException] | tuple[type[BaseException], ...]
) -> BaseException | None:
    """The first exception of `kinds` in `error`'s chain (itself, then what it was raised
    from or while handling), if any."""
    seen: set[int] = set()
    link = error
    while link is not None and id(link) not in seen:
        if isinstance(link, kinds):
            return link
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return None


def _unsendable(context: ExceptionContext, hides: bool) -> BaseException | None:
    """A statement's value that could not be put into the form the driver sends (text that is
    not Unicode, a number too large for it): the data-layer error for it. The exception
    raised in Python holds the value (a UnicodeEncodeError holds all the text it was encoding:
    on MariaDB, the whole statement with every value in it), so it is scrubbed."""
    orig = context.original_exception
    if context.connection is None or not isinstance(orig, UnicodeError | OverflowError):
        return None
    if hides:
        if isinstance(orig, UnicodeError):
            orig.object = type(orig.object)()  # type: ignore[attr-defined]
        orig.args = ("the value is left out, as it may be a stored one",)
    return translate(orig)


def _why_read_only(context: ExceptionContext, refuses_writes: RefusesWrites) -> str:
    """Who refused a write as read-only: the unit (read-only by its own wish), the server
    (every transaction there is read-only now), or else the transaction (begun READ ONLY).

    A server that takes no writes is a standby, or a primary that a failover demoted while it
    still answers; every pooled connection to it would be refused alike, and a new one may
    reach the server that took its place. So the pool is invalidated, as on a disconnect."""
    connection = context.connection
    if connection is None or connection.invalidated:
        return READ_ONLY_TRANSACTION
    if connection.get_execution_options().get(READ_ONLY_UNIT):
        return READ_ONLY_MESSAGE
    if refuses_writes(connection.connection.driver_connection):
        context.is_disconnect = True
        return SERVER_TAKES_NO_WRITES
    return READ_ONLY_TRANSACTION


def _lost_committing(context: ExceptionContext) -> bool:
    """Whether the connection failed during a COMMIT (which has no statement of its own)."""
    connection = context.connection
    return (
        context.statement is None
        and connection is not None
        and not connection.invalidated
        and bool(connection.info.get(_COMMITTING))
    )


def scrub(orig: BaseException) -> None:
    """Clear a driver's exception of what may hold stored values, for the translated error it
    stays chained to: its message ("Key (email)=(...) already exists", "Duplicate entry '...'")
    and its diagnostics. Its class and code stay, and the translated error names the rest."""
    code = code_of(orig)
    text = (
        f"{'' if code is None else f'database error {code}: '}the driver's message is left "
        "out, as it may hold stored values (DB_ECHO_PARAMETERS=true keeps it)"
    )
    args = getattr(orig, "args", ())
    orig.args = (args[0], text) if args and isinstance(args[0], int) else (text,)
    for private in ("_info", "_pgconn"):  # psycopg: the server's result and diagnostics
        if hasattr(orig, private):
            setattr(orig, private, None)


class ServerErrorsByCode(logging.Filter):
    """A driver logs some server errors it sets aside (psycopg: the one that ends a COPY or a
    pipeline already failing for another reason), and the server's message may quote stored
    values: such an error is logged by its class and code, as `scrub` leaves it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_by_code(argument) for argument in record.args)
        return True


def _by_code(argument: object) -> object:
    if isinstance(argument, BaseException) and (code := code_of(argument)) is not None:
        return f"{type(argument).__name__} (database error {code})"
    return argument


_SERVER_ERRORS_BY_CODE = ServerErrorsByCode()


def quiet_server_errors(logger: str) -> None:
    """Log the server errors of the driver logging as `logger` by class and code (once: a
    filter added again is not added twice)."""
    logging.getLogger(logger).addFilter(_SERVER_ERRORS_BY_CODE)


class ServerWarningsWithoutText(logging.Filter):
    """asyncmy logs each warning the server gave a statement (it asks SHOW WARNINGS), and a
    warning may quote a stored value ("Truncated incorrect INTEGER value: '...'"): logged
    without its text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            record.msg, record.args = SERVER_WARNING, ()
        return True


SERVER_WARNING = (
    "the server gave a statement a warning; its text is left out, as it may quote stored "
    "values (DB_ECHO_PARAMETERS=true keeps it)"
)
_SERVER_WARNINGS_WITHOUT_TEXT = ServerWarningsWithoutText()


def quiet_server_warnings(logger: str) -> None:
    """Log the server warnings of the driver logging as `logger` without their text (once)."""
    logging.getLogger(logger).addFilter(_SERVER_WARNINGS_WITHOUT_TEXT)


# An execution option naming the table a statement written as text writes to (a bulk load),
# for its errors to speak of that table.
WRITES_TO = "app_writes_to"


def _written_table(context: ExceptionContext) -> Table | None:
    """The table an INSERT, UPDATE or DELETE wrote to (a flush's, a repository's, the one a
    text statement's WRITES_TO names, or the models' table raw SQL names as its target)."""
    execution = context.execution_context
    named = execution.execution_options.get(WRITES_TO) if execution is not None else None
    if isinstance(named, Table):
        return named
    compiled = getattr(execution, "compiled", None)
    table = getattr(getattr(compiled, "statement", None), "table", None)
    if isinstance(table, Table):
        return table
    found = _WRITE_TARGET.match(context.statement or "")
    return Base.metadata.tables.get(found.group(1)) if found else None


# The table a write written as text (raw SQL on a session) names: for its errors to speak of
# it where the driver's error names none (MariaDB's duplicate of a PRIMARY key). Comments may
# come between its words: a statement's tags go after the first word of a MariaDB executemany.
_GAP = r"(?:\s|/\*.*?\*/)"
_WRITE_TARGET = re.compile(
    rf"""^{_GAP}*(?:INSERT(?:{_GAP}+IGNORE)?{_GAP}+INTO|REPLACE{_GAP}+INTO|UPDATE|"""
    rf"""DELETE{_GAP}+FROM){_GAP}+(?:[`"]?\w+[`"]?\.)?[`"]?(\w+)[`"]?""",
    re.IGNORECASE | re.DOTALL,
)


def _is_query(context: ExceptionContext) -> bool:
    """Whether the failed statement was a SELECT (built, or written as text)."""
    compiled = getattr(context.execution_context, "compiled", None)
    if isinstance(getattr(compiled, "statement", None), Select):
        return True
    return (context.statement or "").lstrip()[:7].upper() == "SELECT "
