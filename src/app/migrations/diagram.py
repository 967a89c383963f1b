"""The schema as a Mermaid ER diagram, generated from the models (docs/schema.md)."""

from __future__ import annotations

from sqlalchemy import MetaData, String, Table, UniqueConstraint

from app.db.models import Base

HEADER = (
    "# Schema\n\n"
    "Generated from `src/app/db/models.py` by `app db diagram`; a test fails when it is out of "
    "date.\n\n"
)


def _type_name(column_type: object) -> str:
    name = type(column_type).__name__.lower()
    return {"utcdatetime": "timestamptz", "uuidcolumn": "uuid"}.get(name, name)


def _table_block(table: Table) -> list[str]:
    unique = {
        constraint.columns.keys()[0]
        for constraint in table.constraints
        if isinstance(constraint, UniqueConstraint) and len(constraint.columns) == 1
    }
    lines = [f"    {table.name} {{"]
    for column in table.columns:
        keys = [
            key
            for key, present in (
                ("PK", column.primary_key),
                ("FK", bool(column.foreign_keys)),
                ("UK", column.name in unique),
            )
            if present
        ]
        notes = []
        if isinstance(column.type, String) and column.type.length:
            notes.append(f"max {column.type.length}")
        if column.nullable:
            notes.append("nullable")
        if column.index:
            notes.append("indexed")
        parts = [_type_name(column.type), column.name]
        if keys:
            parts.append(",".join(keys))
        if notes:
            parts.append(f'"{", ".join(notes)}"')
        lines.append("        " + " ".join(parts))
    lines.append("    }")
    return lines


def mermaid(metadata: MetaData = Base.metadata) -> str:
    """The Mermaid `erDiagram` of every table and foreign key in `metadata`."""
    lines = ["erDiagram"]
    for table in metadata.sorted_tables:
        lines += _table_block(table)
    for table in metadata.sorted_tables:
        for fk in sorted(table.foreign_keys, key=lambda fk: fk.parent.name):
            parent = fk.column.table.name
            cardinality = "o|--o{" if fk.parent.nullable else "||--o{"
            on_delete = f", on delete {fk.ondelete.lower()}" if fk.ondelete else ""
            lines.append(f'    {parent} {cardinality} {table.name} : "{fk.parent.name}{on_delete}"')
    return "\n".join(lines) + "\n"


def schema_markdown(metadata: MetaData = Base.metadata) -> str:
    """The whole of docs/schema.md."""
    return f"{HEADER}```mermaid\n{mermaid(metadata)}```\n"
