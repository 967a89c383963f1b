"""Use cases about users."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from app.db.models import User
from app.repositories.aio import AsyncUnitOfWork
from app.repositories.unit_of_work import UnitOfWork
from app.schemas import UserAdminCreate, UserCreate, validated
from app.services.passwords import hash_password


def register_user(uow: UnitOfWork, data: UserCreate | Mapping[str, Any]) -> User:
    """Sign a person up: an active user without privileges, its password hashed, committed. A
    taken email is a `ConflictError`; input that is not a `UserCreate` (privileges included)
    an `InvalidQueryError`."""
    return _store_user(uow, _new_user_values(UserCreate, data))


async def register_user_async(uow: AsyncUnitOfWork, data: UserCreate | Mapping[str, Any]) -> User:
    """`register_user` for asyncio; the password is hashed off the event loop."""
    values = await asyncio.to_thread(_new_user_values, UserCreate, data)
    return await uow.run_sync(_store_user, values)


def create_user(uow: UnitOfWork, data: UserAdminCreate | Mapping[str, Any]) -> User:
    """Create a user as an administrator does, privileges as given; otherwise `register_user`.
    Callers decide who may: nothing here checks who is asking."""
    return _store_user(uow, _new_user_values(UserAdminCreate, data))


async def create_user_async(
    uow: AsyncUnitOfWork, data: UserAdminCreate | Mapping[str, Any]
) -> User:
    """`create_user` for asyncio; the password is hashed off the event loop."""
    values = await asyncio.to_thread(_new_user_values, UserAdminCreate, data)
    return await uow.run_sync(_store_user, values)


def _new_user_values(
    schema: type[UserCreate], data: UserCreate | Mapping[str, Any]
) -> dict[str, Any]:
    """The checked input as a user's columns, the password hashed (argon2: slow on purpose)."""
    user = validated(schema, data)
    values = {
        "email": str(user.email),
        "full_name": user.full_name,
        "hashed_password": hash_password(user.password.get_secret_value()),
        "is_active": True,
        "is_superuser": False,
    }
    if isinstance(user, UserAdminCreate):
        values.update(is_active=user.is_active, is_superuser=user.is_superuser)
    return values


def _store_user(uow: UnitOfWork, values: dict[str, Any]) -> User:
    with uow:
        user = uow.users.create(values)
        uow.commit()
    return user
