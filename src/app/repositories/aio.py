"""The asyncio face: `AsyncRepository`, `AsyncUnitOfWork` and `run_in_transaction_async`.

Nothing is implemented twice. Each repository method runs the blocking repository's own method
in SQLAlchemy's greenlet (`AsyncSession.run_sync`), where every database call awaits the
asyncio driver, as `AsyncSession.get` itself does; the unit of work is the blocking one, run on
the `AsyncSession`'s own session; the retry policy is `run_in_transaction`'s. Only `iterate`
(an async stream) and the bulk writes' async iterables (pulled from inside the greenlet, so one
call is still one savepoint and, on PostgreSQL, one COPY) are written here.
"""

from __future__ import annotations

import asyncio
import inspect
import typing
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
)
from contextlib import asynccontextmanager
from functools import partial, wraps
from types import TracebackType
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, TypeVar

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncResult, AsyncSession, async_sessionmaker
from sqlalchemy.util import await_only
from tenacity import AsyncRetrying

from app.db import telemetry
from app.db.models import Item, User
from app.db.runtime import get_async_session_factory, get_replicas
from app.dialects import streaming
from app.repositories._async_calls import run_blocking, stream_opened, to_its_end
from app.repositories._declared import (
    declared_attributes,
    first_declared_for,
    forget_made,
    made_on_first_use,
    repository_attributes,
)
from app.repositories.items import ItemRepository
from app.repositories.repository import (
    DEFAULT_BATCH_SIZE,
    Conflict,
    Data,
    ModelT,
    OrderBy,
    Repository,
    Where,
)
from app.repositories.unit_of_work import (
    DEFAULT_RETRIES,
    UnitOfWork,
    retry_policy,
    unit_of_work_class,
)
from app.repositories.users import UserRepository
from app.topology import routing
from app.topology.replicas import ReplicaSet

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S")

Rows = Iterable[Data] | AsyncIterable[Data]


def awaited(
    method: Callable[Concatenate[S, P], T],
) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]:
    """The awaitable twin of a blocking method, for a face with `.sync` (the blocking object)
    and `.async_session`: same name, arguments (its signature is the method's), result and
    errors."""

    @wraps(method)
    async def twin(face: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await run_blocking(face.async_session, method, face.sync, *args, **kwargs)

    twin.__signature__ = inspect.signature(method)  # type: ignore[attr-defined]
    return twin


def _pulled(rows: AsyncIterable[T]) -> Iterator[T]:
    """An async iterable as a blocking iterator, for code running in SQLAlchemy's greenlet:
    each row is awaited there, as a statement would be."""
    iterator = aiter(rows)
    while True:
        try:
            yield await_only(anext(iterator))
        except StopAsyncIteration:
            return


def _opened_by_its_asyncio_face() -> Any:
    """The session factory of an `AsyncUnitOfWork`'s blocking unit, which its asyncio face opens
    (`adopt`) and enters only once open (a joined block). A function of no unit: a bound
    method of the face would tie the two units into a cycle, which keeps each unit's session,
    identity map and repositories alive until the garbage collector runs."""
    raise RuntimeError("this unit of work is opened by its asyncio face: `async with` that")


class AsyncRepository(Generic[ModelT]):
    """`Repository` for asyncio: the same methods, arguments, results and errors, awaited. A
    method of the blocking repository that this class does not declare (a team's own) is
    awaited the same way."""

    def __init__(self, async_session: AsyncSession, sync: Repository[ModelT]) -> None:
        self.async_session = async_session
        self.sync = sync

    get = awaited(Repository[ModelT].get)
    get_one = awaited(Repository[ModelT].get_one)
    list = awaited(Repository[ModelT].list)
    list_page = awaited(Repository[ModelT].list_page)
    paginate = awaited(Repository[ModelT].paginate)
    cursor_after = awaited(Repository[ModelT].cursor_after)
    count = awaited(Repository[ModelT].count)
    exists = awaited(Repository[ModelT].exists)
    create = awaited(Repository[ModelT].create)
    update = awaited(Repository[ModelT].update)
    delete = awaited(Repository[ModelT].delete)
    upsert = awaited(Repository[ModelT].upsert)

    def __getattr__(self, name: str) -> Any:
        method = getattr(type(self.sync), name, None)
        if name.startswith("_") or not inspect.isfunction(method):
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return partial(awaited(method), self)

    async def iterate(
        self, *, where: Where = None, order_by: OrderBy = None, batch_size: int = 1000
    ) -> AsyncIterator[Row[Any]]:
        """`Repository.iterate`: `async for row in uow.items.iterate(...)`, streamed."""
        statement = self.sync.iteration_statement(where, order_by, batch_size)
        result = await self.async_session.stream(statement)
        close = partial(_close_from_greenlet, result)
        kept: list[Row[Any]] = []

        def keep_rest() -> None:
            # Called by a statement's event listener, inside SQLAlchemy's greenlet.
            kept.extend(await_only(result.fetchall()))

        stream_opened(self.async_session, True)
        try:
            with streaming(self.sync.session.connection(), close, keep_rest):
                # A batch at a time from the greenlet (`yield_per`), not a row at a time.
                async for batch in result.partitions():
                    for row in batch:
                        yield row
                for row in kept:
                    yield row
        finally:
            stream_opened(self.async_session, False)
            # Left early (`break`, then closed by the event loop): the result is closed here,
            # not left to the driver to find open.
            await result.close()

    async def create_many(self, rows: Rows, *, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
        """`Repository.create_many`; `rows` may also be an async iterable."""
        given = _pulled(rows) if isinstance(rows, AsyncIterable) else rows
        return await run_blocking(
            self.async_session, self.sync.create_many, given, batch_size=batch_size
        )

    async def upsert_many(
        self,
        rows: Rows,
        *,
        conflict: Conflict = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> int:
        """`Repository.upsert_many`; `rows` may also be an async iterable."""
        given = _pulled(rows) if isinstance(rows, AsyncIterable) else rows
        return await run_blocking(
            self.async_session,
            self.sync.upsert_many,
            given,
            conflict=conflict,
            batch_size=batch_size,
        )


class AsyncUserRepository(AsyncRepository[User]):
    """`UserRepository` for asyncio."""

    get_by_email = awaited(UserRepository.get_by_email)


class AsyncItemRepository(AsyncRepository[Item]):
    """`ItemRepository` for asyncio."""

    list_by_owner = awaited(ItemRepository.list_by_owner)


def _close_from_greenlet(result: AsyncResult[Any]) -> None:
    # Called by a statement's event listener, inside SQLAlchemy's greenlet: it may await.
    await_only(result.close())


AsyncUnitT = TypeVar("AsyncUnitT", bound="AsyncUnitOfWork")


class AsyncUnitOfWork:
    """`async with AsyncUnitOfWork() as uow: ...; await uow.commit()` -- leaving without commit
    rolls back; a task cancelled inside rolls back and gives its connection back.

    It runs the blocking unit of work (`unit`, a `UnitOfWork` class) on the `AsyncSession`'s
    own session, so the rules (rollback unless committed, joined blocks in savepoints, the
    outermost commit decides, objects readable after the block) are the same code on both
    faces. Each repository the blocking unit has is here as its asyncio face: the class this
    one declares for that attribute, else `AsyncRepository` (which awaits a team's own methods
    of the blocking class too).

    A subclass for a team's unit sets `unit = TodoUnitOfWork` and annotates the faces it wants
    typed (`projects: AsyncRepository[Project]`); without one, `for_unit` derives it.
    """

    users: AsyncUserRepository
    items: AsyncItemRepository
    unit: ClassVar[type[UnitOfWork]] = UnitOfWork

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The asyncio face declared for a blocking unit (the first at module level), for
        # `for_unit`.
        if "unit" in cls.__dict__ and "<locals>" not in cls.__qualname__:
            _faces_of_units.setdefault(cls.unit, cls)

    @classmethod
    def for_unit(cls, unit: type[UnitOfWork]) -> type[AsyncUnitOfWork]:
        """The asyncio unit of work for the blocking class `unit`: the subclass declared for
        it, else one derived from it."""
        if unit is UnitOfWork:
            return AsyncUnitOfWork
        found = _faces_of_units.get(unit)
        if found is None:
            found = type(f"Async{unit.__name__}", (AsyncUnitOfWork,), {"unit": unit})
            _faces_of_units[unit] = found
        return found

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession] | None = None,
        *,
        isolation_level: str | None = None,
        read_only: bool = False,
        after: str | None = None,
        replicas: ReplicaSet | None = None,
        name: str | None = None,
    ) -> None:
        """The arguments of `UnitOfWork`, the same meaning."""
        self._session_factory = session_factory
        self._async_session: AsyncSession | None = None
        self.sync = self.unit(
            _opened_by_its_asyncio_face,
            isolation_level=isolation_level,
            read_only=read_only,
            after=after,
            replicas=replicas if replicas is not None or session_factory else get_replicas(),
            name=name or telemetry.caller_name(),
        )

    @property
    def async_session(self) -> AsyncSession:
        """The session of the open unit of work."""
        if self._async_session is None:
            raise RuntimeError("this AsyncUnitOfWork is not open; use it as `async with uow:`")
        return self._async_session

    async def __aenter__(self: AsyncUnitT) -> AsyncUnitT:
        if self.sync.is_open:
            await run_blocking(self.async_session, self.sync.__enter__)  # a joined block
            return self
        replicas = self.sync.replicas
        if self.sync.read_only and replicas is not None and not replicas.started:
            await asyncio.to_thread(replicas.start)  # its first check, off the event loop
        chosen = self.sync.route()
        scope = self.sync._start_scope()
        try:
            if chosen.replica is not None:
                assert replicas is not None
                on_replica = replicas.async_session_factory(chosen.replica)()
                telemetry.attach(on_replica.sync_session, scope)
                if await on_replica.run_sync(routing.begin, chosen):
                    scope.replica = chosen.replica.masked_url
                    self._open(on_replica)
                    return self
                await on_replica.close()
                chosen = chosen.to_primary()
            session = (self._session_factory or get_async_session_factory())()
            telemetry.attach(session.sync_session, scope)
            try:
                if routing.needs_connection(chosen):
                    await session.run_sync(routing.begin, chosen)
                else:
                    routing.begin(session.sync_session, chosen)  # sends nothing
            except BaseException:
                await session.close()
                raise
        except BaseException as exc:
            self.sync._end_scope(None, exc)
            raise
        self._open(session)
        return self

    def _open(self, async_session: AsyncSession) -> None:
        self._async_session = async_session
        self.sync.adopt(async_session.sync_session)
        # Each face is made on first use, as the blocking unit's repositories are.
        names = made_on_first_use(type(self), repository_attributes(type(self.sync)))
        forget_made(self, names)

    def make_repository(self, name: str) -> AsyncRepository[Any]:
        """The asyncio face of the blocking unit's repository `name`, made now."""
        face = _async_faces(type(self)).get(name, AsyncRepository)
        return face(self.async_session, getattr(self.sync, name))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        closed = False
        try:
            await run_blocking(self.async_session, self.sync.__exit__, exc_type, exc, traceback)
            closed = not self.sync.is_open  # the blocking exit closed the session itself
        finally:
            if not self.sync.is_open:
                await self._close(closed=closed)

    async def _close(self, *, closed: bool = False) -> None:
        session, self._async_session = self._async_session, None
        if session is not None and not closed:
            # After a failed or cancelled exit: closing gives the connection back to the pool,
            # which throws it away if it cannot be reset. (After a clean exit the session is
            # closed already: a second close would be one more trip into the greenlet.)
            await session.close()

    def repository(self, model: type[Any]) -> AsyncRepository[Any]:
        """The asyncio face of `self.sync.repository(model)`."""
        name = first_declared_for(type(self.sync)).get(model)
        if name is not None:
            found: AsyncRepository[Any] = getattr(self, name)
            return found
        return AsyncRepository(self.async_session, self.sync.repository(model))

    async def commit(self) -> str:
        """Make the work so far permanent (inside a joined block: hand it to the enclosing one);
        returns the commit's token, as `UnitOfWork.commit` does. A task cancelled meanwhile
        waits for the commit to end, then ends cancelled: its `CancelledError` notes whether
        the unit committed."""
        return await to_its_end(run_blocking(self.async_session, self.sync.commit))

    async def commit_exactly_once(self) -> None:
        """`UnitOfWork.commit_exactly_once`, awaited."""
        await to_its_end(run_blocking(self.async_session, self.sync.commit_exactly_once))

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


_faces_of_units: dict[type[UnitOfWork], type[AsyncUnitOfWork]] = {}


def async_unit_of_work_class() -> type[AsyncUnitOfWork]:
    """The asyncio face of `unit_of_work_class()` (APP_UNIT_OF_WORK)."""
    return AsyncUnitOfWork.for_unit(unit_of_work_class())


def _async_faces(unit: type[Any]) -> dict[str, type[AsyncRepository[Any]]]:
    """The asyncio repository classes an asyncio unit-of-work class declares, by attribute
    (`AsyncRepository[Project]` is an AsyncRepository)."""
    return {
        name: hint if isinstance(hint, type) else typing.get_origin(hint)
        for name, hint in declared_attributes(unit, AsyncRepository).items()
    }


async def run_in_transaction_async(
    fn: Callable[[AsyncUnitT], Awaitable[T]],
    *,
    retries: int = DEFAULT_RETRIES,
    isolation_level: str | None = None,
    session_factory: async_sessionmaker[AsyncSession] | None = None,
    backoff: float | None = None,
    max_backoff: float | None = None,
    unit: type[AsyncUnitOfWork] | None = None,
    name: str | None = None,
    exactly_once: bool = True,
) -> T:
    """Await `fn(uow)` in a fresh unit of work and commit; run it again on the failures
    `run_in_transaction` retries, with the same backoff, and resolve a lost COMMIT answer the
    same way (`exactly_once`). The unit is a `unit` (default: `async_unit_of_work_class()`)
    named `name` (default: `fn`'s module and name)."""
    name = name or telemetry.function_name(fn)
    retrying = AsyncRetrying(**retry_policy(retries, backoff, max_backoff, name))
    unit_class = unit or async_unit_of_work_class()
    async for attempt in retrying:
        with attempt:
            uow = unit_class(session_factory, isolation_level=isolation_level, name=name)
            uow.sync.attempt = attempt.retry_state.attempt_number
            uow.sync.signs_commit = exactly_once
            async with uow:
                result = await fn(typing.cast(AsyncUnitT, uow))
                await (uow.commit_exactly_once() if exactly_once else uow.commit())
    return result


def transactional_async(
    *,
    retries: int = DEFAULT_RETRIES,
    isolation_level: str | None = None,
    session_factory: async_sessionmaker[AsyncSession] | None = None,
    backoff: float | None = None,
    max_backoff: float | None = None,
    unit: type[AsyncUnitOfWork] | None = None,
) -> Callable[[Callable[Concatenate[AsyncUnitT, P], Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Decorator form: `@transactional_async()` on `async def f(uow, ...)` makes `await f(...)`
    run in `run_in_transaction_async`."""

    def decorate(
        fn: Callable[Concatenate[AsyncUnitT, P], Awaitable[T]],
    ) -> Callable[P, Awaitable[T]]:
        name = telemetry.function_name(fn)

        @wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            def run(uow: AsyncUnitT) -> Awaitable[T]:
                return fn(uow, *args, **kwargs)

            return await run_in_transaction_async(
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
