"""Data-layer errors as HTTP problems, and ETags, without a database."""

from __future__ import annotations

import datetime
import uuid
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, field_validator

from app.db.errors import (
    CommitOutcomeUnknownError,
    ConflictError,
    DatabaseUnavailableError,
    DataLayerError,
    ForeignKeyError,
    InvalidQueryError,
    NotFoundError,
    RetryableError,
    StaleObjectError,
    StatementTimeoutError,
)
from app.integrations.fastapi import add_error_handlers, etag, expected_version, problem_for


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (NotFoundError("no user with id 'x'"), 404),
        (ConflictError("a user with this email already exists", fields=("email",)), 409),
        (ForeignKeyError("the item refers to a row that does not exist"), 409),
        (StaleObjectError("changed since it was read"), 409),
        (StaleObjectError("the item is at version 3, not version 2", lost_race=False), 412),
        (InvalidQueryError("invalid cursor"), 400),
        (RetryableError("busy"), 503),
        (StatementTimeoutError("too long"), 503),
        (DatabaseUnavailableError("down"), 503),
        (DataLayerError("something the caller cannot act on"), 500),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_each_error_has_its_status(error: DataLayerError, status: int) -> None:
    found, body = problem_for(error)
    assert (found, body["status"]) == (status, status)
    assert body["type"] == "about:blank"


def test_a_conflict_names_its_fields_and_a_500_hides_its_message() -> None:
    assert problem_for(ConflictError("taken", fields=("email",)))[1]["fields"] == ["email"]
    assert "detail" not in problem_for(DataLayerError("internal detail"))[1]


def test_etags_round_trip_through_if_match_and_star_asks_for_any_version() -> None:
    assert expected_version(etag(3)) == 3
    assert expected_version(f" {etag(12)} ") == 12
    assert expected_version(None) is None
    assert expected_version("*") is None


@pytest.mark.parametrize(
    "header",
    ['W/"3"', '"03"', '"-3"', '""', '"\xb2"', '"abc"', 'W/"3", "x"'],
    ids=["weak", "leading zero", "negative", "empty", "obs-text", "foreign", "list"],
)
def test_an_etag_this_service_never_gave_never_matches_as_rfc_9110_compares(
    header: str,
) -> None:
    """Strong comparison, character by character: `"03"` is not `"3"`, a weak tag matches
    nothing; a well-formed tag that cannot match is a failed precondition (412)."""
    with pytest.raises(StaleObjectError) as caught:
        expected_version(header)
    assert problem_for(caught.value)[0] == 412


def test_a_list_of_etags_names_the_one_version_of_ours_in_it() -> None:
    assert expected_version('W/"3", "4"') == 4
    assert expected_version('"x,y" ,"5"') == 5
    assert expected_version('"5", "5"') == 5
    assert expected_version('"6",') == 6  # an empty element of a list is ignored


@pytest.mark.parametrize(
    "header",
    ['"٣"', '"3', "3", '"1" , "2"', '"' + "9" * 5000 + '"', "x" * 10_000],
    ids=["arabic digit", "unclosed", "bare", "two versions", "huge", "garbage"],
)
def test_a_malformed_or_huge_if_match_is_a_400_not_a_500(header: str) -> None:
    with pytest.raises(InvalidQueryError) as caught:
        expected_version(header)
    assert problem_for(caught.value)[0] == 400


def test_an_unknown_commit_outcome_is_a_503_that_does_not_say_try_again() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    service = FastAPI()
    add_error_handlers(service)

    @service.post("/lost")
    def lost() -> None:
        raise CommitOutcomeUnknownError("lost while committing")

    @service.post("/down")
    def down() -> None:
        raise DatabaseUnavailableError("down")

    client = TestClient(service)
    unknown, unavailable = client.post("/lost"), client.post("/down")
    assert unknown.status_code == unavailable.status_code == 503
    assert "retry-after" not in unknown.headers
    assert unknown.json()["type"] == "urn:app:problem:commit-outcome-unknown"
    assert unknown.json()["title"] == "Outcome unknown"
    assert "retry-after" in unavailable.headers
    assert unavailable.json()["type"] == "about:blank"


class _Body(BaseModel):
    at: datetime.datetime
    tags: list[str]
    status: Literal["new", "paid"] = "new"

    @field_validator("tags")
    @classmethod
    def _some(cls, tags: list[str]) -> list[str]:
        if not tags:
            raise ValueError("give at least one tag")
        return tags


def test_a_422_says_what_rule_each_field_broke_without_quoting_what_was_sent() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    service = FastAPI()
    add_error_handlers(service)

    @service.post("/things/{thing_id}")
    def post(thing_id: uuid.UUID, body: _Body) -> None:  # pragma: no cover - never valid here
        raise AssertionError

    client = TestClient(service)
    refused = client.post(
        "/things/QQQ-not-a-uuid", json={"at": "Qday", "tags": [], "status": "Qbogus"}
    )
    assert refused.status_code == 422
    messages = {tuple(error["loc"]): error["msg"] for error in refused.json()["errors"]}
    assert messages == {
        ("path", "thing_id"): "Input should be a valid UUID",
        ("body", "at"): "Input should be a valid datetime or date",
        ("body", "tags"): "Value error, give at least one tag",
        ("body", "status"): "Input should be 'new' or 'paid'",
    }
    assert "Q" not in refused.text


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    counts: dict[str, int] = {}


def test_a_422_shows_no_name_the_client_made_up() -> None:
    """A key the schema does not declare (an extra field, a dict's key) is the client's data,
    like a value: its place is shown, its name is not."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    service = FastAPI()
    add_error_handlers(service)

    @service.post("/strict")
    def post(body: _Strict) -> None:  # pragma: no cover - never valid here
        raise AssertionError

    client = TestClient(service)
    sent = {"name": "x", "MARKER-7f3a": 1, "counts": {"MARKER-8e2b": "many"}}
    refused = client.post("/strict", json=sent)
    assert refused.status_code == 422
    assert "MARKER" not in refused.text
    places = sorted(tuple(error["loc"]) for error in refused.json()["errors"])
    assert places == [
        ("body", "(a name not shown)"),
        ("body", "counts", "(a name not shown)"),
    ]
