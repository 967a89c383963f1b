"""The FastAPI glue on blocking handlers: a unit of work per request, committed by the handler,
and data-layer errors as problem details."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection
from sqlalchemy.orm import Session, sessionmaker

from app.integrations.fastapi import UnitOfWorkDep, add_error_handlers, unit_of_work
from app.repositories import UnitOfWork
from tests.integration.helpers import count_rows


def _service(session_factory: sessionmaker[Session]) -> TestClient:
    app = FastAPI()
    add_error_handlers(app)

    @app.post("/users/{email}", status_code=201)
    def create(email: str, uow: UnitOfWorkDep, commit: bool = True) -> dict[str, str]:
        user = uow.users.create({"email": email, "hashed_password": "h"})
        if commit:
            uow.commit()
        return {"id": str(user.id)}

    @app.get("/users/{user_id}")
    def read(user_id: str, uow: UnitOfWorkDep) -> dict[str, str]:
        return {"email": uow.users.get_one(user_id).email}

    def joined() -> Iterator[UnitOfWork]:
        with UnitOfWork(session_factory) as uow:
            yield uow

    app.dependency_overrides[unit_of_work] = joined
    return TestClient(app)


def test_a_blocking_handler_commits_its_unit_and_the_next_request_sees_it(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    client = _service(session_factory)
    created = client.post("/users/ada@example.com")
    assert created.status_code == 201
    assert client.get(f"/users/{created.json()['id']}").json() == {"email": "ada@example.com"}


def test_a_handler_that_does_not_commit_leaves_nothing(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    client = _service(session_factory)
    assert client.post("/users/ada@example.com", params={"commit": False}).status_code == 201
    assert count_rows(connection, "users") == 0


def test_errors_are_problem_details_without_stored_values(
    session_factory: sessionmaker[Session], connection: Connection
) -> None:
    client = _service(session_factory)
    client.post("/users/ada@example.com")
    taken = client.post("/users/ADA@example.com")
    assert taken.status_code == 409
    assert taken.headers["content-type"] == "application/problem+json"
    assert taken.json() == {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "detail": "a user with this email already exists",
        "fields": ["email"],
    }
    missing = client.get("/users/0190a0a0-0000-7000-8000-000000000000")
    assert (missing.status_code, missing.json()["title"]) == (404, "Not found")
    assert client.get("/users/not-an-id").status_code == 400
