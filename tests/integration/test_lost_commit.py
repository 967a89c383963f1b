"""A COMMIT whose answer never comes is told as such: `CommitOutcomeUnknownError`, whether the
server applied the transaction (the answer was lost) or never received the COMMIT, and told
apart from a connection lost before COMMIT (`ConnectionLostError`), which provably rolled the
transaction back. `run_in_transaction` resolves the first (asking the server about the
transaction, or by its marker row) and runs the second again: the function's effect is applied
exactly once. Through a proxy (tests.faults) that cuts the connection at the COMMIT, on both
faces."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from app.db.errors import (
    CommitOutcomeUnknownError,
    ConnectionLostError,
)
from app.db.models import Base
from app.db.session import (
    make_async_engine,
    make_async_session_factory,
    make_engine,
    make_session_factory,
)
from app.dialects import deferred_begin
from app.repositories import (
    AsyncUnitOfWork,
    UnitOfWork,
    run_in_transaction,
    run_in_transaction_async,
)
from tests.backends import ThrowawayDatabases, is_mariadb
from tests.faults import CuttingProxy
from tests.integration.helpers import resolve_a_commit_held_open
from tests.integration.test_observability import Telemetry

pytestmark = pytest.mark.backends("postgresql", "mariadb")
TRIALS = 10  # per face and kind of loss: 20 lost COMMITs a backend and face


@pytest.fixture
def proxy(committed_engine: Engine, committing_factory: object) -> Iterator[CuttingProxy]:
    """The proxy in front of the committed database (whose tables are emptied afterwards)."""
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
def test_a_connection_lost_before_commit_is_told_lost_and_stores_nothing(
    proxy: CuttingProxy, committed_engine: Engine, face: str
) -> None:
    url = _through(proxy, committed_engine.url)
    email = f"{uuid.uuid4().hex}@example.com"
    proxy.cut_on, proxy.deliver = b"INSERT INTO users", False
    with pytest.raises(ConnectionLostError):
        _write(url, face, email, lambda: None)
    assert proxy.cuts == 1
    assert _stored(committed_engine, email) == 0


def _in_transaction(url: URL, face: str, email: str, before_commit: Callable[[], None]) -> int:
    """`run_in_transaction` (or its asyncio twin) of a function that creates a user; how many
    times the function ran."""
    runs = []
    row = {"email": email, "hashed_password": "x"}
    if face == "sync":
        engine = make_engine(url, poolclass=NullPool)

        def create(uow: UnitOfWork) -> None:
            runs.append(1)
            uow.users.create(row)
            before_commit()

        try:
            run_in_transaction(create, session_factory=make_session_factory(engine), backoff=0)
        finally:
            engine.dispose()
        return len(runs)

    async def write() -> None:
        engine = make_async_engine(url, poolclass=NullPool)

        async def create(uow: AsyncUnitOfWork) -> None:
            runs.append(1)
            await uow.users.create(row)
            before_commit()

        try:
            factory = make_async_session_factory(engine)
            await run_in_transaction_async(create, session_factory=factory, backoff=0)
        finally:
            await engine.dispose()

    asyncio.run(write())
    return len(runs)


def _cut_once(proxy: CuttingProxy, backend: str) -> Callable[[], None]:
    """Cut at the COMMIT of the first attempt only."""
    armed = []

    def cut_at_first_commit() -> None:
        if not armed:
            armed.append(1)
            proxy.cut_on = _commit_message(backend)

    return cut_at_first_commit


@pytest.mark.parametrize("face", ["sync", "async"])
@pytest.mark.parametrize("applied", [True, False], ids=["answer-lost", "never-arrived"])
def test_run_in_transaction_applies_a_unit_whose_commit_got_no_answer_exactly_once(
    backend: str, proxy: CuttingProxy, committed_engine: Engine, face: str, applied: bool
) -> None:
    url = _through(proxy, committed_engine.url)
    runs, stored = [], []
    for _ in range(TRIALS):
        email = f"{uuid.uuid4().hex}@example.com"
        proxy.deliver = applied
        runs.append(_in_transaction(url, face, email, _cut_once(proxy, backend)))
        stored.append(_stored(committed_engine, email))
    assert proxy.cuts == TRIALS
    # Applied: told committed without running again; not applied: run once more.
    assert runs == [1 if applied else 2] * TRIALS
    assert stored == [1] * TRIALS


@pytest.mark.parametrize("face", ["sync", "async"])
def test_run_in_transaction_runs_a_unit_that_lost_its_connection_before_commit_again(
    proxy: CuttingProxy, committed_engine: Engine, face: str
) -> None:
    url = _through(proxy, committed_engine.url)
    email = f"{uuid.uuid4().hex}@example.com"
    proxy.cut_on, proxy.deliver = b"INSERT INTO users", False
    assert _in_transaction(url, face, email, lambda: None) == 2
    assert proxy.cuts == 1
    assert _stored(committed_engine, email) == 1


@pytest.mark.parametrize("face", ["sync", "async"])
def test_without_a_way_to_tell_run_in_transaction_says_the_outcome_is_unknown(
    backend: str, proxy: CuttingProxy, committed_engine: Engine, face: str
) -> None:
    """The server stays out of reach after the lost COMMIT: nothing is guessed."""
    url = _through(proxy, committed_engine.url)
    email = f"{uuid.uuid4().hex}@example.com"

    def cut_at_commit_then_refuse() -> None:
        proxy.cut_on, proxy.deliver = _commit_message(backend), True
        proxy.refuse_after_cut = True

    with pytest.raises(CommitOutcomeUnknownError):
        _in_transaction(url, face, email, cut_at_commit_then_refuse)
    assert proxy.cuts == 1
    assert _stored(committed_engine, email) == 1


def test_telling_the_outcome_ends_a_transaction_the_server_still_holds_open(
    committed_engine: Engine, committing_factory: object
) -> None:
    """The COMMIT never reached the server, which does not know the client is gone (a silent
    network): its session is still in the transaction. The check ends that session at once
    (PostgreSQL: by its transaction id; MariaDB: by its thread id and client
    address) instead of waiting for the server to notice, then says it was not applied."""
    engine = make_engine(committed_engine.url, poolclass=NullPool)
    try:
        email = resolve_a_commit_held_open(engine)
    finally:
        engine.dispose()
    assert _stored(committed_engine, email) == 0


@pytest.mark.backends("mariadb")
def test_a_database_without_the_markers_table_still_commits_and_only_cannot_tell(
    proxy: CuttingProxy, backend: str, databases: ThrowawayDatabases
) -> None:
    """Tables made by `create_all` rather than the migrations: `run_in_transaction` commits as
    ever, and a COMMIT whose answer is lost is told unknown, as without a receipt."""
    url = databases.new_url(backend, "nomarkers")
    engine = make_engine(url, poolclass=NullPool)
    try:
        Base.metadata.create_all(engine)
        factory = make_session_factory(engine)
        row = {"email": "plain@example.com", "hashed_password": "x"}
        run_in_transaction(lambda uow: uow.users.create(row), session_factory=factory)
        assert _stored(engine, "plain@example.com") == 1
        proxy.server = (str(url.host), int(url.port or 0))
        cut = _cut_once(proxy, backend)
        through = make_engine(_through(proxy, url), poolclass=NullPool)

        def create(uow: UnitOfWork) -> None:
            uow.users.create({"email": "lost@example.com", "hashed_password": "x"})
            cut()

        try:
            with pytest.raises(CommitOutcomeUnknownError):
                run_in_transaction(create, session_factory=make_session_factory(through))
        finally:
            through.dispose()
        assert _stored(engine, "lost@example.com") == 1
    finally:
        engine.dispose()


def statements(otel: Telemetry) -> list[str]:
    """The text of every statement the traces hold so far."""
    return [str((span.attributes or {}).get("db.query.text", "")) for span in otel.spans()]


def test_only_a_unit_that_wrote_leaves_a_receipt(
    backend: str, committed_engine: Engine, committing_factory: Any
) -> None:
    """The receipt is a statement on MariaDB (a marker row; on Galera a write set every node
    certifies), seen as a user sees statements: in the traces (it goes past SQLAlchemy's
    cursor events, straight to the driver). On PostgreSQL it is the transaction's id, asked
    for with the BEGIN that goes with the unit's first write. A unit that ran only SELECTs
    leaves none: no statement, no BEGIN, no id."""
    otel = Telemetry()
    try:
        read_id = run_in_transaction(_counted, session_factory=committing_factory)
        read_only = statements(otel)
        written_id = run_in_transaction(_created, session_factory=committing_factory)
        sent = statements(otel)
    finally:
        otel.instrumentation.uninstrument()

    def receipts(statements: list[str]) -> list[str]:
        return [s for s in statements if "txid_current" in s or "app_commit_markers" in s]

    assert read_only
    assert receipts(read_only) == []
    if backend == "postgresql":
        assert read_id is None
        assert isinstance(written_id, int)
        assert not any(s.startswith("BEGIN") for s in sent)
    else:
        assert len(receipts(sent)) == 1  # the writing unit's


def _counted(uow: UnitOfWork) -> object:
    uow.users.count()
    return deferred_begin.transaction_id(uow.session.connection())


def _created(uow: UnitOfWork) -> object:
    uow.users.create({"email": "marked@example.com", "hashed_password": "x"})
    return deferred_begin.transaction_id(uow.session.connection())
