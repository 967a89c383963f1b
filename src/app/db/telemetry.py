"""What the data layer tells about itself: query tags, slow statements, and the hooks that
`app.observability` (OpenTelemetry) fills in.

A unit of work is a `UnitScope`, kept in its session's `info` and, once the session has a
connection, in that connection's execution options, so every statement the connection sends
knows its unit without any thread- or task-local state (a FastAPI dependency opens a unit in
one thread and the handler uses it in another). Each engine the project builds has one
`Observation` on its cursor events: it appends the unit's tags as a sqlcommenter comment
(`/*action='...',application='...'*/`), times the statement when asked to, and tells the
observer. Values never reach any of it: tags name code, statements carry placeholders.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import ExceptionContext, ExecutionContext
from sqlalchemy.orm import Session, SessionTransaction

UNIT_OPTION = "app_unit"
_UNIT_KEY = "app_unit"
_STARTED = "_app_started"
_OBSERVED = "_app_statement"
_LONGEST_LOGGED = 2000

_slow_log = logging.getLogger("app.db.slow")

# sqlcommenter's values are URL-encoded; a tag value here keeps only characters that need no
# encoding, so no quote, `%` (which drivers would read as a placeholder), `*/` or `,` can ever
# end the value, the comment or the statement.
_UNSAFE_IN_TAG = re.compile(r"[^A-Za-z0-9._~/:{}<>@+-]+")


def tag_value(text: str) -> str:
    """`text` as a sqlcommenter value that needs no escaping (other characters become `_`)."""
    return _UNSAFE_IN_TAG.sub("_", text)[:200]


def render_tags(tags: dict[str, str]) -> str:
    """sqlcommenter's comment for `tags`: keys sorted, values quoted."""
    inner = ",".join(f"{key}='{tag_value(value)}'" for key, value in sorted(tags.items()) if value)
    return f"/*{inner}*/"


class CommentPlacement(Protocol):
    """Where a backend puts the tags in a statement its driver sends."""

    def __call__(self, statement: str, comment: str, *, executemany: bool) -> str: ...


def _at_end(statement: str, comment: str, *, executemany: bool) -> str:
    return f"{statement} {comment}"


_TAG_LIST = r"/\*((?:[a-z_]+='[^']*',?)+)\*/"
_TAGS_AT_END = re.compile(r"\s*" + _TAG_LIST + r"\s*$")
# Where a backend may put them instead, for its driver's sake: after the first keyword.
_TAGS_AFTER_KEYWORD = re.compile(r"^\s*\w+(\s*" + _TAG_LIST + r")\s")
_TAG = re.compile(r"([a-z_]+)='([^']*)'")


def _nothing_shown(_statement: str) -> str:
    return "?"


def split_tags(statement: str) -> tuple[str, dict[str, str]]:
    """A statement's text without its tags, and the tags (`render_tags`'s inverse, for
    statements the server kept)."""
    found = _TAGS_AT_END.search(statement)
    if found is not None:
        return statement[: found.start()], dict(_TAG.findall(found.group(1)))
    found = _TAGS_AFTER_KEYWORD.match(statement)
    if found is not None:
        text = statement[: found.start(1)] + statement[found.end(1) :]
        return text, dict(_TAG.findall(found.group(2)))
    return statement, {}


@dataclass(eq=False)
class UnitScope:
    """One unit of work as the telemetry sees it."""

    name: str
    read_only: bool
    replica: str | None = None
    attempt: int = 1
    signs: bool = False  # it will sign its COMMIT (run_in_transaction's receipt)
    started: float = field(default_factory=time.perf_counter)
    statements: int = 0
    committed: bool = False
    traceparent: str | None = None
    comment: str = ""
    span: Any = None  # the observer's own record of the unit (an OpenTelemetry span)


class Observer(Protocol):
    """What `app.observability` implements; every method is called on the path of a unit or a
    statement, so each must be quick and must not raise."""

    def unit_started(self, unit: UnitScope) -> str | None:
        """The unit began; its W3C traceparent, if a trace is active."""

    def unit_ended(self, unit: UnitScope, error: BaseException | None) -> None:
        """The unit ended: committed (`unit.committed`), rolled back, or by `error`."""

    def statement_started(self, unit: UnitScope | None, statement: str, connection: Any) -> Any:
        """A statement is sent; what is returned comes back to `statement_ended`."""

    def statement_ended(self, token: Any, error: BaseException | None) -> None:
        """The statement sent with `token` ended."""

    def retried(self, name: str, error: BaseException) -> None:
        """`run_in_transaction` runs the unit `name` again after `error`."""

    def pool_waited(self, seconds: float) -> None:
        """A checkout waited `seconds` for a pooled connection."""


_observer: Observer | None = None


def observer() -> Observer | None:
    """The observer in place (`app.observability.instrument`), or None."""
    return _observer


def set_observer(new: Observer | None) -> Observer | None:
    """Put `new` in place (None: none); the previous one."""
    global _observer
    previous, _observer = _observer, new
    return previous


# -- units ---------------------------------------------------------------------------------------


def caller_name(skip: tuple[str, ...] = ("app.repositories",)) -> str:
    """`module.function` of the code that opened a unit: the first frame outside `skip` and
    outside an `__init__` (a subclass's)."""
    frame = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not module.startswith(skip) and frame.f_code.co_name != "__init__":
            return f"{module}.{frame.f_code.co_qualname}"
        frame = frame.f_back  # type: ignore[assignment]
    return "unit"


def function_name(fn: Callable[..., Any]) -> str:
    """`module.qualified_name` of a function, the name of the units it runs in."""
    return f"{getattr(fn, '__module__', None) or '?'}.{getattr(fn, '__qualname__', repr(fn))}"


def start_unit(unit: UnitScope) -> None:
    """Tell the observer a unit begins (its traceparent, if a trace is active, joins its tags)."""
    if _observer is not None:
        unit.traceparent = _observer.unit_started(unit)


def attach(session: Session, unit: UnitScope) -> None:
    """Make `session`'s statements the statements of `unit` (before its transaction begins)."""
    session.info[_UNIT_KEY] = unit
    if not unit.comment:
        tagger = _observation_of_session(session)
        if tagger is not None and tagger.tags:
            unit.comment = tagger.comment_for(unit.name, unit.traceparent)


def close_unit(session: Session | None, unit: UnitScope, error: BaseException | None) -> None:
    """The unit is over: tell the observer."""
    if session is not None:
        session.info.pop(_UNIT_KEY, None)
    if _observer is not None:
        _observer.unit_ended(unit, error)


def retried(name: str, error: BaseException) -> None:
    """Tell the observer that `run_in_transaction` runs the unit `name` again."""
    if _observer is not None:
        _observer.retried(name, error)


def pool_waited(seconds: float) -> None:
    """Tell the observer how long a checkout waited."""
    if _observer is not None:
        _observer.pool_waited(seconds)


@event.listens_for(Session, "after_begin")
def _on_begin(session: Session, _transaction: SessionTransaction, connection: Connection) -> None:
    unit = session.info.get(_UNIT_KEY)
    if unit is not None:
        _tag_connection(connection, unit)


def _tag_connection(connection: Connection, unit: UnitScope) -> None:
    # In place, for this Connection object: the session's for this transaction only.
    connection.execution_options(**{UNIT_OPTION: unit})


def unit_of(connection: Connection) -> UnitScope | None:
    """The unit of work whose statements `connection` sends, if any."""
    found: UnitScope | None = connection.get_execution_options().get(UNIT_OPTION)
    return found


# -- statements ----------------------------------------------------------------------------------


class Observation:
    """One engine's statement events: tags, slow-statement log, observer."""

    def __init__(self, *, application: str, tags: bool, slow_ms: float | None) -> None:
        self.application = application
        self.tags = tags
        self.slow_seconds = slow_ms / 1000 if slow_ms else None
        self.plain_comment = render_tags({"application": application})
        self._comments: dict[str, str] = {}
        self._with_comment: CommentPlacement = _at_end
        self.without_literals: Callable[[str], str] = _nothing_shown

    def comment_for(self, name: str, traceparent: str | None) -> str:
        """The comment of a unit's statements (kept per name when no trace makes it unique)."""
        if traceparent is not None:
            tags = {"action": name, "application": self.application, "traceparent": traceparent}
            return render_tags(tags)
        found = self._comments.get(name)
        if found is None:
            if len(self._comments) > 1000:
                self._comments.clear()
            found = self._comments[name] = render_tags(
                {"action": name, "application": self.application}
            )
        return found

    def tagged(self, connection: Connection, statement: str) -> str:
        """`statement` with the tags of the unit `connection` serves."""
        if not self.tags:
            return statement
        unit = unit_of(connection)
        return self._with_comment(statement, self._comment(unit), executemany=False)

    def _comment(self, unit: UnitScope | None) -> str:
        return unit.comment if unit is not None and unit.comment else self.plain_comment

    def install(
        self,
        engine: Engine,
        with_comment: CommentPlacement | None = None,
        without_literals: Callable[[str], str] | None = None,
    ) -> None:
        """Listen to `engine`'s statements; `with_comment` places the tags in a statement
        (default: at its end); `without_literals` is a statement's text as shown (in the
        slow-statement log, by the observer), its literals replaced by `?` the way the
        backend reads them."""
        _observations[engine] = self
        if with_comment is not None:
            self._with_comment = with_comment
        if without_literals is not None:
            self.without_literals = without_literals
        event.listen(engine, "before_cursor_execute", self._before, retval=True)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine, "handle_error", self._failed)

    def shown(self, statement: str) -> str:
        """`statement` as a log line or a trace shows it: its literals replaced by `?`, its
        tags kept."""
        text, tags = split_tags(statement)
        shown = self.without_literals(text).rstrip()
        return f"{shown} {render_tags(tags)}" if tags else shown

    def _before(
        self,
        connection: Connection,
        _cursor: Any,
        statement: str,
        parameters: Any,
        context: ExecutionContext | None,
        executemany: bool,
    ) -> tuple[str, Any]:
        unit = unit_of(connection)
        if unit is not None:
            unit.statements += 1
        if context is not None:
            if self.slow_seconds is not None:
                setattr(context, _STARTED, time.perf_counter())
            if _observer is not None:
                token = _observer.statement_started(unit, statement, connection)
                setattr(context, _OBSERVED, token)
        if self.tags:
            statement = self._with_comment(statement, self._comment(unit), executemany=executemany)
        return statement, parameters

    def _after(
        self,
        _connection: Connection,
        _cursor: Any,
        statement: str,
        _parameters: Any,
        context: ExecutionContext | None,
        _executemany: bool,
    ) -> None:
        if context is None:
            return
        self._ended(context, statement, None)

    def _failed(self, exception_context: ExceptionContext) -> None:
        context = exception_context.execution_context
        if context is not None:
            statement = exception_context.statement or ""
            self._ended(context, statement, exception_context.original_exception)

    def _ended(self, context: Any, statement: str, error: BaseException | None) -> None:
        token = context.__dict__.pop(_OBSERVED, None)
        if token is not None and _observer is not None:
            _observer.statement_ended(token, error)
        started = context.__dict__.pop(_STARTED, None)
        if started is not None:
            self.report_if_slow(statement, time.perf_counter() - started)

    def report_if_slow(self, statement: str, seconds: float) -> None:
        """Log `statement` (its text with placeholders, and `?` for any literal a hand-written
        one holds: never a value) if it took too long."""
        if self.slow_seconds is not None and seconds >= self.slow_seconds:
            statement = self.shown(statement)
            cut = " ..." if len(statement) > _LONGEST_LOGGED else ""
            shown = statement[:_LONGEST_LOGGED] + cut
            _slow_log.warning("slow statement, %.0f ms: %s", seconds * 1000, shown)

    @contextmanager
    def driver_statement(self, connection: Connection, statement: str) -> Iterator[str]:
        """For a statement sent past SQLAlchemy's cursor events (COPY): the statement to send,
        tagged, and its timing and observer as for any other."""
        unit = unit_of(connection)
        if unit is not None:
            unit.statements += 1
        sent = self.tagged(connection, statement)
        token = _observer.statement_started(unit, statement, connection) if _observer else None
        started = time.perf_counter()
        try:
            yield sent
        except BaseException as exc:
            if token is not None and _observer is not None:
                _observer.statement_ended(token, exc)
            raise
        if token is not None and _observer is not None:
            _observer.statement_ended(token, None)
        self.report_if_slow(sent, time.perf_counter() - started)


_observations: weakref.WeakKeyDictionary[Engine, Observation] = weakref.WeakKeyDictionary()


def observation_of(connection: Connection) -> Observation:
    """The observation of `connection`'s engine (one that does nothing for an engine the
    project did not build)."""
    return _observations.get(connection.engine) or _UNOBSERVED


def observed_engines() -> list[Engine]:
    """The engines the project built that are still in use."""
    return list(_observations)


def _observation_of_session(session: Session) -> Observation | None:
    bind = session.get_bind()
    engine = bind.engine if isinstance(bind, Connection) else bind
    return _observations.get(engine)


_UNOBSERVED = Observation(application="", tags=False, slow_ms=None)
