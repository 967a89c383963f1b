"""OpenTelemetry for the data layer (`pip install -e ".[otel]"`): a span per unit of work with a
child span per statement, and the metrics a team graphs and alerts on.

    from app.observability import instrument
    instrument()  # the global tracer and meter providers, or pass your own

Spans and metrics name code, servers and error classes, never a value: statement text is the
statement as sent with placeholders, with any literal a hand-written statement holds replaced
by `?`; an error is its class, never its message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation import set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy import Connection

from app.config import mask_url
from app.db import telemetry
from app.db.runtime import get_runtime

_SCOPE = "app.data"
_SYSTEMS = {"mysql": "mariadb"}  # SQLAlchemy's dialect name, where semconv's differs
_propagator = TraceContextTextMapPropagator()


def _operation(statement: str) -> str:
    word = statement.lstrip(" (\n\t").split(None, 1)
    return word[0].upper() if word else ""


@dataclass
class _Statement:
    span: Any
    started: float
    attributes: dict[str, Any]


class Instrumentation:
    """The observer `instrument()` puts in place; `uninstrument()` takes it away."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self._tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, meter_provider=meter_provider)
        self._unit_duration = meter.create_histogram(
            "app.db.unit.duration", unit="s", description="Duration of units of work"
        )
        self._unit_statements = meter.create_histogram(
            "app.db.unit.statements", unit="{statement}", description="Statements per unit"
        )
        self._retries = meter.create_counter(
            "app.db.unit.retries", unit="{retry}", description="Units run again after a failure"
        )
        self._errors = meter.create_counter(
            "app.db.unit.errors", unit="{error}", description="Units that ended with an error"
        )
        self._statement_duration = meter.create_histogram(
            "db.client.operation.duration", unit="s", description="Duration of statements"
        )
        self._wait_time = meter.create_histogram(
            "db.client.connection.wait_time",
            unit="s",
            description="Time a checkout waited for a pooled connection",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.count",
            callbacks=[_connections],
            unit="{connection}",
            description="Pooled connections by state (used, idle)",
        )
        meter.create_observable_gauge(
            "app.db.pool.overflow",
            callbacks=[_overflow],
            unit="{connection}",
            description="Connections open beyond the pool's size",
        )
        meter.create_observable_gauge(
            "app.db.replica.lag",
            callbacks=[_replica_lag],
            unit="s",
            description="How far each read replica is behind its primary (last check)",
        )

    def uninstrument(self) -> None:
        """Stop observing (spans and metrics already made stay with their exporters)."""
        if telemetry.observer() is self:
            telemetry.set_observer(None)

    # -- telemetry.Observer ----------------------------------------------------------------------

    def unit_started(self, unit: telemetry.UnitScope) -> str | None:
        attributes: dict[str, Any] = {
            "app.unit.name": unit.name,
            "app.unit.read_only": unit.read_only,
            "app.unit.attempt": unit.attempt,
        }
        unit.span = self._tracer.start_span(unit.name, attributes=attributes)
        carrier: dict[str, str] = {}
        _propagator.inject(carrier, context=set_span_in_context(unit.span))
        return carrier.get("traceparent")

    def unit_ended(self, unit: telemetry.UnitScope, error: BaseException | None) -> None:
        outcome = "committed" if unit.committed else "rolled_back"
        if error is not None:
            outcome = "failed"
        attributes: dict[str, Any] = {
            "app.unit.name": unit.name,
            "app.unit.read_only": unit.read_only,
            "app.unit.outcome": outcome,
        }
        self._unit_duration.record(time.perf_counter() - unit.started, attributes)
        self._unit_statements.record(unit.statements, {"app.unit.name": unit.name})
        span = unit.span
        if error is not None:
            error_type = type(error).__name__
            self._errors.add(1, {"app.unit.name": unit.name, "error.type": error_type})
            if span is not None:
                span.set_attribute("error.type", error_type)
                span.set_status(Status(StatusCode.ERROR, error_type))
        if span is not None:
            span.set_attribute("app.unit.outcome", outcome)
            span.set_attribute("app.unit.statements", unit.statements)
            if unit.replica is not None:
                span.set_attribute("app.unit.replica", unit.replica)
            span.end()

    def statement_started(
        self, unit: telemetry.UnitScope | None, statement: str, connection: Any
    ) -> _Statement:
        operation = _operation(statement)
        attributes = _connection_attributes(connection)
        if operation:
            attributes["db.operation.name"] = operation
        parent: Context | None = None
        if unit is not None and unit.span is not None:
            parent = set_span_in_context(unit.span)
        span = self._tracer.start_span(
            f"{operation} {attributes.get('db.namespace', '')}".strip() or "statement",
            context=parent,
            kind=SpanKind.CLIENT,
            attributes={
                **attributes,
                "db.query.text": telemetry.observation_of(connection).without_literals(statement),
            },
        )
        return _Statement(span, time.perf_counter(), attributes)

    def statement_ended(self, token: _Statement, error: BaseException | None) -> None:
        attributes = token.attributes
        if error is not None:
            attributes = {**attributes, "error.type": type(error).__name__}
            token.span.set_attribute("error.type", type(error).__name__)
            token.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        self._statement_duration.record(time.perf_counter() - token.started, attributes)
        token.span.end()

    def retried(self, name: str, error: BaseException) -> None:
        self._retries.add(1, {"app.unit.name": name, "error.type": type(error).__name__})

    def pool_waited(self, seconds: float) -> None:
        self._wait_time.record(seconds)


def instrument(tracer_provider: Any = None, meter_provider: Any = None) -> Instrumentation:
    """Trace and measure every unit of work and statement of the project's engines (those
    built before this call too), with the given providers (default: OpenTelemetry's global
    ones). A second call replaces the first."""
    instrumentation = Instrumentation(tracer_provider, meter_provider)
    telemetry.set_observer(instrumentation)
    return instrumentation


def _connection_attributes(connection: Connection) -> dict[str, Any]:
    url = connection.engine.url
    attributes: dict[str, Any] = {
        "db.system.name": _SYSTEMS.get(connection.dialect.name, connection.dialect.name),
    }
    if url.database:
        attributes["db.namespace"] = url.database
    if url.host:
        attributes["server.address"] = url.host
    if url.port:
        attributes["server.port"] = url.port
    return attributes


def _pools() -> dict[str, list[Any]]:
    """The pools of the engines the project built that are still alive, by masked URL (and
    face: psycopg drives both under one URL)."""
    pools: dict[str, list[Any]] = {}
    for engine in telemetry.observed_engines():
        name = mask_url(engine.url) + (" (asyncio)" if engine.dialect.is_async else "")
        pools.setdefault(name, []).append(engine.pool)
    return pools


def _connections(_options: CallbackOptions) -> list[Observation]:
    found: list[Observation] = []
    for name, pools in _pools().items():
        used = sum(_count(pool, "checkedout") for pool in pools)
        idle = sum(_count(pool, "checkedin") for pool in pools)
        for state, count in (("used", used), ("idle", idle)):
            attributes = {
                "db.client.connection.pool.name": name,
                "db.client.connection.state": state,
            }
            found.append(Observation(count, attributes))
    return found


def _overflow(_options: CallbackOptions) -> list[Observation]:
    return [
        Observation(
            sum(max(_count(pool, "overflow"), 0) for pool in pools),
            {"db.client.connection.pool.name": name},
        )
        for name, pools in _pools().items()
    ]


def _count(pool: Any, name: str) -> int:
    # Pools without a queue (SQLite's file pool, NullPool) have no such counts.
    method = getattr(pool, name, None)
    return int(method()) if callable(method) else 0


def _replica_lag(_options: CallbackOptions) -> list[Observation]:
    runtime = get_runtime()
    replicas = runtime.__dict__.get("replicas")  # only once the runtime has built them
    if replicas is None:
        return []
    return [
        Observation(replica.lag, {"app.replica": replica.masked_url})
        for replica in replicas.replicas
        if replica.lag is not None
    ]


__all__ = ["Instrumentation", "instrument"]
