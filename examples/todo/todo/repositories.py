"""The to-do domain's repositories: the generic one, with a method or two of its own. Their
asyncio faces come from these classes (`AsyncRepository` awaits a team's methods)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import ClassVar

from sqlalchemy import insert

from app.repositories import Repository
from todo.models import Project, State, Task, task_labels


class ProjectRepository(Repository[Project]):
    """Projects; `upsert` matches on (owner_id, name)."""

    model = Project
    upsert_key: ClassVar[tuple[str, ...] | None] = ("owner_id", "name")

    def of_owner(self, owner_id: uuid.UUID | str) -> list[Project]:
        """The owner's projects, by name."""
        return self.list(where={"owner_id": owner_id}, order_by=["name"], limit=1000)


class TaskRepository(Repository[Task]):
    """Tasks, with what is due and labelling."""

    model = Task

    def due_by(self, project_id: uuid.UUID | str, day: dt.date) -> list[Task]:
        """The project's unfinished tasks due on or before `day`, soonest first."""
        return self.list(
            where={"project_id": project_id, "due_on__le": day, "state__ne": State.DONE},
            order_by=["due_on"],
            limit=1000,
        )

    def label(self, task_id: int, *names: str) -> None:
        """Put labels (which must exist) on a task."""
        task = self.get_one(task_id)
        rows = [{"task_id": task.id, "label_name": name} for name in names]
        if rows:
            self.session.execute(insert(task_labels), rows)
