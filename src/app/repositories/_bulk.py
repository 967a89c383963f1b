"""Rows of a bulk write in batches, each checked and completed the way `create` would write
them: column by column when the batch is uniform (the fast path of `_values`), else row by row.
Nothing here touches the database; `Repository` hands the batches to its backend."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, cast

from app.db.types import utcnow
from app.dialects import Backend, Batch, UniformUpsert
from app.repositories import _statements
from app.repositories._values import (
    Data,
    Prepare,
    PrepareColumns,
    Rules,
    batches,
    complete_rows,
    new_row_values,
    other_keys_given,
    uniform_columns,
)


def new_rows(
    rules: Rules,
    rows: Sequence[Data],
    now: dt.datetime,
    *,
    prepare: Prepare,
    prepare_columns: PrepareColumns,
) -> Batch:
    """One batch of new rows, checked and completed: column by column when it is uniform."""
    uniform = uniform_columns(rules, rows, now, prepare_columns)
    if uniform is not None:
        return Batch(len(rows), uniform[0], uniform[1])
    checked = [new_row_values(rules, row, prepare=prepare) for row in rows]
    return Batch(len(rows), complete_rows(rules, checked, now))


def new_row_batches(
    rules: Rules,
    rows: Iterable[Data],
    batch_size: int,
    *,
    prepare: Prepare,
    prepare_columns: PrepareColumns,
) -> Iterator[Batch]:
    """`rows` as batches of new rows, pulled lazily."""
    for batch in batches(rows, batch_size):
        yield new_rows(rules, batch, utcnow(), prepare=prepare, prepare_columns=prepare_columns)


def upsert_batches(
    rules: Rules,
    backend: Backend,
    rows: Iterable[Data],
    batch_size: int,
    target: tuple[str, ...],
    *,
    prepare_columns: PrepareColumns,
    counted: Callable[[int], None],
) -> Iterator[tuple[list[Any], UniformUpsert | None]]:
    """`rows` in batches for an upsert on `target`, each with its uniform form when it has one;
    `counted` hears of each batch's size."""
    for batch in batches(rows, batch_size):
        counted(len(batch))
        yield batch, uniform_upsert(rules, backend, batch, target, prepare_columns)


def uniform_upsert(
    rules: Rules,
    backend: Backend,
    rows: list[Data],
    target: tuple[str, ...],
    prepare_columns: PrepareColumns,
) -> UniformUpsert | None:
    """A batch whose rows give the same fields, the target's among them, and no other unique
    key, checked and completed column by column; None for any other batch (which goes row by
    row, where the outcome is checked when other keys are given)."""
    if len(rows) < 2:
        return None
    uniform = uniform_columns(rules, rows, utcnow(), prepare_columns)
    if uniform is None:
        return None
    columns, stored_as_is = uniform
    given: frozenset[str] = frozenset(cast("dict[str, Any]", rows[0]))
    if not all(name in given for name in target if name not in rules.primary_key):
        return None
    if other_keys_given(rules, given, target):
        return None
    keys = set(zip(*(columns[name] for name in target), strict=True))

    def statement(source: Any = None) -> Any:
        return _statements.upsert_statement(rules, backend, target, given, source=source)

    return UniformUpsert(Batch(len(rows), columns, stored_as_is), given, keys, statement)
