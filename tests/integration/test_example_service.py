"""The example service: its own tests on every backend, and a load over real HTTP under uvicorn."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.pool import NullPool

from app.db.session import make_engine
from app.migrations import upgrade
from tests.backends import ROOT, SERVER_URLS, ThrowawayDatabases

SERVICE = ROOT / "examples" / "service"
PASSWORD = "correct horse battery staple"


def test_the_example_services_own_tests_pass(backend: str) -> None:
    database_url = "sqlite:///./app.db" if backend == "sqlite" else SERVER_URLS[backend]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=SERVICE, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "DATABASE_URL": database_url, "APP_ENV": "test"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "10 passed" in result.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(
    backend: str, databases: ThrowawayDatabases, tmp_path: Path
) -> Iterator[tuple[str, Engine]]:
    """The example under uvicorn on 127.0.0.1, on a migrated database of its own."""
    url = databases.new_url(backend, "service").render_as_string(hide_password=False)
    engine = make_engine(url, poolclass=NullPool)
    upgrade(engine)
    port = _free_port()
    log = (tmp_path / "uvicorn.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "service:app", "--host", "127.0.0.1",
         "--port", str(port), "--no-access-log", "--timeout-keep-alive", "120"],
        cwd=SERVICE, env={**os.environ, "DATABASE_URL": url, "APP_ENV": "test",
                          "DB_POOL_SIZE": "10", "DB_MAX_OVERFLOW": "10"},
        stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError("the service did not start")
        yield base, engine
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        engine.dispose()


@pytest.mark.backends("postgresql")
def test_two_thousand_requests_at_concurrency_fifty_over_real_http(
    served: tuple[str, Engine],
) -> None:
    base, engine = served
    statuses: list[int] = []
    created_items: list[str] = []
    registered: list[int] = []

    async def load() -> None:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
            owner = await client.post("/users", json={"email": "owner@example.com",
                                                      "password": PASSWORD})  # fmt: skip
            owner_id = owner.json()["id"]
            queue: asyncio.Queue[int] = asyncio.Queue()
            for n in range(2000):
                queue.put_nowait(n)

            async def worker() -> None:
                # A mix of the service's calls; one in twenty registers a user (argon2 is slow
                # on purpose, and would otherwise be all this measures).
                while not queue.empty():
                    n = queue.get_nowait()
                    kind = n % 20
                    if kind < 6:
                        response = await client.post(
                            f"/users/{owner_id}/items", json={"title": f"item {n}"}
                        )
                        if response.status_code == 201:
                            created_items.append(response.json()["id"])
                    elif kind < 11:
                        response = await client.get("/items", params={"limit": 20})
                    elif kind < 15:
                        response = await client.get(f"/users/{owner_id}")
                    elif kind < 19 and created_items:
                        item_id = created_items[n % len(created_items)]
                        current = await client.get(f"/items/{item_id}")
                        response = await client.patch(
                            f"/items/{item_id}", json={"description": f"edit {n}"},
                            headers={"If-Match": current.headers["ETag"]},
                        )  # fmt: skip
                        if response.status_code in (409, 412):  # another task was first
                            response = current
                    else:
                        response = await client.post("/users", json={
                            "email": f"u{n}@example.com", "password": PASSWORD})  # fmt: skip
                        registered.append(response.status_code)
                    statuses.append(response.status_code)

            await asyncio.gather(*(worker() for _ in range(50)))
            health = (await client.get("/health")).json()
            assert health["connections_in_use"] == 0

    asyncio.run(load())
    assert len(statuses) == 2000
    assert not [status for status in statuses if status >= 500]
    assert set(statuses) <= {200, 201}, Counter(statuses)
    with engine.connect() as connection:
        stored = set(connection.scalars(text("SELECT id::text FROM items")))
        users = connection.execute(text("SELECT count(*) FROM users")).scalar()
    assert stored == set(created_items)
    assert users == 1 + registered.count(201)
