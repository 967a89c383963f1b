"""Calls end within their bounds when the network or the client goes quiet: a server that
accepts the connection and never answers is a `DatabaseUnavailableError` once DB_CONNECT_TIMEOUT
has passed, one that stops answering in the middle of a connection is a lost connection once
no statement could still be running, and a transaction left idle by its client is ended by the
server after DB_IDLE_TRANSACTION_TIMEOUT, its row locks with it."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.pool import NullPool

from app.db.errors import ConnectionLostError, DatabaseUnavailableError, DataLayerError
from app.db.session import make_async_engine, make_engine
from tests.backends import is_mariadb
from tests.faults import CuttingProxy


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port on 127.0.0.1 whose connections are accepted by the kernel and never answered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


@pytest.mark.backends("postgresql", "mariadb")
def test_a_server_that_never_answers_is_unavailable_after_the_connect_timeout(
    backend: str, silent_server: int
) -> None:
    scheme = "mysql+pymysql" if is_mariadb(backend) else "postgresql+psycopg"
    url = f"{scheme}://root@127.0.0.1:{silent_server}/test"
    # A statement timeout of 5 s: MariaDB's drivers used to wait out the read timeout derived
    # from it (35 s) for the server's greeting.
    options = {"poolclass": NullPool, "connect_timeout": 1, "statement_timeout": 5}
    engine = make_engine(url, **options)
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError) as caught, engine.connect():
        pass
    assert time.monotonic() - started < 4
    # Told as on the other server: no connection was made, so none was lost.
    assert not isinstance(caught.value, ConnectionLostError)
    # Said as what it was: a wait that ran out, not a refusal (the user and password are fine).
    assert str(caught.value).startswith(
        "cannot connect to the database: it did not answer within DB_CONNECT_TIMEOUT"
    ), caught.value

    async def asyncio_face() -> None:
        async_engine = make_async_engine(url, **options)
        try:
            async with async_engine.connect():
                pass
        finally:
            await async_engine.dispose()

    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError) as caught:
        asyncio.run(asyncio_face())
    assert not isinstance(caught.value, ConnectionLostError)
    # Said as what it was: a wait that ran out, not a refusal (the user and password are fine).
    assert str(caught.value).startswith(
        "cannot connect to the database: it did not answer within DB_CONNECT_TIMEOUT"
    ), caught.value
    assert time.monotonic() - started < 4


STATEMENT_TIMEOUT, CONNECT_TIMEOUT = 1, 2


@pytest.mark.backends("postgresql", "mariadb")
@pytest.mark.parametrize("face", ["sync", "async"])
def test_a_server_that_stops_answering_is_a_lost_connection_once_no_statement_could_run(
    backend: str, committed_engine: Engine, face: str
) -> None:
    """The server's process stops (the kernel still takes what is sent, and answers
    keepalives): a call on an open connection fails as a lost connection once the statement
    timeout has passed with a margin for the network, instead of waiting for ever."""
    url = committed_engine.url
    proxy = CuttingProxy((str(url.host), int(url.port or 0)))
    proxied = url.set(host="127.0.0.1", port=proxy.port)
    # The statement timeout plus the connect timeout, on both (MariaDB: its driver's read
    # timeout).
    bound = STATEMENT_TIMEOUT + CONNECT_TIMEOUT
    options = {
        "poolclass": NullPool,
        "statement_timeout": STATEMENT_TIMEOUT,
        "connect_timeout": CONNECT_TIMEOUT,
    }
    outcome: list[BaseException | None] = []

    def blocking() -> None:
        engine = make_engine(proxied, **options)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                proxy.frozen.set()
                connection.execute(text("SELECT 2"))
        finally:
            engine.dispose()

    async def asyncio_face() -> None:
        engine = make_async_engine(proxied, **options)
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
                proxy.frozen.set()
                await connection.execute(text("SELECT 2"))
        finally:
            await engine.dispose()

    def call() -> None:
        try:
            blocking() if face == "sync" else asyncio.run(asyncio_face())
            outcome.append(None)
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    caller = threading.Thread(target=call, daemon=True)
    started = time.monotonic()
    caller.start()
    try:
        caller.join(timeout=bound + 10)
        waited = time.monotonic() - started
        assert outcome, f"the call was still waiting after {waited:.0f} s"
    finally:
        proxy.close()  # a call still waiting ends now
    assert isinstance(outcome[0], ConnectionLostError), outcome[0]
    assert bound - 0.5 <= waited <= bound + 5


@pytest.mark.backends("postgresql", "mariadb")
def test_an_idle_transaction_is_ended_and_its_row_locks_freed(
    backend: str, committed_engine: Engine
) -> None:
    url = committed_engine.url
    idle = make_engine(url, poolclass=NullPool, idle_transaction_timeout=1)
    other = make_engine(url, poolclass=NullPool, statement_timeout=20)
    with committed_engine.begin() as connection:
        connection.execute(text("DELETE FROM items"))
        connection.execute(text("DELETE FROM users"))
        connection.execute(
            text(
                "INSERT INTO users (id, email, hashed_password, is_active, is_superuser, "
                "created_at, updated_at, version) VALUES (:id, 'idle@example.com', 'x', "
                ":yes, :no, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1)"
            ),
            {"id": "0" * 32 if is_mariadb(backend) else "00000000-0000-0000-0000-000000000000",
             "yes": True, "no": False},
        )  # fmt: skip
    holder = idle.connect()
    holder.begin()
    holder.execute(text("UPDATE users SET full_name = 'held' WHERE email = 'idle@example.com'"))
    # The holder's client goes quiet; another unit wants the same row.
    started = time.monotonic()
    done = threading.Event()

    def update() -> None:
        with other.begin() as connection:
            connection.execute(
                text("UPDATE users SET full_name = 'other' WHERE email = 'idle@example.com'")
            )
        done.set()

    worker = threading.Thread(target=update)
    worker.start()
    worker.join(timeout=15)
    assert done.is_set(), "the idle transaction still held its row lock"
    assert time.monotonic() - started < 10
    with pytest.raises(DataLayerError):
        holder.execute(text("SELECT 1"))
    holder.close()
    with committed_engine.connect() as connection:
        stored = connection.execute(
            text("SELECT full_name FROM users WHERE email = 'idle@example.com'")
        ).scalar()
    assert stored == "other"  # the idle transaction's update went with it
    idle.dispose()
    other.dispose()
