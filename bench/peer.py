"""advanced-alchemy, the closest peer library, on the same models (installed by the bench extra)."""

from __future__ import annotations

from typing import Any

from app.db.models import User

try:
    from advanced_alchemy.repository import SQLAlchemySyncRepository
except ImportError:  # the bench extra is not installed: the peer's paths are left out
    PeerUserRepository: Any = None
else:

    class PeerUserRepository(SQLAlchemySyncRepository[User]):  # type: ignore[no-redef]
        """advanced-alchemy's repository for our users."""

        model_type = User


def available() -> bool:
    """Whether advanced-alchemy is installed."""
    return PeerUserRepository is not None


def user_repository(session: Any) -> Any:
    """advanced-alchemy's repository for users on `session`."""
    return PeerUserRepository(session=session, auto_expunge=False, auto_refresh=False)
