"""A small FastAPI service on the data layer, using only its public API and app.integrations.

Run it: `DATABASE_URL=... uvicorn service:app` from this directory (after `app db upgrade`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import FastAPI, Header, Request, Response
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict

from app.db.runtime import get_async_engine
from app.integrations.fastapi import (
    AsyncUnitOfWorkDep,
    KeysetPage,
    add_error_handlers,
    etag,
    expected_version,
    link_next,
)
from app.observability import instrument
from app.schemas import ItemCreate, ItemUpdate, UserCreate
from app.services import create_item_async, register_user_async

app = FastAPI(title="items service")
add_error_handlers(app)

# The data layer's metrics (units, statements, retries, errors, pool, replica lag) through
# OpenTelemetry into prometheus-client's registry, scraped at /metrics.
instrument(meter_provider=MeterProvider(metric_readers=[PrometheusMetricReader()]))


@app.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class UserOut(_Out):
    id: uuid.UUID
    email: str
    full_name: str | None
    version: int


class ItemOut(_Out):
    id: uuid.UUID
    title: str
    description: str | None
    owner_id: uuid.UUID
    created_at: dt.datetime
    version: int


@app.post("/users", status_code=201)
async def create_user(data: UserCreate, uow: AsyncUnitOfWorkDep) -> UserOut:
    user = await register_user_async(uow, data)
    await uow.commit()  # the request's unit is the outermost: its commit decides
    return UserOut.model_validate(user)


@app.get("/users/{user_id}")
async def get_user(user_id: str, uow: AsyncUnitOfWorkDep, response: Response) -> UserOut:
    user = await uow.users.get_one(user_id)
    response.headers["ETag"] = etag(user.version)
    return UserOut.model_validate(user)


@app.post("/users/{user_id}/items", status_code=201)
async def create_item(user_id: str, data: ItemCreate, uow: AsyncUnitOfWorkDep) -> ItemOut:
    item = await create_item_async(uow, user_id, data)
    await uow.commit()
    return ItemOut.model_validate(item)


@app.get("/items")
async def list_items(
    request: Request,
    response: Response,
    uow: AsyncUnitOfWorkDep,
    cursor: str | None = None,
    limit: int = 20,
) -> KeysetPage[ItemOut]:
    page = await uow.items.paginate(order_by=["-created_at"], limit=limit, cursor=cursor)
    link_next(request, response, page.next_cursor)
    return KeysetPage(
        items=[ItemOut.model_validate(item) for item in page.items], next_cursor=page.next_cursor
    )


@app.get("/items/{item_id}")
async def get_item(item_id: str, uow: AsyncUnitOfWorkDep, response: Response) -> ItemOut:
    item = await uow.items.get_one(item_id)
    response.headers["ETag"] = etag(item.version)
    return ItemOut.model_validate(item)


@app.patch("/items/{item_id}")
async def update_item(
    item_id: str,
    data: ItemUpdate,
    uow: AsyncUnitOfWorkDep,
    response: Response,
    if_match: Annotated[str | None, Header()] = None,
) -> ItemOut:
    item = await uow.items.update(item_id, data, expected_version=expected_version(if_match))
    await uow.commit()
    response.headers["ETag"] = etag(item.version)
    return ItemOut.model_validate(item)


@app.delete("/items/{item_id}", status_code=204)
async def delete_item(item_id: str, uow: AsyncUnitOfWorkDep) -> None:
    await uow.items.delete(item_id)
    await uow.commit()


@app.get("/health")
async def health() -> dict[str, int]:
    """Connections of this process's pool in use right now (0 when idle)."""
    return {"connections_in_use": get_async_engine().sync_engine.pool.checkedout()}  # type: ignore[attr-defined]
