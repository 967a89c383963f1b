"""Multi-node topologies the tests start once per session, through the project's own scripts,
under a temporary directory and on free ports; stopped by their own pids at the end."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy.engine import URL, make_url

ROOT = Path(__file__).resolve().parent.parent
GALERA_PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_range() -> tuple[int, int]:
    """Where to look for free ports: below the kernel's ephemeral range, so that no outgoing
    connection can take a port between this check and the moment a server binds it (a Galera
    node binds its state-transfer ports only when it joins)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return (10_000, max(low, 12_000))


def free_port_runs(count: int, width: int, taken: set[int]) -> list[int]:
    """`count` ports, each the first of `width` consecutive free ports, none in `taken`."""
    low, high = _port_range()
    found: list[int] = []
    while len(found) < count:
        base = random.randrange(low, high - width)
        run = set(range(base, base + width))
        if run & taken or not all(_free(port) for port in run):
            continue
        taken |= run
        found.append(base)
    return found


class ScriptedTopology:
    """Servers that one of the project's scripts starts and stops under `directory`, on the
    ports its environment names; `SCRIPT` and `environment()` say which."""

    SCRIPT: Path

    def __init__(self, prefix: str) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix=prefix))
        # The servers run as mysql or postgres when the tests run as root: they must reach it.
        self.directory.chmod(0o755)

    def environment(self) -> dict[str, str]:
        raise NotImplementedError

    def script(self, command: str, *args: str) -> str:
        done = subprocess.run(
            ["bash", str(self.SCRIPT), command, str(self.directory), *args],
            env={**os.environ, **self.environment()},
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{self.SCRIPT.name} {command} failed: {done.stderr.strip()}")
        return done.stdout

    def up(self) -> None:
        """Start what is not running and wait until it serves."""
        self.script("up")

    def down(self) -> None:
        self.script("down")
        shutil.rmtree(self.directory, ignore_errors=True)


T = TypeVar("T", bound=ScriptedTopology)


def started(make: Callable[[], T], attempts: int = 2) -> T:
    """A topology from `make`, up and serving. One that fails to start is stopped, its reason
    written to stderr, and started again from scratch (a new directory, new ports): these
    servers share the machine with the rest of the run, and one failed state transfer or port
    clash at start-up says nothing about the code under test. The last failure is raised."""
    for attempt in range(1, attempts + 1):
        topology = make()
        try:
            topology.up()
        except RuntimeError as exc:
            topology.down()
            if attempt == attempts:
                raise
            print(f"\n{exc}\nstarting it again from scratch", file=sys.stderr)
        else:
            return topology
    raise AssertionError("unreachable")


class GaleraCluster(ScriptedTopology):
    """Three MariaDB Galera nodes started by scripts/galera-cluster.sh."""

    SCRIPT = ROOT / "scripts" / "galera-cluster.sh"

    def __init__(self) -> None:
        super().__init__("app-galera-")
        taken: set[int] = set()
        self.client_ports = free_port_runs(3, 1, taken)
        self.galera_ports = free_port_runs(3, 3, taken)

    def environment(self) -> dict[str, str]:
        return {
            "GALERA_CLIENT_PORTS": " ".join(map(str, self.client_ports)),
            "GALERA_PORTS": " ".join(map(str, self.galera_ports)),
        }

    def kill(self, node: int) -> None:
        """kill -9 one node (1-3), as a crash would."""
        self.script("kill", str(node))

    def url(self, node: int = 1, database: str = "test") -> URL:
        return make_url(f"mysql+pymysql://root@127.0.0.1:{self.client_ports[node - 1]}/{database}")

    def cluster_url(self, database: str = "test") -> URL:
        """One URL naming all three nodes, tried in order."""
        hosts = [f"127.0.0.1:{port}" for port in self.client_ports]
        return make_url(f"mysql+pymysql://root@/{database}").update_query_dict({"host": hosts})


class PostgresPair(ScriptedTopology):
    """A PostgreSQL primary and its streaming replica, started by scripts/pg-cluster.sh."""

    SCRIPT = ROOT / "scripts" / "pg-cluster.sh"

    def __init__(self) -> None:
        super().__init__("app-pg-")
        self.ports = free_port_runs(2, 1, set())

    def environment(self) -> dict[str, str]:
        return {"PG_PRIMARY_PORT": str(self.ports[0]), "PG_REPLICA_PORT": str(self.ports[1])}

    def stop_replica(self) -> None:
        self.script("stop-replica")

    def start_replica(self) -> None:
        self.script("start-replica")

    def restart_primary(self) -> None:
        """A fast shutdown of the primary and a start, as a service restart does."""
        self.script("restart-primary")

    def url(self, server: str, database: str = "test") -> URL:
        port = self.ports[0 if server == "primary" else 1]
        return make_url(f"postgresql+psycopg://root@127.0.0.1:{port}/{database}")


class FailoverFormation(ScriptedTopology):
    """A pg_auto_failover monitor and two nodes, started by scripts/pg-failover.sh."""

    SCRIPT = ROOT / "scripts" / "pg-failover.sh"

    def __init__(self) -> None:
        super().__init__("app-paf-")
        self.ports = free_port_runs(3, 1, set())

    def environment(self) -> dict[str, str]:
        return {
            "PG_MONITOR_PORT": str(self.ports[0]),
            "PG_NODE_PORTS": f"{self.ports[1]} {self.ports[2]}",
        }

    def failover(self) -> None:
        """pg_autoctl perform failover, returning once a new primary and secondary are up."""
        self.script("failover")

    def url(self, database: str = "test") -> URL:
        """The multi-host URL an application uses: whichever node is the primary."""
        hosts = [f"127.0.0.1:{port}" for port in self.ports[1:]]
        return make_url(f"postgresql+psycopg://root@/{database}").update_query_dict(
            {"host": hosts, "target_session_attrs": "read-write"}
        )


class PgBouncer(ScriptedTopology):
    """A PgBouncer in front of the PostgreSQL server at `server` (host:port), in `mode`,
    started by scripts/pgbouncer.sh."""

    SCRIPT = ROOT / "scripts" / "pgbouncer.sh"

    def __init__(self, server: str = "127.0.0.1:5432", mode: str = "transaction") -> None:
        super().__init__("app-pgbouncer-")
        self.server, self.mode = server, mode
        self.port = free_port_runs(1, 1, set())[0]

    def environment(self) -> dict[str, str]:
        return {
            "PGBOUNCER_PORT": str(self.port),
            "PGBOUNCER_MODE": self.mode,
            "PGBOUNCER_SERVER": self.server,
        }

    def url(self, database: str = "test") -> URL:
        return make_url(f"postgresql+psycopg://root@127.0.0.1:{self.port}/{database}")


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


def postgres_pair_unavailable_reason() -> str | None:
    """Why a PostgreSQL primary and replica cannot be started here, or None."""
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_basebackup"))
    if not binaries and not os.environ.get("PG_BIN"):
        return "cannot start a PostgreSQL replica pair: the server binaries are not installed"
    return None


def failover_unavailable_reason() -> str | None:
    """Why a pg_auto_failover formation cannot be started here, or None."""
    if shutil.which("pg_autoctl") is None:
        return (
            "cannot start a pg_auto_failover formation: pg_autoctl is not installed "
            "(postgresql-15-auto-failover, pg-auto-failover-cli)"
        )
    return postgres_pair_unavailable_reason()


def pgbouncer_unavailable_reason() -> str | None:
    """Why a PgBouncer cannot be started here, or None."""
    if shutil.which("pgbouncer") is None and not Path("/usr/sbin/pgbouncer").exists():
        return "cannot start PgBouncer: pgbouncer is not installed (Debian package pgbouncer)"
    return None
