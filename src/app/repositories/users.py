"""Users: CRUD plus lookup by email."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import select

from app.db.errors import translating_errors
from app.db.models import User, normalize_email
from app.repositories.base import Repository
from app.repositories.columns import column_names

# The password hash is never a filter or a sort key: that would leak it through timing and order.
_PUBLIC_USER_FIELDS = column_names(User) - {"hashed_password"}


class UserRepository(Repository[User]):
    """Users, with email lookups that ignore case."""

    model = User
    filterable_fields: ClassVar[frozenset[str] | None] = _PUBLIC_USER_FIELDS
    sortable_fields: ClassVar[frozenset[str] | None] = _PUBLIC_USER_FIELDS

    def get_by_email(self, email: str) -> User | None:
        """The user with this email, whatever its case, or None."""
        statement = select(User).where(User.email == normalize_email(email))
        with translating_errors(model=User):
            return self.session.scalars(statement).one_or_none()

    def prepare(self, values: dict[str, Any]) -> dict[str, Any]:
        if isinstance(values.get("email"), str):
            values["email"] = normalize_email(values["email"])
        return values

    def prepare_columns(self, columns: dict[str, list[Any]]) -> bool:
        if "email" in columns:  # text already: the fast path checked every value's type
            columns["email"] = [email.strip().lower() for email in columns["email"]]
        return True
