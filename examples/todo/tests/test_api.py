"""The router over HTTP, through the project's FastAPI glue."""

from __future__ import annotations

import httpx
from todo.unit_of_work import AsyncTodoUnitOfWork


async def test_projects_and_tasks_over_http(
    client: httpx.AsyncClient, async_uow: AsyncTodoUnitOfWork
) -> None:
    # On the requests' own connection (SQLite lets one connection write at a time).
    async with async_uow as uow:
        owner = await uow.users.create({"email": "web@example.test", "hashed_password": "x"})
        await uow.commit()
    body = {"owner_id": str(owner.id), "name": "web", "slug": "web", "budget": "99.90"}
    created = await client.post("/todo/projects", json=body)
    assert created.status_code == 201, created.text
    project = created.json()
    assert project["settings"] == {}
    assert project["budget"] == "99.90"

    again = await client.post("/todo/projects", json={**body, "slug": "other"})
    assert again.status_code == 409
    assert again.json()["fields"] == ["owner_id", "name"]

    for n in range(5):
        task = {"title": f"task {n}", "due_on": f"2027-01-0{n + 1}", "estimate": "1.5"}
        response = await client.post(f"/todo/projects/{project['id']}/tasks", json=task)
        assert response.status_code == 201, response.text
    first = response.json()["id"]
    assert (await client.get(f"/todo/tasks/{first}")).json()["title"] == "task 4"

    bogus = await client.post(
        f"/todo/projects/{project['id']}/tasks", json={"title": "x", "state": "bogus"}
    )
    assert bogus.status_code == 400
    assert "state" in bogus.json()["detail"]
    assert "bogus" not in bogus.json()["detail"]

    titles: list[str] = []
    url: str | None = f"/todo/projects/{project['id']}/tasks?order_by=-due_on&limit=2"
    while url is not None:
        page = await client.get(url)
        assert page.status_code == 200, page.text
        titles += [task["title"] for task in page.json()["items"]]
        url = page.links.get("next", {}).get("url")
    assert titles == [f"task {n}" for n in reversed(range(5))]

    missing = await client.get("/todo/projects/00000000-0000-7000-8000-000000000000")
    assert missing.status_code == 404
