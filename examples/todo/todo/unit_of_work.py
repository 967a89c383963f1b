"""The to-do domain's unit of work: the project's, with its repositories added. Configured with
`APP_UNIT_OF_WORK=todo.unit_of_work:TodoUnitOfWork`, it is what `run_in_transaction`, the
FastAPI dependencies and the pytest plugin's `uow` build."""

from __future__ import annotations

from typing import ClassVar

from app.repositories import AsyncRepository, AsyncUnitOfWork, Repository, UnitOfWork
from todo.models import Label, Project, Task
from todo.repositories import ProjectRepository, TaskRepository


class TodoUnitOfWork(UnitOfWork):
    """`uow.projects`, `uow.tasks`, `uow.labels` besides `uow.users` and `uow.items`."""

    projects: ProjectRepository
    tasks: TaskRepository
    labels: Repository[Label]


class AsyncTodoUnitOfWork(AsyncUnitOfWork):
    """The asyncio face, typed; the methods are the blocking classes', awaited."""

    unit: ClassVar[type[UnitOfWork]] = TodoUnitOfWork
    projects: AsyncRepository[Project]
    tasks: AsyncRepository[Task]
    labels: AsyncRepository[Label]
