"""INSERT-or-UPDATE in one statement, with each database's own syntax, so concurrent callers
never race: PostgreSQL and SQLite `ON CONFLICT DO UPDATE`, MariaDB `ON DUPLICATE KEY UPDATE`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Insert, Table, UniqueConstraint, literal_column
from sqlalchemy.dialects import mysql, postgresql, sqlite

from app.db.errors import InvalidQueryError

# Never overwritten by an upsert: the row keeps its identity and its birth date.
_KEPT_ON_UPDATE = frozenset({"id", "created_at", "version"})


def check_conflict_target(table: Table, conflict: Sequence[str]) -> tuple[str, ...]:
    """`conflict` as a tuple, if it names a unique constraint or the primary key of `table`."""
    if isinstance(conflict, str):
        conflict = (conflict,)
    wanted = set(conflict)
    candidates = [set(table.primary_key.columns.keys())] + [
        set(constraint.columns.keys())
        for constraint in table.constraints
        if isinstance(constraint, UniqueConstraint)
    ]
    if wanted not in candidates:
        described = ", ".join("(" + ", ".join(sorted(c)) + ")" for c in candidates)
        raise InvalidQueryError(
            f"conflict={tuple(conflict)!r} is not a unique key of {table.name}; "
            f"unique keys: {described}"
        )
    return tuple(conflict)


def upsert_statement(
    dialect: str, table: Table, columns: Sequence[str], conflict: Sequence[str]
) -> Insert:
    """INSERT of `columns` that, on a conflict on `conflict`, updates the other given columns,
    advances `version` and sets `updated_at` from the new row."""
    updated = [name for name in columns if name not in _KEPT_ON_UPDATE and name not in conflict]
    if dialect in ("postgresql", "sqlite"):
        module: Any = postgresql if dialect == "postgresql" else sqlite
        statement = module.insert(table)
        changes = {name: statement.excluded[name] for name in updated}
        changes["version"] = _next_version(table)
        return statement.on_conflict_do_update(index_elements=list(conflict), set_=changes)  # type: ignore[no-any-return]
    statement = mysql.insert(table)
    changes = {name: statement.inserted[name] for name in updated}
    # Evaluated left to right by MariaDB: version must be computed from its old value.
    return statement.on_duplicate_key_update({"version": _next_version(table), **changes})


def _next_version(table: Table) -> Any:
    # A literal 1, not a bound parameter: PyMySQL's executemany cannot fill a parameter that
    # sits in the ON DUPLICATE KEY UPDATE clause rather than in the VALUES rows.
    return table.c.version + literal_column("1")
