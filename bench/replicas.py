"""Read replicas: a read-only unit on the replica against the same unit on the primary, what
`after=token` adds, and what a commit's token costs. On a primary and replica started for the run
by the tests' helper (scripts/pg-cluster.sh on free ports under a temporary directory)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import Engine, text
from tests.topologies import PostgresPair, postgres_pair_unavailable_reason

from app.db.session import make_engine, make_session_factory
from app.migrations import upgrade
from app.repositories import UnitOfWork
from app.topology.replicas import ReplicaSet
from bench.harness import Measurement, measure_interleaved, running

PRIMARY, REPLICA = "read-only unit, primary", "read-only unit, replica"
ASKED, KNOWN = "replica, after= (position asked)", "replica, after= (position known)"
COMMIT, COMMIT_TOKEN = "write unit, commit", "write unit, commit with token"
RATIOS = [
    ("replicas", REPLICA, PRIMARY, "target >= 0.91x (<= 1.1x the time)"),
    ("replicas", KNOWN, REPLICA, "report: a token the last check already covers"),
    ("replicas", ASKED, REPLICA, "report: one position query on the replica"),
    ("replicas", COMMIT_TOKEN, COMMIT, "report: the token's WAL position query"),
]


def run_replicas(*, count: int, repeat: int) -> list[Measurement]:
    """`count` units per run on each path."""
    started = running(
        "replicas", postgres_pair_unavailable_reason(), PostgresPair, "a primary and a replica"
    )
    with started as pair:
        if pair is None:
            return []
        primary = make_engine(pair.url("primary"))
        replicas = ReplicaSet.build(primary, [pair.url("replica")], max_lag=5.0)
        replicas.check_every = 3600.0  # the bench decides when the replica's position is known
        try:
            upgrade(primary)
            return _measure(primary, replicas, count, repeat)
        finally:
            replicas.close()
            primary.dispose()


def _measure(primary: Engine, replicas: ReplicaSet, count: int, repeat: int) -> list[Measurement]:
    factory = make_session_factory(primary)
    with UnitOfWork(factory, replicas=replicas) as uow:
        user_id = uow.users.create({"email": "reader@example.com", "hashed_password": "h"}).id
        token = uow.commit()
    _wait_replayed(replicas, token)

    def reads(use: ReplicaSet | None, after: Callable[[], str | None]) -> Callable[[], int]:
        def run() -> int:
            for _ in range(count):
                with UnitOfWork(factory, read_only=True, after=after(), replicas=use) as uow:
                    uow.users.get_one(user_id)
            return count

        return run

    def writes(use: ReplicaSet | None) -> Callable[[], int]:
        def run() -> int:
            for _ in range(count):
                with UnitOfWork(factory, replicas=use) as uow:
                    uow.users.create(
                        {"email": f"{uuid.uuid4()}@example.com", "hashed_password": "h"}
                    )
                    uow.commit()
            return count

        return run

    def known() -> None:
        replicas.check()

    def asked() -> None:
        # A commit the last check did not see, replayed since: the unit must ask the replica.
        with UnitOfWork(factory, replicas=replicas) as uow:
            uow.users.update(user_id, {"full_name": uuid.uuid4().hex})
            fresh[0] = uow.commit()
        _wait_replayed(replicas, fresh[0])

    fresh = [token]
    paths: list[tuple[str, Callable[[], int], Callable[[], None]]] = [
        (PRIMARY, reads(None, lambda: None), known),
        (REPLICA, reads(replicas, lambda: None), known),
        (KNOWN, reads(replicas, lambda: token), known),
        (ASKED, reads(replicas, lambda: fresh[0]), asked),
        (COMMIT, writes(None), known),
        (COMMIT_TOKEN, writes(replicas), known),
    ]
    return measure_interleaved("postgresql", "replicas", paths, repeat=repeat, unit="tx")


def _wait_replayed(replicas: ReplicaSet, token: str) -> None:
    engine = replicas.replicas[0].engine
    for _ in range(1000):
        with engine.connect() as connection:
            if connection.scalar(
                text("SELECT pg_last_wal_replay_lsn() >= CAST(:t AS pg_lsn)"), {"t": token}
            ):
                return
    raise RuntimeError("the replica did not replay the commit")
