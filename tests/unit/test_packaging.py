"""What the first commands need comes with a plain install (`pip install .`, as `make run`
does), not only with the dev tools."""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _runtime_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {
        re.split(r"[\[<>=!~ ;]", spec, maxsplit=1)[0].lower() for spec in project["dependencies"]
    }


def test_the_hooks_of_app_db_revision_come_with_a_plain_install() -> None:
    ini = configparser.ConfigParser()
    ini.read(ROOT / "alembic.ini")
    hooks = [name.strip() for name in ini["post_write_hooks"]["hooks"].split(",")]
    modules = {ini["post_write_hooks"][f"{hook}.module"] for hook in hooks}
    assert modules  # the revision command formats what it writes
    assert modules <= _runtime_requirements()


def test_every_library_the_package_imports_is_a_runtime_requirement() -> None:
    """Imported directly, so declared directly: not left to another library's requirements.
    The optional faces (app.integrations: `app[web]`; app.testing: pytest's plugin;
    app.observability: `app[otel]`) aside."""
    optional = {
        ROOT / "src/app/integrations",
        ROOT / "src/app/testing.py",
        ROOT / "src/app/observability.py",
    }
    imported: set[str] = set()
    for path in (ROOT / "src" / "app").rglob("*.py"):
        if any(path == part or part in path.parents for part in optional):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.partition(".")[0])
    distributions = importlib.metadata.packages_distributions()
    third_party = {
        distributions[name][0].lower()
        for name in imported
        if name in distributions and name not in sys.stdlib_module_names and name != "app"
    }
    assert third_party - _runtime_requirements() == set()
