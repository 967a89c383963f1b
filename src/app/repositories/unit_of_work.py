"""The Unit of Work, and `run_in_transaction`, which runs one to completion and retries it.

A unit is one session and one transaction boundary, with a repository per model on that
session. Entering a unit that is already open joins it: the inner block runs in a savepoint of
the same transaction. Its `commit()` releases the savepoint and hands the work to the enclosing
block (only the outermost `commit()` makes anything permanent); leaving it without `commit()`,
or with an exception, rolls back to the savepoint. A service written as
`with uow: ...; uow.commit()` therefore works on its own and inside a caller's unit or
`run_in_transaction` alike.

`run_in_transaction` retries the whole function on serialization failures, deadlocks, lock
timeouts, SQLite's busy errors (`RetryableError`), optimistic locks lost to a concurrent
transaction (`StaleObjectError` with `lost_race`) and connections lost before COMMIT
(`ConnectionLostError`), with exponential backoff and jitter; nothing else. A COMMIT whose
answer was lost is resolved, not guessed (`commit_outcome`): the function's effect is applied
once, or the caller gets `CommitOutcomeUnknownError` when the database cannot say. A stale
`expected_version` from the caller is not retried: running again cannot succeed.
This is the retry protocol distributed SQL engines require as well: the function must be safe
to run again, so it should only touch the database through the unit of work it is given.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial, wraps
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeGuard, TypeVar

from sqlalchemy.orm import Session, SessionTransaction
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from app.config import SettingsError
from app.db import telemetry
from app.db.errors import (
    CommitOutcomeUnknownError,
    ConnectionLostError,
    RetryableError,
    StaleObjectError,
)
from app.db.runtime import get_replicas, get_runtime, get_session_factory, get_settings
from app.repositories import commit_outcome
from app.repositories._declared import (
    first_declared_for,
    forget_made,
    made_on_first_use,
    repository_attributes,
)
from app.repositories.items import ItemRepository
from app.repositories.repository import ModelT, Repository
from app.repositories.users import UserRepository
from app.topology import routing
from app.topology.replicas import ANY_POSITION, ReplicaSet

T = TypeVar("T")
P = ParamSpec("P")
UnitT = TypeVar("UnitT", bound="UnitOfWork")

DEFAULT_RETRIES = 5


class UnitOfWork:
    """`with UnitOfWork() as uow: ...; uow.commit()` -- leaving without commit rolls back.

    What was loaded stays readable after the block, committed or not; relationships that were
    not loaded still raise. A subclass that declares more repositories as attributes
    (`projects: ProjectRepository`, or `labels: Repository[Label]`) gets them on the unit's
    session too; `uow.repository(Model)` gives any model's. APP_UNIT_OF_WORK makes a subclass
    the one `run_in_transaction`, `transactional`, the FastAPI dependencies and the pytest
    plugin build (`unit_of_work_class`).
    """

    users: UserRepository
    items: ItemRepository

    def __init__(
        self,
        session_factory: Callable[[], Session] | None = None,
        *,
        isolation_level: str | None = None,
        read_only: bool = False,
        after: str | None = None,
        replicas: ReplicaSet | None = None,
        name: str | None = None,
    ) -> None:
        """`read_only`: the unit may run on a replica (DATABASE_REPLICA_URLS) and refuses to
        write (ReadOnlyError). `after`: a token from an earlier `commit()`; the unit then reads
        from a replica only once it has replayed that commit, else from the primary.
        `replicas`: the replica set to use (default: the one from settings, when the unit uses
        the default session factory). `name`: what its statements' tags and its trace call it
        (default: `module.function` of the code that made the unit)."""
        self.name = name or telemetry.caller_name()
        self.attempt = 1  # run_in_transaction's count of runs
        self.signs_commit = False  # it commits with commit_exactly_once (run_in_transaction)
        self._scope: telemetry.UnitScope | None = None
        self._session_factory = session_factory
        self.isolation_level = isolation_level
        self.read_only = read_only
        self.after = after
        self.replicas = replicas if replicas is not None or session_factory else get_replicas()
        self._session: Session | None = None
        self._repositories: dict[type[Any], Repository[Any]] = {}
        # One entry per joined (inner) block: its savepoint, or None once committed or rolled
        # back, after which its further work belongs to the enclosing block.
        self._joined: list[SessionTransaction | None] = []

    def route(self) -> routing.Route:
        """Where this unit runs (`app.topology.routing`)."""
        return routing.route(
            self.replicas,
            read_only=self.read_only,
            after=self.after,
            isolation_level=self.isolation_level,
        )

    def __enter__(self: UnitT) -> UnitT:
        if self._session is not None:
            self._joined.append(self._session.begin_nested())
            return self
        chosen = self.route()
        scope = self._start_scope()
        try:
            if chosen.replica is not None:
                on_replica = chosen.replica.session_factory()
                telemetry.attach(on_replica, scope)
                if routing.begin(on_replica, chosen):
                    scope.replica = chosen.replica.masked_url
                    self.adopt(on_replica)
                    return self
                on_replica.close()
                chosen = chosen.to_primary()
            session = (self._session_factory or get_session_factory())()
            telemetry.attach(session, scope)
            try:
                routing.begin(session, chosen)
            except BaseException:
                session.close()
                raise
        except BaseException as exc:
            self._end_scope(None, exc)
            raise
        self.adopt(session)
        return self

    def _start_scope(self) -> telemetry.UnitScope:
        """The telemetry's record of this unit, begun (both faces, before the session)."""
        scope = self._scope = telemetry.UnitScope(
            self.name, self.read_only, attempt=self.attempt, signs=self.signs_commit
        )
        telemetry.start_unit(scope)
        return scope

    def _end_scope(self, session: Session | None, error: BaseException | None) -> None:
        """The unit is over (both faces)."""
        scope, self._scope = self._scope, None
        if scope is not None:
            telemetry.close_unit(session, scope, error)

    def adopt(self, session: Session) -> None:
        """Open the unit on `session`, whose transaction `routing.begin` began. Its declared
        repositories are made on first use (`made_on_first_use`): a unit pays for the ones it
        touches, however many its class declares."""
        self._session = session
        self._repositories = {}
        forget_made(self, made_on_first_use(type(self)))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._joined:
            savepoint = self._joined.pop()
            if self._holds(savepoint):
                savepoint.rollback()
            return
        session, self._session = self._session, None
        if session is not None:
            # Closing ends the transaction with a rollback of whatever was not committed, and
            # detaches the objects without expiring them: what was read stays readable.
            try:
                session.close()
            finally:
                self._end_scope(session, exc)

    @property
    def is_open(self) -> bool:
        """Whether the unit is inside its `with` block."""
        return self._session is not None

    @property
    def session(self) -> Session:
        """The session of the open unit of work."""
        if self._session is None:
            raise RuntimeError("this UnitOfWork is not open; use it as `with uow:`")
        return self._session

    def repository(self, model: type[ModelT]) -> Repository[ModelT]:
        """The repository for `model` on this unit's session: the one this class declares an
        attribute for, else the `Repository[Model]` subclass declared for the model
        (`Repository.of`), else a plain `Repository[Model]`; the same object for the whole
        block."""
        session = self.session
        found = self._repositories.get(model)
        if found is None:
            name = first_declared_for(type(self)).get(model)
            if name is not None:
                found = getattr(self, name)
            else:
                found = self._repositories[model] = Repository.of(model)(session)
        return found

    def make_repository(self, name: str) -> Repository[Any]:
        """The declared repository `name` on this unit's session, made now (its first use in
        the open unit); the model's own (`repository(model)`) if declared first for it."""
        session = self.session
        repository = repository_attributes(type(self))[name]
        if first_declared_for(type(self)).get(repository.model) != name:
            return repository(session)
        found = self._repositories.get(repository.model)
        if found is None:
            found = self._repositories[repository.model] = repository(session)
        return found

    def commit(self) -> str:
        """Make the work so far permanent (inside a joined block: hand it to the enclosing one).

        Returns the commit's token, an opaque string for `UnitOfWork(read_only=True, after=...)`
        that lets a later unit read this commit from a replica. A joined block's commit makes
        nothing permanent: its token is the outermost unit's to give."""
        session = self.session
        if self._joined:
            self._finish_joined(commit=True)
            return ANY_POSITION
        token = routing.commit_returning_token(session, self.replicas)
        if self._scope is not None:
            self._scope.committed = True
        return token

    def commit_exactly_once(self) -> None:
        """`commit()`, and if its answer is lost, find out whether it was applied: return if
        it was, `ConnectionLostError` if it was not (nothing applied: run the unit again),
        `CommitOutcomeUnknownError` if the database cannot say. Costs one statement more than
        `commit()` (on PostgreSQL none, for a unit `run_in_transaction` made: its transaction
        id comes with its BEGIN, `app.dialects.deferred_begin`)."""
        if self._joined or self.read_only:
            self.commit()
            return
        receipt = commit_outcome.sign(self.session)
        try:
            self.commit()
        except CommitOutcomeUnknownError as lost:
            if receipt is None:
                raise
            commit_outcome.resolve(receipt, lost)
            if self._scope is not None:
                self._scope.committed = True
            return
        if receipt is not None:
            commit_outcome.settled(receipt)

    def rollback(self) -> None:
        """Discard the work since the last commit (inside a joined block: since it began)."""
        session = self.session
        if self._joined:
            self._finish_joined(commit=False)
        else:
            session.rollback()

    def _finish_joined(self, *, commit: bool) -> None:
        savepoint = self._joined[-1]
        if commit and savepoint is not None and savepoint.is_active:
            savepoint.commit()
        elif not commit and self._holds(savepoint):
            savepoint.rollback()
        self._joined[-1] = None

    def _holds(self, savepoint: SessionTransaction | None) -> TypeGuard[SessionTransaction]:
        """Whether a joined block's `savepoint` still has to be rolled back: active, or left
        waiting for that rollback by a flush that failed inside it."""
        return savepoint is not None and (
            savepoint.is_active or savepoint is self.session.get_nested_transaction()
        )

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: an exception inside undoes only its work, then propagates."""
        with self.session.begin_nested():
            yield


def unit_of_work_class() -> type[UnitOfWork]:
    """The unit-of-work class APP_UNIT_OF_WORK names (imported once), else `UnitOfWork`."""
    configured = get_runtime().unit_of_work
    if configured is None:
        return UnitOfWork
    if not (isinstance(configured, type) and issubclass(configured, UnitOfWork)):
        raise SettingsError(
            f"APP_UNIT_OF_WORK names {get_settings().app_unit_of_work!r}, which is not a "
            "subclass of app.repositories.UnitOfWork"
        )
    return configured


def run_in_transaction(
    fn: Callable[[UnitT], T],
    *,
    retries: int = DEFAULT_RETRIES,
    isolation_level: str | None = None,
    session_factory: Callable[[], Session] | None = None,
    backoff: float | None = None,
    max_backoff: float | None = None,
    unit: type[UnitOfWork] | None = None,
    name: str | None = None,
    exactly_once: bool = True,
) -> T:
    """Run `fn(uow)` in a fresh unit of work and commit; run it again (up to `retries` more
    times) when it fails with `RetryableError`, loses an optimistic lock to a concurrent
    transaction or loses its connection before COMMIT. A COMMIT whose answer is lost is
    resolved (`UnitOfWork.commit_exactly_once`): `fn`'s effect is applied once. The unit is a
    `unit` (default: `unit_of_work_class()`) named `name` (default: `fn`'s module and name).
    `exactly_once=False` commits with a plain `commit()` (one statement fewer; a lost answer
    is then `CommitOutcomeUnknownError`).

    The first retry waits `backoff` seconds, each next one twice as long up to `max_backoff`,
    plus up to `backoff` of random jitter (defaults: DB_RETRY_BACKOFF, DB_RETRY_MAX_BACKOFF).
    """
    name = name or telemetry.function_name(fn)
    retrying = Retrying(**retry_policy(retries, backoff, max_backoff, name))
    unit_class = unit or unit_of_work_class()
    for attempt in retrying:
        with attempt:
            uow = unit_class(session_factory, isolation_level=isolation_level, name=name)
            uow.attempt = attempt.retry_state.attempt_number
            uow.signs_commit = exactly_once
            with uow:
                result = fn(typing.cast(UnitT, uow))
                uow.commit_exactly_once() if exactly_once else uow.commit()
    return result


def retry_policy(
    retries: int, backoff: float | None, max_backoff: float | None, name: str
) -> dict[str, Any]:
    """tenacity's arguments for `run_in_transaction` and its asyncio twin (`name`: the unit's,
    for the telemetry's count of retries)."""
    if retries < 0:
        raise ValueError(f"retries must be 0 or more, got {retries}")
    settings = get_settings()
    initial = settings.db_retry_backoff if backoff is None else backoff
    ceiling = settings.db_retry_max_backoff if max_backoff is None else max_backoff
    return {
        "stop": stop_after_attempt(retries + 1),
        "wait": wait_exponential(multiplier=initial, max=ceiling) + wait_random(0, initial),
        "retry": retry_if_exception(is_retryable),
        "reraise": True,
        "before_sleep": partial(_retrying, name),
    }


def _retrying(name: str, state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    if error is not None:
        telemetry.retried(name, error)


def is_retryable(exc: BaseException) -> bool:
    """Whether running the whole unit of work again may succeed."""
    return isinstance(exc, RetryableError | ConnectionLostError) or (
        isinstance(exc, StaleObjectError) and exc.lost_race
    )


def transactional(
    *,
    retries: int = DEFAULT_RETRIES,
    isolation_level: str | None = None,
    session_factory: Callable[[], Session] | None = None,
    backoff: float | None = None,
    max_backoff: float | None = None,
    unit: type[UnitOfWork] | None = None,
) -> Callable[[Callable[Concatenate[UnitT, P], T]], Callable[P, T]]:
    """Decorator form: `@transactional()` on `def f(uow, ...)` makes `f(...)` run in
    `run_in_transaction` (the unit class is looked up at each call)."""

    def decorate(fn: Callable[Concatenate[UnitT, P], T]) -> Callable[P, T]:
        name = telemetry.function_name(fn)

        @wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            def run(uow: UnitT) -> T:
                return fn(uow, *args, **kwargs)

            return run_in_transaction(
                run,
                retries=retries,
                isolation_level=isolation_level,
                session_factory=session_factory,
                backoff=backoff,
                max_backoff=max_backoff,
                unit=unit,
                name=name,
            )

        return wrapper

    return decorate
