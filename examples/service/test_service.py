"""The service's behaviour over HTTP: status codes, problem details, ETags, pages."""

from __future__ import annotations

import httpx

PASSWORD = "correct horse battery staple"


async def _user(client: httpx.AsyncClient, email: str = "ada@example.com") -> dict[str, str]:
    response = await client.post("/users", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_a_user_is_created_then_read_with_its_etag(client: httpx.AsyncClient) -> None:
    user = await _user(client)
    response = await client.get(f"/users/{user['id']}")
    assert response.status_code == 200
    assert response.headers["ETag"] == '"1"'
    assert "hashed_password" not in response.text


async def test_a_taken_email_is_a_409_problem_naming_the_field(client: httpx.AsyncClient) -> None:
    await _user(client)
    response = await client.post("/users", json={"email": "ADA@example.com", "password": PASSWORD})
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["fields"] == ["email"]


async def test_unknown_and_malformed_ids_are_404_and_400(client: httpx.AsyncClient) -> None:
    assert (await client.get("/items/0190a0a0-0000-7000-8000-000000000000")).status_code == 404
    assert (await client.get("/items/not-an-id")).status_code == 400


async def test_an_update_with_an_old_etag_is_412_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    user = await _user(client)
    item = (await client.post(f"/users/{user['id']}/items", json={"title": "Lamp"})).json()
    first = await client.patch(f"/items/{item['id']}", json={"title": "Desk lamp"},
                               headers={"If-Match": '"1"'})  # fmt: skip
    assert (first.status_code, first.headers["ETag"]) == (200, '"2"')
    stale = await client.patch(f"/items/{item['id']}", json={"title": "Old form"},
                               headers={"If-Match": '"1"'})  # fmt: skip
    assert stale.status_code == 412
    assert (await client.get(f"/items/{item['id']}")).json()["title"] == "Desk lamp"


async def test_items_are_listed_newest_first_in_keyset_pages_with_a_link(
    client: httpx.AsyncClient,
) -> None:
    user = await _user(client)
    for n in range(5):
        await client.post(f"/users/{user['id']}/items", json={"title": f"item {n}"})
    first = await client.get("/items", params={"limit": 3})
    assert [i["title"] for i in first.json()["items"]] == ["item 4", "item 3", "item 2"]
    assert 'rel="next"' in first.headers["Link"]
    second = await client.get("/items", params={"limit": 3, "cursor": first.json()["next_cursor"]})
    assert [i["title"] for i in second.json()["items"]] == ["item 1", "item 0"]
    assert second.json()["next_cursor"] is None
    assert "Link" not in second.headers


async def test_a_deleted_item_is_gone(client: httpx.AsyncClient) -> None:
    user = await _user(client)
    item = (await client.post(f"/users/{user['id']}/items", json={"title": "Lamp"})).json()
    assert (await client.delete(f"/items/{item['id']}")).status_code == 204
    assert (await client.get(f"/items/{item['id']}")).status_code == 404
