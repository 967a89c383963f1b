"""What a migration run again after it stopped part-way finds in place (MariaDB, whose DDL
commits as it goes): whether an operation's result is already there by its name (`in_place`),
and whether it is as the operation makes it (`differs`), by names and kinds, never values.
`app.migrations.progress` skips what is in place and as made, and refuses the rest."""

from __future__ import annotations

import re
from typing import Any

from alembic.ddl import base
from alembic.ddl.impl import DefaultImpl
from sqlalchemy import Column, Connection, inspect
from sqlalchemy.sql import ddl
from sqlalchemy.sql.schema import CheckConstraint, ForeignKeyConstraint, UniqueConstraint

from app.db.errors import DataLayerError


def in_place(connection: Connection, construct: Any) -> bool:
    """Whether what `construct` would do is already so on the database."""
    inspector = inspect(connection)
    element: Any = getattr(construct, "element", None)
    if isinstance(construct, ddl.CreateTable):
        return bool(inspector.has_table(element.name))
    if isinstance(construct, ddl.DropTable):
        return not inspector.has_table(element.name)
    if isinstance(construct, base.AddColumn | base.DropColumn):
        if not inspector.has_table(construct.table_name):
            return isinstance(construct, base.DropColumn)
        columns = {column["name"] for column in inspector.get_columns(construct.table_name)}
        present = construct.column.name in columns
        return present if isinstance(construct, base.AddColumn) else not present
    if isinstance(construct, ddl.CreateIndex | ddl.DropIndex):
        present = _has_named(inspector, element.table.name, element.name, indexes=True)
        return present if isinstance(construct, ddl.CreateIndex) else not present
    if isinstance(construct, ddl.AddConstraint | ddl.DropConstraint) and element.name:
        table = element.table.name
        present = _has_named(inspector, table, element.name, indexes=False)
        return present if isinstance(construct, ddl.AddConstraint) else not present
    return False


class ResumeRefusedError(DataLayerError):
    """A migration run again after it stopped part-way finds in place something the earlier
    run made otherwise than the migration now makes it: skipping it would leave the schema
    other than the migration says."""


def differs(impl: DefaultImpl, construct: Any) -> str | None:
    """What an earlier run made otherwise than `construct`, whose result is in place by its
    name, says (in words, by names and kinds, never values); None where it made the same."""
    inspector = inspect(impl.connection)
    element: Any = getattr(construct, "element", None)
    if isinstance(construct, ddl.CreateTable):
        return _columns_differ(impl, inspector, element.name, list(element.columns), whole=True)
    if isinstance(construct, base.AddColumn):
        return _columns_differ(impl, inspector, construct.table_name, [construct.column])
    if isinstance(construct, ddl.CreateIndex):
        found = _named(inspector.get_indexes(element.table.name), element.name)
        columns = [column.name for column in element.columns]
        if found is not None and (
            list(found["column_names"]) != columns
            or bool(found.get("unique")) != bool(element.unique)
        ):
            return f"index {element.name} on other columns, or unique where it is not"
        return None
    if isinstance(construct, ddl.AddConstraint):
        return _constraint_differs(inspector, element)
    return None


def _columns_differ(
    impl: DefaultImpl,
    inspector: Any,
    table: str,
    columns: list[Column[Any]],
    *,
    whole: bool = False,
) -> str | None:
    reflected = {found["name"]: found for found in inspector.get_columns(table)}
    if whole and set(reflected) != {column.name for column in columns}:
        return f"table {table} with other columns"
    for column in columns:
        found = reflected[column.name]
        if impl.compare_type(Column(column.name, found["type"]), column):
            return f"column {table}.{column.name} of another type"
        if not column.primary_key and bool(found["nullable"]) != bool(column.nullable):
            return f"column {table}.{column.name} {'' if found['nullable'] else 'not '}nullable"
    return None


def _constraint_differs(inspector: Any, element: Any) -> str | None:
    table = element.table.name
    columns = [column.name for column in element.columns]
    if isinstance(element, UniqueConstraint):
        found = _named(inspector.get_unique_constraints(table), element.name)
        if found is not None and list(found["column_names"]) != columns:
            return f"unique constraint {element.name} on other columns"
    elif isinstance(element, ForeignKeyConstraint):
        found = _named(inspector.get_foreign_keys(table), element.name)
        if found is not None and (
            list(found["constrained_columns"]) != columns
            or found["referred_table"] != element.referred_table.name
        ):
            return f"foreign key {element.name} on other columns or to another table"
    elif isinstance(element, CheckConstraint):
        found = _named(inspector.get_check_constraints(table), element.name)
        rule = element.sqltext.compile(
            dialect=inspector.dialect, compile_kwargs={"literal_binds": True}
        )
        if found is not None and _bare(str(found["sqltext"])) != _bare(str(rule), table):
            return f"check constraint {element.name} with another rule"
    return None


def _named(found: list[Any], name: Any) -> Any:
    return next((entry for entry in found if entry.get("name") == name), None)


def _bare(rule: str, table: str = "") -> str:
    """A CHECK's rule as compared: without its columns' table, and without the quoting,
    spacing, parentheses and letter case the server may write it back with."""
    bare = re.sub(r"[\s`\"()]", "", rule).lower()
    return bare.replace(f"{table.lower()}.", "") if table else bare


def _has_named(inspector: Any, table: str, name: str, *, indexes: bool) -> bool:
    if not inspector.has_table(table):
        return False
    found: list[dict[str, Any]] = list(inspector.get_indexes(table)) if indexes else []
    if not indexes:
        found += inspector.get_foreign_keys(table)
        found += inspector.get_unique_constraints(table)
        found += inspector.get_check_constraints(table)
    return name in {entry.get("name") for entry in found}
