"""The to-do domain of examples/todo, built only through the documented extension points: its
own tests pass on every backend, on a database whose default collation is linguistic."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.backends import ROOT, ThrowawayDatabases

TODO = ROOT / "examples" / "todo"


def test_the_todo_domains_own_tests_pass(backend: str, databases: ThrowawayDatabases) -> None:
    url = databases.new_linguistic_url(backend, "todo").render_as_string(hide_password=False)
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("APP_", "DATABASE_"))
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-W", "error::sqlalchemy.exc.SAWarning"],
        cwd=TODO, capture_output=True, text=True, timeout=600, check=False,
        env={**environment, "APP_TEST_DATABASE_URL": url, "DATABASE_URL": url,
             "ALEMBIC_CONFIG": str(ROOT / "alembic.ini")},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "28 passed" in result.stdout
