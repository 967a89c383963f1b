"""Timing, targets and reporting shared by the workloads."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TypeVar

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool
from tests.topologies import ScriptedTopology

from app.db.admin import create_database, drop_database
from app.db.session import make_engine
from app.migrations import upgrade

SERVER_URLS = {
    "postgresql": os.environ.get(
        "BENCH_POSTGRESQL_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("BENCH_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
console = Console(highlight=False, width=150)


@dataclass
class Measurement:
    """The median of several timed runs of one path on one backend."""

    backend: str
    workload: str
    path: str
    units: int
    unit: str
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rate(self) -> float:
        return self.units / self.median


def measure(
    backend: str,
    workload: str,
    path: str,
    run: Callable[[], int],
    *,
    reset: Callable[[], None],
    repeat: int,
    unit: str = "rows",
) -> Measurement:
    """Warm up once, then time `repeat` runs of `run`, each after `reset`."""
    reset()
    run()
    result = Measurement(backend, workload, path, units=0, unit=unit)
    for _ in range(repeat):
        reset()
        started = time.perf_counter()
        result.units = run()
        result.seconds.append(time.perf_counter() - started)
    console.print(f"  {backend:<10} {workload:<8} {path:<28} {result.rate:>12,.0f} {unit}/s")
    return result


def measure_interleaved(
    backend: str,
    workload: str,
    paths: list[tuple[str, Callable[[], int], Callable[[], None]]],
    *,
    repeat: int,
    unit: str = "rows",
) -> list[Measurement]:
    """`measure` for several (path, run, reset) at once, in rounds: each round times every path
    once, so a machine that speeds up or slows down during the run weighs on all of them alike
    (needed where the ratios sought are a few percent)."""
    results = [Measurement(backend, workload, path, units=0, unit=unit) for path, _, _ in paths]
    for round_ in range(repeat + 1):  # the first round warms up
        for result, (_, run, reset) in zip(results, paths, strict=True):
            reset()
            started = time.perf_counter()
            units = run()
            if round_:
                result.units = units
                result.seconds.append(time.perf_counter() - started)
    for result in results:
        console.print(
            f"  {backend:<10} {workload:<8} {result.path:<28} {result.rate:>12,.0f} {unit}/s"
        )
    return results


Topology = TypeVar("Topology", bound=ScriptedTopology)


@contextmanager
def running(
    workload: str, unavailable: str | None, make: Callable[[], Topology], what: str
) -> Iterator[Topology | None]:
    """Start a topology of the tests' (`make`) for a workload and stop it afterwards; None,
    said on the console, when it cannot start here (`unavailable` says why)."""
    if unavailable is not None:
        console.print(f"{workload}: {unavailable}, skipped")
        yield None
        return
    topology = make()
    console.print(f"{workload}: starting {what}")
    topology.up()
    try:
        yield topology
    finally:
        topology.down()


@contextmanager
def bench_database(backend: str) -> Iterator[Engine]:
    """A migrated database made for this run, dropped afterwards."""
    with TemporaryDirectory() as tmp:
        name = f"app_bench_{uuid.uuid4().hex[:8]}"
        url: URL = (
            make_url(f"sqlite:///{Path(tmp) / name}.db")
            if backend == "sqlite"
            else make_url(SERVER_URLS[backend]).set(database=name)
        )
        create_database(url)
        engine = make_engine(url, pool_size=5)
        try:
            upgrade(engine)
            yield engine
        finally:
            engine.dispose()
            drop_database(url)


def reachable(backend: str) -> bool:
    if backend == "sqlite":
        return True
    engine = make_engine(SERVER_URLS[backend], poolclass=NullPool, connect_timeout=3)
    try:
        with engine.connect():
            return True
    except Exception:  # any failure to connect means "not here"
        return False
    finally:
        engine.dispose()


def environment() -> dict[str, str]:
    """The machine and versions the figures were measured with."""
    packages = ("sqlalchemy", "alembic", "psycopg", "pymysql", "pydantic")
    return {
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "platform": platform.platform(),
        **{name: version(name) for name in packages},
    }


Ratio = tuple[str, str, str, str]  # workload, path, baseline, target (or "reference")


def report(results: list[Measurement], ratios: list[Ratio], out: Path) -> None:
    """Print the medians and the ratios, and write them as JSON to `out`."""
    table = Table("backend", "workload", "path", "median s", "rate")
    for m in results:
        table.add_row(m.backend, m.workload, m.path, f"{m.median:.3f}", f"{m.rate:,.0f} {m.unit}/s")
    console.print(table)
    found = {(m.backend, m.workload, m.path): m for m in results}
    ratio_rows = []
    ratio_table = Table("backend", "workload", "path", "vs", "ratio")
    for backend in sorted({m.backend for m in results}):
        for workload, path, baseline, note in ratios:
            ours, base = (
                found.get((backend, workload, path)),
                found.get((backend, workload, baseline)),
            )
            if ours is None or base is None:
                continue
            value = ours.rate / base.rate
            ratio_rows.append(
                {"backend": backend, "workload": workload, "path": path, "baseline": baseline,
                 "ratio": round(value, 3), "target": note}
            )  # fmt: skip
            ratio_table.add_row(backend, workload, path, baseline, f"{value:.2f}x  {note}")
    console.print(ratio_table)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "environment": environment(),
        "results": [asdict(m) | {"median": m.median, "rate": m.rate} for m in results],
        "ratios": ratio_rows,
    }
    out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    console.print(f"wrote {out}")
