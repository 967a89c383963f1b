"""Use cases that need a transaction, each with its asyncio twin."""

from app.services.items import create_item, create_item_async
from app.services.users import (
    create_user,
    create_user_async,
    register_user,
    register_user_async,
)

__all__ = [
    "create_item",
    "create_item_async",
    "create_user",
    "create_user_async",
    "register_user",
    "register_user_async",
]
