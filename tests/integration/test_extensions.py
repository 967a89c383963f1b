"""A team's package of models, added through APP_EXTENSIONS as a user would from the command
line: its first migration written by autogenerate on a branch of its own, linted, applied,
reverted and applied again, a native PostgreSQL enum included."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.pool import NullPool

from app.db.session import make_engine
from tests.backends import ROOT
from tests.integration.helpers import run_app

MODELS = """
import enum
import uuid

from sqlalchemy import Enum, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base


class Mood(enum.Enum):
    GLAD = "glad"
    SAD = "sad"


class Feeling(Base):
    __tablename__ = "moods_feelings"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), index=True)
    mood: Mapped[Mood] = mapped_column(Enum(Mood, name="mood", native_enum=True))
    note: Mapped[str | None]
"""


def test_a_package_of_models_gets_its_own_branch_of_migrations(
    fresh_url: str, tmp_path: Path
) -> None:
    package = tmp_path / "moods"
    (package / "migrations").mkdir(parents=True)
    (package / "__init__.py").write_text(MODELS)
    env = {"APP_EXTENSIONS": "moods", "PYTHONPATH": str(tmp_path),
           "ALEMBIC_CONFIG": str(ROOT / "alembic.ini")}  # fmt: skip

    def app(*args: str) -> str:
        result = run_app(*args, database_url=fresh_url, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    app("db", "upgrade")  # the project's own migrations; the package has none yet
    written = app("db", "revision", "--autogenerate", "--branch", "moods", "-m", "feelings")
    (script,) = package.glob("migrations/*_feelings.py")
    assert str(script) in written
    source = script.read_text()
    assert 'branch_labels: str | Sequence[str] | None = ("moods",)' in source
    assert 'sa.Column("note", exact_text(255), nullable=True)' in source  # Mapped[str], exact
    assert 'migration_ops.drop_enum_type("mood")' in source
    assert "create_index(" in source, source  # on its new table
    behind = run_app("db", "current", database_url=fresh_url, env=env)
    assert behind.returncode == 1
    at, _, heads = behind.stdout.strip().partition(" (behind head ")
    assert heads
    assert at not in heads  # only the heads it has not reached: the branch's
    # The branch's revision depends on the project's head: judged on its own statements, not
    # on the project's migrations rendered with it (their waivers are in their own files).
    assert "no unsafe operations found" in app("db", "lint")

    app("db", "upgrade")
    assert "the database matches the models" in app("db", "check")
    app("db", "downgrade", "moods@base")
    engine = make_engine(fresh_url, poolclass=NullPool)
    try:
        assert not inspect(engine).has_table("moods_feelings")
        if engine.dialect.name == "postgresql":
            assert "mood" not in {e["name"] for e in inspect(engine).get_enums()}  # type: ignore[attr-defined]
    finally:
        engine.dispose()
    app("db", "upgrade")  # again: the enum type was dropped with the table
    assert "the database matches the models" in app("db", "check")
    diagram = tmp_path / "schema.md"
    app("db", "diagram", "--output", str(diagram))
    assert "moods_feelings {" in diagram.read_text()  # the package's tables are the schema's too
