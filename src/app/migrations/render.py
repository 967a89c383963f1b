"""How autogenerate writes the models' column types into a migration.

A migration must keep meaning what it meant when it was written, so it never imports the app's
types, which may change later: they are written as plain SQLAlchemy types, and exact text as a
call to the `exact_text` the migration file defines for itself (migrations/script.py.mako).
"""

from __future__ import annotations

from typing import Any

from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Enum, String, Text
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.types import TypeEngine

from app.db.types import MicrosecondInterval, StoredEnum, UTCDateTime, UUIDColumn, exact_text

_DIALECTS = (postgresql.dialect(), mysql.dialect(), sqlite.dialect())  # type: ignore[no-untyped-call]


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    """Autogenerate's `render_item`: the app's column types as plain SQLAlchemy (False: let
    Alembic render it)."""
    if type_ != "type":
        return False
    if isinstance(obj, UTCDateTime):
        autogen_context.imports.add("from sqlalchemy.dialects import mysql")
        return 'sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")'
    if isinstance(obj, UUIDColumn):
        return "sa.Uuid()"
    if isinstance(obj, StoredEnum):
        return f"sa.{obj.plain()!r}"  # as Alembic writes a plain Enum
    if isinstance(obj, MicrosecondInterval):
        autogen_context.imports.add("from sqlalchemy.dialects import mysql")
        given = {
            name: getattr(obj, name)
            for name, default in (
                ("native", True),
                ("second_precision", None),
                ("day_precision", None),
            )
            if getattr(obj, name) != default
        }
        arguments = ", ".join(f"{name}={value!r}" for name, value in given.items())
        return f'sa.Interval({arguments}).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")'
    exact = _exact_text_length(obj)
    if exact is not None:
        autogen_context.imports.add("from sqlalchemy.dialects import mysql, postgresql")
        (length,) = exact
        return f"exact_text({length})" if length is not None else "exact_text()"
    return False


def _exact_text_length(column_type: TypeEngine[Any]) -> tuple[int | None] | None:
    """`(length,)` when the type is `exact_text(length)` on every backend, else None."""
    if not isinstance(column_type, String) or isinstance(column_type, Enum):
        return None
    length = None if isinstance(column_type, Text) else column_type.length
    wanted = exact_text(length)
    for dialect in _DIALECTS:
        if str(column_type.compile(dialect)) != str(wanted.compile(dialect)):
            return None
    return (length,)
