"""Run a unit of work to completion, retrying the whole of it when the database says so.

Serialization failures, deadlocks, lock timeouts, SQLite's busy errors (`RetryableError`) and
optimistic locks lost to a concurrent transaction (`StaleObjectError` with `lost_race`) are
retried with exponential backoff and jitter; nothing else is. A stale `expected_version` from
the caller is not retried: running again cannot succeed. This is the retry protocol distributed
SQL engines (CockroachDB and the like) require as well: the function must be safe to run again,
so it should only touch the database through the unit of work it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy.orm import Session, sessionmaker
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from app.config import get_settings
from app.db.errors import RetryableError, StaleObjectError
from app.repositories.unit_of_work import UnitOfWork

T = TypeVar("T")
P = ParamSpec("P")

DEFAULT_RETRIES = 5


def run_in_transaction(
    fn: Callable[[UnitOfWork], T],
    *,
    retries: int = DEFAULT_RETRIES,
    isolation_level: str | None = None,
    session_factory: sessionmaker[Session] | None = None,
    backoff: float | None = None,
    max_backoff: float | None = None,
) -> T:
    """Run `fn(uow)` in a fresh unit of work and commit; run it again (up to `retries` more
    times) when it fails with `RetryableError` or loses an optimistic lock to a concurrent
    transaction.

    The first retry waits `backoff` seconds, each next one twice as long up to `max_backoff`,
    plus up to `backoff` of random jitter (defaults: DB_RETRY_BACKOFF, DB_RETRY_MAX_BACKOFF).
    """
    retrying = Retrying(**retry_policy(retries, backoff, max_backoff))
    for attempt in retrying:
        with attempt, UnitOfWork(session_factory, isolation_level=isolation_level) as uow:
            result = fn(uow)
            uow.commit()
    return result


def retry_policy(retries: int, backoff: float | None, max_backoff: float | None) -> dict[str, Any]:
    """tenacity's arguments for `run_in_transaction` and its asyncio twin."""
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
    }


def is_retryable(exc: BaseException) -> bool:
    """Whether running the whole unit of work again may succeed."""
    return isinstance(exc, RetryableError) or (isinstance(exc, StaleObjectError) and exc.lost_race)


def transactional(
    *,
    retries: int = DEFAULT_RETRIES,
    isolation_level: str | None = None,
    session_factory: sessionmaker[Session] | None = None,
    backoff: float | None = None,
    max_backoff: float | None = None,
) -> Callable[[Callable[Concatenate[UnitOfWork, P], T]], Callable[P, T]]:
    """Decorator form: `@transactional()` on `def f(uow, ...)` makes `f(...)` run in
    `run_in_transaction`."""

    def decorate(fn: Callable[Concatenate[UnitOfWork, P], T]) -> Callable[P, T]:
        @wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return run_in_transaction(
                lambda uow: fn(uow, *args, **kwargs),
                retries=retries,
                isolation_level=isolation_level,
                session_factory=session_factory,
                backoff=backoff,
                max_backoff=max_backoff,
            )

        return wrapper

    return decorate
