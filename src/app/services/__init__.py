"""Use cases that need a transaction."""

from app.services.items import create_item
from app.services.users import register_user

__all__ = ["create_item", "register_user"]
