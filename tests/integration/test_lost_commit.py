"""A COMMIT whose answer never comes is told as such: `CommitOutcomeUnknownError`, whether the
server applied the transaction (the answer was lost) or never received the COMMIT, and told
apart from a connection lost before COMMIT, which provably rolled the transaction back. Through
a proxy (tests.faults) that cuts the connection at the COMMIT, on both faces."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from app.db.errors import CommitOutcomeUnknownError, DatabaseUnavailableError
from app.db.session import (
    make_async_engine,
    make_async_session_factory,
    make_engine,
    make_session_factory,
)
from app.repositories import AsyncUnitOfWork, UnitOfWork
from tests.backends import is_mariadb
from tests.faults import CuttingProxy

pytestmark = pytest.mark.backends("postgresql", "mariadb")
TRIALS = 10  # per face and kind of loss: 20 lost COMMITs a backend and face


@pytest.fixture
def proxy(committed_engine: Engine) -> Iterator[CuttingProxy]:
    url = committed_engine.url
    made = CuttingProxy((str(url.host), int(url.port or 0)))
    yield made
    made.close()


def _commit_message(backend: str) -> bytes:
    """How COMMIT looks on the wire: PostgreSQL's simple query ends with a NUL, MariaDB's
    COM_QUERY starts with its command byte (so SET AUTOCOMMIT at login does not match)."""
    return b"\x03COMMIT" if is_mariadb(backend) else b"COMMIT\x00"


def _through(proxy: CuttingProxy, url: URL) -> URL:
    return url.set(host="127.0.0.1", port=proxy.port)


def _stored(engine: Engine, email: str) -> int:
    with engine.connect() as connection:
        found = connection.execute(
            text("SELECT count(*) FROM users WHERE email = :e"), {"e": email}
        )
        return int(found.scalar_one())


def _write(url: URL, face: str, email: str, before_commit: Callable[[], None]) -> None:
    """One unit of work that creates a user and commits, on `face`; `before_commit` runs once
    the connection is open (asyncmy sends a COMMIT of its own as it logs in)."""
    row = {"email": email, "hashed_password": "x"}
    if face == "sync":
        engine = make_engine(url, poolclass=NullPool)
        try:
            with UnitOfWork(make_session_factory(engine)) as uow:
                uow.users.create(row)
                before_commit()
                uow.commit()
        finally:
            engine.dispose()
        return

    async def write() -> None:
        engine = make_async_engine(url, poolclass=NullPool)
        try:
            async with AsyncUnitOfWork(make_async_session_factory(engine)) as uow:
                await uow.users.create(row)
                before_commit()
                await uow.commit()
        finally:
            await engine.dispose()

    asyncio.run(write())


@pytest.mark.parametrize("face", ["sync", "async"])
@pytest.mark.parametrize("applied", [True, False], ids=["answer-lost", "never-arrived"])
def test_a_commit_that_gets_no_answer_is_told_its_outcome_is_unknown(
    backend: str, proxy: CuttingProxy, committed_engine: Engine, face: str, applied: bool
) -> None:
    url = _through(proxy, committed_engine.url)
    outcomes = []
    for _ in range(TRIALS):
        email = f"{uuid.uuid4().hex}@example.com"
        proxy.deliver = applied

        def cut_at_commit() -> None:
            proxy.cut_on = _commit_message(backend)

        with pytest.raises(CommitOutcomeUnknownError):
            _write(url, face, email, cut_at_commit)
        outcomes.append(_stored(committed_engine, email))
    assert proxy.cuts == TRIALS
    # What the server did is what the proxy let through; either way the caller was not told
    # "failed, try again".
    assert outcomes == [1 if applied else 0] * TRIALS


@pytest.mark.parametrize("face", ["sync", "async"])
def test_a_connection_lost_before_commit_is_plainly_unavailable_and_stores_nothing(
    proxy: CuttingProxy, committed_engine: Engine, face: str
) -> None:
    url = _through(proxy, committed_engine.url)
    email = f"{uuid.uuid4().hex}@example.com"
    proxy.cut_on, proxy.deliver = b"INSERT INTO users", False
    with pytest.raises(DatabaseUnavailableError) as caught:
        _write(url, face, email, lambda: None)
    assert not isinstance(caught.value, CommitOutcomeUnknownError)
    assert proxy.cuts == 1
    assert _stored(committed_engine, email) == 0
