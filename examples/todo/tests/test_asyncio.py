"""The asyncio face of this package's repositories, their own methods included, with no twin
written for them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from todo.models import Label, Project, State
from todo.unit_of_work import AsyncTodoUnitOfWork

from app.repositories import run_in_transaction_async, transactional_async


async def test_the_asyncio_face_awaits_the_teams_own_methods(
    async_uow: AsyncTodoUnitOfWork,
) -> None:
    async with async_uow as uow:
        owner = await uow.users.create({"email": "async@example.test", "hashed_password": "x"})
        project = await uow.projects.create({"owner_id": owner.id, "name": "a", "slug": "a"})
        await uow.tasks.create_many(
            [
                {"project_id": project.id, "title": f"t{n}", "due_on": dt.date(2027, 1, 1 + n)}
                for n in range(3)
            ]
        )
        due = await uow.tasks.due_by(project.id, dt.date(2027, 1, 2))
        assert [task.title for task in due] == ["t0", "t1"]
        assert [p.id for p in await uow.projects.of_owner(owner.id)] == [project.id]
        assert uow.repository(Label).sync is uow.labels.sync
        streamed = [row.state async for row in uow.tasks.iterate(order_by=["id"])]
        assert streamed == [State.TODO] * 3
        await uow.commit()


async def test_run_in_transaction_async_builds_the_configured_unit(
    async_uow: AsyncTodoUnitOfWork, async_app_session_factory: Any
) -> None:
    seen: list[type] = []

    async def work(uow: AsyncTodoUnitOfWork) -> None:
        seen.append(type(uow))
        await uow.labels.create({"name": "async"})

    await run_in_transaction_async(work, session_factory=async_app_session_factory)
    assert seen == [AsyncTodoUnitOfWork]
    async with async_uow as uow:
        assert (await uow.repository(Label).get_one("async")).color == "#888888"
        assert await uow.repository(Project).count() == 0


async def test_transactional_async_builds_the_configured_unit(
    async_app_session_factory: Any,
) -> None:
    @transactional_async(session_factory=async_app_session_factory)
    async def kind(uow: AsyncTodoUnitOfWork) -> type:
        return type(uow)

    assert await kind() is AsyncTodoUnitOfWork
