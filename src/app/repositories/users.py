"""Users: CRUD plus lookup by email."""

from __future__ import annotations

from typing import Any, ClassVar

from app.db.models import User, normalize_email
from app.repositories._statements import select_where_equal
from app.repositories.repository import Repository

# The password hash is never a filter or a sort key: that would leak it through timing and order.
_PUBLIC_USER_FIELDS = frozenset(User.__table__.columns.keys()) - {"hashed_password"}


class UserRepository(Repository[User]):
    """Users, with email lookups that ignore case; `upsert` matches on the email."""

    model = User
    filterable_fields: ClassVar[frozenset[str] | None] = _PUBLIC_USER_FIELDS
    sortable_fields: ClassVar[frozenset[str] | None] = _PUBLIC_USER_FIELDS
    upsert_key: ClassVar[tuple[str, ...] | None] = ("email",)

    def get_by_email(self, email: str) -> User | None:
        """The user with this email, whatever its case, or None."""
        statement = select_where_equal(User, self._rules, {"email": normalize_email(email)})
        return self.session.scalars(statement).one_or_none()

    def prepare(self, values: dict[str, Any]) -> dict[str, Any]:
        if isinstance(values.get("email"), str):
            values["email"] = normalize_email(values["email"])
        return values

    def prepare_columns(self, columns: dict[str, list[Any]]) -> bool:
        if "email" in columns:  # text already: the fast path checked every value's type
            columns["email"] = list(map(normalize_email, columns["email"]))
        return True
