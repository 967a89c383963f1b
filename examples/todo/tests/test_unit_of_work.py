"""The configured unit of work (APP_UNIT_OF_WORK) is the one the project's entry points build."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import sessionmaker
from todo.unit_of_work import AsyncTodoUnitOfWork, TodoUnitOfWork

from app.db.models import User
from app.db.session import DataSession
from app.integrations.fastapi import AsyncUnitOfWorkDep, UnitOfWorkDep
from app.repositories import (
    async_unit_of_work_class,
    run_in_transaction,
    transactional,
    unit_of_work_class,
)


def test_the_configured_classes() -> None:
    assert unit_of_work_class() is TodoUnitOfWork
    assert async_unit_of_work_class() is AsyncTodoUnitOfWork


def test_the_plugins_unit_is_the_configured_one(uow: TodoUnitOfWork) -> None:
    assert type(uow) is TodoUnitOfWork


def test_run_in_transaction_builds_the_configured_unit(
    app_session_factory: sessionmaker[DataSession], user_factory: Callable[..., User]
) -> None:
    owner = user_factory()

    def add_project(uow: TodoUnitOfWork) -> str:
        project = uow.projects.create({"owner_id": owner.id, "name": "via", "slug": "via"})
        return str(project.id)

    project_id = run_in_transaction(add_project, session_factory=app_session_factory)

    @transactional(session_factory=app_session_factory)
    def name_of(uow: TodoUnitOfWork, wanted: str) -> str:
        return uow.projects.get_one(wanted).name

    assert name_of(project_id) == "via"


def test_the_fastapi_dependencies_build_the_configured_unit() -> None:
    service = FastAPI()

    @service.get("/blocking")
    def blocking(uow: UnitOfWorkDep) -> str:
        return type(uow).__name__

    @service.get("/async")
    async def awaiting(uow: AsyncUnitOfWorkDep) -> str:
        return type(uow).__name__

    with TestClient(service) as client:
        assert client.get("/blocking").json() == "TodoUnitOfWork"
        assert client.get("/async").json() == "AsyncTodoUnitOfWork"
