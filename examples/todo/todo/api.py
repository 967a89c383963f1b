"""The to-do domain over HTTP: a FastAPI router on the project's glue. Its requests get a
`TodoUnitOfWork` (asyncio face) from `async_unit_of_work`, because APP_UNIT_OF_WORK names it.

Run it: `APP_EXTENSIONS=todo APP_UNIT_OF_WORK=todo.unit_of_work:TodoUnitOfWork
uvicorn todo.api:app` from this directory (after `app db upgrade`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from app.integrations.fastapi import KeysetPage, add_error_handlers, async_unit_of_work, link_next
from todo.models import State
from todo.unit_of_work import AsyncTodoUnitOfWork

TodoUnitOfWorkDep = Annotated[AsyncTodoUnitOfWork, Depends(async_unit_of_work)]
router = APIRouter(prefix="/todo")


class ProjectIn(BaseModel):
    owner_id: uuid.UUID
    name: str
    slug: str
    budget: Decimal | None = None
    settings: dict[str, Any] = Field(default_factory=dict)


class ProjectOut(ProjectIn):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    version: int


class TaskIn(BaseModel):
    title: str
    # Text on the wire: the repository checks it against the enum (a 400 naming the field).
    state: str = State.TODO.value
    due_on: dt.date | None = None
    estimate: Decimal | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: uuid.UUID
    title: str
    state: State
    due_on: dt.date | None
    estimate: Decimal | None
    meta: dict[str, Any]


@router.post("/projects", status_code=201)
async def create_project(data: ProjectIn, uow: TodoUnitOfWorkDep) -> ProjectOut:
    project = await uow.projects.create(data.model_dump())
    await uow.commit()
    return ProjectOut.model_validate(project)


@router.get("/projects/{project_id}")
async def get_project(project_id: str, uow: TodoUnitOfWorkDep) -> ProjectOut:
    return ProjectOut.model_validate(await uow.projects.get_one(project_id))


@router.post("/projects/{project_id}/tasks", status_code=201)
async def create_task(project_id: str, data: TaskIn, uow: TodoUnitOfWorkDep) -> TaskOut:
    task = await uow.tasks.create({**data.model_dump(), "project_id": project_id})
    await uow.commit()
    return TaskOut.model_validate(task)


@router.get("/tasks/{task_id}")
async def get_task(task_id: int, uow: TodoUnitOfWorkDep) -> TaskOut:
    return TaskOut.model_validate(await uow.tasks.get_one(task_id))


@router.get("/projects/{project_id}/tasks")
async def list_tasks(
    project_id: str,
    request: Request,
    response: Response,
    uow: TodoUnitOfWorkDep,
    order_by: str = "due_on",
    cursor: str | None = None,
    limit: int = 20,
) -> KeysetPage[TaskOut]:
    page = await uow.tasks.paginate(
        where={"project_id": project_id}, order_by=[order_by], cursor=cursor, limit=limit
    )
    link_next(request, response, page.next_cursor)
    return KeysetPage(
        items=[TaskOut.model_validate(task) for task in page.items], next_cursor=page.next_cursor
    )


app = FastAPI(title="to-do")
app.include_router(router)
add_error_handlers(app)
