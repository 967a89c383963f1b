"""The declarative base and the models of the application."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    event,
    false,
    true,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    declared_attr,
    mapped_column,
    relationship,
    validates,
)
from sqlalchemy.sql.naming import conv

from app.db.emails import normalize_email
from app.db.types import (
    StoredEnum,
    UTCDateTime,
    UUIDColumn,
    double_version_of,
    enum_values,
    exact_text,
    exact_version_of,
    microsecond_version_of,
    new_id,
    utcnow,
)

# One convention for every constraint, so migrations name things deterministically and a
# downgrade can drop exactly what its upgrade created, on every backend. Constraints are named by
# all their columns, so two over (owner_id, name) and (owner_id, slug) never share a name; the
# CHECK of an enum column is named by its column (`Base.__init_subclass__`).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# `info` key of a column the data layer fills and callers never set on update: "created" keeps
# the value it got on insert, "updated" moves on every write (upserts included).
MANAGED = "app_managed"

EMAIL_LENGTH = 320
NAME_LENGTH = 255
PASSWORD_HASH_LENGTH = 255


class Base(DeclarativeBase):
    """Declarative base: shared metadata, the type map of the models, and the rules every
    model on it follows.

    `Mapped[str]` is a VARCHAR(255), `Mapped[datetime]` an aware UTC timestamp, `Mapped[UUID]`
    a UUID, and `Mapped[SomeEnum]` its members' values in a string column with a CHECK named by
    the convention (`ck_<table>_<column>`), the same on every backend. Every text column of a
    table on this metadata compares exactly (binary, no pad: `exact_text`) unless it names a
    collation or per-backend variants of its own. A BigInteger or SmallInteger key the database
    numbers is numbered on SQLite too.
    """

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime(),
        uuid.UUID: UUIDColumn(),
        str: String(NAME_LENGTH),
        enum.Enum: Enum(
            enum.Enum,
            native_enum=False,
            create_constraint=True,
            values_callable=enum_values,
            validate_strings=True,
        ),
    }

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table = cls.__dict__.get("__table__")
        if isinstance(table, Table):
            _follow_the_rules(table)


@event.listens_for(Column, "after_parent_attach")
def _same_on_every_backend(column: Column[Any], table: Any) -> None:
    """Every plain text column of a table on `Base.metadata` (a model's or a plain `Table`'s,
    such as a many-to-many one) compares exactly, every plain float is double precision, and
    every plain time, timestamp and interval keeps microseconds; so does a foreign key column
    that took its type from it before this ran."""
    if getattr(table, "metadata", None) is not Base.metadata:
        return
    exact = _same_everywhere(column.type)
    if exact is None:
        return
    column.type = exact
    target = f"{table.fullname}.{column.name}"
    for other in Base.metadata.tables.values():
        for key in other.foreign_keys:
            copied = _same_everywhere(key.parent.type)
            if key.target_fullname == target and copied is not None:
                key.parent.type = copied


def _same_everywhere(column_type: Any) -> Any:
    return (
        exact_version_of(column_type)
        or double_version_of(column_type)
        or microsecond_version_of(column_type)
    )


def _follow_the_rules(table: Table) -> None:
    """An integer key the database numbers numbered by SQLite too; the CHECK of an enum column
    named by its column (two columns of one enum would otherwise share one name: the
    enum's)."""
    counter = table.autoincrement_column
    if (
        counter is not None
        and type(counter.type) in (BigInteger, SmallInteger)
        and "sqlite" not in counter.type._variant_mapping  # a variant the model names stays
    ):
        # SQLite numbers only an INTEGER PRIMARY KEY (its rowid): a BIGINT key would stay NULL.
        counter.type = counter.type.with_variant(Integer(), "sqlite")
    for constraint in table.constraints:
        # Made by an Enum type for its column (SQLAlchemy marks them `_type_bound`).
        if isinstance(constraint, CheckConstraint) and getattr(constraint, "_type_bound", False):
            (column,) = constraint.columns
            constraint.name = conv(f"ck_{table.name}_{column.name}")
            if isinstance(column.type, Enum) and not column.type.native_enum:
                # The same name where a migration's copy of the column makes the CHECK.
                column.type = column.type.adapt(StoredEnum, name=column.name)  # type: ignore[no-untyped-call]
    for column in table.columns:
        if type(column.type) is Enum:
            # Its read of a value it has no member for names no value (`StoredEnum`).
            column.type = column.type.adapt(StoredEnum)  # type: ignore[no-untyped-call]


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
