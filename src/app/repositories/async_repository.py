"""The asyncio face of the repositories: every method of `Repository`, awaited.

Nothing is implemented here: each method runs the blocking repository's own method in
SQLAlchemy's greenlet (`awaited`), so both faces share every rule. Only `create_many` and
`upsert_many` add something: they also take async iterables, pulled one batch at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from functools import partial
from typing import Any, Generic

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncResult, AsyncSession
from sqlalchemy.util import await_only

from app.db.errors import translating_errors
from app.db.models import Item, User
from app.db.streaming import cut_short_is_an_error, streaming
from app.repositories.awaited import async_batches, awaited, run_blocking
from app.repositories.base import DEFAULT_BATCH_SIZE, Data, Repository
from app.repositories.core import ModelT
from app.repositories.items import ItemRepository
from app.repositories.reading import OrderBy, Where
from app.repositories.users import UserRepository

Rows = Iterable[Data] | AsyncIterable[Data]


class AsyncRepository(Generic[ModelT]):
    """`Repository` for asyncio: the same methods, arguments, results and errors, awaited."""

    def __init__(self, async_session: AsyncSession, sync: Repository[ModelT]) -> None:
        self.async_session = async_session
        self.sync = sync

    get = awaited(Repository[ModelT].get)
    get_one = awaited(Repository[ModelT].get_one)
    list = awaited(Repository[ModelT].list)
    list_page = awaited(Repository[ModelT].list_page)
    paginate = awaited(Repository[ModelT].paginate)
    count = awaited(Repository[ModelT].count)
    exists = awaited(Repository[ModelT].exists)
    create = awaited(Repository[ModelT].create)
    update = awaited(Repository[ModelT].update)
    delete = awaited(Repository[ModelT].delete)
    upsert = awaited(Repository[ModelT].upsert)

    async def iterate(
        self, *, where: Where = None, order_by: OrderBy = None, batch_size: int = 1000
    ) -> AsyncIterator[Row[Any]]:
        """`Repository.iterate`: `async for row in uow.items.iterate(...)`, streamed."""
        statement = self.sync._iteration_statement(where, order_by, batch_size)
        with translating_errors(model=self.sync.model):
            result = await self.async_session.stream(statement)
            close = partial(_close_from_greenlet, result)
            with streaming(self.sync.session.connection(), close), cut_short_is_an_error():
                async for row in result:
                    yield row

    async def create_many(self, rows: Rows, *, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
        """`Repository.create_many`; `rows` may also be an async iterable."""
        return await self._by_batch(self.sync.create_many, rows, batch_size=batch_size)

    async def upsert_many(
        self,
        rows: Rows,
        *,
        conflict: Sequence[str] = ("email",),
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> int:
        """`Repository.upsert_many`; `rows` may also be an async iterable."""
        return await self._by_batch(
            self.sync.upsert_many, rows, conflict=conflict, batch_size=batch_size
        )

    async def _by_batch(
        self, write: Callable[..., int], rows: Rows, *, batch_size: int, **options: Any
    ) -> int:
        if not isinstance(rows, AsyncIterable):
            return await run_blocking(
                self.async_session, write, rows, batch_size=batch_size, **options
            )
        written = 0
        async for batch in async_batches(rows, batch_size):
            written += await run_blocking(
                self.async_session, write, batch, batch_size=batch_size, **options
            )
        return written


class AsyncUserRepository(AsyncRepository[User]):
    """`UserRepository` for asyncio."""

    get_by_email = awaited(UserRepository.get_by_email)


class AsyncItemRepository(AsyncRepository[Item]):
    """`ItemRepository` for asyncio."""

    list_by_owner = awaited(ItemRepository.list_by_owner)


def _close_from_greenlet(result: AsyncResult[Any]) -> None:
    # Called by a statement's event listener, inside SQLAlchemy's greenlet: it may await.
    await_only(result.close())
