"""How the schema a database has is compared with what the models declare, for `app db check`
and for autogenerate alike.

On top of Alembic's own comparison: a text column whose collation is not the one its model
declares (`exact_text`'s binary, no-pad collation, or the author's own) is a difference, so a
database built before a column became exact, or by hand, does not pass for matching.
"""

from __future__ import annotations

from typing import Any

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, String
from sqlalchemy.types import TypeEngine

from app.dialects import backend_of
from app.dialects.commit_markers import MARKER_TABLE
from app.dialects.galera import LOCK_TABLE
from app.migrations.progress import UNDER_WAY_TABLE

_COLLATIONS = "app_column_collations"  # a comparison run's cache, in the context's options


_NOT_THE_MODELS = (LOCK_TABLE, MARKER_TABLE, UNDER_WAY_TABLE)


def compared_with_models(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
    """Autogenerate's `include_name`: the Galera lease table is the lock's, the commit
    markers' table `run_in_transaction`'s and the table of migrations under way the migration
    runs', not the models' (nor what is on them)."""
    if type_ == "table":
        return name not in _NOT_THE_MODELS
    return parent_names.get("table_name") not in _NOT_THE_MODELS


def declared_collation(column_type: TypeEngine[Any], dialect: Any) -> str | None:
    """The collation a column's type declares for `dialect`, if it declares one."""
    for_dialect = column_type._variant_mapping.get(dialect.name, column_type)
    collation = getattr(for_dialect, "collation", None)
    return str(collation) if collation is not None and isinstance(for_dialect, String) else None


def compare_type(
    context: MigrationContext,
    inspected_column: Column[Any],
    metadata_column: Column[Any],
    inspected_type: TypeEngine[Any],
    metadata_type: TypeEngine[Any],
) -> bool | None:
    """True when the stored collation of a text column differs from the declared one; else
    Alembic's own comparison decides (None)."""
    connection = context.connection
    wanted = declared_collation(metadata_type, context.dialect)
    if wanted is None or connection is None:
        return None
    table = metadata_column.table.name
    cache: dict[str, dict[str, str | None]] = context.opts.setdefault(_COLLATIONS, {})
    if table not in cache:
        cache[table] = backend_of(connection).column_collations(connection, table)
    stored = cache[table].get(metadata_column.name)
    if stored is not None and stored != wanted:
        return True
    return None


OPTIONS: dict[str, Any] = {"compare_type": compare_type, "include_name": compared_with_models}
