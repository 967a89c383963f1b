"""A statement sent through the driver's cursor, below SQLAlchemy's execution: for the few
statements of a commit receipt, where SQLAlchemy's events, compilation and result machinery
cost as much again as the round trip itself on a nearby server."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc

from app.db.error_events import scrub
from app.db.errors import translate
from app.db.telemetry import observation_of
from app.dialects import deferred_begin


def driver_value(connection: Connection, statement: str, parameters: tuple[Any, ...] = ()) -> Any:
    """The first value of the first row `statement` returns (None: no row, or no rows at
    all), in the transaction on `connection` (either face: the asyncio one's cursor is
    SQLAlchemy's adapter, awaited inside its greenlet). Tagged, timed and observed as any
    statement; the driver's error raised as the engine would translate it. `parameters` go
    by the driver's `%s` placeholders."""
    dbapi = connection.dialect.loaded_dbapi
    deferred_begin.begin_now(connection)
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    observed = observation_of(connection).driver_statement(connection, statement)
    try:
        with observed as sent:
            try:
                cursor.execute(sent, parameters or None)
                row = cursor.fetchone() if cursor.description else None
            except dbapi.Error as exc:
                lost = connection.dialect.is_disconnect(exc, None, None)
                wrapped = sa_exc.DBAPIError.instance(
                    sent, None, exc, dbapi.Error, connection_invalidated=lost
                )
                translated = translate(wrapped, connected=not lost)
                if translated is not wrapped and connection.engine.hide_parameters:
                    scrub(exc)
                raise translated from exc
    finally:
        cursor.close()
    return None if row is None else row[0]
