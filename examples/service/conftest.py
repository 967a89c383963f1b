"""The service's own tests run on app.testing: every request's work is rolled back after each
test, commits included."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from app.integrations.fastapi import async_unit_of_work
from app.repositories import AsyncUnitOfWork
from service import app

pytest_plugins = ["app.testing"]


@pytest.fixture
async def client(async_uow: AsyncUnitOfWork) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client whose requests run their units of work inside the test's transaction."""

    async def joined() -> AsyncIterator[AsyncUnitOfWork]:
        async with async_uow as uow:
            yield uow

    app.dependency_overrides[async_unit_of_work] = joined
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        yield client
    app.dependency_overrides.clear()
