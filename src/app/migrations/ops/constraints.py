"""Foreign keys, unique and check constraints added to a large, busy table without blocking it.

PostgreSQL: a foreign key or a check is added `NOT VALID` (a brief lock and no scan; writes are
checked from then on), then `VALIDATE CONSTRAINT` scans the rows while reads and writes go on.
A unique constraint is first a unique index built `CONCURRENTLY` (`create_index`), then made
the constraint `USING INDEX` (a brief lock). MariaDB: a foreign key is added in place with the
session's foreign_key_checks off (no table copy; writes go on), then the rows are checked by a
query; a unique constraint is a unique index built in place (`LOCK=NONE`). MariaDB 10.11 adds
a CHECK only by copying the table while its writes wait; the helper rebuilds the table on a
shadow copy of its own instead (`shadow`), after counting the rows that break the check.
SQLite: batch mode's table copy, the rows checked first.

Rows that break the constraint are counted and told in one line (`ConstraintRefusedError`,
which names no value), and nothing is left half-built. A constraint already there (an earlier
run, maybe killed half-way) is finished rather than added again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from alembic import op
from alembic.operations.schemaobj import SchemaObjects
from sqlalchemy import (
    ColumnElement,
    Connection,
    Constraint,
    ForeignKeyConstraint,
    and_,
    exists,
    func,
    inspect,
    not_,
    select,
    text,
)
from sqlalchemy import column as lightweight_column
from sqlalchemy import exc as sa_exc
from sqlalchemy import table as lightweight_table
from sqlalchemy.schema import AddConstraint

from app.db.errors import ConflictError, ForeignKeyError, InvalidQueryError, translate
from app.migrations.ops.indexes import create_index
from app.migrations.ops.online import (
    dialect_name,
    locked_briefly,
    mariadb_wait,
    offline,
    outside_transaction,
    quote,
)
from app.migrations.ops.shadow import finish_after_swap, rebuild_with


class ConstraintRefusedError(RuntimeError):
    """Rows already in the table break the constraint, so it was not added."""


def create_foreign_key(
    constraint_name: str | None,
    source_table: str,
    referent_table: str,
    local_cols: Sequence[str],
    remote_cols: Sequence[str],
    **options: Any,
) -> None:
    """`op.create_foreign_key` without blocking writes (options: `ondelete`, `onupdate`,
    `deferrable`, `initially`, `match`), named as `op` names it."""
    _check_columns("create_foreign_key", constraint_name, local_cols)
    _check_columns("create_foreign_key", constraint_name, remote_cols)
    if len(local_cols) != len(remote_cols):
        raise ValueError(
            f"create_foreign_key {constraint_name!r}: as many local columns as remote ones"
        )
    local, remote = list(local_cols), list(remote_cols)

    def orphans(connection: Connection) -> int:
        source = lightweight_table(source_table, *map(lightweight_column, local))
        referent = lightweight_table(referent_table, *map(lightweight_column, remote))
        pairs = zip(local, remote, strict=True)
        matches = and_(*(referent.c[theirs] == source.c[ours] for ours, theirs in pairs))
        checked = and_(*(source.c[ours].is_not(None) for ours in local))
        orphan = and_(checked, not_(exists().where(matches)))
        return int(connection.scalar(select(func.count()).select_from(source).where(orphan)) or 0)

    key = _schema().foreign_key_constraint(
        constraint_name, source_table, referent_table, local, remote, **options
    )
    name = str(key.name)
    refused = Refusal(
        orphans, f"{source_table}: rows that refer to no {referent_table} row: {{count}}"
    )
    dialect = dialect_name()
    if dialect == "postgresql":
        _add_then_validate(
            source_table,
            name,
            refused,
            lambda: op.create_foreign_key(
                op.f(name),
                source_table,
                referent_table,
                local,
                remote,
                postgresql_not_valid=True,
                **options,
            ),
        )
    elif dialect in ("mysql", "mariadb"):
        _foreign_key_mariadb(source_table, key, refused)
    else:
        _batch_sqlite(
            source_table,
            name,
            "foreign key",
            refused,
            lambda batch: batch.create_foreign_key(
                op.f(name), referent_table, local, remote, **options
            ),
        )


def drop_foreign_key(constraint_name: str, table_name: str) -> None:
    """`op.drop_constraint(name, table, type_="foreignkey")` on every backend, for the
    downgrade of `create_foreign_key`: on MariaDB the index the server made for the key under
    its name goes with it, and the table is as it was before the key."""
    dialect = dialect_name()
    if dialect in ("mysql", "mariadb"):
        table, name = quote(table_name), quote(constraint_name)
        locked_briefly(
            lambda: op.execute(
                f"ALTER TABLE {table} {mariadb_wait()} DROP FOREIGN KEY IF EXISTS {name}, "
                f"DROP INDEX IF EXISTS {name}, ALGORITHM=INPLACE, LOCK=NONE"
            )
        )
    elif dialect == "sqlite":  # its keys are part of the table: it is copied without this one
        with op.batch_alter_table(table_name) as batch:
            batch.drop_constraint(constraint_name, type_="foreignkey")
    else:
        op.drop_constraint(constraint_name, table_name, type_="foreignkey")


def create_unique_constraint(
    constraint_name: str | None, table_name: str, columns: Sequence[str], **options: Any
) -> None:
    """`op.create_unique_constraint` without blocking writes, named as `op` names it."""
    _check_columns("create_unique_constraint", constraint_name, columns)
    keys = list(columns)

    def duplicated(connection: Connection) -> int:
        target = lightweight_table(table_name, *map(lightweight_column, keys))
        held = [target.c[key] for key in keys]
        groups = (
            select(*held)
            .where(*(value.is_not(None) for value in held))
            .group_by(*held)
            .having(func.count() > 1)
            .subquery()
        )
        return int(connection.scalar(select(func.count()).select_from(groups)) or 0)

    name = str(_schema().unique_constraint(constraint_name, table_name, keys, **options).name)
    refused = Refusal(
        duplicated,
        f"{table_name}: values of ({', '.join(keys)}) held by more than one row: {{count}}",
    )
    dialect = dialect_name()
    if dialect == "postgresql":
        _unique_postgresql(name, table_name, keys, refused)
    elif dialect in ("mysql", "mariadb"):
        column_list = ", ".join(quote(key) for key in keys)
        statement = (
            f"ALTER TABLE {quote(table_name)} {mariadb_wait()} ADD CONSTRAINT {quote(name)} "
            f"UNIQUE ({column_list}), ALGORITHM=INPLACE, LOCK=NONE"
        )
        with outside_transaction():
            if offline() or not _named(op.get_bind(), table_name, name, "unique"):
                _refusing_on(
                    (ConflictError,), refused, lambda: locked_briefly(lambda: op.execute(statement))
                )
    else:
        _batch_sqlite(
            table_name,
            name,
            "unique",
            refused,
            lambda batch: batch.create_unique_constraint(op.f(name), keys, **options),
        )


def create_check_constraint(
    constraint_name: str | None,
    table_name: str,
    condition: str | ColumnElement[bool],
    **options: Any,
) -> None:
    """`op.create_check_constraint` without blocking writes (on MariaDB: see the module), named
    as `op` names it."""
    # The condition is the migration's own SQL (a constraint's DDL holds no parameters).
    broken = text(f"NOT ({condition})") if isinstance(condition, str) else not_(condition)

    def breaking(connection: Connection) -> int:
        statement = select(func.count()).select_from(lightweight_table(table_name))
        return int(connection.scalar(statement.where(broken)) or 0)

    check = _schema().check_constraint(constraint_name, table_name, condition, **options)
    name = str(check.name)
    refused = Refusal(breaking, f"{table_name}: rows that break the check {name}: {{count}}")
    dialect = dialect_name()
    if dialect == "postgresql":
        _add_then_validate(
            table_name,
            name,
            refused,
            lambda: op.create_check_constraint(
                op.f(name), table_name, condition, postgresql_not_valid=True, **options
            ),
        )
    elif dialect in ("mysql", "mariadb"):
        _check_mariadb(table_name, check, refused)
    else:
        _batch_sqlite(
            table_name,
            name,
            "check",
            refused,
            lambda batch: batch.create_check_constraint(op.f(name), condition, **options),
        )


def _check_mariadb(table: str, check: Constraint, refused: Refusal) -> None:
    """The rows counted first; then the table rebuilt with the check beside itself (`shadow`),
    as MariaDB 10.11 adds a CHECK only by copying the table while its writes wait."""
    if offline():
        with outside_transaction():
            op.execute(
                f"ALTER TABLE {quote(table)} {mariadb_wait()} ADD "
                f"{_constraint_sql(check)}, ALGORITHM=COPY, LOCK=SHARED"
            )
        return
    with outside_transaction():
        done = _named(op.get_bind(), table, str(check.name), "check")
        if not done:
            refused.unless_clean()
    if done:
        finish_after_swap(table)  # what an earlier run that stopped after its swap left
        return

    def refusal(exc: BaseException) -> BaseException | None:
        return refused.error() if isinstance(exc, InvalidQueryError) else None

    rebuild_with(table, f"ADD {_constraint_sql(check)}", refused=refusal)


class Refusal:
    """How to count the rows that break a constraint, and how to say so in one line."""

    def __init__(self, count: Callable[[Connection], int], message: str) -> None:
        self.count = count
        self.message = message

    def error(self) -> ConstraintRefusedError:
        found = self.count(op.get_bind())
        return ConstraintRefusedError(
            self.message.format(count=found) + "; fix them, then run the migration again"
        )

    def unless_clean(self) -> None:
        """Refuse before changing anything when rows break the constraint."""
        if offline():
            return
        if self.count(op.get_bind()):
            raise self.error()


def _schema() -> SchemaObjects:
    """The constraint objects `op` itself would make: named by the target metadata's naming
    convention as Alembic names them."""
    return SchemaObjects(op.get_context())


def _check_columns(helper: str, name: str | None, columns: Sequence[str]) -> None:
    if isinstance(columns, str) or not columns:
        raise ValueError(f"{helper} {name!r}: columns must be a non-empty list of names")


def _constraint_sql(constraint: Constraint) -> str:
    """`CONSTRAINT name ...` as the migration's dialect writes it in an ALTER TABLE."""
    dialect = op.get_context().dialect
    return str(dialect.ddl_compiler(dialect, AddConstraint(constraint)).process(constraint))


def _refusing_on(
    refusals: tuple[type[Exception], ...], refused: Refusal, action: Callable[[], None]
) -> None:
    """Run `action`; when the server refuses it for rows that break the constraint, raise the
    one-line count instead, outside the server's error (whose text may quote a value)."""
    try:
        action()
        return
    except sa_exc.DBAPIError as exc:  # on a connection the data layer did not build
        if not isinstance(translate(exc, connected=True), refusals):
            raise
    except refusals:
        pass
    raise refused.error()


def _named(connection: Connection, table: str, name: str, kind: str) -> bool:
    """Whether `table` has a constraint of `kind` ("foreign key", "unique", "check") called
    `name` (a unique index counts as a unique constraint: MariaDB's is one)."""
    inspector = inspect(connection)
    if kind == "foreign key":
        found = [key["name"] for key in inspector.get_foreign_keys(table)]
    elif kind == "check":
        found = [check["name"] for check in inspector.get_check_constraints(table)]
    else:
        found = [key["name"] for key in inspector.get_unique_constraints(table)]
        found += [index["name"] for index in inspector.get_indexes(table) if index["unique"]]
    return name in found


# -- PostgreSQL -----------------------------------------------------------------------------------


def _add_then_validate(
    table: str, name: str, refused: Refusal, add_not_valid: Callable[[], None]
) -> None:
    with outside_transaction():
        validated = None if offline() else _postgresql_validated(op.get_bind(), table, name)
        if validated:
            return
        if validated is None:
            locked_briefly(add_not_valid)
        statement = f"ALTER TABLE {quote(table)} VALIDATE CONSTRAINT {quote(name)}"
        try:
            _refusing_on(
                (ForeignKeyError, InvalidQueryError),
                refused,
                lambda: locked_briefly(lambda: op.execute(statement)),
            )
        except ConstraintRefusedError:
            # A NOT VALID constraint left behind would refuse new writes that break it while
            # the old rows stay unchecked: drop it.
            locked_briefly(
                lambda: op.execute(
                    f"ALTER TABLE {quote(table)} DROP CONSTRAINT IF EXISTS {quote(name)}"
                )
            )
            raise


def _postgresql_validated(connection: Connection, table: str, name: str) -> bool | None:
    """Whether constraint `name` of `table` is validated: None when there is none."""
    return connection.scalar(  # type: ignore[no-any-return]
        text(
            "SELECT convalidated FROM pg_constraint WHERE conname = :name "
            "AND conrelid = (quote_ident(current_schema()) || '.' || quote_ident(:table))::regclass"
        ),
        {"name": name, "table": table},
    )


def _unique_postgresql(
    constraint_name: str, table_name: str, columns: Sequence[str], refused: Refusal
) -> None:
    if not offline() and _postgresql_validated(op.get_bind(), table_name, constraint_name):
        return
    # A failed build leaves no INVALID index behind (`create_index` drops it).
    _refusing_on(
        (ConflictError,),
        refused,
        lambda: create_index(constraint_name, table_name, columns, unique=True),
    )
    with outside_transaction():
        locked_briefly(
            lambda: op.execute(
                f"ALTER TABLE {quote(table_name)} ADD CONSTRAINT {quote(constraint_name)} "
                f"UNIQUE USING INDEX {quote(constraint_name)}"
            )
        )


# -- MariaDB --------------------------------------------------------------------------------------


def _foreign_key_mariadb(table: str, key: ForeignKeyConstraint, refused: Refusal) -> None:
    name = str(key.name)
    with outside_transaction():
        if offline() or not _named(op.get_bind(), table, name, "foreign key"):
            # With the session's checks off the server adds the key in place, reading no row;
            # every write from then on is checked, and the rows already there by the query
            # below (also when an earlier run was killed before it).
            op.execute("SET SESSION foreign_key_checks = 0")
            try:
                locked_briefly(
                    lambda: op.execute(
                        f"ALTER TABLE {quote(table)} {mariadb_wait()} "
                        f"ADD {_constraint_sql(key)}, ALGORITHM=INPLACE, LOCK=NONE"
                    )
                )
            finally:
                op.execute("SET SESSION foreign_key_checks = 1")
        if offline() or not refused.count(op.get_bind()):
            return
        error = refused.error()
        # With the key goes the index the server made for it under the key's name.
        locked_briefly(
            lambda: op.execute(
                f"ALTER TABLE {quote(table)} {mariadb_wait()} DROP FOREIGN KEY IF EXISTS "
                f"{quote(name)}, DROP INDEX IF EXISTS {quote(name)}, ALGORITHM=INPLACE, LOCK=NONE"
            )
        )
        raise error


# -- SQLite ---------------------------------------------------------------------------------------


def _batch_sqlite(
    table: str, name: str, kind: str, refused: Refusal, change: Callable[[Any], None]
) -> None:
    if not offline() and _named(op.get_bind(), table, name, kind):
        return
    refused.unless_clean()
    with op.batch_alter_table(table) as batch:
        change(batch)
