"""The benchmark harness runs end to end (on SQLite, small), so it cannot rot unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.backends import ROOT


def test_bench_quick_runs_every_workload_and_writes_rates_and_ratios(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--backend", "sqlite", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    payload = json.loads(out.read_text())
    paths = {(row["workload"], row["path"]) for row in payload["results"]}
    assert paths >= {
        ("ingest", "raw bulk load"),
        ("ingest", "core executemany"),
        ("ingest", "orm add_all"),
        ("ingest", "Repository.create_many"),
        ("ingest", "seed"),
        ("reads", "raw driver"),
        ("reads", "Session.get"),
        ("reads", "Repository.get"),
        ("team", "raw bulk load"),
        ("team", "Repository.create_many"),
        ("team", "Session.get"),
        ("team", "Repository.get"),
        ("uow", "session.begin()"),
        ("uow", "UnitOfWork"),
        ("pages", "keyset, first page"),
        ("pages", "keyset, last page"),
        ("async", "AsyncRepository.get x64"),
        ("async", "AsyncSession.get x1"),
        ("async", "AsyncUnitOfWork 3 writes x16"),
        ("async", "AsyncRepository.create_many"),
    }
    assert all(row["rate"] > 0 for row in payload["results"])
    assert {row["path"] for row in payload["ratios"]} >= {"Repository.create_many", "UnitOfWork"}
    assert payload["environment"]["python"]
