"""Multi-node topologies the tests start once per session, through the project's own scripts,
under a temporary directory and on free ports; stopped by their own pids at the end."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import URL, make_url

ROOT = Path(__file__).resolve().parent.parent
GALERA_SCRIPT = ROOT / "scripts" / "galera-cluster.sh"
GALERA_PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_runs(count: int, width: int, taken: set[int]) -> list[int]:
    """`count` ports, each the first of `width` consecutive free ports, none in `taken`."""
    found: list[int] = []
    while len(found) < count:
        base = random.randrange(20_000, 60_000)
        run = set(range(base, base + width))
        if run & taken or not all(_free(port) for port in run):
            continue
        taken |= run
        found.append(base)
    return found


@dataclass
class GaleraCluster:
    """Three MariaDB Galera nodes started by scripts/galera-cluster.sh."""

    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="app-galera-")))
    client_ports: list[int] = field(default_factory=list)
    galera_ports: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        # The nodes run as mysql when the tests run as root: they must reach the directory.
        self.directory.chmod(0o755)
        taken: set[int] = set()
        self.client_ports = self.client_ports or free_port_runs(3, 1, taken)
        self.galera_ports = self.galera_ports or free_port_runs(3, 3, taken)

    def _script(self, *args: str) -> str:
        env = {
            **os.environ,
            "GALERA_CLIENT_PORTS": " ".join(map(str, self.client_ports)),
            "GALERA_PORTS": " ".join(map(str, self.galera_ports)),
        }
        done = subprocess.run(
            ["bash", str(GALERA_SCRIPT), args[0], str(self.directory), *args[1:]],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"galera-cluster.sh {args[0]} failed: {done.stderr.strip()}")
        return done.stdout

    def up(self) -> None:
        """Start the nodes that are not running and wait until all three are synced."""
        self._script("up")

    def kill(self, node: int) -> None:
        """kill -9 one node (1-3), as a crash would."""
        self._script("kill", str(node))

    def down(self) -> None:
        self._script("down")
        shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, node: int = 1, database: str = "test") -> URL:
        return make_url(f"mysql+pymysql://root@127.0.0.1:{self.client_ports[node - 1]}/{database}")

    def cluster_url(self, database: str = "test") -> URL:
        """One URL naming all three nodes, tried in order."""
        hosts = [f"127.0.0.1:{port}" for port in self.client_ports]
        return make_url(f"mysql+pymysql://root@/{database}").update_query_dict({"host": hosts})


def galera_unavailable_reason() -> str | None:
    """Why a Galera cluster cannot be started here, or None."""
    missing = [
        what
        for what, present in (
            ("galera-4 (the Galera provider)", GALERA_PROVIDER.exists()),
            ("rsync", shutil.which("rsync") is not None),
            ("mariadbd", shutil.which("mariadbd") or Path("/usr/sbin/mariadbd").exists()),
        )
        if not present
    ]
    return f"cannot start a Galera cluster: {', '.join(missing)} not installed" if missing else None


PG_SCRIPT = ROOT / "scripts" / "pg-cluster.sh"


@dataclass
class PostgresPair:
    """A PostgreSQL primary and its streaming replica, started by scripts/pg-cluster.sh."""

    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="app-pg-")))
    ports: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        # The servers run as postgres when the tests run as root: they must reach the directory.
        self.directory.chmod(0o755)
        self.ports = self.ports or free_port_runs(2, 1, set())

    def _script(self, command: str) -> str:
        env = {
            **os.environ,
            "PG_PRIMARY_PORT": str(self.ports[0]),
            "PG_REPLICA_PORT": str(self.ports[1]),
        }
        done = subprocess.run(
            ["bash", str(PG_SCRIPT), command, str(self.directory)],
            env=env, capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"pg-cluster.sh {command} failed: {done.stderr.strip()}")
        return done.stdout

    def up(self) -> None:
        self._script("up")

    def stop_replica(self) -> None:
        self._script("stop-replica")

    def start_replica(self) -> None:
        self._script("start-replica")

    def down(self) -> None:
        self._script("down")
        shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, server: str, database: str = "test") -> URL:
        port = self.ports[0 if server == "primary" else 1]
        return make_url(f"postgresql+psycopg://root@127.0.0.1:{port}/{database}")


def postgres_pair_unavailable_reason() -> str | None:
    """Why a PostgreSQL primary and replica cannot be started here, or None."""
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_basebackup"))
    if not binaries and not os.environ.get("PG_BIN"):
        return "cannot start a PostgreSQL replica pair: the server binaries are not installed"
    return None
