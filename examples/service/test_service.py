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


async def test_signing_up_cannot_make_a_superuser_or_set_anything_else(
    client: httpx.AsyncClient,
) -> None:
    for extra in ({"is_superuser": True}, {"is_active": False}, {"hashed_password": "x"}):
        body = {"email": "eve@example.com", "password": PASSWORD, **extra}
        response = await client.post("/users", json=body)
        assert response.status_code == 422, extra
    user = await _user(client, "eve@example.com")
    assert (await client.get(f"/users/{user['id']}")).json()["email"] == "eve@example.com"


async def test_a_refused_request_echoes_neither_the_password_nor_the_input(
    client: httpx.AsyncClient,
) -> None:
    secret = "my-very-secret-password-1234"
    refused = await client.post("/users", json={"email": "not-an-email", "password": secret})
    assert refused.status_code == 422
    assert secret not in refused.text
    user = await _user(client)
    huge = "x" * 20_000_000
    too_long = await client.post(
        f"/users/{user['id']}/items", json={"title": "t", "description": huge}
    )
    assert too_long.status_code == 422
    assert len(too_long.content) < 2_000
    assert too_long.headers["content-type"] == "application/problem+json"


async def test_malformed_if_match_headers_are_a_400_or_a_412_never_a_500(
    client: httpx.AsyncClient,
) -> None:
    user = await _user(client)
    item = (await client.post(f"/users/{user['id']}/items", json={"title": "Lamp"})).json()
    # An opaque tag not of ours (bytes beyond ASCII are allowed in one) matches no version: 412.
    for header, status in (
        ('"²"', 412),
        ('"' + "9" * 5000 + '"', 400),
        ('W/"1"', 412),
        ('"01"', 412),
        ("1", 400),
    ):
        response = await client.patch(
            f"/items/{item['id']}", json={"title": "x"}, headers={"If-Match": header.encode()}
        )
        assert response.status_code == status, header
    assert (await client.get(f"/items/{item['id']}")).json()["title"] == "Lamp"


async def test_the_data_layers_metrics_are_scraped_at_metrics_without_values(
    client: httpx.AsyncClient,
) -> None:
    await _user(client, "grace@example.com")
    scraped = await client.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    inserts = [
        line
        for line in scraped.text.splitlines()
        if line.startswith("db_client_operation_duration_seconds_count")
        and 'db_operation_name="INSERT"' in line
    ]
    assert inserts
    assert float(inserts[0].rsplit(" ", 1)[1]) >= 1
    assert "db_client_connection_count" in scraped.text
    assert "grace" not in scraped.text
