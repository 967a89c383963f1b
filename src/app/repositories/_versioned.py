"""Updates at a version: the paths `Repository.update` takes besides the ORM's flush, and how a
version that did not match is told.

- `update_at_version`: a version the caller knows, one `UPDATE ... RETURNING` (no read first);
- `update_read_row`: a row read already, one `UPDATE` at the version read, the instance given
  the values written as a flush would give them.

Each is taken only where nothing the ORM runs on the way would be left out (`skips_flush`).
The caller has checked the unit may write and flushed what was pending.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn, TypeVar

from sqlalchemy import CursorResult, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from app.db.errors import InvalidQueryError, NotFoundError, StaleObjectError, translate
from app.repositories import _statements
from app.repositories._values import Rules

InstanceT = TypeVar("InstanceT")


def not_found(rules: Rules) -> str:
    """The message for a row not found; the key is the caller's value (a natural key may be
    an email or a token), left out."""
    return f"no {rules.entity} with the given id"


def check_expected_version(rules: Rules, expected: object) -> None:
    """Refuse an `expected_version` that cannot be checked: no version column, or not a whole
    number (said by type only: the value is the caller's input)."""
    if rules.version is None:
        raise InvalidQueryError(
            f"{rules.name} has no version column: expected_version cannot be checked"
        )
    if not isinstance(expected, int) or isinstance(expected, bool):
        raise InvalidQueryError(
            f"expected_version must be a whole number, not {type(expected).__name__}"
        )


def not_at(rules: Rules, expected: int, current: Any) -> StaleObjectError:
    """The refusal of an update at version `expected` of a row at version `current`."""
    return StaleObjectError(
        f"the {rules.entity} is at version {current}, not version {expected}: "
        "someone changed it since it was read; load it again and retry",
        lost_race=False,
    )


def version_can_be(rules: Rules, number: int) -> bool:
    """Whether the version column can hold `number`. A version it cannot hold is stale for
    every row, found by reading the row, as on a backend whose server would refuse the number
    (PostgreSQL) as on one that would compare it (SQLite, MariaDB)."""
    try:
        rules.rule(str(rules.version)).coerce(number)
    except InvalidQueryError:
        return False
    return True


def skips_flush(session: Session, model: type[Any], rules: Rules) -> bool:
    """Whether an update may be a statement of its own rather than the ORM's flush: only where
    nothing the ORM runs on the way would be left out (validators, update events, flush
    listeners: the caller's model or session may have them)."""
    mapper = sa_inspect(model)
    dispatch = session.dispatch
    return not (
        mapper.validators
        or mapper.dispatch.before_update
        or mapper.dispatch.after_update
        or dispatch.before_flush
        or dispatch.after_flush
        or dispatch.after_flush_postexec
        or len(rules.primary_key) != 1
    )


def updates_in_one_statement(session: Session, model: type[Any], rules: Rules) -> bool:
    """Whether an update at a version the caller knows may skip reading the row: where the
    database returns the updated row, and the ORM's flush may be skipped."""
    # Without UPDATE ... RETURNING (MariaDB) the row would be read after the UPDATE: the same
    # two statements as reading it first, and measured slower (bench/updates.py).
    return session.connection().dialect.update_returning and skips_flush(session, model, rules)


def updates_without_flush(session: Session, model: type[Any], rules: Rules, instance: Any) -> bool:
    """Whether an update of `instance`, read already, may be one UPDATE at its version
    (`update_read_row`): not while the caller has changes of its own pending on it, which the
    ORM's flush would write in the same statement, and only where every `onupdate` is computed
    in Python, so the row's new values are known without reading it again."""
    return (
        not sa_inspect(instance).modified
        and skips_flush(session, model, rules)
        and not any(
            column.server_onupdate is not None
            or (column.onupdate is not None and column.onupdate.is_clause_element)
            for column in rules.table.columns
        )
    )


def update_at_version(
    session: Session,
    model: type[InstanceT],
    rules: Rules,
    key: Any,
    values: dict[str, Any],
    expected: int,
) -> InstanceT:
    """An update at a version the caller knows, in one statement; the row read back by
    RETURNING."""
    statement, parameters = _statements.update_at_version(model, rules, key, expected, values)
    options = {"synchronize_session": False, "populate_existing": True}
    found: InstanceT | None = session.scalars(
        statement, parameters, execution_options=options
    ).one_or_none()
    if found is None:
        missed(session, rules, key, expected)
    return found


def update_read_row(
    session: Session,
    model: type[Any],
    rules: Rules,
    instance: InstanceT,
    values: dict[str, Any],
    current: int,
    expected: int | None,
) -> InstanceT:
    """An update of a row read already, as one UPDATE at the version it was read at: the
    ORM's flush (about a third of a unit that updates) is skipped, and `instance` takes the
    values written, as after a flush. No row updated is a race lost to another transaction
    since the read, or, where the caller gave the version it `expected`, that version gone
    stale."""
    mapper = sa_inspect(model)
    key = getattr(instance, mapper.get_property_by_column(mapper.primary_key[0]).key)
    statement, parameters = _statements.update_at_version(
        model, rules, key, current, values, returning=False
    )
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        statement, parameters, execution_options={"synchronize_session": False}
    )
    if result.rowcount != 1:
        if expected is not None:
            missed(session, rules, key, expected)
        raise translate(StaleDataError("no row at the version read"), table=rules.table)
    sent: Mapping[str, Any] = result.last_updated_params()  # type: ignore[assignment]
    for column in rules.table.columns:
        if column.key in values or column.onupdate is not None:
            written = values[column.key] if column.key in values else sent[column.key]
            set_committed_value(instance, mapper.get_property_by_column(column).key, written)
    set_committed_value(instance, str(rules.version), current + 1)
    return instance


def missed(session: Session, rules: Rules, key: Any, expected: int) -> NoReturn:
    """After an UPDATE at version `expected` of the row with primary key `key` updated
    nothing: the row is gone, or at another version (read again to say which). The read is a
    locking one: under MariaDB's REPEATABLE READ a plain one sees the unit's snapshot, where
    the row may still be at the version the UPDATE no longer found."""
    table = rules.table
    current = session.scalar(
        select(table.c[str(rules.version)])
        .where(table.c[rules.primary_key[0]] == key)
        .with_for_update()
    )
    if current is None:
        raise NotFoundError(not_found(rules))
    raise not_at(rules, expected, current)
