"""PostgreSQL's bulk upsert: the uniform batches of one `upsert_many` call written by COPY, a
round of batches at a time.

A round's rows are written the way `create_many` writes: streamed by one COPY straight into the
table, in a savepoint. When a row's key is already stored (or is being stored by a concurrent
transaction that commits), the unique index refuses the COPY; the savepoint undoes it, and the
round goes the general way: the same COPY text into a staging table, then one
`INSERT ... SELECT ... ON CONFLICT DO UPDATE`, which inserts or updates each row atomically.
A round whose first batch names a stored key goes the general way at once (one indexed probe),
and after one refused round the whole call does: it updates rows.

A statement per batch would pay, a thousand rows at a time, for emptying the staging table and
for planning and starting the upsert; a round pays for them once. A round ends at `ROUND_ROWS`
rows (its COPY text is kept for the general way), before a batch of another shape (other
columns or other given fields), and before a batch that names a key the round already holds:
one `ON CONFLICT DO UPDATE` may not touch a row twice, and the later row must win as it would
batch by batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, literal, select, tuple_
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from app.db.bulk import Staging, columns_copy_text, copy_text
from app.db.streaming import is_streaming
from app.repositories.upserts import upsert_statement

# Rows a round holds: enough that the per-round costs vanish, few enough that the COPY text and
# the keys a round keeps stay a few megabytes.
ROUND_ROWS = 50_000
_UNIQUE_VIOLATION = "23505"


@dataclass(frozen=True)
class UniformUpsert:
    """A batch whose rows give the same fields, checked and completed column by column."""

    columns: dict[str, list[Any]]
    stored_as_is: frozenset[str]
    given: frozenset[str]
    keys: set[tuple[Any, ...]]  # the rows' conflict-target values
    count: int

    @property
    def distinct(self) -> bool:
        """Whether no two rows name the same key (one ON CONFLICT statement may take them)."""
        return len(self.keys) == self.count


Prepared = tuple[list[Any], UniformUpsert | None]


def upsert_in_rounds(
    session: Session,
    table: Table,
    target: tuple[str, ...],
    prepared: Iterator[Prepared],
    otherwise: Callable[[list[Any], UniformUpsert | None], None],
) -> None:
    """Upsert every prepared batch: distinct uniform ones in rounds, the others by `otherwise`,
    in their order."""
    rounds = _Rounds(session, table, target)
    connection = session.connection()
    pending = next(prepared, None)
    while pending is not None:
        batch, uniform = pending
        # Rows that may come from a stream on this connection (known once the first batch is
        # taken) are not pulled from inside a COPY.
        if uniform is None or not uniform.distinct or is_streaming(connection):
            otherwise(batch, uniform)
            pending = next(prepared, None)
        else:
            pending = rounds.run(uniform, prepared)


class _Rounds:
    def __init__(self, session: Session, table: Table, target: tuple[str, ...]) -> None:
        self._session = session
        self._table = table
        self._target = target
        self._direct = True  # until a round meets a stored key

    def run(self, first: UniformUpsert, prepared: Iterator[Prepared]) -> Prepared | None:
        """Write a round that starts with `first` and takes what follows while it fits; the
        first batch that does not fit, or None at the end."""
        names = tuple(first.columns)
        write = columns_copy_text(self._table, names)
        keys = set(first.keys)
        count = first.count
        leftover: Prepared | None = None
        kept: list[str] = []

        def texts() -> Iterator[str]:
            nonlocal count, leftover
            current = first
            while True:
                text = write(current.columns, current.stored_as_is)
                if self._direct:
                    kept.append(text)
                yield text
                following = next(prepared, None)
                if following is None:
                    return
                uniform = following[1]
                if (
                    uniform is None
                    or not uniform.distinct
                    or tuple(uniform.columns) != names
                    or uniform.given != first.given
                    or count + uniform.count > ROUND_ROWS
                    or not keys.isdisjoint(uniform.keys)
                ):
                    leftover = following
                    return
                keys.update(uniform.keys)
                count += uniform.count
                current = uniform

        stream = texts()
        if self._direct and self._any_stored(first.keys):
            self._direct = False  # an update: the general way from the start
        if self._direct:
            try:
                with self._session.begin_nested():
                    # Asked for inside: the session begins the savepoint on the connection then.
                    copy_text(self._session.connection(), self._table, names, stream)
                return leftover
            except sa_exc.IntegrityError as exc:
                if getattr(exc.orig, "sqlstate", None) != _UNIQUE_VIOLATION:
                    raise
            self._direct = False
            kept.extend(stream)  # what the COPY had not taken when it was refused
            stream = iter(kept)
        connection = self._session.connection()
        staging = Staging(connection, self._table, names)
        staging.load(stream)
        statement = upsert_statement(
            "postgresql", self._table, names, self._target, first.given, source=staging.rows()
        )
        connection.execute(statement)
        return leftover

    def _any_stored(self, keys: set[tuple[Any, ...]]) -> bool:
        """Whether a row with one of `keys` is stored already: asked of the round's first batch
        so that a call that updates rows goes the general way without a refused COPY first
        (which the server would also log as an error)."""
        columns = tuple_(*(self._table.c[name] for name in self._target))
        probe = select(literal(1)).where(columns.in_(list(keys))).limit(1)
        return self._session.connection().execute(probe).first() is not None
