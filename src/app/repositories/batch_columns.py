"""The fast path of `create_many`: a batch of like rows, checked and completed column by column.

Most bulk inputs are uniform: the same fields in every row, values already of the columns'
types. For such a batch every rule of `_new_row_values` is checked per column with C-level
operations (the set of value types, one `"\\x00" in "".join(column)`, the longest length), which
costs a fraction of checking value by value. Any batch that is not plainly fine (a field
missing, an id given as text, a value too long, ...) returns None and goes the row-by-row way,
which converts what may be converted and raises the precise error: the outcome is the same,
only slower.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from operator import itemgetter, methodcaller
from typing import TYPE_CHECKING, Any

from app.db.types import new_hex_ids
from app.repositories.columns import INT32_MAX, INT32_MIN, column_specs

if TYPE_CHECKING:
    from app.repositories.core import RepositoryCore

_NONE = type(None)
_UTC_OFFSET = methodcaller("utcoffset")


def complete_columns(
    repository: RepositoryCore[Any], batch: Sequence[Any], now: dt.datetime
) -> tuple[dict[str, list[Any]], frozenset[str]] | None:
    """Every column of the new rows of `batch`, by name, and the names of the columns whose
    values are already in storage form (ids generated as hex); None to go row by row."""
    first = batch[0]
    if type(first) is not dict:
        return None
    keys = first.keys()
    if any(type(row) is not dict or row.keys() != keys for row in batch):
        return None
    given = frozenset(keys)
    if not given <= repository._creatable or not repository._required_columns <= given:
        return None
    table = repository._table
    specs = column_specs(table)
    count = len(batch)
    columns: dict[str, list[Any]] = {}
    for name in keys:
        values = list(map(itemgetter(name), batch))
        kind, length = specs[name]
        if not _plainly_fine(values, kind, length, nullable=bool(table.c[name].nullable)):
            return None
        columns[name] = values
    if not repository.prepare_columns(columns):
        return None
    generated: frozenset[str] = frozenset()
    template = repository._row_template(now)
    for column in table.columns:
        name = column.key
        if name in columns:
            continue
        if name == "id":
            columns[name] = list(new_hex_ids(count))
            generated = frozenset({"id"})
        else:
            columns[name] = [template[name]] * count
    return columns, generated


def _plainly_fine(
    values: list[Any], kind: type | None, length: int | None, *, nullable: bool
) -> bool:
    types = set(map(type, values))
    if _NONE in types:
        if not nullable:
            return False
        types.discard(_NONE)
        values = [value for value in values if value is not None]
    if not values:
        return True
    if kind is None or types != {kind}:
        return False
    if kind is str:
        longest: int = max(map(len, values))
        return "\x00" not in "".join(values) and (length is None or longest <= length)
    if kind is int:
        lowest: int = min(values)
        highest: int = max(values)
        return lowest >= INT32_MIN and highest <= INT32_MAX
    if kind is dt.datetime:
        return None not in map(_UTC_OFFSET, values)
    return kind in (bool, uuid.UUID)
