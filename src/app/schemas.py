"""Validated input for the use cases: bounds come from the columns they are written to."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, EmailStr, Field, SecretStr, ValidationError

from app.db.errors import InvalidQueryError
from app.db.models import EMAIL_LENGTH, NAME_LENGTH

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
DESCRIPTION_MAX_LENGTH = 10_000


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


InputT = TypeVar("InputT", bound=BaseModel)


def validated(schema: type[InputT], data: Any) -> InputT:
    """`data` as `schema`, or `InvalidQueryError` naming each field and the rule it broke (never
    the value given: it may be a password).

    A model of another schema is validated by this one's rules, not taken as it is: a
    `UserAdminCreate` passed where a `UserCreate` is wanted is refused for its privileges."""
    if isinstance(data, BaseModel) and type(data) is not schema:
        data = data.model_dump()
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'input'}: {error['msg']}"
            for error in exc.errors()
        )
    # Raised here, not in the handler: pydantic's error holds the input, passwords included.
    raise InvalidQueryError(f"invalid {schema.__name__}: {problems}")


class UserCreate(_Input):
    """A person signing up: what they may say of themselves. The password is kept secret and
    only ever stored hashed; privileges are not theirs to give (`UserAdminCreate`)."""

    email: EmailStr = Field(max_length=EMAIL_LENGTH)
    password: SecretStr = Field(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH)
    full_name: str | None = Field(default=None, max_length=NAME_LENGTH)


class UserAdminCreate(UserCreate):
    """A user an administrator creates, privileges included."""

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
