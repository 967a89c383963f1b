"""The example service over real HTTP (uvicorn, 127.0.0.1) against the same endpoints written by
hand with FastAPI and AsyncSession: requests/s and latency percentiles at concurrency 50."""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import Engine

from app.db.session import make_session_factory
from app.repositories import UnitOfWork
from bench.harness import Measurement, console
from bench.ingest import reset

ROOT = Path(__file__).resolve().parent.parent
SERVERS = {
    "example service": ("service:app", ROOT / "examples" / "service"),
    "hand-written FastAPI + SQLAlchemy": ("bench.handwritten_service:app", ROOT),
}
RATIOS = [("web", "example service", "hand-written FastAPI + SQLAlchemy", "target >= 0.9x")]
CONCURRENCY = 50


@contextmanager
def _served(target: str, cwd: Path, url: str) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": url, "APP_ENV": "test", "PYTHONPATH": str(ROOT),
           "DB_POOL_SIZE": "10", "DB_MAX_OVERFLOW": "10"}  # fmt: skip
    server = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
         "--no-access-log", "--timeout-keep-alive", "120", "--log-level", "warning"],
        cwd=cwd, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{base}/items", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


async def _load(base: str, owner: str, items: list[str], requests: int) -> list[float]:
    """`requests` calls of the service's mix, `CONCURRENCY` at a time; each one's seconds."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        queue = list(range(requests))

        async def one(n: int) -> None:
            kind, item = n % 20, items[n % len(items)]
            started = time.perf_counter()
            if kind < 5:
                response = await client.get(f"/users/{owner}")
            elif kind < 10:
                response = await client.get("/items", params={"limit": 20})
            elif kind < 14:
                response = await client.get(f"/items/{item}")
            elif kind < 17:
                response = await client.post(f"/users/{owner}/items", json={"title": f"t{n}"})
            else:
                response = await client.patch(f"/items/{item}", json={"description": f"d{n}"})
            latencies.append(time.perf_counter() - started)
            assert response.status_code < 500, response.text

        async def worker() -> None:
            while queue:
                await one(queue.pop())

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return latencies


def run_web(backend: str, engine: Engine, *, requests: int, repeat: int) -> list[Measurement]:
    """Both servers in turn, `repeat` rounds each, alternating, on the same data."""
    if backend != "postgresql":
        return []
    reset(engine)
    with UnitOfWork(make_session_factory(engine)) as uow:
        owner = uow.users.create({"email": "owner@example.com", "hashed_password": "h"})
        created = [uow.items.create({"title": f"seed {n}", "owner_id": owner.id})
                   for n in range(200)]  # fmt: skip
        uow.commit()
    items = [str(item.id) for item in created]
    url = engine.url.render_as_string(hide_password=False)
    results = {name: Measurement(backend, "web", name, requests, "req") for name in SERVERS}
    latencies: dict[str, list[float]] = {name: [] for name in SERVERS}
    for _ in range(repeat):
        for name, (target, cwd) in SERVERS.items():
            with _served(target, cwd, url) as base:
                asyncio.run(_load(base, str(owner.id), items, requests // 10))  # warm-up
                started = time.perf_counter()
                latencies[name] += asyncio.run(_load(base, str(owner.id), items, requests))
                results[name].seconds.append(time.perf_counter() - started)
    for name, measured in results.items():
        ordered = sorted(latencies[name])
        p50, p99 = statistics.median(ordered), ordered[int(len(ordered) * 0.99)]
        console.print(
            f"  {backend:<10} web      {name:<34} {measured.rate:>8,.0f} req/s  "
            f"p50 {p50 * 1000:.1f} ms  p99 {p99 * 1000:.1f} ms"
        )
    return list(results.values())
