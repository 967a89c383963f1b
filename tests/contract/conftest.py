"""The contract suite runs every test in both faces, blocking and asyncio, on every backend.

A test is written once, in blocking style, against `uow()` (a new unit of work), `db` (plain
SQL on the test's transaction) and `faces` (services, run_in_transaction). In the asyncio face
`uow()` is an `AsyncUnitOfWork` driven through `Awaiting`, which runs each coroutine it returns
to completion on the session's event loop: the code under test is the real asyncio face.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import Session, sessionmaker

from app.db.session import make_async_engine, make_async_session_factory
from app.repositories import (
    AsyncUnitOfWork,
    UnitOfWork,
    run_in_transaction,
    run_in_transaction_async,
)
from app.services import create_item, create_item_async, register_user, register_user_async
from tests.backends import pooler_of

T = TypeVar("T")
FACES = ("sync", "async")


@pytest.fixture(scope="session", params=FACES)
def face(request: pytest.FixtureRequest) -> str:
    """Which face of the data layer the test drives."""
    return str(request.param)


@pytest.fixture(scope="session")
def loop_runner() -> Iterator[asyncio.Runner]:
    """One event loop for the whole run: asyncio engines' connections belong to it."""
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture(scope="session")
def async_engine(
    backend: str, engine: Engine, loop_runner: asyncio.Runner
) -> Iterator[AsyncEngine]:
    """An asyncio engine on the session's migrated test database."""
    built = make_async_engine(engine.url, pooler=pooler_of(backend))
    yield built
    loop_runner.run(built.dispose())


class Awaiting:
    """Drives an asyncio object from blocking test code: every coroutine a method returns is run
    to completion; async context managers become blocking ones."""

    def __init__(self, target: Any, runner: asyncio.Runner) -> None:
        self.target = target
        self._runner = runner

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.target, name)
        if not callable(value):
            return Awaiting(value, self._runner) if hasattr(value, "async_session") else value

        def call(*args: Any, **kwargs: Any) -> Any:
            result = value(*args, **kwargs)
            if inspect.iscoroutine(result):
                return self._runner.run(result)
            if hasattr(result, "__aenter__"):
                return Awaiting(result, self._runner)
            return result

        return call

    def __enter__(self) -> Any:
        entered = self._runner.run(self.target.__aenter__())
        return self if entered is self.target else entered

    def __exit__(self, *exc_info: Any) -> Any:
        return self._runner.run(self.target.__aexit__(*exc_info))


@dataclass
class Database:
    """Plain SQL on the test's own transaction, whatever the face (tests check the database
    without the code under test)."""

    run: Callable[[str, dict[str, Any]], Any]

    def count(self, table: str, where: str = "", **params: Any) -> int:
        sql = f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else "")
        return int(self.run(sql, params)[0][0])

    def scalar(self, sql: str, **params: Any) -> Any:
        rows = self.run(sql, params)
        return rows[0][0] if rows else None


@dataclass
class Faces:
    """What the test needs that differs by face: a new unit of work, the services,
    run_in_transaction, and rows to stream."""

    name: str
    uow: Callable[[], Any]
    register_user: Callable[[Any, Any], Any]
    create_item: Callable[[Any, Any, Any], Any]
    run_in_transaction: Callable[..., Any]
    stream: Callable[[Iterable[Any]], Any]
    collect: Callable[[Any], list[Any]]  # the rows of a stream `iterate` gave


@pytest.fixture
def async_connection(
    async_engine: AsyncEngine, loop_runner: asyncio.Runner
) -> Iterator[AsyncConnection]:
    """An asyncio connection inside a transaction that is rolled back after the test."""

    async def opened() -> AsyncConnection:
        connection = await async_engine.connect()
        await connection.begin()
        return connection

    connection = loop_runner.run(opened())
    yield connection

    async def closed() -> None:
        await connection.rollback()
        await connection.close()

    loop_runner.run(closed())


@pytest.fixture
def faces(
    backend: str, face: str, request: pytest.FixtureRequest, loop_runner: asyncio.Runner
) -> Faces:
    """The face's ways in, on `backend`'s test database."""
    if face == "sync":
        factory: sessionmaker[Session] = request.getfixturevalue("session_factory")
        return Faces(
            name=face,
            uow=lambda: UnitOfWork(factory),
            register_user=register_user,
            create_item=create_item,
            run_in_transaction=lambda fn, **kw: run_in_transaction(
                fn, session_factory=factory, **kw
            ),
            stream=lambda rows: iter(list(rows)),
            collect=list,
        )
    connection: AsyncConnection = request.getfixturevalue("async_connection")
    async_factory = make_async_session_factory(connection, join_transaction_mode="create_savepoint")

    def in_transaction(fn: Callable[[UnitOfWork], T], **kw: Any) -> T:
        return loop_runner.run(
            run_in_transaction_async(
                lambda auow: auow.run_sync(fn), session_factory=async_factory, **kw
            )
        )

    async def streamed(rows: list[Any]) -> AsyncIterator[Any]:
        for row in rows:
            await asyncio.sleep(0)
            yield row

    return Faces(
        name=face,
        uow=lambda: Awaiting(AsyncUnitOfWork(async_factory), loop_runner),
        register_user=lambda uow, data: loop_runner.run(register_user_async(uow.target, data)),
        create_item=lambda uow, owner, data: loop_runner.run(
            create_item_async(uow.target, owner, data)
        ),
        run_in_transaction=in_transaction,
        stream=lambda rows: streamed(list(rows)),
        collect=lambda stream: loop_runner.run(_collected(stream)),
    )


async def _collected(stream: AsyncIterator[Any]) -> list[Any]:
    return [row async for row in stream]


@pytest.fixture
def db(
    backend: str, face: str, request: pytest.FixtureRequest, loop_runner: asyncio.Runner
) -> Database:
    """Plain SQL on the connection the face's units of work run on."""
    if face == "sync":
        connection: Connection = request.getfixturevalue("connection")
        return Database(lambda sql, params: connection.execute(text(sql), params).all())
    async_connection: AsyncConnection = request.getfixturevalue("async_connection")

    async def run(sql: str, params: dict[str, Any]) -> list[Any]:
        return list((await async_connection.execute(text(sql), params)).all())

    return Database(lambda sql, params: loop_runner.run(run(sql, params)))
