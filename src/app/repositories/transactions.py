"""Run a unit of work to completion, retrying the whole of it when the database says so.

Serialization failures, deadlocks, lock timeouts, SQLite's busy errors (`RetryableError`) and
lost optimistic locks (`StaleObjectError`) are retried with exponential backoff and jitter;
nothing else is. This is the retry protocol distributed SQL engines (CockroachDB and the like)
require as well: the function must be safe to run again, so it should only touch the database
through the unit of work it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy.orm import Session, sessionmaker
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

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
) -> T:
    """Run `fn(uow)` in a fresh unit of work and commit; run it again (up to `retries` more
    times) when it fails with `RetryableError` or `StaleObjectError`."""
    if retries < 0:
        raise ValueError(f"retries must be 0 or more, got {retries}")
    retrying = Retrying(
        stop=stop_after_attempt(retries + 1),
        wait=wait_exponential_jitter(multiplier=0.005, max=0.5, jitter=0.02),
        retry=retry_if_exception_type((RetryableError, StaleObjectError)),
        reraise=True,
    )
    for attempt in retrying:
        with attempt, UnitOfWork(session_factory, isolation_level=isolation_level) as uow:
            result = fn(uow)
            uow.commit()
    return result


def transactional(
    *,
    retries: int = DEFAULT_RETRIES,
    isolation_level: str | None = None,
    session_factory: sessionmaker[Session] | None = None,
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
            )

        return wrapper

    return decorate
