"""What CI requires cannot be narrowed from the command line."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.backends import ROOT


def test_a_backend_selection_that_leaves_out_a_required_backend_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--backend", "sqlite", "-q", "tests/unit/test_types.py"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "REQUIRE_BACKENDS": "all"},
        timeout=120,
        check=False,
    )
    assert result.returncode == 4  # pytest's usage error
    assert (
        "REQUIRE_BACKENDS asks for galera, mariadb, pgbouncer, postgresql, which --backend "
        "leaves out"
    ) in (result.stderr)
