"""A package named in APP_EXTENSIONS brings its declared repositories with it: the generic
paths (`uow.repository(Model)`, `Repository.of`) find them without anything else importing
the package's repositories module first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MODELS = """
from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base, IdMixin


class Widget(IdMixin, Base):
    __tablename__ = "widgets_probe"
    code: Mapped[str] = mapped_column(String(32), unique=True)
"""

REPOSITORIES = """
from app.repositories import Repository
from widgets import Widget


class WidgetRepository(Repository[Widget]):
    model = Widget
    upsert_key = ("code",)
"""

CHECK = """
from app.db.runtime import get_extensions
from app.repositories import Repository

(widgets,) = get_extensions()
declared = Repository.of(widgets.Widget)
print(declared.__name__, declared.upsert_key)
"""


def test_a_packages_repositories_module_is_imported_with_it(tmp_path: Path) -> None:
    package = tmp_path / "widgets"
    package.mkdir()
    (package / "__init__.py").write_text(MODELS)
    (package / "repositories.py").write_text(REPOSITORIES)
    result = subprocess.run(
        [sys.executable, "-c", CHECK],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(tmp_path), "APP_EXTENSIONS": "widgets"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "WidgetRepository ('code',)"
