"""Use cases about users."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.db.models import User
from app.repositories.unit_of_work import UnitOfWork
from app.schemas import UserCreate
from app.services.passwords import hash_password


def register_user(uow: UnitOfWork, data: UserCreate | Mapping[str, Any]) -> User:
    """Create a user with a hashed password and commit; a taken email is a `ConflictError`."""
    data = UserCreate.model_validate(data)
    with uow:
        user = uow.users.create(
            {
                "email": str(data.email),
                "full_name": data.full_name,
                "hashed_password": hash_password(data.password.get_secret_value()),
                "is_active": data.is_active,
                "is_superuser": data.is_superuser,
            }
        )
        uow.commit()
    return user
