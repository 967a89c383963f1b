"""Use cases about users."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from app.db.models import User
from app.repositories.aio import AsyncUnitOfWork
from app.repositories.unit_of_work import UnitOfWork
from app.schemas import UserCreate
from app.services.passwords import hash_password


def register_user(uow: UnitOfWork, data: UserCreate | Mapping[str, Any]) -> User:
    """Create a user with a hashed password and commit; a taken email is a `ConflictError`."""
    return _store_user(uow, _new_user_values(data))


async def register_user_async(uow: AsyncUnitOfWork, data: UserCreate | Mapping[str, Any]) -> User:
    """`register_user` for asyncio; the password is hashed off the event loop."""
    values = await asyncio.to_thread(_new_user_values, data)
    return await uow.run_sync(_store_user, values)


def _new_user_values(data: UserCreate | Mapping[str, Any]) -> dict[str, Any]:
    """The checked input as a user's columns, the password hashed (argon2: slow on purpose)."""
    user = UserCreate.model_validate(data)
    return {
        "email": str(user.email),
        "full_name": user.full_name,
        "hashed_password": hash_password(user.password.get_secret_value()),
        "is_active": user.is_active,
        "is_superuser": user.is_superuser,
    }


def _store_user(uow: UnitOfWork, values: dict[str, Any]) -> User:
    with uow:
        user = uow.users.create(values)
        uow.commit()
    return user
