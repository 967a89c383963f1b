"""What autogenerate writes, tidied before the file is written (`process_revision_directives`).

- An index of a table the same migration drops is not dropped first: the table takes its
  indexes with it, and MariaDB refuses to drop an index a foreign key needs (1553).
- A native enum type (PostgreSQL's CREATE TYPE) that the upgrade creates with a table or a
  column is dropped by the downgrade after them, so downgrade then upgrade works.
- A script autogenerate finds nothing for is not written (`skip_empty`): an empty migration
  would be one more revision to apply, review and keep for ever.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from alembic.autogenerate import renderers
from alembic.autogenerate.api import AutogenContext
from alembic.operations import ops
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Enum


def process_revision_directives(
    context: MigrationContext, revision: Any, directives: list[Any], *, skip_empty: bool = False
) -> None:
    """Alembic's hook: tidy each script autogenerate is about to write; with `skip_empty` (an
    autogenerate run), write none where no script has an operation."""
    if skip_empty and all(_empty(script) for script in directives):
        directives[:] = []
        return
    for script in directives:
        if not isinstance(script, ops.MigrationScript):
            continue
        for container in (script.upgrade_ops, script.downgrade_ops):
            if container is not None:
                _keep_indexes_of_dropped_tables(container)
        if script.upgrade_ops is not None and script.downgrade_ops is not None:
            created = _native_enums(script.upgrade_ops)
            script.downgrade_ops.ops.extend(DropEnumTypeOp(name) for name in created)


def _empty(script: Any) -> bool:
    return isinstance(script, ops.MigrationScript) and all(
        container.is_empty() for container in script.upgrade_ops_list
    )


class DropEnumTypeOp(ops.MigrateOperation):
    """`migration_ops.drop_enum_type(name)` in a script autogenerate writes."""

    def __init__(self, name: str) -> None:
        self.name = name


@renderers.dispatch_for(DropEnumTypeOp)
def _render_drop_enum_type(autogen_context: AutogenContext, op: DropEnumTypeOp) -> str:
    autogen_context.imports.add("from app import migration_ops")
    return f"migration_ops.drop_enum_type({op.name!r})"


def _keep_indexes_of_dropped_tables(container: ops.OpContainer) -> None:
    dropped = {op.table_name for op in container.ops if isinstance(op, ops.DropTableOp)}
    if not dropped:
        return
    kept: list[ops.MigrateOperation] = []
    for op in container.ops:
        if isinstance(op, ops.DropIndexOp) and op.table_name in dropped:
            continue
        if isinstance(op, ops.ModifyTableOps) and op.table_name in dropped:
            op.ops = [inner for inner in op.ops if not isinstance(inner, ops.DropIndexOp)]
            if not op.ops:
                continue
        kept.append(op)
    container.ops = kept


def _native_enums(container: ops.OpContainer) -> list[str]:
    """The names of the native enum types the ops' new tables and columns use, in order."""
    names: list[str] = []
    for column in _new_columns(container):
        kind = column.type
        if isinstance(kind, Enum) and kind.native_enum and kind.name and kind.name not in names:
            names.append(kind.name)
    return names


def _new_columns(container: ops.OpContainer) -> Iterator[Column[Any]]:
    for op in container.ops:
        if isinstance(op, ops.CreateTableOp):
            yield from (c for c in op.columns if isinstance(c, Column))
        elif isinstance(op, ops.AddColumnOp):
            yield op.column
        elif isinstance(op, ops.OpContainer):
            yield from _new_columns(op)
