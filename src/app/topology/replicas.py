"""Read replicas of a PostgreSQL primary: which one a read-only unit of work may use, and commit
tokens that let a later unit read its own writes.

A monitor thread checks every replica once a second (its replay position and how far behind the
primary it is), so choosing a replica costs no round trip: a replica that is down or lags more
than `max_lag` seconds is passed over, and used again once a check finds it back and caught up.

A commit token is the primary's write-ahead-log position after the commit (`pg_current_wal_lsn`).
A replica serves `after=token` once it has replayed that far: known from the last check, or else
found out with one cheap position query on the replica; otherwise the primary serves.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import sessionmaker

from app.config import mask_url
from app.db.errors import DataLayerError, InvalidQueryError
from app.db.session import (
    DataSession,
    make_async_engine,
    make_async_session_factory,
    make_engine,
    make_session_factory,
)

# The token of a commit that no replica needs to wait for: no replicas, or not PostgreSQL.
ANY_POSITION = "0/0"
CHECK_EVERY_SECONDS = 1.0
# How long a check waits for a replica to replay what the primary had written when the check
# began, before it judges the lag by older evidence (the last check, the last replayed commit).
CATCH_UP_WAIT_SECONDS = 0.25

_REPLICA_STATE = text(
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "
    "EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())"
)

# PostgreSQL's text form of a WAL position: two 32-bit halves in hex (int() alone would take
# signs, spaces, underscores, "0x" and digits of other scripts).
_TOKEN = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")

_REPLAYED = text("SELECT pg_last_wal_replay_lsn()::text")


def position(token: str) -> int:
    """A commit token (a WAL position such as `16/B374D848`) as a number; a malformed token is
    an InvalidQueryError."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise InvalidQueryError(
            "after= is not a commit token: pass what UnitOfWork.commit() returned"
        )
    high, _, low = token.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def _replayed_within(
    connection: Connection, replayed: str | None, wanted: int, read_at: float
) -> tuple[str | None, float]:
    """The replica's replay position once it reaches `wanted`, or as it stands when
    CATCH_UP_WAIT_SECONDS have passed since `read_at`; and the seconds it took to get there (0.0
    if it had already). WAL the primary wrote just before the check (a commit, a checkpoint) is
    usually replayed within milliseconds, and a single check (`app db info`) has no earlier one
    to judge the lag by."""
    waited = 0.0
    while position(replayed or ANY_POSITION) < wanted:
        waited = time.monotonic() - read_at
        if waited >= CATCH_UP_WAIT_SECONDS:
            break
        time.sleep(0.01)
        replayed = connection.scalar(_REPLAYED)
        waited = time.monotonic() - read_at
    return replayed, waited


@dataclass
class Replica:
    """One replica and what the last check found."""

    url: URL
    engine: Engine
    session_factory: sessionmaker[DataSession]
    healthy: bool = False
    replayed: int = 0
    lag: float | None = None
    problem: str = "not checked yet"

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)


@dataclass
class ReplicaSet:
    """The replicas of one primary, checked in the background; see the module's docstring."""

    primary: Engine
    replicas: list[Replica]
    max_lag: float
    check_every: float = CHECK_EVERY_SECONDS
    engine_options: dict[str, Any] = field(default_factory=dict)
    # asyncio engines belong to the event loop that opened their connections: one set per loop.
    _async_factories: weakref.WeakKeyDictionary[
        asyncio.AbstractEventLoop, dict[int, async_sessionmaker[AsyncSession]]
    ] = field(default_factory=weakref.WeakKeyDictionary)
    _turn: itertools.count[int] = field(default_factory=itertools.count)
    _previous_position: int | None = None
    _started: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @classmethod
    def build(
        cls, primary: Engine, urls: list[URL], *, max_lag: float, **engine_options: Any
    ) -> ReplicaSet:
        """Engines for the replicas at `urls` (with `engine_options`), checked against
        `primary`. Nothing connects until the first read-only unit of work."""
        replicas = []
        for url in urls:
            engine = make_engine(url, **engine_options)
            replicas.append(Replica(url, engine, make_session_factory(engine)))
        return cls(primary, replicas, max_lag, engine_options=engine_options)

    def async_session_factory(self, replica: Replica) -> async_sessionmaker[AsyncSession]:
        """Sessions of the asyncio engine for `replica` in the running event loop."""
        per_loop = self._async_factories.setdefault(asyncio.get_running_loop(), {})
        index = self.replicas.index(replica)
        if index not in per_loop:
            engine = make_async_engine(replica.url, **self.engine_options)
            per_loop[index] = make_async_session_factory(engine)
        return per_loop[index]

    async def dispose_async(self) -> None:
        """Close the running event loop's asyncio engines (before the loop ends)."""
        for factory in self._async_factories.pop(asyncio.get_running_loop(), {}).values():
            await factory.kw["bind"].dispose()

    @property
    def started(self) -> bool:
        return self._started

    def check(self) -> None:
        """Check every replica now: up, in recovery, how far replayed and how far behind."""
        read_at = time.monotonic()
        try:
            with self.primary.connect() as connection:
                primary_position = position(
                    connection.scalar(text("SELECT pg_current_wal_lsn()::text")) or ANY_POSITION
                )
        except (SQLAlchemyError, DataLayerError):  # its failures show in the units of work
            primary_position = None
        for replica in self.replicas:
            self._check_one(replica, primary_position, read_at)
        self._previous_position = primary_position

    def _check_one(self, replica: Replica, primary_position: int | None, read_at: float) -> None:
        try:
            with replica.engine.connect() as connection:
                in_recovery, replayed, behind = connection.execute(_REPLICA_STATE).one()
                caught_up_in = 0.0
                if in_recovery and primary_position is not None:
                    replayed, caught_up_in = _replayed_within(
                        connection, replayed, primary_position, read_at
                    )
        except (SQLAlchemyError, DataLayerError) as exc:
            replica.healthy, replica.lag, replica.problem = False, None, type(exc).__name__
            return
        if not in_recovery:
            replica.healthy, replica.problem = False, "not a replica (not in recovery)"
            return
        replica.replayed = position(replayed or ANY_POSITION)
        if primary_position is not None and replica.replayed >= primary_position:
            # It replayed what the primary had written when the check began (at once, or within
            # what this check waited for it).
            replica.lag = round(caught_up_in, 3)
        elif self._previous_position is not None and replica.replayed >= self._previous_position:
            # Everything the primary had written a check ago is replayed: at most that behind
            # (the primary writes WAL without commits too, checkpoints for one).
            replica.lag = self.check_every
        else:
            # Behind: by the age of the last commit it replayed (an idle replica's last replayed
            # commit grows old, which is why the positions come first).
            replica.lag = 0.0 if behind is None else max(float(behind), 0.0)
        replica.healthy = replica.lag <= self.max_lag
        replica.problem = "" if replica.healthy else f"lags {replica.lag:.1f} s"

    def start(self) -> None:
        """Check once now, then every `check_every` seconds in a daemon thread."""
        with self._lock:
            if self._started:
                return
            self._started = True
        self.check()
        self._thread = threading.Thread(target=self._monitor, name="replica-monitor", daemon=True)
        self._thread.start()

    def _monitor(self) -> None:
        while not self._stop.wait(self.check_every):
            self.check()

    def choose(self, after: str | None) -> tuple[Replica | None, bool]:
        """A healthy replica (taking turns), or None for the primary; and whether the replica
        must still be asked if it has replayed `after` (the last check does not show it)."""
        self.start()
        wanted = position(after) if after else 0
        healthy = [replica for replica in self.replicas if replica.healthy]
        if not healthy:
            return None, False
        turn = next(self._turn)
        ordered = healthy[turn % len(healthy) :] + healthy[: turn % len(healthy)]
        for replica in ordered:
            if replica.replayed >= wanted:
                return replica, False
        return ordered[0], True

    def mark_down(self, replica: Replica, problem: str) -> None:
        """A unit of work could not use `replica`: skip it until a check finds it back."""
        replica.healthy, replica.problem = False, problem

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for replica in self.replicas:
            replica.engine.dispose()


def has_replayed(connection: Connection, after: str) -> bool:
    """Whether the replica behind `connection` has replayed the commit of token `after`."""
    return bool(
        connection.scalar(
            text("SELECT pg_last_wal_replay_lsn() >= CAST(:after AS pg_lsn)"), {"after": after}
        )
    )
