"""A three-node Galera cluster against the single MariaDB server: units of three writes on one
node, and what causal reads cost, on a quiet cluster and while another node writes.

The cluster is started for the run by the tests' helper (scripts/galera-cluster.sh on free
ports under a temporary directory) and stopped at the end.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from tests.topologies import GaleraCluster, galera_unavailable_reason

from app.db.session import make_engine, make_session_factory
from app.repositories import UnitOfWork, run_in_transaction
from bench.harness import SERVER_URLS, Measurement, bench_database, measure_interleaved, running
from bench.ingest import reset
from bench.transactions import _unit_of_work

SINGLE, NODE, NODE_NO_WAIT = "single MariaDB", "Galera node", "Galera node, causal reads off"
THREE_NODES = "Galera, a thread per node"
CONTENDERS = 3
RATIOS = [
    ("galera uow", NODE, SINGLE, "report: certification and replication per commit"),
    ("galera uow", NODE, NODE_NO_WAIT, "report: causal reads on writes"),
    ("galera contended", THREE_NODES, SINGLE, "report: conflicts certified across nodes"),
    ("galera reads", NODE, NODE_NO_WAIT, "report: causal reads, quiet cluster"),
    ("galera reads, node 2 writing", NODE, NODE_NO_WAIT, "report: causal reads under writes"),
]


def run_galera(*, count: int, reads: int, repeat: int) -> list[Measurement]:
    """`count` three-write units per run on each path; `reads` point-read units per run."""
    started = running("galera", galera_unavailable_reason(), GaleraCluster, "a three-node cluster")
    with started as cluster:
        if cluster is None:
            return []
        SERVER_URLS["galera"] = cluster.url().render_as_string(hide_password=False)
        with bench_database("mariadb") as single, bench_database("galera") as node:
            database = node.url.database or ""
            no_wait = make_engine(node.url, causal_reads=False)
            other = make_engine(cluster.url(2, database))
            third = make_engine(cluster.url(3, database))
            try:
                return (
                    _units(single, node, no_wait, count, repeat)
                    + _contended(single, [node, other, third], count, repeat)
                    + _reads(node, no_wait, other, reads, repeat)
                )
            finally:
                for engine in (no_wait, other, third):
                    engine.dispose()


def _units(
    single: Engine, node: Engine, no_wait: Engine, count: int, repeat: int
) -> list[Measurement]:
    paths: list[tuple[str, Callable[[], int], Callable[[], None]]] = [
        (path, _unit_of_work(engine, count), lambda engine=engine: reset(engine))
        for path, engine in ((SINGLE, single), (NODE, node), (NODE_NO_WAIT, no_wait))
    ]
    return measure_interleaved("galera", "galera uow", paths, repeat=repeat, unit="tx")


def _increments(engines: list[Engine], count: int) -> Callable[[], int]:
    """CONTENDERS threads, thread n on engines[n % len(engines)], incrementing one counter
    through run_in_transaction, `count` increments in all."""
    factories = [make_session_factory(engine) for engine in engines]

    def increment(uow: UnitOfWork) -> None:
        user = uow.users.get_by_email("counter@example.com")
        assert user is not None
        uow.users.update(user.id, {"full_name": str(int(user.full_name or "0") + 1)})

    def contend(factory: sessionmaker[Session]) -> None:
        for _ in range(count // CONTENDERS):
            run_in_transaction(increment, retries=500, session_factory=factory)

    def run() -> int:
        with UnitOfWork(factories[0]) as uow:
            uow.users.create(
                {"email": "counter@example.com", "hashed_password": "h", "full_name": "0"}
            )
            uow.commit()
        with ThreadPoolExecutor(CONTENDERS) as pool:
            outcomes = [
                pool.submit(contend, factories[n % len(factories)]) for n in range(CONTENDERS)
            ]
            for outcome in outcomes:
                outcome.result()
        return count // CONTENDERS * CONTENDERS

    return run


def _contended(single: Engine, nodes: list[Engine], count: int, repeat: int) -> list[Measurement]:
    paths: list[tuple[str, Callable[[], int], Callable[[], None]]] = [
        (path, _increments(engines, count), lambda engines=engines: reset(engines[0]))
        for path, engines in ((SINGLE, [single]), (THREE_NODES, nodes))
    ]
    return measure_interleaved("galera", "galera contended", paths, repeat=repeat, unit="tx")


def _point_reads(engine: Engine, ids: list[uuid.UUID]) -> Callable[[], int]:
    factory = make_session_factory(engine)

    def run() -> int:
        for user_id in ids:
            with UnitOfWork(factory) as uow:
                uow.users.get_one(user_id)
        return len(ids)

    return run


@contextmanager
def _writing(engine: Engine) -> Iterator[None]:
    """One writer committing units on `engine` for as long as the block runs."""
    stop = threading.Event()
    factory = make_session_factory(engine)

    def write() -> None:
        while not stop.is_set():
            with UnitOfWork(factory) as uow:
                uow.users.create({"email": f"{uuid.uuid4()}@example.com", "hashed_password": "h"})
                uow.commit()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        yield
    finally:
        stop.set()
        writer.join()


def _reads(
    node: Engine, no_wait: Engine, other: Engine, count: int, repeat: int
) -> list[Measurement]:
    reset(node)
    factory = make_session_factory(node)
    with UnitOfWork(factory) as uow:
        uow.users.create_many(
            {"email": f"reader{n}@example.com", "hashed_password": "h"} for n in range(count)
        )
        uow.commit()
    with UnitOfWork(factory) as uow:
        ids = [row.id for row in uow.users.iterate()]
    results = []
    for workload in ("galera reads", "galera reads, node 2 writing"):
        meanwhile: AbstractContextManager[None] = (
            _writing(other) if "writing" in workload else nullcontext()
        )
        paths: list[tuple[str, Callable[[], int], Callable[[], None]]] = [
            (path, _point_reads(engine, ids), _nothing)
            for path, engine in ((NODE, node), (NODE_NO_WAIT, no_wait))
        ]
        with meanwhile:
            results += measure_interleaved("galera", workload, paths, repeat=repeat, unit="tx")
    return results


def _nothing() -> None:
    """The reads change nothing: no reset between runs."""
