"""A database host that vanishes without a word: no reset, no answer, every packet lost. Each
call (a statement, COMMIT, the pre-ping of a pooled connection, a new connection) returns
within DB_CONNECT_TIMEOUT + DB_STATEMENT_TIMEOUT + 10 s with a `DatabaseUnavailableError`, on
both faces, and `asyncio.timeout(t)` around a statement returns within t + 1 s.

The client (`tests.vanishing`) runs in a private network namespace joined to this one by a veth
pair; it reaches the database through a proxy of ours listening on this side's end of the
pair. Cutting the link (`ip link set ... down`) loses every packet both ways, as a host that
lost power does; the proxy and the server see nothing.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.backends import required_backends
from tests.faults import CuttingProxy
from tests.vanishing import ASYNC_STEPS, ASYNCIO_TIMEOUT, STEPS

pytestmark = pytest.mark.backends("postgresql", "mariadb")

CONNECT_TIMEOUT, STATEMENT_TIMEOUT = 2, 3
BOUND = CONNECT_TIMEOUT + STATEMENT_TIMEOUT + 10
ROOT = Path(__file__).resolve().parents[2]
_links = count()


def _ip(*arguments: str) -> None:
    subprocess.run(["ip", *arguments], check=True, capture_output=True, text=True)


def _mac(*namespace_and_device: str) -> str:
    shown = subprocess.run(
        ["ip", *namespace_and_device[:-1], "-j", "link", "show", "dev", namespace_and_device[-1]],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return str(json.loads(shown.stdout)[0]["address"])


@dataclass
class Link:
    """A network namespace joined to this one by a veth pair: `device` and `here` (this side's
    address), `far` and `there` (the namespace's)."""

    namespace: str
    device: str
    here: str
    far: str
    there: str

    def cut(self) -> None:
        _ip("link", "set", self.device, "down")

    def heal(self) -> None:
        _ip("link", "set", self.device, "up")
        # Each side knows the other's hardware address for good: after the outage no address
        # resolution has to fail first and time out before traffic flows again.
        far_mac = _mac("-n", self.namespace, self.far)
        here_mac = _mac(self.device)
        _ip("neigh", "replace", self.there, "lladdr", far_mac, "dev", self.device,
            "nud", "permanent")  # fmt: skip
        _ip("-n", self.namespace, "neigh", "replace", self.here, "lladdr", here_mac,
            "dev", self.far, "nud", "permanent")  # fmt: skip
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            shown = subprocess.run(
                ["ip", "-n", self.namespace, "-j", "link", "show", "dev", self.far],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            if json.loads(shown.stdout)[0].get("operstate") == "UP":
                return
            time.sleep(0.05)


def _line(client: subprocess.Popen[str]) -> str:
    """The client's next line; a client that says nothing for longer than any bound has hung."""
    assert client.stdout is not None
    ready, _, _ = select.select([client.stdout], [], [], BOUND + 30)
    assert ready, "the client said nothing for longer than any of its calls may take"
    return client.stdout.readline()


def _unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "making a network namespace needs root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    return None


@pytest.fixture
def link() -> Iterator[Link]:
    reason = _unavailable_reason()
    if reason is not None:
        # Where the backends are required (CI, as root), a test that cannot run has failed.
        (pytest.fail if required_backends() else pytest.skip)(reason)
    number = (os.getpid() * 7 + next(_links)) % 250
    namespace, device, far = f"app-vanish-{number}", f"appv{number}h", f"appv{number}n"
    here, there = f"10.250.{number}.1", f"10.250.{number}.2"
    _ip("netns", "add", namespace)
    try:
        _ip("link", "add", device, "type", "veth", "peer", "name", far)
        _ip("link", "set", far, "netns", namespace)
        _ip("addr", "add", f"{here}/30", "dev", device)
        _ip("link", "set", device, "up")
        for command in (("addr", "add", f"{there}/30", "dev", far), ("link", "set", far, "up")):
            _ip("netns", "exec", namespace, "ip", *command)
        made = Link(namespace, device, here, far, there)
        made.heal()
        yield made
    finally:
        subprocess.run(["ip", "link", "del", device], capture_output=True, check=False)
        _ip("netns", "del", namespace)


@pytest.mark.parametrize("face", ["sync", "async"])
def test_every_call_to_a_vanished_host_returns_within_its_bounds(
    committed_engine: Engine, committing_factory: object, link: Link, face: str
) -> None:
    url = committed_engine.url
    proxy = CuttingProxy((str(url.host), int(url.port or 0)), listen=link.here)
    through = url.set(host=link.here, port=proxy.port).render_as_string(hide_password=False)
    environment = {
        **os.environ,
        "DATABASE_URL": through,
        "DB_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
        "DB_STATEMENT_TIMEOUT": str(STATEMENT_TIMEOUT),
        "PYTHONPATH": str(ROOT),
    }
    command = ["ip", "netns", "exec", link.namespace, sys.executable, "-m", "tests.vanishing"]
    client = subprocess.Popen(
        [*command, face],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
        cwd=ROOT,
    )
    assert client.stdin is not None
    assert client.stdout is not None
    results = []
    try:
        for step in STEPS if face == "sync" else ASYNC_STEPS:
            assert _line(client).strip() == f"ready {step}"
            link.cut()
            client.stdin.write("go\n")
            client.stdin.flush()
            results.append(json.loads(_line(client)))
            link.heal()
            client.stdin.write("healed\n")
            client.stdin.flush()
        assert client.wait(timeout=60) == 0
    finally:
        if client.poll() is None:
            client.kill()
        link.heal()
        proxy.close()
    unavailable = {"DatabaseUnavailableError", "ConnectionLostError", "CommitOutcomeUnknownError"}
    out_of_bounds = []
    for result in results:
        if result["step"] == "asyncio-timeout":
            bounded = result["error"] == "TimeoutError" and result["seconds"] < ASYNCIO_TIMEOUT + 1
        else:
            bounded = result["error"] in unavailable and result["seconds"] < BOUND
        if not bounded:
            out_of_bounds.append(result)
    print(json.dumps(results))  # (the figures, with -s)
    assert not out_of_bounds, f"{out_of_bounds} of {results}"
