"""The baseline for the web workload: the example service's read and write paths written by hand
with FastAPI and SQLAlchemy's AsyncSession, as a team would without this data layer."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Response
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from app.db.models import Item, User
from app.schemas import ItemCreate, ItemUpdate

engine = create_async_engine(
    os.environ["DATABASE_URL"],
    pool_size=int(os.environ.get("DB_POOL_SIZE", "10")),
    max_overflow=int(os.environ.get("DB_MAX_OVERFLOW", "10")),
)
sessions = async_sessionmaker(engine, expire_on_commit=False)
app = FastAPI()


async def session() -> AsyncIterator[AsyncSession]:
    async with sessions() as opened:
        yield opened


Session = Annotated[AsyncSession, Depends(session)]


def _item(item: Item) -> dict[str, Any]:
    return {"id": str(item.id), "title": item.title, "description": item.description,
            "owner_id": str(item.owner_id), "created_at": item.created_at.isoformat(),
            "version": item.version}  # fmt: skip


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise HTTPException(400, "not a valid id") from None


@app.get("/users/{user_id}")
async def get_user(user_id: str, db: Session, response: Response) -> dict[str, Any]:
    user = await db.get(User, _uuid(user_id))
    if user is None:
        raise HTTPException(404, "no such user")
    response.headers["ETag"] = f'"{user.version}"'
    return {"id": str(user.id), "email": user.email, "full_name": user.full_name,
            "version": user.version}  # fmt: skip


@app.post("/users/{user_id}/items", status_code=201)
async def create_item(user_id: str, data: ItemCreate, db: Session) -> dict[str, Any]:
    item = Item(**data.model_dump(), owner_id=_uuid(user_id))
    db.add(item)
    await db.commit()
    return _item(item)


@app.get("/items")
async def list_items(db: Session, limit: int = 20) -> dict[str, Any]:
    statement = select(Item).order_by(Item.created_at.desc(), Item.id).limit(limit)
    items = (await db.scalars(statement)).all()
    return {"items": [_item(item) for item in items], "next_cursor": None}


@app.get("/items/{item_id}")
async def get_item(item_id: str, db: Session, response: Response) -> dict[str, Any]:
    item = await db.get(Item, _uuid(item_id))
    if item is None:
        raise HTTPException(404, "no such item")
    response.headers["ETag"] = f'"{item.version}"'
    return _item(item)


@app.patch("/items/{item_id}")
async def update_item(
    item_id: str,
    data: ItemUpdate,
    db: Session,
    response: Response,
    if_match: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    key = _uuid(item_id)
    values = data.model_dump(exclude_unset=True)
    statement = update(Item).where(Item.id == key)
    if if_match is not None:
        statement = statement.where(Item.version == int(if_match.strip('W/"')))
    statement = statement.values(
        **values, version=Item.version + 1, updated_at=dt.datetime.now(dt.UTC)
    ).returning(Item)
    item = (await db.scalars(statement)).one_or_none()
    if item is None:
        raise HTTPException(412 if await db.get(Item, key) else 404, "stale or missing")
    await db.commit()
    response.headers["ETag"] = f'"{item.version}"'
    return _item(item)
