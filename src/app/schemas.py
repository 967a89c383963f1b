"""Validated input for the use cases: bounds come from the columns they are written to."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, EmailStr, Field, SecretStr

from app.db.models import EMAIL_LENGTH, NAME_LENGTH

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
DESCRIPTION_MAX_LENGTH = 10_000


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class UserCreate(_Input):
    """A new user; the password is kept secret and only ever stored hashed."""

    email: EmailStr = Field(max_length=EMAIL_LENGTH)
    password: SecretStr = Field(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH)
    full_name: str | None = Field(default=None, max_length=NAME_LENGTH)
    is_active: bool = True
    is_superuser: bool = False


class ItemCreate(_Input):
    """A new item."""

    title: str = Field(min_length=1, max_length=NAME_LENGTH)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX_LENGTH)


class ItemUpdate(_Input):
    """Changes to an item; fields left out stay as they are."""

    title: str | None = Field(default=None, min_length=1, max_length=NAME_LENGTH)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX_LENGTH)
