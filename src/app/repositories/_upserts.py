"""Upserts row by row: rows grouped by the set of fields each gives, one statement per group,
and, where the rows name another unique key than the conflict target, the check that they met
no other row (in a savepoint, so that a conflict leaves nothing changed). A uniform batch goes
the faster way instead (`_bulk.upsert_batches` and the backend's `upsert_batches`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from app.db.errors import InvalidQueryError, conflict_on, kept_key
from app.db.types import utcnow
from app.dialects import Backend
from app.repositories import _statements
from app.repositories._bulk import complete_rows
from app.repositories._values import (
    Data,
    Prepare,
    Rules,
    new_rows_values,
    other_keys_given,
    target_given,
)


def upsert_rows(
    session: Session,
    rules: Rules,
    backend: Backend,
    batch: Sequence[Data],
    target: tuple[str, ...],
    *,
    prepare: Prepare,
) -> list[dict[str, Any]]:
    """Upsert rows one statement per set of given fields; the rows as sent."""
    missing: set[str] = set()
    given_sets: dict[frozenset[str], list[dict[str, Any]]] = {}
    for values in new_rows_values(rules, batch, prepare=prepare, upserting=True):
        # A primary key left out that is made here (an id): such a row can only be inserted.
        missing |= {
            name for name in target if target_given(rules, name) and values.get(name) is None
        }
        given_sets.setdefault(frozenset(values), []).append(values)
    if missing:
        named = ", ".join(sorted(missing))
        numbered = sorted(missing & rules.database_filled)
        why = (
            f" ({', '.join(numbered)}: the database fills it in, so a row without it can "
            "only be created: create, create_many)"
            if numbered
            else ""
        )
        raise InvalidQueryError(f"upsert needs a value for {named} in every row{why}")
    now = utcnow()
    sent: list[dict[str, Any]] = []
    for given, group in given_sets.items():
        for columns in complete_rows(rules, group, now):
            params = [
                dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)
            ]
            _upsert_group(session, rules, backend, params, target, given)
            sent += params
    return sent


def _upsert_group(
    session: Session,
    rules: Rules,
    backend: Backend,
    params: list[dict[str, Any]],
    target: tuple[str, ...],
    given: frozenset[str],
) -> None:
    statement = _statements.upsert_statement(rules, backend, target, given)
    others = other_keys_given(rules, given, target)
    if not others:
        session.execute(statement, params)
        return
    # The rows name another unique key too: check that they met no other row, in a
    # savepoint, so a conflict leaves nothing changed.
    names = list(dict.fromkeys([*target, *(name for key in others for name in key)]))
    with session.begin_nested() as savepoint:
        session.execute(statement, params)
        stored = session.execute(_statements.select_stored_keys(rules, params, target, names)).all()
        collided = _statements.conflicting_key(stored, params, target, others, names)
        if collided is not None:
            savepoint.rollback()
    if collided is None:
        return
    key, row = collided
    values = {name: row[name] for name in key}
    if None in values.values() or session.scalar(_statements.select_holding(rules, values)):
        raise conflict_on(rules.table, key)
    # No row holds the key given: the row the target matched holds another.
    raise kept_key(rules.table, target, key)
