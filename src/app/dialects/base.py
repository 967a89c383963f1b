"""The interface every backend implements (`Backend`), and what their modules share: the
batches of a bulk write, bind-processed columns, executemany and upserts."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from functools import lru_cache
from itertools import repeat
from operator import is_
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, Connection, Dialect, Engine, Insert, Select, Table
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.db import liveness
from app.db.error_events import WRITES_TO
from app.db.errors import (
    DataLayerError,
    InvalidQueryError,
    StatisticsUnavailableError,
)
from app.dialects import literals
from app.dialects.commit_markers import CommitReceipt

Processor = Callable[[Any], Any]
_DATABASE_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}")


@dataclass(frozen=True)
class Batch:
    """Rows of one table given column by column: equally long lists, by column name, with
    values checked and in their columns' Python types; the columns named in `stored_as_is`
    already hold the storage form (ids generated as 32 hex digits)."""

    count: int
    columns: dict[str, list[Any]]
    stored_as_is: frozenset[str] = frozenset()


@dataclass(frozen=True)
class UniformUpsert:
    """A batch of an upsert whose rows give the same fields, checked and completed column by
    column, and the statement that upserts such rows: `statement()` takes them as parameters,
    `statement(source)` from a SELECT (where the backend can)."""

    batch: Batch
    given: frozenset[str]
    keys: set[tuple[Any, ...]]  # the rows' conflict-target values
    statement: Callable[..., Insert]

    @property
    def distinct(self) -> bool:
        """Whether no two rows name the same key (one ON CONFLICT statement may take them)."""
        return len(self.keys) == self.batch.count


# A batch of an upsert as the repository prepared it: the rows as given, and their uniform form
# when they have one; what the repository does with a batch no faster way takes.
PreparedUpsert = tuple[list[Any], UniformUpsert | None]
UpsertOtherwise = Callable[[list[Any], UniformUpsert | None], None]


@dataclass(frozen=True)
class UpsertPlan:
    """What an upsert sets on a conflict on `conflict`: `computed` (expressions of the stored
    row) first, then the columns `from_new_row` to the new row's values; the rows are
    parameters, or the result of `source` where the backend can."""

    conflict: Sequence[str]
    from_new_row: Sequence[str]
    computed: dict[str, ColumnElement[Any]]
    source: Select[Any] | None = None


@dataclass(frozen=True)
class ConnectOptions:
    """What every connection of an engine needs from the settings; `pooler` is
    DATABASE_POOLER's mode, None without one."""

    connect_timeout: int = 10
    statement_timeout: float | None = None
    idle_transaction_timeout: float | None = None
    pooler: str | None = None


@dataclass(frozen=True)
class HeavyStatement:
    """A shape of statement and what the server counted for it: its text as the server keeps
    it (placeholders where values were), the tags it was sent with, and the totals."""

    statement: str
    tags: dict[str, str]
    calls: int
    total_ms: float
    rows: int


class BulkLoadRefused(Exception):  # noqa: N818 - a signal between backend and repository
    """The backend's bulk load cannot take this target (PostgreSQL's COPY into a view: the old
    name of a table being renamed); `batches` are the rows not stored, every one of them."""

    def __init__(self, batches: Iterator[Batch]) -> None:
        super().__init__("the bulk load refused its target")
        self.batches = batches


# Standard SQL, read as SQLite reads it: a double-quoted word that names no column is a string
# there, so it is masked too.
_STANDARD_LITERALS = literals.masker(
    kept=(literals.LINE_COMMENT, literals.BLOCK_COMMENT),
    masked=(
        literals.SINGLE_QUOTED,
        literals.DOUBLE_QUOTED,
        literals.HEX_NUMBER,
        literals.NUMBER,
    ),
)


def tags_separator(statement: str, line_comments: tuple[str, ...]) -> str:
    """What goes between `statement` and the tags appended to it: a space, or a line break
    where its last line may end in a line comment (which would swallow them)."""
    last_line = statement[statement.rfind("\n") + 1 :]
    return "\n" if any(start in last_line for start in line_comments) else " "


class Backend:
    """One database's behaviour; the defaults are SQL that every backend here understands."""

    name: ClassVar[str]  # SQLAlchemy's dialect name
    # Keyset pages: whether `(a, b) > (:a, :b)` is an index range for the planner, and whether
    # NULL already sorts as the largest value (else nullable keys sort by `IS NULL` first).
    row_value_keyset: ClassVar[bool] = True
    nulls_sort_largest: ClassVar[bool] = False
    # Whether a database is a file (made by its first connection) rather than one of a server.
    file_database: ClassVar[bool] = False
    # The database to connect to when the one a URL names may not exist.
    maintenance_database: ClassVar[str | None] = None
    # Whether a migration run is one transaction (else one per migration, and online schema
    # changes run outside it).
    one_transaction_per_run: ClassVar[bool] = False
    # Whether each DDL statement commits as it runs (no transactional DDL): a migration that
    # fails midway leaves its first operations applied.
    ddl_commits_as_it_goes: ClassVar[bool] = False

    # -- connections ---------------------------------------------------------------------------

    def connect_args(self, url: URL, options: ConnectOptions) -> dict[str, Any]:
        """The driver's connect arguments: timeouts and the session settings we rely on."""
        return {}

    def pool_options(self, url: URL) -> dict[str, Any]:
        """Pool arguments this backend needs for `url` (a `poolclass` among them replaces the
        engine's usual pool)."""
        return {}

    def configure(
        self, engine: Engine, url: URL, *, causal_reads: bool, connect: ConnectOptions
    ) -> None:
        """Install what this backend's connections need on `engine` (event listeners)."""

    def socket_of(self, driver_connection: Any) -> int | None:
        """The socket of a driver connection (blocking or asyncio); None where the driver hides
        it."""
        return None

    def spoke_while_idle(self, driver_connection: Any) -> bool:
        """Whether the server sent a pooled driver connection anything, or ended it, since its
        last answer was read: for `app.db.liveness`, which pings it only then (or after a long
        idle). True where the driver cannot tell: then it is pinged at every checkout."""
        fd = self.socket_of(driver_connection)
        return fd is None or fd < 0 or liveness.readable(fd)

    def refuses_writes(self, driver_connection: Any) -> bool:
        """Whether the server a driver connection reaches takes no writes at all now (a
        standby, a demoted primary), told from what the connection already holds, without a
        statement: for `app.db.error_events`, which then replaces the pool's connections. False
        where the driver cannot tell."""
        return False

    def with_comment(self, statement: str, comment: str, *, executemany: bool) -> str:
        """`statement` carrying `comment` (the query tags): at its end, where sqlcommenter puts
        it; on a line of its own after a line comment, which would hold it."""
        return f"{statement}{tags_separator(statement, self.line_comments)}{comment}"

    # What starts a comment that runs to the end of its line.
    line_comments: ClassVar[tuple[str, ...]] = ("--",)

    def without_literals(self, statement: str) -> str:
        """`statement` with each literal (string, number) replaced by `?` (`literals`)."""
        return _STANDARD_LITERALS(statement)

    def read_only_options(self) -> dict[str, Any]:
        """Execution options that make a transaction read-only on the server, if it can."""
        return {}

    # -- statements ----------------------------------------------------------------------------

    def upsert(self, table: Table, plan: UpsertPlan) -> Insert:
        """INSERT into `table` that updates the row it conflicts with as `plan` says."""
        raise NotImplementedError

    def insert_ignoring_duplicates(self, table: Table) -> Insert:
        """INSERT that skips a row whose key or unique values are stored already."""
        raise NotImplementedError

    def number_past_given_keys(self, connection: Connection, table: Table, key: str) -> None:
        """After rows that gave the key the database numbers (`key`) themselves: make the
        numbering go on past the largest stored, so the next row left to the database does
        not get a number taken. SQLite's and MariaDB's numbering do so on their own."""

    def text_match(self, column: Any, op: str, needle: str) -> ColumnElement[bool]:
        """`column` contains `needle`, or starts with it (`op`: contains, startswith, and
        their case-insensitive `i` forms): LIKE, where `%`, `_` and the escape character match
        themselves."""
        condition: ColumnElement[bool] = getattr(column, op)(needle, autoescape=True)
        return condition

    # The longest `in` list sent as a parameter per value (None: any); a longer one takes the
    # backend's own form (`in_values`), as a driver or server limits a statement's parameters.
    most_listed_values: ClassVar[int | None] = None

    def lists_values(self, count: int) -> bool:
        """Whether an `in` list of `count` values is `column IN (...)`, a parameter a value."""
        return self.most_listed_values is None or count <= self.most_listed_values

    def in_values(self, column: Any, values: list[Any]) -> ColumnElement[bool]:
        """`column IN (values)`, however many values there are (`lists_values`)."""
        condition: ColumnElement[bool] = column.in_(values)
        return condition

    # -- bulk writes ---------------------------------------------------------------------------

    def insert_batches(self, connection: Connection, table: Table, batches: Iterable[Batch]) -> int:
        """Insert every batch at the speed of the backend's bulk load; how many rows. May raise
        `BulkLoadRefused` before it stored anything: the caller undoes what the refusal did to
        the transaction and hands the batches to `insert_by_statements`."""
        return self.insert_by_statements(connection, table, batches)

    def insert_by_statements(
        self, connection: Connection, table: Table, batches: Iterable[Batch]
    ) -> int:
        """Insert every batch by INSERT statements (one executemany a batch); how many rows."""
        inserted = 0
        for batch in batches:
            execute_columns(connection, table, plain_insert(connection, table, batch), batch)
            inserted += batch.count
        return inserted

    def upsert_batches(
        self,
        session: Session,
        table: Table,
        target: tuple[str, ...],
        prepared: Iterator[PreparedUpsert],
        otherwise: UpsertOtherwise,
    ) -> None:
        """Upsert every prepared batch, in order; `otherwise` is the repository's general way
        (a uniform batch through one compiled executemany, any other row by row), which a
        backend with a faster one takes only for what that cannot."""
        for rows, uniform in prepared:
            otherwise(rows, uniform)

    # -- replicas ------------------------------------------------------------------------------

    def commit_position(self, connection: Connection) -> str | None:
        """Where the server stands after the commit just made on `connection`, as a commit
        token replicas can be asked about; None when it has no replicas to ask."""
        return None

    # -- lost commits ----------------------------------------------------------------------------

    def sign_commit(self, connection: Connection) -> CommitReceipt | None:
        """Leave in the transaction on `connection`, just before its COMMIT, what tells later
        whether it was applied (PostgreSQL: its transaction id; MariaDB: a marker row,
        `commit_markers`); None when this database cannot tell (here)."""
        return None

    def was_committed(self, connection: Connection, receipt: CommitReceipt) -> bool | None:
        """Asked on a fresh `connection` after a COMMIT got no answer: whether the transaction
        of `receipt` was committed, told once it no longer can be (its server session ended
        if it was still open); None when the database cannot tell (yet)."""
        return None

    def after_commit(self, receipt: CommitReceipt) -> None:
        """What a commit that left `receipt` is followed by (MariaDB: markers pruned now and
        then)."""

    # -- migrations ----------------------------------------------------------------------------

    def migration_lock(
        self, connection: Connection, *, wait_seconds: float
    ) -> AbstractContextManager[None]:
        """Hold the lock that serialises migrations of this database inside the block; a
        second migrator waits up to `wait_seconds`, then `MigrationLockedError`."""
        raise NotImplementedError

    def migration_settings(self, *, lock_timeout: float, statement_timeout: float) -> list[str]:
        """The statements that bound a migration's lock waits and statements, if the backend
        has them (DB_MIGRATION_LOCK_TIMEOUT, DB_MIGRATION_STATEMENT_TIMEOUT)."""
        return []

    def migration_session(
        self, connection: Connection, *, lock_timeout: float, statement_timeout: float
    ) -> AbstractContextManager[None]:
        """What a migration run's session needs around it (`migration_settings`, pragmas)."""
        return nullcontext()

    def short_lock_waits(
        self, connection: Connection, seconds: float
    ) -> AbstractContextManager[None]:
        """Lock waits of at most `seconds` and no statement timeout inside the block (for
        online schema changes); the session's own values come back afterwards."""
        return nullcontext()

    def check_migrations(self, connection: Connection) -> None:
        """Refuse to commit a migration run that left the database inconsistent."""

    def column_collations(self, connection: Connection, table: str) -> dict[str, str | None]:
        """The collation each text column of `table` compares by, where the backend keeps one
        per column (for schema comparisons; none here: SQLite's text is binary)."""
        return {}

    def heaviest_statements(self, connection: Connection, limit: int) -> list[HeavyStatement]:
        """The `limit` statement shapes of this database that took the most time in all,
        from the server's own statistics (StatisticsUnavailableError says how to turn them
        on)."""
        raise StatisticsUnavailableError(
            f"this database ({self.name}) keeps no statistics of statements"
        )

    # -- whole databases -----------------------------------------------------------------------

    def quoted_database(self, url: URL) -> str:
        """The database name of `url`, checked and quoted for CREATE/DROP DATABASE."""
        name = url.database or ""
        if not _DATABASE_NAME.fullmatch(name):
            raise InvalidQueryError(
                "refusing that database name: use 1 to 63 ASCII letters, digits, '_' and '-'"
            )
        return str(url.get_dialect()().identifier_preparer.quote_identifier(name))

    def database_exists(self, connection: Connection, name: str) -> bool:
        raise NotImplementedError

    def drop_database_sql(self, url: URL) -> str:
        return f"DROP DATABASE IF EXISTS {self.quoted_database(url)}"


# -- what several backends share ----------------------------------------------------------------


def on_conflict_do_update(statement: Any, plan: UpsertPlan) -> Insert:
    """`INSERT ... ON CONFLICT (target) DO UPDATE` from a PostgreSQL or SQLite insert construct."""
    if plan.source is not None:
        names = [str(column.key) for column in plan.source.selected_columns]
        statement = statement.from_select(names, plan.source)
    changes: dict[str, Any] = {name: statement.excluded[name] for name in plan.from_new_row}
    upsert: Insert = statement.on_conflict_do_update(
        index_elements=list(plan.conflict), set_={**changes, **plan.computed}
    )
    return upsert


@contextmanager
def session_lock(
    connection: Connection,
    acquire: Callable[[bool], None],
    release: Callable[[], None],
) -> Iterator[None]:
    """Hold a lock that belongs to the session (an advisory lock, GET_LOCK) inside the block.

    `acquire(owned_transaction)` takes it; the transaction it ran in is committed when it is
    this block's, since the lock outlives it. On the way out the block's transaction is ended
    (rolled back after a failure: the unlock needs a sound session) and `release()` runs; a
    session that cannot be unlocked is invalidated, so it never goes back to the pool holding
    the lock (closing it releases the lock on the server).
    """
    owned_transaction = not connection.in_transaction()
    acquire(owned_transaction)
    if owned_transaction:
        connection.commit()
    failed = True
    try:
        yield
        failed = False
    finally:
        try:
            if owned_transaction and connection.in_transaction():
                (connection.rollback if failed else connection.commit)()
            release()
            if owned_transaction:
                connection.commit()
        except (SQLAlchemyError, DataLayerError):
            connection.invalidate()


# -- bulk helpers every backend may use -----------------------------------------------------------


@lru_cache(maxsize=256)
def bind_processors(
    table: Table, columns: tuple[str, ...], dialect: Dialect
) -> dict[str, Processor]:
    """The bind processor of each column whose type converts values for `dialect`."""
    found: dict[str, Processor] = {}
    for name in columns:
        column_type = table.c[name].type
        processor = column_type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            found[name] = processor
    return found


def converted(processor: Processor, values: list[Any]) -> list[Any]:
    """`values` through `processor`, None left as it is; one object repeated down the column
    (a batch's timestamp) is converted once."""
    if any(map(is_, values, repeat(None))):  # `None in values` would call each __eq__
        return [None if value is None else processor(value) for value in values]
    if len(set(map(id, values))) == 1:
        return [processor(values[0])] * len(values)
    return list(map(processor, values))


def storage_columns(connection: Connection, table: Table, batch: Batch) -> dict[str, list[Any]]:
    """The batch's columns in storage form: through each column type's bind processor."""
    processors = bind_processors(table, tuple(batch.columns), connection.dialect)
    return {
        name: converted(processors[name], values)
        if name in processors and name not in batch.stored_as_is
        else values
        for name, values in batch.columns.items()
    }


def plain_insert(connection: Connection, table: Table, batch: Batch) -> str:
    """INSERT of the batch's columns with the driver's placeholders (names from the table)."""
    preparer = connection.dialect.identifier_preparer
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    quoted = ", ".join(preparer.quote(name) for name in batch.columns)
    marks = ", ".join([mark] * len(batch.columns))
    return f"INSERT INTO {preparer.format_table(table)} ({quoted}) VALUES ({marks})"  # noqa: S608 - names come from the table


def execute_columns(connection: Connection, table: Table, statement: str, batch: Batch) -> None:
    """Run `statement` (positional placeholders, one per column) for every row of the batch,
    through the driver's executemany."""
    columns = storage_columns(connection, table, batch)
    connection.exec_driver_sql(
        statement,
        list(zip(*columns.values(), strict=True)),
        execution_options={WRITES_TO: table},
    )


def execute_compiled(connection: Connection, table: Table, statement: Insert, batch: Batch) -> bool:
    """Run an INSERT-like `statement` once per row of the batch, compiled once and handed to the
    driver's executemany; False (nothing run) when its parameters are not plainly the columns."""
    names = tuple(batch.columns)
    compiled = statement.compile(dialect=connection.dialect, column_keys=list(names))
    if set(compiled.binds) != set(names):
        return False
    columns = storage_columns(connection, table, batch)
    if compiled.positiontup is not None:
        order = [columns[key] for key in compiled.positiontup]
        parameters: list[Any] = list(zip(*order, strict=True))
    else:
        parameters = [
            dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)
        ]
    connection.exec_driver_sql(str(compiled), parameters, execution_options={WRITES_TO: table})
    return True


def python_type(table: Table, name: str) -> type | None:
    """The Python type of column `name`'s values, where SQLAlchemy knows it."""
    try:
        found: type = table.c[name].type.python_type
    except NotImplementedError:
        return None
    return found


def uuid_hex(value: uuid.UUID | str) -> str:
    """A UUID (or its storage form already) as 32 hex digits."""
    return value.hex if isinstance(value, uuid.UUID) else value
