"""What uses a column: the indexes, unique constraints and foreign keys an online change builds
again for the column that replaces it, and what it cannot build again (the primary key, a check,
an index of expressions or a partial one, another table's foreign key to it)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from sqlalchemy import Connection, inspect


@dataclass(frozen=True)
class Use:
    """An index (`kind` "index"), unique constraint ("unique") or foreign key ("foreign key")
    of the column's table that `columns` the column is one of."""

    kind: str
    name: str
    columns: list[str]
    unique: bool = False
    referred_table: str = ""
    referred_columns: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    def columns_with(self, column: str, replacement: str) -> list[str]:
        return [replacement if name == column else name for name in self.columns]


def uses_of(
    connection: Connection,
    table: str,
    column: str,
    refuse: Callable[[str], NoReturn],
    *,
    foreign_keys: bool = True,
) -> list[Use]:
    """The uses of `table.column` to build again; `refuse(why)` for a use that cannot be, and
    (`foreign_keys` False) for the table's own foreign keys on the column too."""
    inspector = inspect(connection)
    if column in inspector.get_pk_constraint(table)["constrained_columns"]:
        refuse("it is part of the primary key")
    word = re.compile(rf"\b{re.escape(column)}\b")
    for check in inspector.get_check_constraints(table):
        if word.search(check["sqltext"]):
            refuse(f"check constraint {check['name']} uses it")
    for other in inspector.get_table_names():
        for key in inspector.get_foreign_keys(other):
            if key["referred_table"] == table and column in key["referred_columns"]:
                refuse(f"{other}.{key['name']} refers to it")
    uses: list[Use] = []
    constraints: set[str | None] = set()
    for key in inspector.get_foreign_keys(table):
        constraints.add(key["name"])
        if column not in key["constrained_columns"]:
            continue
        if not foreign_keys:
            refuse(f"foreign key {key['name']} uses it")
        options = {k: v for k, v in key["options"].items() if k in ("ondelete", "onupdate")}
        uses.append(
            Use("foreign key", str(key["name"]), list(key["constrained_columns"]),
                referred_table=str(key["referred_table"]),
                referred_columns=list(key["referred_columns"]), options=options)
        )  # fmt: skip
    for unique in inspector.get_unique_constraints(table):
        constraints.add(unique["name"])
        if column in unique["column_names"]:
            uses.append(Use("unique", str(unique["name"]), list(unique["column_names"]), True))
    for index in inspector.get_indexes(table):
        if index["name"] in constraints or column not in index["column_names"]:
            continue
        options = index.get("dialect_options", {})
        if (
            index.get("expressions")
            or index.get("column_sorting")
            or options.get("postgresql_where")
            or options.get("postgresql_include")
        ):
            refuse(f"index {index['name']} is not a plain list of columns")
        columns = [str(name) for name in index["column_names"]]
        uses.append(Use("index", str(index["name"]), columns, bool(index["unique"])))
    return uses
