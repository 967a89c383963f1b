"""A migration run that tells what it did: pending migrations compiled for the database before
any of them runs, the operation in flight when one fails, and on MariaDB, whose DDL commits
statement by statement, a half-applied migration finished by the next run.

`Progress` follows a run: Alembic's implementation of each dialect is replaced by one that
notes each operation as it starts and ends (`_Followed`). When a migration fails, the run's
`MigrationFailedError` names the file, the revision, the operation and the database's code
and words.

On a backend whose DDL commits as it goes, a migration that runs DDL is noted as under way in
the database (`UNDER_WAY_TABLE`) until the step that records its revision. Run again after
it stopped part-way, an operation whose result the earlier run left in place (the table,
column, index or constraint exists as the operation makes it, or a dropped one is gone) is
skipped, so the fixed migration applies only what is missing; one left in place but made
otherwise (the fix changed a type, a column, a rule) is refused by name (`resume`). A
migration not under way skips nothing: a name that is taken is the database's error, as on
every backend.
"""

from __future__ import annotations

import io
import logging
import re
import sys
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
from sqlalchemy import Connection, Dialect, delete, insert, select
from sqlalchemy import column as lightweight_column
from sqlalchemy import exc as sa_exc
from sqlalchemy import table as lightweight_table
from sqlalchemy.sql import ddl

from app.db.error_codes import code_of, first_line
from app.db.errors import DataLayerError
from app.dialects import backend_of
from app.migrations.resume import ResumeRefusedError, differs, in_place

PROGRESS = "app_progress"  # the key of a run's Progress in Alembic's context options
# The migrations under way (`<revision> upgrade` or `<revision> downgrade`) where DDL commits as
# it goes: noted before a migration's first DDL, removed with the step that records it.
UNDER_WAY_TABLE = "app_migrations_under_way"  # (spelled out in the statement below)
_CREATE_UNDER_WAY = (
    "CREATE TABLE IF NOT EXISTS app_migrations_under_way "
    "(migration VARCHAR(100) NOT NULL PRIMARY KEY)"
)
_UNDER_WAY = lightweight_table(UNDER_WAY_TABLE, lightweight_column("migration"))
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
    # The run's migration files (resolved path: revision), to tell which one is running.
    files: dict[str, str] = field(default_factory=dict)
    # The migration running (`<revision> upgrade`), once its first DDL noted it under way, and
    # whether an earlier run had left it under way.
    under_way: str | None = None
    resumed: bool = False
    # The migrations the run finished, in order: `<revision> <message>`.
    finished: list[str] = field(default_factory=list)

    def follow(self, script: ScriptDirectory) -> None:
        """Tell the migrations of `script` apart while they run."""
        self.files = {
            str(Path(rev.path).resolve()): rev.revision for rev in script.walk_revisions()
        }

    def next_migration(
        self, ctx: MigrationContext | None = None, step: Any = None, **_step: Any
    ) -> None:
        """Alembic's `on_version_apply`: a migration finished (in the transaction that records
        it, where its note of being under way goes too); the next starts afresh."""
        finished = _finished(step)
        if finished is not None:
            self.finished.append(finished)
        if self.under_way is not None and ctx is not None and ctx.connection is not None:
            ctx.connection.execute(
                delete(_UNDER_WAY).where(_UNDER_WAY.c.migration == self.under_way)
            )
        self.under_way = None
        self.resumed = False
        self.operation = None
        self.done.clear()
        self.skipped.clear()
        self.kept.clear()
        self.helpers_committed = False

    def note_under_way(self, connection: Connection) -> None:
        """Before the running migration's first DDL: note it under way, and whether an earlier
        run left it so (then what that run did may be found in place)."""
        running = self._running()
        if running is None:
            return
        self.under_way = running
        # DDL: it commits what came before it, as the migration's own DDL is about to.
        connection.exec_driver_sql(_CREATE_UNDER_WAY)
        found = connection.execute(
            select(_UNDER_WAY.c.migration).where(_UNDER_WAY.c.migration == running)
        )
        self.resumed = found.first() is not None
        if not self.resumed:
            connection.execute(insert(_UNDER_WAY).values(migration=running))

    def _running(self) -> str | None:
        """`<revision> <function>` of the migration whose code is running: the outermost
        frame in one of its files (the `upgrade` or `downgrade` Alembic called)."""
        found = None
        frame = sys._getframe(1)
        while frame is not None:
            revision = self.files.get(str(Path(frame.f_code.co_filename).resolve()))
            if revision is not None:
                found = f"{revision} {frame.f_code.co_name}"
            frame = frame.f_back  # type: ignore[assignment]
        return found

    def committed(self) -> None:
        """What is done so far was committed: it stays, whatever happens next."""
        self.kept += [step for step in self.done if step != OWN_STATEMENT]
        self.done.clear()
        self.helpers_committed = True


def _finished(step: Any) -> str | None:
    """`<revision> <message>` of the migration an `on_version_apply` step ran (a stamp, which
    runs none, is None)."""
    if step is None or not step.is_migration:
        return None
    revision = step.up_revision  # the migration's own, run up or down
    return f"{revision.revision} {revision.doc}" if revision is not None else None


# -- following each operation ---------------------------------------------------------------------


class _Followed(DefaultImpl):
    def _exec(self, construct: Any, *args: Any, **kwargs: Any) -> Any:
        progress: Progress | None = self.context_opts.get(PROGRESS)
        if progress is None or self.as_sql or self.connection is None:
            return super()._exec(construct, *args, **kwargs)
        what = describe(construct)
        progress.kept_when_failing = backend_of(self.connection).ddl_commits_as_it_goes
        is_ddl = isinstance(construct, ddl.ExecutableDDLElement)
        if progress.kept_when_failing and is_ddl and progress.under_way is None:
            progress.note_under_way(self.connection)
        if progress.resumed and is_ddl and in_place(self.connection, construct):
            progress.operation = what
            made_otherwise = differs(self, construct)
            if made_otherwise is not None:
                raise ResumeRefusedError(
                    f"the run that stopped part-way left {made_otherwise}: undo that by hand, "
                    "or give the migration back what it made, then run it again"
                )
            _log.info("skipped %s: already in place (from an earlier, interrupted run)", what)
            progress.operation = None
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


# -- a failure told in one line -------------------------------------------------------------------


def failure(exc: BaseException, progress: Progress, script: ScriptDirectory) -> Exception | None:
    """The `MigrationFailedError` for `exc`, raised inside a migration of `script` (None when
    it was not raised inside one: then it is not a migration's failure)."""
    revision = _failing_revision(exc, script)
    if revision is None:
        return None
    location = f"migration {_shown_path(revision)} ({revision.revision})"
    where = f"migration {_shown_path(revision)} ({revision.revision}) failed"
    helper = _helper_failing(exc)
    if helper is not None and progress.operation in (None, OWN_STATEMENT):
        # An online helper's own statements are text: named by the helper, not as the
        # migration's.
        location += f", in {helper},"
        where += f" in {helper}"
    elif progress.operation is not None:
        location += f", at {progress.operation},"
        where += f" at {progress.operation}"
    if progress.kept_when_failing and (progress.done or progress.skipped or progress.kept):
        applied = ", ".join([*progress.skipped, *progress.kept, *progress.done])
        after = (
            f"; already applied by it: {applied} (MariaDB commits each DDL statement: fix the "
            "migration and run the upgrade again, and what is in place is skipped)"
        )
    elif progress.helpers_committed and progress.kept:
        after = (
            f"; already applied by it: {', '.join(progress.kept)}, and what its online "
            "helpers (app.migration_ops) finished, which commit as they go; the rest was "
            "rolled back (the helpers skip what is in place when the migration runs again, "
            "other operations do not)"
        )
    elif progress.helpers_committed:
        # Nothing of the migration's own was committed; a helper says itself what it left.
        after = (
            "; its own operations were rolled back, and its online helpers "
            "(app.migration_ops) keep only the steps they finished, which they skip when the "
            "migration runs again"
        )
    else:
        after = "; nothing of it was applied"
        if not progress.kept_when_failing:
            after += " (it ran in a transaction, rolled back)"
    return MigrationFailedError(f"{where}: {_cause(exc)}{after}", location=location)


def _helper_failing(exc: BaseException) -> str | None:
    """`migration_ops.<helper>` when `exc` was raised inside an online helper the migration
    called (the outermost frame of `app.migrations.ops`)."""
    for frame, _line in traceback.walk_tb(exc.__traceback__):
        module = str(frame.f_globals.get("__name__", ""))
        if module.startswith(_HELPERS):
            return f"migration_ops.{frame.f_code.co_name}"
    return None


_HELPERS = "app.migrations.ops."


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
