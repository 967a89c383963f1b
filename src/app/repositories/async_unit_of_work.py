"""The asyncio Unit of Work: `async with AsyncUnitOfWork() as uow: ...; await uow.commit()`.

It is the blocking `UnitOfWork` run on an `AsyncSession`'s own session in SQLAlchemy's greenlet,
so the rules (rollback unless committed, joined blocks in savepoints, the outermost commit
decides, objects readable after the block) are the same code on both faces.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app.db.errors import DatabaseUnavailableError
from app.db.replicas import ANY_POSITION, ReplicaSet, has_replayed, position
from app.db.session import get_async_session_factory, get_replicas
from app.repositories.async_repository import AsyncItemRepository, AsyncUserRepository
from app.repositories.awaited import run_blocking
from app.repositories.unit_of_work import UnitOfWork

P = ParamSpec("P")
T = TypeVar("T")


class AsyncUnitOfWork:
    """`async with AsyncUnitOfWork() as uow: ...; await uow.commit()` -- leaving without commit
    rolls back; a task cancelled inside rolls back and gives its connection back."""

    users: AsyncUserRepository
    items: AsyncItemRepository

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession] | None = None,
        *,
        isolation_level: str | None = None,
        read_only: bool = False,
        after: str | None = None,
        replicas: ReplicaSet | None = None,
    ) -> None:
        """The arguments of `UnitOfWork`, the same meaning."""
        self._session_factory = session_factory
        self._async_session: AsyncSession | None = None
        self._replicas = replicas if replicas is not None or session_factory else get_replicas()
        self._read_only = read_only
        self._after = after
        # Routing happens here (it picks the AsyncSession); the blocking unit guards the
        # read-only session and gives commit tokens.
        self.sync = UnitOfWork(
            self._sync_session,
            isolation_level=isolation_level,
            read_only=read_only,
            after=after if self._replicas is None else None,
            replicas=None if read_only else self._replicas,
        )

    def _sync_session(self) -> Session:
        return self.async_session.sync_session

    @property
    def async_session(self) -> AsyncSession:
        """The session of the open unit of work."""
        if self._async_session is None:
            raise RuntimeError("this AsyncUnitOfWork is not open; use it as `async with uow:`")
        return self._async_session

    async def __aenter__(self) -> AsyncUnitOfWork:
        outermost = self._async_session is None
        on_replica = outermost and self._read_only and await self._entered_on_replica()
        if not on_replica:
            if outermost:
                self._async_session = (self._session_factory or get_async_session_factory())()
            try:
                await run_blocking(self.async_session, self.sync.__enter__)
            except BaseException:
                if outermost:
                    await self._close()
                raise
        if outermost:
            self.users = AsyncUserRepository(self.async_session, self.sync.users)
            self.items = AsyncItemRepository(self.async_session, self.sync.items)
        return self

    async def _entered_on_replica(self) -> bool:
        """Open the unit on a replica that may serve it (see `routing.open_session`)."""
        replicas, after = self._replicas, self._after
        if replicas is None:
            return False
        if after:
            position(after)
        if not replicas.started:
            await asyncio.to_thread(replicas.start)  # its first check, off the event loop
        replica, must_ask = replicas.choose(after)
        if replica is None:
            return False
        self._async_session = replicas.async_session_factory(replica)()
        try:
            await run_blocking(self.async_session, self.sync.__enter__)
        except (DatabaseUnavailableError, sa_exc.DBAPIError) as exc:
            replicas.mark_down(replica, type(exc).__name__)
            await self._close()
            return False
        token = after or ANY_POSITION
        if not must_ask or await run_blocking(
            self.async_session, lambda: has_replayed(self.sync.session.connection(), token)
        ):
            return True
        await run_blocking(self.async_session, self.sync.__exit__, None, None, None)
        await self._close()
        return False

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await run_blocking(self.async_session, self.sync.__exit__, exc_type, exc, traceback)
        finally:
            if not self.sync.is_open:
                await self._close()

    async def _close(self) -> None:
        session, self._async_session = self._async_session, None
        if session is not None:
            # Also after a failed or cancelled exit: closing gives the connection back to the
            # pool, which throws it away if it cannot be reset.
            await session.close()

    async def commit(self) -> str:
        """Make the work so far permanent (inside a joined block: hand it to the enclosing one);
        returns the commit's token, as `UnitOfWork.commit` does."""
        return await run_blocking(self.async_session, self.sync.commit)

    async def rollback(self) -> None:
        """Discard the work since the last commit (inside a joined block: since it began)."""
        await run_blocking(self.async_session, self.sync.rollback)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested transaction: an exception inside undoes only its work, then propagates."""
        block = self.sync.savepoint()
        await run_blocking(self.async_session, block.__enter__)
        try:
            yield
        except BaseException as exc:
            await run_blocking(
                self.async_session, block.__exit__, type(exc), exc, exc.__traceback__
            )
            raise
        await run_blocking(self.async_session, block.__exit__, None, None, None)

    async def run_sync(
        self, fn: Callable[Concatenate[UnitOfWork, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a blocking `fn(uow, ...)`, such as a service, on this unit in SQLAlchemy's
        greenlet; its database calls await this unit's connection."""
        return await run_blocking(self.async_session, fn, self.sync, *args, **kwargs)
