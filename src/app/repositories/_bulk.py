"""Rows of a bulk write in batches, each checked and completed the way `create` would write them,
then handed to the backend (`Backend.insert_batches`, `upsert_batches`). Nothing here touches the
database.

Completing a row: a managed timestamp gets the batch's `now`, the version 1, a UUID primary key
a fresh UUIDv7, any other column its Python default (a callable one once per row); a column the
database fills itself (a server default, an identity, an autoincrement key) is left out when the
row does not give it, so the database does, exactly as for `create`. Rows that leave out
different such columns go in separate batches.

Most bulk inputs are uniform: the same fields in every row, values already of the columns'
types. For such a batch every rule of `_values` is checked per column with C-level operations
(the set of value types, one `"\\x00" in "".join(column)`, the longest length, ...), which costs a
fraction of checking value by value. Any batch that is not plainly fine (a field missing, an id
given as text, a value too long, ...) goes the row-by-row way, which converts what may be
converted and raises the precise error: the outcome is the same, only slower.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from operator import attrgetter, itemgetter, methodcaller
from typing import Any, cast

from app.db.errors import InvalidQueryError
from app.db.types import new_hex_ids, new_id, utcnow
from app.dialects import Backend, Batch, UniformUpsert
from app.repositories import _statements
from app.repositories._column_rules import (
    DEEPEST_JSON,
    ColumnRule,
    holds_nul,
    leaves_the_calendar,
    too_deep,
)
from app.repositories._values import (
    Data,
    Prepare,
    Rules,
    batches,
    new_rows_values,
    other_keys_given,
    target_given,
)

PrepareColumns = Callable[[dict[str, list[Any]]], bool]
_NONE = type(None)
_UTC_OFFSET = methodcaller("utcoffset")
_YEAR = attrgetter("year")
_ENDS = frozenset((dt.MINYEAR, dt.MAXYEAR))


class _DefaultContext:
    """What a context-sensitive Python default may ask of the row it fills
    (`context.get_current_parameters()`), as SQLAlchemy's execution context offers it."""

    def __init__(self, row: Mapping[str, Any]) -> None:
        self.current_parameters = dict(row)

    def get_current_parameters(self, isolate_multiinsert_groups: bool = True) -> dict[str, Any]:
        return self.current_parameters


Filler = Callable[[Mapping[str, Any]], Any]


def _constant(value: Any) -> Filler:
    return lambda _row: value


def _called(make: Callable[[Any], Any]) -> Filler:
    return lambda row: make(_DefaultContext(row))


def _fillers(rules: Rules, now: dt.datetime) -> dict[str, Filler]:
    """For each column a new row may leave out and Python fills, how to fill it from the row."""
    fillers: dict[str, Filler] = {}
    generated = _generated_key(rules)
    for column in rules.table.columns:
        name = column.key
        default = column.default
        if name in rules.created or name in rules.updated:
            fillers[name] = _constant(now)
        elif name == rules.version:
            fillers[name] = _constant(1)
        elif name == generated:
            fillers[name] = lambda _row: new_id()
        elif default is not None and default.is_scalar:
            fillers[name] = _constant(default.arg)  # type: ignore[attr-defined]
        elif default is not None and default.is_callable:
            fillers[name] = _called(default.arg)  # type: ignore[attr-defined]
        elif name not in rules.database_filled:
            fillers[name] = _constant(None)
    return fillers


def _generated_key(rules: Rules) -> str | None:
    """The primary key column whose values are made in Python when left out (a UUID)."""
    if len(rules.primary_key) == 1 and rules.kind(rules.primary_key[0]) is uuid.UUID:
        return rules.primary_key[0]
    return None


def complete_rows(
    rules: Rules, checked: Sequence[Mapping[str, Any]], now: dt.datetime
) -> list[dict[str, list[Any]]]:
    """Whole rows, as `create` would write them, column by column: one group of columns per run
    of rows that give the same database-filled columns, in the rows' order (a key the database
    numbers, given by one row, moves the numbering for the rows after it, and a row may refer
    to one before it). `checked` are what `new_row_values` returned."""
    fillers = _fillers(rules, now)
    groups: list[dict[str, list[Any]]] = []
    last: frozenset[str] | None = None
    for values in checked:
        given_filled = frozenset(name for name in values if name in rules.database_filled)
        if given_filled != last:
            names = [
                name
                for name in rules.table.columns.keys()  # noqa: SIM118 - a ColumnCollection
                if name in fillers or name in given_filled
            ]
            groups.append({name: [] for name in names})
            last = given_filled
        for name, column in groups[-1].items():
            column.append(values[name] if name in values else fillers[name](values))
    return groups


def new_rows(
    rules: Rules,
    rows: Sequence[Data],
    now: dt.datetime,
    *,
    prepare: Prepare,
    prepare_columns: PrepareColumns,
) -> list[Batch]:
    """One batch of new rows, checked and completed: column by column when it is uniform."""
    uniform = uniform_columns(rules, rows, now, prepare_columns)
    if uniform is not None:
        return [Batch(len(rows), uniform[0], uniform[1])]
    checked = new_rows_values(rules, rows, prepare=prepare)
    return [
        Batch(len(next(iter(columns.values()), [])), columns)
        for columns in complete_rows(rules, checked, now)
    ]


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
        yield from new_rows(
            rules, batch, utcnow(), prepare=prepare, prepare_columns=prepare_columns
        )


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
    if not all(name in given for name in target if target_given(rules, name)):
        return None  # row by row, which says what is missing
    if other_keys_given(rules, given, target):
        return None
    keys = set(zip(*(columns[name] for name in target), strict=True))

    def statement(source: Any = None) -> Any:
        return _statements.upsert_statement(rules, backend, target, given, source=source)

    return UniformUpsert(Batch(len(rows), columns, stored_as_is), given, keys, statement)


# -- the uniform fast path ------------------------------------------------------------------------


def uniform_columns(
    rules: Rules, batch: Sequence[Any], now: dt.datetime, prepare_columns: PrepareColumns
) -> tuple[dict[str, list[Any]], frozenset[str]] | None:
    """Every column of the new rows of `batch`, by name, and the names of the columns whose
    values are already in storage form (ids generated as hex, JSON as its text); None to go row
    by row."""
    first = batch[0]
    if type(first) is not dict:
        return None
    keys = first.keys()
    if any(type(row) is not dict or row.keys() != keys for row in batch):
        return None
    given = frozenset(keys)
    if not given <= rules.creatable or not rules.required <= given:
        return None
    columns = {name: list(map(itemgetter(name), batch)) for name in keys}
    # Normalised first, so that lengths are those of the stored form.
    if not all(_of_type(rules.rule(name), values) for name, values in columns.items()):
        return None
    if not prepare_columns(columns):
        return None
    stored_as_is: set[str] = set()
    for name, values in columns.items():
        fine = _plainly_fine(rules.rule(name), values)
        if fine is None:
            return None
        if fine is not values:
            columns[name] = fine
            stored_as_is.add(name)
    count = len(batch)
    complete: dict[str, list[Any]] = {}
    generated = _generated_key(rules)
    fillers = _fillers(rules, now)
    for name in rules.table.columns.keys():  # noqa: SIM118 - a ColumnCollection
        if name in columns:
            complete[name] = columns[name]
        elif name == generated:
            complete[name] = new_hex_ids(count)
            stored_as_is.add(name)
        elif name in fillers:
            filler = fillers[name]
            default = rules.table.c[name].default
            if default is not None and default.is_callable and name not in rules.updated:
                complete[name] = [filler(row) for row in batch]  # a fresh value for each row
            else:
                complete[name] = [filler(first)] * count
    return complete, frozenset(stored_as_is)


def _of_type(rule: ColumnRule, values: list[Any]) -> bool:
    """Whether every value is of the column's Python type exactly (or None where allowed)."""
    types = set(map(type, values))
    if _NONE in types:
        if not rule.nullable:
            return False
        types.discard(_NONE)
    if not types or rule.kind == "json":
        return True
    if rule.kind == "float":
        return types <= {float, int}
    if rule.kind == "uuid":
        # The ids `new_id` makes are UUIDs of uuid6's subclass: as good as the base class.
        return all(issubclass(kind, uuid.UUID) for kind in types)
    return rule.python is not None and types == {rule.python}


def _plainly_fine(rule: ColumnRule, values: list[Any]) -> list[Any] | None:
    """`values` when every one is fine for the column (a JSON column's as their text, the form
    they are stored in); None when one is not, or could not be told fine here."""
    present = [value for value in values if value is not None] if None in values else values
    if not present:
        return values
    check = _COLUMN_CHECKS.get(rule.kind)
    if check is None:
        return None
    try:
        return check(rule, values, present)
    except InvalidQueryError:
        return None


def _fine_text(rule: ColumnRule, values: list[Any], present: list[Any]) -> list[Any] | None:
    joined = "".join(present)
    if "\x00" in joined:
        return None
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError:
        return None
    longest: int = max(map(len, present))
    if rule.length is not None and longest > rule.length:
        return None
    # A character is at most four bytes: only a column that may be too long is measured.
    maybe_too_long = rule.max_bytes is not None and longest * 4 > rule.max_bytes
    if maybe_too_long and max(len(value.encode()) for value in present) > (rule.max_bytes or 0):
        return None
    return values


def _fine_integer(rule: ColumnRule, values: list[Any], present: list[Any]) -> list[Any] | None:
    bits = rule.bits or 64
    lowest: int = min(present)
    highest: int = max(present)
    return values if -(2 ** (bits - 1)) <= lowest and highest < 2 ** (bits - 1) else None


def _fine_float(rule: ColumnRule, values: list[Any], present: list[Any]) -> list[Any] | None:
    try:
        return values if all(map(math.isfinite, present)) else None
    except OverflowError:  # an integer past every float: refused row by row
        return None


def _fine_one_by_one(rule: ColumnRule, values: list[Any], present: list[Any]) -> list[Any] | None:
    # Decimals: each one's digits. The check returns the very value it was given when it is fine.
    return values if all(rule.coerce(value) is value for value in present) else None


def _fine_timestamp(rule: ColumnRule, values: list[Any], present: list[Any]) -> list[Any] | None:
    if rule.aware:
        if None in map(_UTC_OFFSET, present):
            return None
        # Only a datetime in the calendar's first or last year may leave it once in UTC.
        if not _ENDS.isdisjoint(map(_YEAR, present)) and any(map(leaves_the_calendar, present)):
            return None
        return values
    return values if all(value.tzinfo is None for value in present) else None


def _fine_json(rule: ColumnRule, values: list[Any], present: list[Any]) -> list[Any] | None:
    # Checked by encoding each one once, which is also the text it is stored as: what the
    # row-by-row check (`_values._json`) refuses, this finds in the text (a NUL, a lone
    # surrogate, a number JSON has no form for) and leaves to that check's precise error.
    try:
        dumped = [
            None if value is None else json.dumps(value, ensure_ascii=False, allow_nan=False)
            for value in values
        ]
        joined = "".join(text for text in dumped if text is not None)
        joined.encode("utf-8")
    except (ValueError, TypeError, RecursionError):
        return None
    if holds_nul(joined):
        return None
    if joined.count("[") + joined.count("{") > DEEPEST_JSON and any(
        text is not None and too_deep(value, text)
        for value, text in zip(values, dumped, strict=True)
    ):
        return None
    return dumped


def _fine_binary(rule: ColumnRule, values: list[Any], present: list[Any]) -> list[Any] | None:
    limit = rule.max_bytes
    return values if limit is None or max(map(len, present)) <= limit else None


def _fine_as_they_are(rule: ColumnRule, values: list[Any], present: list[Any]) -> list[Any]:
    return values  # of the column's type: nothing more to check (booleans, UUIDs, enums, dates)


_COLUMN_CHECKS: dict[str, Callable[[ColumnRule, list[Any], list[Any]], list[Any] | None]] = {
    "text": _fine_text,
    "integer": _fine_integer,
    "float": _fine_float,
    "decimal": _fine_one_by_one,
    "timestamp": _fine_timestamp,
    "json": _fine_json,
    "binary": _fine_binary,
    "boolean": _fine_as_they_are,
    "uuid": _fine_as_they_are,
    "date": _fine_as_they_are,
    "enum": _fine_as_they_are,
}
