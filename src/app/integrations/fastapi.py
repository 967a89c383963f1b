"""FastAPI: a unit of work per request, data-layer errors as RFC 9457 problem details, keyset
pages with a `Link` header, and optimistic locking over HTTP (`ETag` / `If-Match`).

Installed with `pip install -e ".[web]"`. Handlers commit; leaving without commit rolls back:

    app = FastAPI()
    add_error_handlers(app)

    @app.post("/users", status_code=201)
    async def create(data: UserCreate, uow: AsyncUnitOfWorkDep) -> UserOut:
        user = await register_user_async(uow, data)
        return UserOut.model_validate(user, from_attributes=True)
"""

from __future__ import annotations

import re
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

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
from app.repositories import (
    AsyncUnitOfWork,
    UnitOfWork,
    async_unit_of_work_class,
    unit_of_work_class,
)

ItemT = TypeVar("ItemT")
PROBLEM_JSON = "application/problem+json"
# The problem type of a request whose COMMIT was sent and never answered.
COMMIT_OUTCOME_UNKNOWN_TYPE = "urn:app:problem:commit-outcome-unknown"
RETRY_AFTER_SECONDS = 1


def unit_of_work(request: Request) -> Iterator[UnitOfWork]:
    """A unit of work for one request (blocking handlers), closed after the response: an
    instance of `unit_of_work_class()` (APP_UNIT_OF_WORK), named after the request's route."""
    with unit_of_work_class()(name=route_name(request)) as uow:
        yield uow


async def async_unit_of_work(request: Request) -> AsyncIterator[AsyncUnitOfWork]:
    """A unit of work for one request (async handlers), closed after the response: an
    instance of `async_unit_of_work_class()`, named after the request's route."""
    async with async_unit_of_work_class()(name=route_name(request)) as uow:
        yield uow


def route_name(request: Request) -> str:
    """`GET /items/{item_id}`: the method and the route's path template (never the path with
    its values), the name of the request's unit of work."""
    route = request.scope.get("route")
    template = getattr(route, "path", None) or "unmatched"
    return f"{request.method} {template}"


UnitOfWorkDep = Annotated[UnitOfWork, Depends(unit_of_work)]
AsyncUnitOfWorkDep = Annotated[AsyncUnitOfWork, Depends(async_unit_of_work)]


# -- errors as problem details --------------------------------------------------------------------

# (status, title) by error class, most specific first.
_PROBLEMS: list[tuple[type[DataLayerError], int, str]] = [
    (NotFoundError, 404, "Not found"),
    (ConflictError, 409, "Conflict"),
    (ForeignKeyError, 409, "Conflict with a related resource"),
    (InvalidQueryError, 400, "Bad request"),
    (RetryableError, 503, "Busy, try again"),
    (StatementTimeoutError, 503, "Took too long"),
    (DatabaseUnavailableError, 503, "Service unavailable"),
]


def problem_for(exc: DataLayerError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and RFC 9457 body for a data-layer error: its message (which names
    fields and rules, never stored values or driver text), and for conflicts the fields."""
    status, title = 500, "Internal server error"
    if isinstance(exc, StaleObjectError):
        # The caller's If-Match (expected_version) is old: 412; a lost race: 409.
        status, title = (409, "Conflict") if exc.lost_race else (412, "Precondition failed")
    else:
        for kind, kind_status, kind_title in _PROBLEMS:
            if isinstance(exc, kind):
                status, title = kind_status, kind_title
                break
    problem_type = "about:blank"
    if isinstance(exc, CommitOutcomeUnknownError):
        # Not "try again": the request may have taken effect; the client must find out first.
        problem_type, title = COMMIT_OUTCOME_UNKNOWN_TYPE, "Outcome unknown"
    body: dict[str, Any] = {"type": problem_type, "title": title, "status": status}
    if status != 500:
        body["detail"] = str(exc)
    if isinstance(exc, ConflictError) and exc.fields:
        body["fields"] = list(exc.fields)
    return status, body


async def _data_layer_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DataLayerError)
    status, body = problem_for(exc)
    retry = status == 503 and not isinstance(exc, CommitOutcomeUnknownError)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if retry else None
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


# Context pydantic takes from what was sent ("found `S` at 0", a union's tag): left out of
# the message. A validator's own words (value_error, assertion_error) are the application's.
_SENT_CONTEXT = ("error", "tag", "tz_actual", "encoding_error")
_OWN_WORDS = ("value_error", "assertion_error")


def _message(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", ""))
    context = error.get("ctx") or {}
    if error.get("type") in _OWN_WORDS:
        return message
    sent = [str(context[key]) for key in _SENT_CONTEXT if key in context]
    if not sent:
        return message  # pydantic's rule, whole ("Input should be 'a' or 'b'")
    for words in sent:
        message = message.replace(words, "")
    # What led up to the words taken out ("..., got", a quote) goes with them.
    return re.sub(r"(?:[\s,:'`]|\b(?:error|got)\b)+$", "", message) or "not valid"


_NOT_SHOWN = "(a name not shown)"
_PLACES = frozenset({"body", "query", "path", "header", "cookie"})
_declared: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()


def _declared_names(app: Any) -> frozenset[str]:
    """Every name the app's schema declares (fields, parameters): a name in an error's place
    that is none of these (an extra field, a dict's key) was made up by the client."""
    names = _declared.get(app)
    if names is None:
        found: set[str] = set(_PLACES)
        try:
            pending: list[Any] = [app.openapi()]
        except Exception:  # an app whose schema cannot be written: shows no names
            pending = []
        while pending:
            node = pending.pop()
            if isinstance(node, dict):
                found.update(key for key in node.get("properties", {}) if isinstance(key, str))
                if isinstance(node.get("name"), str) and "in" in node:  # a parameter
                    found.add(node["name"])
                pending.extend(node.values())
            elif isinstance(node, list):
                pending.extend(node)
        names = _declared[app] = frozenset(found)
    return names


def _place(loc: Any, declared: frozenset[str]) -> list[Any]:
    return [part if isinstance(part, int) or part in declared else _NOT_SHOWN for part in loc]


async def _invalid_request(request: Request, exc: Exception) -> Response:
    # FastAPI's own answer lists each refused value back ("input"): a password, a 20 MB text.
    # Here each problem is where it is and the rule it broke, never what was sent: not even a
    # name the client made up.
    assert isinstance(exc, RequestValidationError)
    declared = _declared_names(request.app)
    errors = [
        {
            "loc": _place(error.get("loc", ()), declared),
            "msg": _message(error),
            "type": error.get("type"),
        }
        for error in exc.errors()
    ]
    body = {"type": "about:blank", "title": "Unprocessable content", "status": 422,
            "detail": "the request does not match its schema", "errors": errors}  # fmt: skip
    return JSONResponse(body, status_code=422, media_type=PROBLEM_JSON)


def add_error_handlers(app: FastAPI) -> None:
    """Answer every `DataLayerError` a handler raises with its problem details, and a request
    its schema refuses with a 422 that never echoes what was sent."""
    app.add_exception_handler(DataLayerError, _data_layer_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)


# -- keyset pages ---------------------------------------------------------------------------------


class KeysetPage(BaseModel, Generic[ItemT]):
    """One page of a list endpoint; pass `next_cursor` back as `?cursor=` for the next."""

    items: list[ItemT]
    next_cursor: str | None


def link_next(request: Request, response: Response, next_cursor: str | None) -> None:
    """Set `Link: <this URL with cursor=next>; rel="next"` when there is a next page."""
    if next_cursor is not None:
        url = request.url.include_query_params(cursor=next_cursor)
        response.headers["Link"] = f'<{url}>; rel="next"'


# -- optimistic locking over HTTP -----------------------------------------------------------------


def etag(version: int) -> str:
    """The strong ETag of a row at `version`."""
    return f'"{version}"'


# An entity tag as RFC 9110 writes one (`W/` for a weak one), one of a list; and the opaque part
# of those this service gives: a version in ASCII digits, as `etag` writes it (no leading zero).
_LISTED_TAG = re.compile(r'[ \t]*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"[ \t]*(?:,|$)')
_OUR_VERSION = re.compile(r"0|[1-9][0-9]{0,18}")
_LONGEST_HEADER = 256


def expected_version(if_match: str | None) -> int | None:
    """The version an `If-Match` header names, for `update(..., expected_version=...)`: None
    when there is no header or it is `*` (any version). RFC 9110 compares If-Match strongly,
    character by character: a header whose tags are none this service gave (a weak tag
    `W/"3"`, `"03"`) never matches, so it is a `StaleObjectError` (412). A list naming one of
    ours is that version; one that is not a list of entity tags, or is huge, or names several
    versions (`update` checks one), is an `InvalidQueryError` (400)."""
    if if_match is None:
        return None
    header = if_match.strip()
    if header == "*":
        return None
    if len(header) > _LONGEST_HEADER:
        raise InvalidQueryError("If-Match is longer than any this service reads")
    tags: list[tuple[bool, str]] = []
    position = 0
    while position < len(header):
        found = _LISTED_TAG.match(header, position)
        if found is None or found.end() == position:
            raise InvalidQueryError('If-Match must be ETags such as "3", the one this service gave')
        tags.append((found.group(1) is not None, found.group(2)))
        position = found.end()
    ours = {int(tag) for weak, tag in tags if not weak and _OUR_VERSION.fullmatch(tag)}
    if len(ours) > 1:
        raise InvalidQueryError(
            "If-Match names several versions; send the one ETag this service gave"
        )
    if ours:
        return ours.pop()
    if any(weak for weak, _ in tags):
        raise StaleObjectError(
            "If-Match names a weak ETag, which never matches (RFC 9110 compares If-Match "
            "strongly); send the ETag this service gave",
            lost_race=False,
        )
    raise StaleObjectError(
        "If-Match names no ETag this service gave, so it matches no version; send the ETag "
        "this service gave",
        lost_race=False,
    )


__all__ = [
    "AsyncUnitOfWorkDep",
    "KeysetPage",
    "UnitOfWorkDep",
    "add_error_handlers",
    "async_unit_of_work",
    "etag",
    "expected_version",
    "link_next",
    "problem_for",
    "route_name",
    "unit_of_work",
]
