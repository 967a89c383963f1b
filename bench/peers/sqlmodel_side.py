"""SQLModel on the project's tables: its own table classes and engines, with
`version_id_col` on items for optimistic locking."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, ClassVar

from sqlalchemy import Column, Integer

try:
    from sqlmodel import Field, SQLModel
except ImportError:  # the bench extra is not installed
    SQLModel = None


def available() -> bool:
    return SQLModel is not None


def _models() -> tuple[Any, Any]:
    version_column = Column("version", Integer, nullable=False)

    class UserRow(SQLModel, table=True):  # type: ignore[misc, call-arg]
        __tablename__ = "users"
        id: uuid.UUID = Field(primary_key=True)
        email: str
        full_name: str | None = None
        hashed_password: str
        is_active: bool = True
        is_superuser: bool = False
        created_at: dt.datetime
        updated_at: dt.datetime
        version: int = 1

    class ItemRow(SQLModel, table=True):  # type: ignore[misc, call-arg]
        __tablename__ = "items"
        __mapper_args__: ClassVar[dict[str, Any]] = {"version_id_col": version_column}
        id: uuid.UUID = Field(primary_key=True)
        title: str
        description: str | None = None
        owner_id: uuid.UUID = Field(foreign_key="users.id")
        created_at: dt.datetime
        updated_at: dt.datetime
        version: int = Field(sa_column=version_column)

    return UserRow, ItemRow


MODELS: tuple[Any, Any] | None = _models() if SQLModel is not None else None
