"""INSERT-or-UPDATE in one statement, with each database's own syntax, so concurrent callers
never race: PostgreSQL and SQLite `ON CONFLICT DO UPDATE`, MariaDB `ON DUPLICATE KEY UPDATE`.

Only the fields a caller gave are updated (plus `version` and `updated_at`): a field left out
keeps its stored value.

When rows also give values for another unique key (an upsert by id that names an email, or by
email that names an id), the statement alone cannot be trusted: MariaDB's has no conflict target
and updates whichever row any unique key matched, and PostgreSQL and SQLite update the target's
row without looking at the other key. `conflicting_key` then checks the outcome, so the caller
can undo it and report a conflict.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Insert,
    Select,
    Table,
    UniqueConstraint,
    literal_column,
    select,
    tuple_,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite

from app.db.errors import InvalidQueryError

# Never overwritten by an upsert: the row keeps its identity and its birth date.
_KEPT_ON_UPDATE = frozenset({"id", "created_at", "version", "updated_at"})


def unique_keys(table: Table) -> list[tuple[str, ...]]:
    """The primary key and every unique constraint of `table`, as column-name tuples."""
    return [tuple(table.primary_key.columns.keys())] + [
        tuple(constraint.columns.keys())
        for constraint in table.constraints
        if isinstance(constraint, UniqueConstraint)
    ]


def check_conflict_target(table: Table, conflict: Sequence[str]) -> tuple[str, ...]:
    """`conflict` as a tuple, if it names a unique constraint or the primary key of `table`."""
    if isinstance(conflict, str):
        conflict = (conflict,)
    candidates = unique_keys(table)
    if set(conflict) not in [set(key) for key in candidates]:
        described = ", ".join("(" + ", ".join(sorted(key)) + ")" for key in candidates)
        raise InvalidQueryError(
            f"conflict={tuple(conflict)!r} is not a unique key of {table.name}; "
            f"unique keys: {described}"
        )
    return tuple(conflict)


def other_keys_given(
    table: Table, given: Collection[str], target: Sequence[str]
) -> list[tuple[str, ...]]:
    """Unique keys besides `target` whose every column the caller gave a value for."""
    return [
        key
        for key in unique_keys(table)
        if set(key) != set(target) and all(name in given for name in key)
    ]


def upsert_statement(
    dialect: str,
    table: Table,
    columns: Sequence[str],
    conflict: Sequence[str],
    given: Collection[str],
    *,
    source: Select[Any] | None = None,
) -> Insert:
    """INSERT of `columns` that, on a conflict on `conflict`, updates only the `given` fields,
    advances `version` and sets `updated_at` from the new row. The rows are parameters, or the
    result of `source` (PostgreSQL and SQLite)."""
    updated = [
        name for name in columns if name in given and name not in _KEPT_ON_UPDATE
        and name not in conflict
    ]  # fmt: skip
    if dialect in ("postgresql", "sqlite"):
        module: Any = postgresql if dialect == "postgresql" else sqlite
        statement = module.insert(table)
        if source is not None:
            statement = statement.from_select(list(columns), source)
        excluded = {name: statement.excluded[name] for name in [*updated, "updated_at"]}
        excluded["version"] = _next_version(table)
        return statement.on_conflict_do_update(index_elements=list(conflict), set_=excluded)  # type: ignore[no-any-return]
    statement = mysql.insert(table)
    changes = {name: statement.inserted[name] for name in [*updated, "updated_at"]}
    # Evaluated left to right by MariaDB: version must be computed from its old value.
    return statement.on_duplicate_key_update({"version": _next_version(table), **changes})


def conflicting_key(
    connection: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    target: Sequence[str],
    others: Sequence[tuple[str, ...]],
) -> tuple[str, ...] | None:
    """The first of the `others` keys on which an upsert of `rows` met a different row: the row
    with a sent row's `target` values is missing, or holds other values for that key."""
    names = list(dict.fromkeys([*target, *(name for key in others for name in key)]))
    sent_targets = [tuple(row[name] for name in target) for row in rows]
    statement = select(*(table.c[name] for name in names)).where(
        tuple_(*(table.c[name] for name in target)).in_(sent_targets)
    )
    width = len(target)
    stored = {
        tuple(found[:width]): dict(zip(names, found, strict=True))
        for found in connection.execute(statement)
    }
    for row, key_values in zip(rows, sent_targets, strict=True):
        found = stored.get(key_values)
        for key in others:
            if found is None or any(found[name] != row[name] for name in key):
                return key
    return None


def _next_version(table: Table) -> Any:
    # A literal 1, not a bound parameter: PyMySQL's executemany cannot fill a parameter that
    # sits in the ON DUPLICATE KEY UPDATE clause rather than in the VALUES rows.
    return table.c.version + literal_column("1")
