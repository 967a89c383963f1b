"""`run_in_transaction` for asyncio: the same retry policy (`retry_policy`), awaited."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tenacity import AsyncRetrying

from app.repositories.async_unit_of_work import AsyncUnitOfWork
from app.repositories.transactions import DEFAULT_RETRIES, retry_policy

T = TypeVar("T")
P = ParamSpec("P")


async def run_in_transaction_async(
    fn: Callable[[AsyncUnitOfWork], Awaitable[T]],
    *,
    retries: int = DEFAULT_RETRIES,
    isolation_level: str | None = None,
    session_factory: async_sessionmaker[AsyncSession] | None = None,
    backoff: float | None = None,
    max_backoff: float | None = None,
) -> T:
    """Await `fn(uow)` in a fresh unit of work and commit; run it again on the failures
    `run_in_transaction` retries, with the same backoff."""
    retrying = AsyncRetrying(**retry_policy(retries, backoff, max_backoff))
    async for attempt in retrying:
        with attempt:
            async with AsyncUnitOfWork(session_factory, isolation_level=isolation_level) as uow:
                result = await fn(uow)
                await uow.commit()
    return result


def transactional_async(
    *,
    retries: int = DEFAULT_RETRIES,
    isolation_level: str | None = None,
    session_factory: async_sessionmaker[AsyncSession] | None = None,
    backoff: float | None = None,
    max_backoff: float | None = None,
) -> Callable[[Callable[Concatenate[AsyncUnitOfWork, P], Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Decorator form: `@transactional_async()` on `async def f(uow, ...)` makes `await f(...)`
    run in `run_in_transaction_async`."""

    def decorate(
        fn: Callable[Concatenate[AsyncUnitOfWork, P], Awaitable[T]],
    ) -> Callable[P, Awaitable[T]]:
        @wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return await run_in_transaction_async(
                lambda uow: fn(uow, *args, **kwargs),
                retries=retries,
                isolation_level=isolation_level,
                session_factory=session_factory,
                backoff=backoff,
                max_backoff=max_backoff,
            )

        return wrapper

    return decorate
