"""Use cases about items."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from app.db.models import Item
from app.repositories.aio import AsyncUnitOfWork
from app.repositories.unit_of_work import UnitOfWork
from app.schemas import ItemCreate, validated


def create_item(
    uow: UnitOfWork, owner_id: uuid.UUID | str, data: ItemCreate | Mapping[str, Any]
) -> Item:
    """Create an item for an existing owner and commit; a missing owner is a `ForeignKeyError`."""
    data = validated(ItemCreate, data)
    with uow:
        item = uow.items.create({**data.model_dump(), "owner_id": owner_id})
        uow.commit()
    return item


async def create_item_async(
    uow: AsyncUnitOfWork, owner_id: uuid.UUID | str, data: ItemCreate | Mapping[str, Any]
) -> Item:
    """`create_item` for asyncio."""
    return await uow.run_sync(create_item, owner_id, data)
