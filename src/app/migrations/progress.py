"""A migration run that tells what it did: pending migrations compiled for the database before
any of them runs, the operation in flight when one fails, and on MariaDB, whose DDL commits
statement by statement, a half-applied migration finished by the next run.

`Progress` follows a run: Alembic's implementation of each dialect is replaced by one that
notes each operation as it starts and ends (`_Followed`). When a migration fails, the run's
`MigrationFailedError` names the file, the revision, the operation and the database's code
and words. On a backend whose DDL commits as it goes, an operation whose result is already in
place (the table, column, index or constraint exists, or a dropped one is gone) is skipped,
so running the fixed migration again applies only what is missing.
"""

from __future__ import annotations

import io
import logging
import re
import traceback
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic.ddl import base
from alembic.ddl.impl import DefaultImpl
from alembic.ddl.mysql import MariaDBImpl, MySQLImpl
from alembic.ddl.postgresql import PostgresqlImpl
from alembic.ddl.sqlite import SQLiteImpl
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection, Dialect, inspect
from sqlalchemy import exc as sa_exc
from sqlalchemy.sql import ddl

from app.db.error_codes import code_of, first_line
from app.db.errors import DataLayerError
from app.dialects import backend_of

PROGRESS = "app_progress"  # the key of a run's Progress in Alembic's context options
_log = logging.getLogger("alembic.runtime.migration")


class MigrationCompileError(ValueError):
    """A pending migration cannot be written in the database's SQL; nothing was run."""


class MigrationFailedError(RuntimeError):
    """A migration failed: which, at which operation, why, and what of it is in place.
    `location` names the migration and the operation; the error it failed with is its
    `__cause__`."""

    def __init__(self, message: str, *, location: str) -> None:
        super().__init__(message)
        self.location = location


@dataclass
class Progress:
    """What the migration being run has done so far."""

    operation: str | None = None
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    # Whether what is done stays done when the migration fails (DDL that commits as it goes).
    kept_when_failing: bool = False
    # Done and committed before the migration's end: an online helper (`app.migration_ops`)
    # commits what came before it, and its own steps, as it goes.
    kept: list[str] = field(default_factory=list)
    helpers_committed: bool = False

    def next_migration(self, **_step: Any) -> None:
        """Alembic's `on_version_apply`: a migration finished; the next starts afresh."""
        self.operation = None
        self.done.clear()
        self.skipped.clear()
        self.kept.clear()
        self.helpers_committed = False

    def committed(self) -> None:
        """What is done so far was committed: it stays, whatever happens next."""
        self.kept += [step for step in self.done if step != OWN_STATEMENT]
        self.done.clear()
        self.helpers_committed = True


# -- following each operation ---------------------------------------------------------------------


class _Followed(DefaultImpl):
    def _exec(self, construct: Any, *args: Any, **kwargs: Any) -> Any:
        progress: Progress | None = self.context_opts.get(PROGRESS)
        if progress is None or self.as_sql or self.connection is None:
            return super()._exec(construct, *args, **kwargs)
        what = describe(construct)
        progress.kept_when_failing = backend_of(self.connection).ddl_commits_as_it_goes
        if progress.kept_when_failing and in_place(self.connection, construct):
            _log.info("skipped %s: already in place (from an earlier, interrupted run)", what)
            progress.skipped.append(what)
            return None
        progress.operation = what
        result = super()._exec(construct, *args, **kwargs)
        progress.done.append(what)
        progress.operation = None
        return result


# Alembic picks the implementation of a dialect by its `__dialect__`: these take the place of
# its own for the four dialects the project runs on.
class _SQLite(_Followed, SQLiteImpl):
    __dialect__ = "sqlite"


class _PostgreSQL(_Followed, PostgresqlImpl):
    __dialect__ = "postgresql"


class _MySQL(_Followed, MySQLImpl):
    __dialect__ = "mysql"


class _MariaDB(_Followed, MariaDBImpl):
    __dialect__ = "mariadb"


def describe(construct: Any) -> str:
    """An operation in words, by its kind and the names of what it changes (never values):
    `add column todo_tasks.note`, `create index ix_items_title`."""
    kind = " ".join(re.findall(r"[A-Z][a-z]*", type(construct).__name__)).lower()
    element = getattr(construct, "element", None)
    if isinstance(construct, base.AddColumn | base.DropColumn):
        return f"{kind} {construct.table_name}.{construct.column.name}"
    if isinstance(construct, base.AlterColumn):
        return f"alter column {construct.table_name}.{construct.column_name}"
    if isinstance(construct, base.AlterTable):
        return f"{kind} {construct.table_name}"
    name = getattr(element, "name", None)
    if isinstance(construct, ddl.ExecutableDDLElement) and name is not None:
        return f"{kind} {name}"
    return OWN_STATEMENT


OWN_STATEMENT = "a statement of the migration's own"


def in_place(connection: Connection, construct: Any) -> bool:
    """Whether what `construct` would do is already so on the database."""
    inspector = inspect(connection)
    element: Any = getattr(construct, "element", None)
    if isinstance(construct, ddl.CreateTable):
        return bool(inspector.has_table(element.name))
    if isinstance(construct, ddl.DropTable):
        return not inspector.has_table(element.name)
    if isinstance(construct, base.AddColumn | base.DropColumn):
        if not inspector.has_table(construct.table_name):
            return isinstance(construct, base.DropColumn)
        columns = {column["name"] for column in inspector.get_columns(construct.table_name)}
        present = construct.column.name in columns
        return present if isinstance(construct, base.AddColumn) else not present
    if isinstance(construct, ddl.CreateIndex | ddl.DropIndex):
        present = _has_named(inspector, element.table.name, element.name, indexes=True)
        return present if isinstance(construct, ddl.CreateIndex) else not present
    if isinstance(construct, ddl.AddConstraint | ddl.DropConstraint) and element.name:
        table = element.table.name
        present = _has_named(inspector, table, element.name, indexes=False)
        return present if isinstance(construct, ddl.AddConstraint) else not present
    return False


def _has_named(inspector: Any, table: str, name: str, *, indexes: bool) -> bool:
    if not inspector.has_table(table):
        return False
    found: list[dict[str, Any]] = list(inspector.get_indexes(table)) if indexes else []
    if not indexes:
        found += inspector.get_foreign_keys(table)
        found += inspector.get_unique_constraints(table)
        found += inspector.get_check_constraints(table)
    return name in {entry.get("name") for entry in found}


# -- a failure told in one line -------------------------------------------------------------------


def failure(exc: BaseException, progress: Progress, script: ScriptDirectory) -> Exception | None:
    """The `MigrationFailedError` for `exc`, raised inside a migration of `script` (None when
    it was not raised inside one: then it is not a migration's failure)."""
    revision = _failing_revision(exc, script)
    if revision is None:
        return None
    location = f"migration {_shown_path(revision)} ({revision.revision})"
    if progress.operation is not None:
        location += f", at {progress.operation},"
    where = f"migration {_shown_path(revision)} ({revision.revision}) failed"
    if progress.operation is not None:
        where += f" at {progress.operation}"
    if progress.kept_when_failing and (progress.done or progress.skipped or progress.kept):
        applied = ", ".join([*progress.skipped, *progress.kept, *progress.done])
        after = (
            f"; already applied by it: {applied} (MariaDB commits each DDL statement: fix the "
            "migration and run the upgrade again, and what is in place is skipped)"
        )
    elif progress.helpers_committed:
        listed = ", ".join(progress.kept)
        steps = f"{listed}, and what" if listed else "what"
        after = (
            f"; already applied by it: {steps} its online helpers (app.migration_ops) did, "
            "which commit as they go; the rest was rolled back (the helpers skip what is in "
            "place when the migration runs again, other operations do not)"
        )
    else:
        after = "; nothing of it was applied"
        if not progress.kept_when_failing:
            after += " (it ran in a transaction, rolled back)"
    return MigrationFailedError(f"{where}: {_cause(exc)}{after}", location=location)


def _failing_revision(exc: BaseException, script: ScriptDirectory) -> Script | None:
    by_path = {str(Path(rev.path).resolve()): rev for rev in script.walk_revisions()}
    found = None
    for frame, _line in traceback.walk_tb(exc.__traceback__):
        found = by_path.get(str(Path(frame.f_code.co_filename).resolve()), found)
    return found


def _shown_path(revision: Script) -> str:
    path = Path(revision.path)
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return path.name


def _cause(exc: BaseException) -> str:
    """The database's code and first line for a driver error; our message for our errors."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        said = first_line(exc.orig) or type(exc.orig).__name__
        code = code_of(exc.orig)
        return f"database error {code}: {said}" if code is not None else f"database error: {said}"
    if isinstance(exc, DataLayerError):
        return f"{exc} (database error {exc.code})" if exc.code is not None else str(exc)
    said = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {said}" if said else type(exc).__name__


# -- compiled before anything runs ----------------------------------------------------------------


def check_compiles(script: ScriptDirectory, revisions: list[str], dialect: Dialect) -> None:
    """Write the upgrade of each revision (oldest first) in `dialect`'s SQL without running it;
    `MigrationCompileError` names the first file that cannot be, and why (the table and column,
    and what the dialect refuses)."""
    for revision in revisions:
        problem = compile_problem(script, revision, dialect, "upgrade")
        if problem is not None:
            found = script.get_revision(revision)
            assert found is not None
            raise MigrationCompileError(f"{_shown_path(found)}: {problem}; nothing was run")


def compile_problem(
    script: ScriptDirectory, revision: str, dialect: Dialect, direction: str
) -> str | None:
    """Why the `direction` ("upgrade" or "downgrade") of `revision` cannot be written in
    `dialect`'s SQL, or None when it can (or when only a live database could tell)."""
    found = script.get_revision(revision)
    assert found is not None
    context = MigrationContext.configure(
        dialect=dialect,
        opts={"as_sql": True, "output_buffer": io.StringIO(), "transactional_ddl": False},
    )
    try:
        with Operations.context(context):
            getattr(found.module, direction)()
    except (sa_exc.CompileError, NotImplementedError) as exc:
        # NotImplementedError: an operation the backend has no SQL for (SQLite altering a
        # constraint outside batch mode), live or not.
        return f"its {direction} cannot be written for {dialect.name}: {exc}"
    except Exception:  # what only a live run can do (reflect, read rows) is that run's to check
        return None
    return None


def pending_oldest_first(script: ScriptDirectory, pending: Collection[str]) -> list[str]:
    """`pending` revisions in the order an upgrade applies them."""
    newest_first = [rev.revision for rev in script.walk_revisions() if rev.revision in pending]
    return newest_first[::-1]
