"""The to-do domain's models: projects of a user, tasks in a project, labels on tasks.

They use what `Base` gives every model: `Mapped[str]` is a bounded, exactly compared text
column; a Python enum is stored as its values with a CHECK; constraints are named by the
convention. Each table picks its own key: a UUID (`IdMixin`), a big integer the database
numbers, a natural text key.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Numeric,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db.models import Base, IdMixin, TimestampMixin, User, VersionMixin


class State(enum.Enum):
    """Where a task stands."""

    TODO = "todo"
    DOING = "doing"
    DONE = "done"


class Project(IdMixin, TimestampMixin, VersionMixin, Base):
    """A user's project: a name unique per owner, a budget, free-form settings."""

    __tablename__ = "todo_projects"
    # Two composite unique keys that start with the same column, named apart by the convention
    # (uq_todo_projects_owner_id_name, uq_todo_projects_owner_id_slug).
    __table_args__ = (UniqueConstraint("owner_id", "name"), UniqueConstraint("owner_id", "slug"))

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    slug: Mapped[str]
    budget: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    owner: Mapped[User] = relationship(lazy="raise")
    tasks: Mapped[list[Task]] = relationship(
        back_populates="project", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )


task_labels = Table(
    "todo_task_labels",
    Base.metadata,
    Column("task_id", ForeignKey("todo_tasks.id", ondelete="CASCADE"), primary_key=True),
    Column("label_name", ForeignKey("todo_labels.name", ondelete="CASCADE"), primary_key=True),
    Index("ix_todo_task_labels_label_name", "label_name"),
)


class Task(Base):
    """A task: numbered by the database, no version, no timestamps of the shipped mixins."""

    __tablename__ = "todo_tasks"
    __table_args__ = (
        Index("ix_todo_tasks_project_id_due_on", "project_id", "due_on", "id"),
        Index("ix_todo_tasks_assignee_id", "assignee_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("todo_projects.id", ondelete="CASCADE")
    )
    title: Mapped[str] = mapped_column(String(200))
    state: Mapped[State] = mapped_column(default=State.TODO)
    due_on: Mapped[dt.date | None]
    estimate: Mapped[Decimal | None] = mapped_column(Numeric(6, 2))
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )

    project: Mapped[Project] = relationship(back_populates="tasks", lazy="raise")
    labels: Mapped[list[Label]] = relationship(secondary=task_labels, lazy="raise")


class Label(Base):
    """A label, keyed by its name (a natural text key)."""

    __tablename__ = "todo_labels"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    color: Mapped[str] = mapped_column(String(7), default="#888888")
