"""The to-do domain's tests run on app.testing, as any project built on the data layer would:
the plugin migrates a database of the tests' own (the project's migrations and this package's
branch) and rolls back everything each test does."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

# Before anything reads the settings: this package's models, and its unit of work everywhere.
os.environ.setdefault("APP_EXTENSIONS", "todo")
os.environ.setdefault("APP_UNIT_OF_WORK", "todo.unit_of_work:TodoUnitOfWork")

from todo.api import app
from todo.models import Project
from todo.unit_of_work import AsyncTodoUnitOfWork, TodoUnitOfWork

from app.db.models import User
from app.integrations.fastapi import async_unit_of_work

pytest_plugins = ["app.testing"]


@pytest.fixture
def owner(user_factory: Callable[..., User]) -> User:
    return user_factory()


@pytest.fixture
def project_factory(uow: TodoUnitOfWork, owner: User) -> Callable[..., Project]:
    """`project_factory(**fields)`: a committed project of `owner`."""
    made = iter(range(1, 10_000))

    def make(**fields: Any) -> Project:
        number = next(made)
        values = {"owner_id": owner.id, "name": f"project {number}", "slug": f"p{number}"}
        with uow:
            project = uow.projects.create({**values, **fields})
            uow.commit()
        return project

    return make


@pytest.fixture
async def client(async_uow: AsyncTodoUnitOfWork) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client whose requests' units of work join the test's transaction."""

    async def joined() -> AsyncIterator[AsyncTodoUnitOfWork]:
        async with async_uow as uow:
            yield uow

    app.dependency_overrides[async_unit_of_work] = joined
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://todo") as client:
        yield client
    app.dependency_overrides.clear()
