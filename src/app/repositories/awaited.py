"""How the asyncio face runs the one implementation: a blocking method, called in SQLAlchemy's
greenlet (`AsyncSession.run_sync`), where each database call awaits the asyncio driver.

This is what `AsyncSession` itself does for `get`, `execute` and `flush`: the ORM's logic exists
once and only execution differs. The repositories' statement building, value checks, cursor
signing and error translation therefore exist once too.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.repositories.core import check_batch_size

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S")
Row = TypeVar("Row")


async def run_blocking(
    session: AsyncSession, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """Run `fn(*args, **kwargs)` where its database calls can await `session`'s connection."""
    return await session.run_sync(lambda _session: fn(*args, **kwargs))


def awaited(
    method: Callable[Concatenate[S, P], T],
) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]:
    """The awaitable twin of a blocking method, for a face with `.sync` (the blocking object)
    and `.async_session`: same name, arguments, result and errors."""

    @wraps(method)
    async def twin(face: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await run_blocking(face.async_session, method, face.sync, *args, **kwargs)

    return twin


async def async_batches(rows: AsyncIterable[Row], size: int) -> AsyncIterator[list[Row]]:
    """`rows` in lists of at most `size`, pulled lazily from an async iterable."""
    check_batch_size(size)
    batch: list[Row] = []
    async for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
