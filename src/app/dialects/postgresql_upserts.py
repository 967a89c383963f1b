"""`upsert_many` on PostgreSQL: uniform batches written by COPY, a round of batches at a time,
straight into the table while no key is stored, else through a staging table and one
`INSERT ... SELECT ... ON CONFLICT` (`_Rounds`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import Connection, Select, Table, literal, select, tuple_
from sqlalchemy import column as lightweight_column
from sqlalchemy import table as lightweight_table
from sqlalchemy.orm import Session

from app.db.errors import ConflictError
from app.dialects.base import PreparedUpsert, UniformUpsert, UpsertOtherwise
from app.dialects.postgresql_copy import copy_from, copy_text, copy_writers
from app.dialects.streams import is_streaming

# Rows an upsert round holds: enough that the per-round costs vanish, few enough that the COPY
# text and the keys a round keeps stay a few megabytes.
ROUND_ROWS = 50_000


def upsert_in_rounds(
    session: Session,
    table: Table,
    target: tuple[str, ...],
    prepared: Iterator[PreparedUpsert],
    otherwise: UpsertOtherwise,
) -> None:
    """Upsert every prepared batch on `target`, in order: distinct uniform batches whose columns
    COPY text can carry in rounds, the others by `otherwise` (the repository's general way)."""
    rounds = _Rounds(session, table, target)
    connection = session.connection()
    pending = next(prepared, None)
    while pending is not None:
        rows, uniform = pending
        # Rows that may come from a stream on this connection (known once the first batch is
        # taken) are not pulled from inside a COPY.
        if (
            uniform is None
            or not uniform.distinct
            or is_streaming(connection)
            or copy_writers(table, tuple(uniform.batch.columns)) is None
        ):
            otherwise(rows, uniform)
            pending = next(prepared, None)
        else:
            pending = rounds.run(uniform, prepared)


class _Staging:
    """This session's staging table for `table`: a temporary table emptied when it is opened
    and at every commit, loaded by COPY and read back by one SELECT (`rows`)."""

    def __init__(self, connection: Connection, table: Table, names: tuple[str, ...]) -> None:
        self._connection = connection
        self.names = names
        name = f"app_staged_{table.name}"
        preparer = connection.dialect.identifier_preparer
        quoted = preparer.quote(name)
        connection.exec_driver_sql(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {quoted} "
            f"(LIKE {preparer.format_table(table)}) ON COMMIT DELETE ROWS"
        )
        connection.exec_driver_sql(f"TRUNCATE {quoted}")
        self._stage = lightweight_table(name, *(lightweight_column(column) for column in names))

    def load(self, chunks: Iterable[str]) -> None:
        """Add rows written as COPY text of the columns `names`, in one COPY."""
        copy_from(self._connection, self._stage, self.names, chunks)

    def rows(self) -> Select[Any]:
        """A SELECT of every row loaded."""
        return select(*self._stage.c)


class _Rounds:
    """The uniform batches of one `upsert_many` written by COPY, a round of batches at a time.

    A round's rows are written the way `create_many` writes: streamed by one COPY straight into
    the table, in a savepoint. When a row's key is already stored (or is being stored by a
    concurrent transaction that commits), the unique index refuses the COPY; the savepoint
    undoes it, and the round goes the general way: the same COPY text into a staging table,
    then one `INSERT ... SELECT ... ON CONFLICT DO UPDATE`, which inserts or updates each row
    atomically. A round whose first batch names a stored key goes the general way at once (one
    indexed probe), and after one refused round the whole call does: it updates rows.

    A statement per batch would pay, a thousand rows at a time, for emptying the staging table
    and for planning and starting the upsert; a round pays for them once. A round ends at
    `ROUND_ROWS` rows (its COPY text is kept for the general way), before a batch of another
    shape (other columns or other given fields), and before a batch that names a key the round
    already holds: one `ON CONFLICT DO UPDATE` may not touch a row twice, and the later row
    must win as it would batch by batch.
    """

    def __init__(self, session: Session, table: Table, target: tuple[str, ...]) -> None:
        self._session = session
        self._table = table
        self._target = target
        self._direct = True  # until a round meets a stored key

    def run(
        self, first: UniformUpsert, prepared: Iterator[PreparedUpsert]
    ) -> PreparedUpsert | None:
        """Write a round that starts with `first` and takes what follows while it fits; the
        first batch that does not fit, or None at the end."""
        names = tuple(first.batch.columns)
        writers = copy_writers(self._table, names)
        assert writers is not None, "rounds take batches that COPY text can carry"
        keys = set(first.keys)
        count = first.batch.count
        leftover: PreparedUpsert | None = None
        kept: list[str] = []

        def texts() -> Iterator[str]:
            nonlocal count, leftover
            current = first
            while True:
                chunk = copy_text(writers, current.batch)
                if self._direct:
                    kept.append(chunk)
                yield chunk
                following = next(prepared, None)
                if following is None:
                    return
                uniform = following[1]
                if (
                    uniform is None
                    or not uniform.distinct
                    or tuple(uniform.batch.columns) != names
                    or uniform.given != first.given
                    or count + uniform.batch.count > ROUND_ROWS
                    or not keys.isdisjoint(uniform.keys)
                ):
                    leftover = following
                    return
                keys.update(uniform.keys)
                count += uniform.batch.count
                current = uniform

        stream = texts()
        if self._direct and self._any_stored(first.keys):
            self._direct = False  # an update: the general way from the start
        if self._direct:
            try:
                with self._session.begin_nested():
                    # Asked for inside: the session begins the savepoint on the connection then.
                    copy_from(self._session.connection(), self._table, names, stream)
                return leftover
            except ConflictError:
                pass
            self._direct = False
            kept.extend(stream)  # what the COPY had not taken when it was refused
            stream = iter(kept)
        connection = self._session.connection()
        staging = _Staging(connection, self._table, names)
        staging.load(stream)
        connection.execute(first.statement(staging.rows()))
        return leftover

    def _any_stored(self, keys: set[tuple[Any, ...]]) -> bool:
        """Whether a row with one of `keys` is stored already: asked of the round's first batch
        so that a call that updates rows goes the general way without a refused COPY first
        (which the server would also log as an error)."""
        columns = tuple_(*(self._table.c[name] for name in self._target))
        probe = select(literal(1)).where(columns.in_(list(keys))).limit(1)
        return self._session.connection().execute(probe).first() is not None
