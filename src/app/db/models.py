"""The declarative base and the models of the application."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, ClassVar

from sqlalchemy import Boolean, ForeignKey, Index, Integer, MetaData, false, true
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    declared_attr,
    mapped_column,
    relationship,
    validates,
)

from app.db.emails import normalize_email
from app.db.types import UTCDateTime, UUIDColumn, exact_text, new_id, utcnow

# One convention for every constraint, so migrations name things deterministically and a
# downgrade can drop exactly what its upgrade created, on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# `info` key of a column the data layer fills and callers never set on update: "created" keeps
# the value it got on insert, "updated" moves on every write (upserts included).
MANAGED = "app_managed"

EMAIL_LENGTH = 320
NAME_LENGTH = 255
PASSWORD_HASH_LENGTH = 255


class Base(DeclarativeBase):
    """Declarative base: shared metadata and the type map of the models."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime(),
        uuid.UUID: UUIDColumn(),
    }


class IdMixin:
    """A UUIDv7 primary key generated in Python, known before the INSERT."""

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id, sort_order=-10)


class TimestampMixin:
    """Creation and last-change times, aware UTC; `updated_at` moves on every update."""

    created_at: Mapped[dt.datetime] = mapped_column(
        default=utcnow, sort_order=10, info={MANAGED: "created"}
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, sort_order=10, info={MANAGED: "updated"}
    )


class VersionMixin:
    """A row version for optimistic locking: an UPDATE of a stale copy matches no row."""

    version: Mapped[int] = mapped_column(Integer, server_default="1", sort_order=20)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:  # noqa: N805 - a declared_attr takes the class
        return {"version_id_col": cls.__table__.c.version}  # type: ignore[attr-defined]


class User(IdMixin, TimestampMixin, VersionMixin, Base):
    """A person who can sign in and own items."""

    __tablename__ = "users"
    # Every documented sort order has an index behind it (README "Queries at scale"); the
    # primary key ends each order in the same direction, so one index serves both ways.
    __table_args__ = (Index("ix_users_created_at", "created_at", "id"),)

    # Stored in one normalised form (app.db.emails) and compared exactly, so uniqueness means
    # "the same address" everywhere (a linguistic collation would also equate 'é' with 'e').
    email: Mapped[str] = mapped_column(exact_text(EMAIL_LENGTH), unique=True)
    full_name: Mapped[str | None] = mapped_column(exact_text(NAME_LENGTH))
    hashed_password: Mapped[str] = mapped_column(exact_text(PASSWORD_HASH_LENGTH))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    is_superuser: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    items: Mapped[list[Item]] = relationship(
        back_populates="owner", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )

    @validates("email")
    def _normalize_email(self, _key: str, value: str) -> str:
        # Anything but text is left for the column's own checks to refuse.
        return normalize_email(value) if isinstance(value, str) else value

    def __repr__(self) -> str:
        return f"User(id={self.id!s}, email={self.email!r})"


class Item(IdMixin, TimestampMixin, VersionMixin, Base):
    """Something a user owns."""

    __tablename__ = "items"
    __table_args__ = (
        Index("ix_items_created_at", "created_at", "id"),
        Index("ix_items_title", "title", "id"),
        # One owner's items newest first; also the index behind the foreign key.
        Index("ix_items_owner_id_created_at", "owner_id", "created_at", "id"),
    )

    title: Mapped[str] = mapped_column(exact_text(NAME_LENGTH))
    description: Mapped[str | None] = mapped_column(exact_text())
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))

    owner: Mapped[User] = relationship(back_populates="items", lazy="raise")

    def __repr__(self) -> str:
        return f"Item(id={self.id!s}, title={self.title!r})"
