"""What a team looks at when something is slow: the tags on every statement (in the server's
own view of what runs), the slow-statement log, and the spans and metrics OpenTelemetry's
exporters receive. None of it may carry a stored value."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Engine, text

from app.config import mask_url
from app.db.errors import ConflictError, RetryableError
from app.db.runtime import Runtime, use_runtime
from app.db.session import (
    make_async_engine,
    make_async_session_factory,
    make_engine,
    make_session_factory,
)
from app.integrations.fastapi import AsyncUnitOfWorkDep, UnitOfWorkDep
from app.observability import Instrumentation, instrument
from app.repositories import (
    AsyncUnitOfWork,
    UnitOfWork,
    run_in_transaction,
    run_in_transaction_async,
)

SECRET_EMAIL = "victim.secret@example.com"
SECRET_HASH = "argon2-hash-that-must-not-leak"
_RUNNING = {
    "postgresql": "SELECT query FROM pg_stat_activity WHERE query LIKE '%%pg_sleep(1.5)%%' "
    "AND pid <> pg_backend_pid()",
    "mariadb": "SELECT info FROM information_schema.processlist WHERE info LIKE '%%SLEEP(1.5)%%' "
    "AND id <> connection_id()",
}
_SLEEP = {"postgresql": "SELECT pg_sleep(1.5)", "mariadb": "SELECT SLEEP(1.5)"}


def _server(backend: str) -> str:
    return "mariadb" if backend == "galera" else backend


def _seen_running(engine: Engine, backend: str, work: Callable[[], None]) -> str:
    """The text of the statement `work` runs, as the server lists it while it runs."""
    worker = threading.Thread(target=work)
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                found = connection.exec_driver_sql(_RUNNING[_server(backend)]).scalar()
            if found:
                return str(found)
            time.sleep(0.05)
        raise AssertionError("the statement never showed in the server's list")
    finally:
        worker.join()


@pytest.mark.backends("postgresql", "mariadb")
def test_a_running_statement_names_its_unit_and_the_application_in_the_servers_list(
    backend: str, committed_engine: Engine, committing_factory: Any
) -> None:
    def work() -> None:
        with UnitOfWork(committing_factory, name="reports.nightly") as uow:
            uow.session.execute(text(_SLEEP[_server(backend)]))

    seen = _seen_running(committed_engine, backend, work)
    assert seen.endswith("/*action='reports.nightly',application='app'*/")


@pytest.mark.backends("postgresql", "mariadb")
def test_an_asyncio_unit_tags_its_statements_the_same_way(
    backend: str, committed_engine: Engine, committed_url: str
) -> None:
    async def scenario() -> None:
        engine = make_async_engine(committed_url)
        factory = make_async_session_factory(engine)
        async with AsyncUnitOfWork(factory, name="GET /items/{item_id}") as uow:
            await uow.async_session.execute(text(_SLEEP[_server(backend)]))
        await engine.dispose()

    seen = _seen_running(committed_engine, backend, lambda: asyncio.run(scenario()))
    assert seen.endswith("/*action='GET_/items/{item_id}',application='app'*/")


@pytest.fixture
def statements(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """Every statement the project's engines log (SQLAlchemy's echo log and the COPY path's)."""
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine.Engine")

    def logged() -> list[str]:
        return [
            record.getMessage()
            for record in caplog.records
            if record.name.startswith("sqlalchemy.engine") and record.levelno == logging.INFO
        ]

    return logged


def _looks_like_sql(message: str) -> bool:
    return message.split(None, 1)[0].upper() in {"SELECT", "INSERT", "UPDATE", "DELETE", "COPY"}


def test_every_statement_of_a_unit_carries_its_tags_bulk_paths_included(
    committing_factory: Any, statements: Callable[[], list[str]]
) -> None:
    with UnitOfWork(committing_factory, name="imports.users") as uow:
        uow.users.create_many(
            {"email": f"u{n}@example.com", "hashed_password": SECRET_HASH} for n in range(300)
        )
        uow.users.upsert({"email": "u1@example.com", "hashed_password": "h2"}, conflict="email")
        assert uow.users.count() == 300
        uow.session.execute(text("SELECT 1"))
        uow.commit()
    sent = [message for message in statements() if _looks_like_sql(message)]
    assert len(sent) >= 4
    untagged = [s for s in sent if not s.endswith("/*action='imports.users',application='app'*/")]
    assert untagged == []


def test_a_unit_without_a_name_is_named_after_the_function_that_opened_it(
    committing_factory: Any, statements: Callable[[], list[str]]
) -> None:
    def nightly_report() -> None:
        with UnitOfWork(committing_factory) as uow:
            uow.users.count()

    nightly_report()
    run_in_transaction(_count_users, session_factory=committing_factory)
    sent = [message for message in statements() if _looks_like_sql(message)]
    here = f"{__name__}.test_a_unit_without_a_name_is_named_after_the_function_that_opened_it"
    assert sent[0].endswith(f"action='{here}.<locals>.nightly_report',application='app'*/")
    assert sent[-1].endswith(f"action='{__name__}._count_users',application='app'*/")


def _count_users(uow: UnitOfWork) -> int:
    return uow.users.count()


def test_statements_outside_a_unit_name_the_application_alone(
    committed_engine: Engine, statements: Callable[[], list[str]]
) -> None:
    with committed_engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    assert [m for m in statements() if _looks_like_sql(m)] == ["SELECT 1 /*application='app'*/"]


def test_tags_can_be_turned_off(committed_url: str, statements: Callable[[], list[str]]) -> None:
    engine = make_engine(committed_url, query_tags=False)
    try:
        with UnitOfWork(make_session_factory(engine), name="quiet") as uow:
            uow.session.execute(text("SELECT 1"))
    finally:
        engine.dispose()
    sent = [m for m in statements() if _looks_like_sql(m)]
    assert "SELECT 1" in sent
    assert [m for m in sent if "/*" in m] == []


@pytest.mark.backends("postgresql", "mariadb")
def test_a_slow_statement_is_logged_with_its_duration_and_tags_and_no_values(
    backend: str, committed_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="app.db.slow")
    engine = make_engine(committed_url, slow_statement_ms=300)
    # A hand-written statement's literals are values too: `?` in the log.
    sleep = {
        "postgresql": f"SELECT pg_sleep(0.4), '{SECRET_HASH}'",
        "mariadb": f"SELECT SLEEP(0.4), '{SECRET_HASH}'",
    }
    logged = {"postgresql": "SELECT pg_sleep(?), ?", "mariadb": "SELECT SLEEP(?), ?"}
    try:
        with UnitOfWork(make_session_factory(engine), name="reports.slow") as uow:
            uow.users.create({"email": SECRET_EMAIL, "hashed_password": SECRET_HASH})
            uow.users.get_by_email(SECRET_EMAIL)
            uow.session.execute(text(sleep[_server(backend)]))
    finally:
        engine.dispose()
    slow = [r.getMessage() for r in caplog.records if r.name == "app.db.slow"]
    assert len(slow) == 1
    assert slow[0].startswith("slow statement, ")
    assert slow[0].endswith(
        f"{logged[_server(backend)]} /*action='reports.slow',application='app'*/"
    )
    assert caplog.records[-1].levelno == logging.WARNING
    assert SECRET_EMAIL not in caplog.text
    assert SECRET_HASH not in caplog.text


def test_no_statement_is_called_slow_without_a_threshold(
    committed_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="app.db.slow")
    engine = make_engine(committed_url)
    try:
        with UnitOfWork(make_session_factory(engine)) as uow:
            uow.users.count()
    finally:
        engine.dispose()
    assert [r for r in caplog.records if r.name == "app.db.slow"] == []


# -- OpenTelemetry -------------------------------------------------------------------------------


class Telemetry:
    """What the in-memory exporters received."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.instrumentation: Instrumentation = instrument(
            tracer_provider, MeterProvider(metric_readers=[self.reader])
        )

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def units(self) -> list[ReadableSpan]:
        return [
            span for span in self.spans() if span.attributes and "app.unit.name" in span.attributes
        ]

    def metrics(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found

    def everything_exported(self) -> str:
        """Every span's name, attributes and events and every metric's attributes, as text."""
        parts = [
            repr((span.name, dict(span.attributes or {}), span.events)) for span in self.spans()
        ]
        parts += [
            repr(dict(point.attributes)) for points in self.metrics().values() for point in points
        ]
        return "\n".join(parts)


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    telemetry = Telemetry()
    yield telemetry
    telemetry.instrumentation.uninstrument()


def _register(uow: UnitOfWork) -> None:
    uow.users.create({"email": SECRET_EMAIL, "hashed_password": SECRET_HASH})
    uow.users.get_by_email(SECRET_EMAIL)


def test_a_unit_is_a_span_with_a_child_span_per_statement_and_no_value_anywhere(
    backend: str, otel: Telemetry, committing_factory: Any
) -> None:
    run_in_transaction(_register, session_factory=committing_factory)
    with pytest.raises(ConflictError):
        run_in_transaction(_register, session_factory=committing_factory)

    first, second = otel.units()
    assert first.name == f"{__name__}._register"
    assert first.attributes is not None
    assert second.attributes is not None
    assert first.attributes["app.unit.outcome"] == "committed"
    assert first.attributes["app.unit.read_only"] is False
    assert second.attributes["app.unit.outcome"] == "failed"
    assert second.attributes["error.type"] == "ConflictError"
    children = [s for s in otel.spans() if s.parent and s.parent.span_id == first.context.span_id]
    assert len(children) == first.attributes["app.unit.statements"] >= 2
    system = {"sqlite": "sqlite", "postgresql": "postgresql"}.get(backend, "mariadb")
    assert {child.attributes["db.system.name"] for child in children if child.attributes} == {
        system
    }
    assert {child.attributes["db.operation.name"] for child in children if child.attributes} >= {
        "INSERT",
        "SELECT",
    }
    refused = [s for s in otel.spans() if s.parent and s.parent.span_id == second.context.span_id]
    # On PostgreSQL the unit's BEGIN, and the query of its transaction's id, go with the INSERT
    # in one round trip (`app.dialects.deferred_begin`): no statement of their own.
    assert [s.attributes["db.operation.name"] for s in refused if s.attributes] == ["INSERT"]
    assert not refused[-1].status.is_ok
    exported = otel.everything_exported()
    assert SECRET_EMAIL not in exported
    assert SECRET_HASH not in exported

    metrics = otel.metrics()
    assert sum(point.count for point in metrics["app.db.unit.duration"]) == 2
    assert sum(point.sum for point in metrics["app.db.unit.statements"]) >= 3
    errors = metrics["app.db.unit.errors"]
    assert [(p.attributes["error.type"], p.value) for p in errors] == [("ConflictError", 1)]
    assert sum(point.count for point in metrics["db.client.operation.duration"]) >= 3
    assert "db.client.connection.count" in metrics


def test_retries_are_counted_and_each_attempt_is_a_span(
    otel: Telemetry, committing_factory: Any
) -> None:
    attempts = []

    def flaky(uow: UnitOfWork) -> None:
        uow.users.count()
        attempts.append(1)
        if len(attempts) < 3:
            raise RetryableError("a serialization failure, as the database would report it")

    run_in_transaction(flaky, session_factory=committing_factory, backoff=0.001)
    units = otel.units()
    assert [u.attributes["app.unit.attempt"] for u in units if u.attributes] == [1, 2, 3]
    retries = otel.metrics()["app.db.unit.retries"]
    assert [(p.attributes["error.type"], p.value) for p in retries] == [("RetryableError", 2)]


def test_an_asyncio_unit_is_traced_the_same_way(
    backend: str, otel: Telemetry, committed_url: str, committing_factory: Any
) -> None:
    async def register(uow: AsyncUnitOfWork) -> None:
        await uow.users.create({"email": SECRET_EMAIL, "hashed_password": SECRET_HASH})

    async def scenario() -> None:
        engine = make_async_engine(committed_url)
        await run_in_transaction_async(
            register, session_factory=make_async_session_factory(engine), name="signup"
        )
        await engine.dispose()

    asyncio.run(scenario())
    (unit,) = otel.units()
    assert unit.name == "signup"
    assert unit.attributes is not None
    assert unit.attributes["app.unit.outcome"] == "committed"
    children = [s for s in otel.spans() if s.parent and s.parent.span_id == unit.context.span_id]
    # The user's insert, and the commit's receipt where it is a statement: MariaDB's marker row,
    # inserted last. PostgreSQL's, the transaction's id, goes with the BEGIN in the insert's
    # round trip; SQLite's COMMIT cannot lose its answer: none.
    expected = {"postgresql": ["INSERT"], "sqlite": ["INSERT"]}
    operations = [c.attributes["db.operation.name"] for c in children if c.attributes]
    assert operations == expected.get(backend, ["INSERT", "INSERT"])
    assert SECRET_EMAIL not in otel.everything_exported()


def test_a_traced_units_statements_carry_its_traceparent(
    otel: Telemetry, committing_factory: Any, statements: Callable[[], list[str]]
) -> None:
    with UnitOfWork(committing_factory, name="traced") as uow:
        uow.users.count()
    (unit,) = otel.units()
    context = unit.context
    traceparent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    sent = [m for m in statements() if _looks_like_sql(m)]
    assert sent[-1].endswith(f"/*action='traced',application='app',traceparent='{traceparent}'*/")


# Hand-written statements whose every literal holds a marker, as each server reads them, and
# the text a span or log line shows.
_MARKED: dict[str, list[tuple[str, str]]] = {
    "common": [
        ("SELECT 'ZQMARK', 'it''s ZQMARK'", "SELECT ?, ?"),
        ("SELECT 7351973519, 7.351973519e10, -.7351973519", "SELECT ?, ?, ?"),
        ("SELECT 'ZQMARK' -- a note, with it's quote", "SELECT ? -- a note, with it's quote"),
        ("SELECT /* 'a note' */ 'ZQMARK'", "SELECT /* 'a note' */ ?"),
    ],
    "postgresql": [
        ("SELECT $$ZQMARK$$, $tag$ZQ'MARK$tag$", "SELECT ?, ?"),
        ("SELECT E'a\\'ZQMARK', U&'ZQMARK'", "SELECT ?, U&?"),
        ("SELECT 'a\\', 'ZQMARK'", "SELECT ?, ?"),
        ('SELECT 1 AS "ZQ""name"', 'SELECT ? AS "ZQ""name"'),
    ],
    "mariadb": [
        ('SELECT \'a\\\'ZQMARK\', "ZQMARK", "a\\"ZQMARK"', "SELECT ?, ?, ?"),
        ("SELECT 0x5A514D41524B, 0b0101101001010001, _utf8mb4'ZQMARK'", "SELECT ?, ?, _utf8mb4?"),
        ("SELECT 7351973519--7351973519", "SELECT ?-?"),
        ("SELECT 'ZQMARK' # a note", "SELECT ? # a note"),
        ("SELECT 1 AS `ZQ``name`", "SELECT ? AS `ZQ``name`"),
    ],
    "sqlite": [
        ("SELECT \"ZQMARK\", X'5A514D41524B', 0x5A514D41524B", "SELECT ?, X?, ?"),
    ],
}


def test_no_literal_of_hand_written_sql_reaches_a_span_or_the_slow_log(
    backend: str,
    otel: Telemetry,
    committed_url: str,
    caplog: pytest.LogCaptureFixture,
    statements: Callable[[], list[str]],
) -> None:
    """Each kind of literal the server reads, in its own syntax: `?` in the span's
    `db.query.text` and in the slow-statement log. After a trailing line comment the tags go
    on a line of their own, where the comment does not swallow them."""
    caplog.set_level(logging.INFO, logger="app.db.slow")  # the handler keeps the echo too
    marked = _MARKED["common"] + _MARKED[_server(backend)]
    engine = make_engine(committed_url, slow_statement_ms=0.000001)
    try:
        with UnitOfWork(make_session_factory(engine), name="reports.marked") as uow:
            for statement, _shown in marked:
                uow.session.execute(text(statement)).one()
    finally:
        engine.dispose()
    shown = [
        span.attributes["db.query.text"]
        for span in otel.spans()
        if span.attributes and "db.query.text" in span.attributes
    ]
    assert shown == [expected for _statement, expected in marked]
    slow = [r.getMessage().partition(": ")[2] for r in caplog.records if r.name == "app.db.slow"]
    tags = "/*action='reports.marked',application='app',traceparent='"
    assert len(slow) == len(marked)
    for logged, (_statement, expected) in zip(slow, marked, strict=True):
        assert logged.startswith(f"{expected} {tags}")
    commented = [m for m in statements() if m.startswith("SELECT 'ZQMARK' -- a note")]
    assert commented == [
        f"SELECT 'ZQMARK' -- a note, with it's quote\n{tags}{commented[0].rpartition(tags)[2]}"
    ]
    for leaked in ("ZQMARK", "7351973519", "5A514D41524B", "0101101001010001"):
        assert leaked not in otel.everything_exported()
        assert leaked not in "\n".join(
            r.getMessage() for r in caplog.records if r.name == "app.db.slow"
        )


def test_a_requests_unit_is_named_after_its_route_on_both_faces(
    committed_url: str, statements: Callable[[], list[str]]
) -> None:
    service = FastAPI()

    @service.get("/users/{user_id}/count")
    def blocking(user_id: str, uow: UnitOfWorkDep) -> int:
        return uow.users.count()

    @service.get("/async/users/{user_id}/count")
    async def awaiting(user_id: str, uow: AsyncUnitOfWorkDep) -> int:
        return await uow.users.count()

    with use_runtime(Runtime(database_url=committed_url)), TestClient(service) as client:
        assert client.get("/users/7/count").json() == 0
        assert client.get("/async/users/7/count").json() == 0
    counts = [m for m in statements() if "FROM users" in m]
    assert [m.rpartition("/*")[2] for m in counts] == [
        "action='GET_/users/{user_id}/count',application='app'*/",
        "action='GET_/async/users/{user_id}/count',application='app'*/",
    ]


@pytest.mark.backends("postgresql")
def test_the_blocking_and_asyncio_pools_of_one_database_are_told_apart(
    otel: Telemetry, committed_url: str
) -> None:
    """psycopg drives both faces under one URL: each pool is its own `pool.name`."""
    blocking = make_engine(committed_url)
    faced = make_async_engine(committed_url)

    async def hold_one() -> None:
        async with faced.connect() as connection:
            await connection.execute(text("SELECT 1"))
            ours = mask_url(blocking.url)
            names = {
                point.attributes["db.client.connection.pool.name"]: point.value
                for point in otel.metrics()["db.client.connection.count"]
                if point.attributes["db.client.connection.state"] == "used"
                # this test's database only: other tests' engines may still be alive
                and point.attributes["db.client.connection.pool.name"]
                in (ours, f"{ours} (asyncio)")
            }
            assert names == {ours: 0, f"{ours} (asyncio)": 1}, names

    try:
        with blocking.connect() as connection:
            connection.execute(text("SELECT 1"))
        asyncio.run(hold_one())
    finally:
        blocking.dispose()
        asyncio.run(faced.dispose())
