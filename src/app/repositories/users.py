"""Users: CRUD plus lookup by email."""

from __future__ import annotations

from typing import Any, ClassVar

from app.db.emails import EmailError, normalize_email
from app.db.errors import InvalidQueryError
from app.db.models import User
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
        """The user with this email, however it is spelled (app.db.emails), or None."""
        if not isinstance(email, str):
            raise InvalidQueryError(f"email must be text, got {type(email).__name__}")
        try:
            stored = normalize_email(email)
        except EmailError:
            return None  # no stored address has that form
        statement, parameters = select_where_equal(User, self._rules, {"email": stored})
        return self.session.scalars(statement, parameters).one_or_none()

    def prepare(self, values: dict[str, Any]) -> dict[str, Any]:
        if isinstance(values.get("email"), str):
            values["email"] = _normalized(values["email"])
        return values

    def prepare_columns(self, columns: dict[str, list[Any]]) -> bool:
        if "email" in columns:  # text already: the fast path checked every value's type
            columns["email"] = list(map(_normalized, columns["email"]))
        return True


def _normalized(email: str) -> str:
    try:
        return normalize_email(email)
    except EmailError as exc:
        reason = str(exc)
    raise InvalidQueryError(f"email is not valid: {reason}")
