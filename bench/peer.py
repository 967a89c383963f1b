"""advanced-alchemy, the closest peer library, on the same models (installed by the bench extra)."""

from __future__ import annotations

from typing import Any

from app.db.models import User

try:
    from advanced_alchemy.repository import (
        SQLAlchemyAsyncRepository,
        SQLAlchemySyncRepository,
    )
except ImportError:  # the bench extra is not installed: the peer's paths are left out
    PeerUserRepository: Any = None
    PeerAsyncUserRepository: Any = None
else:

    class PeerUserRepository(SQLAlchemySyncRepository[User]):  # type: ignore[no-redef]
        """advanced-alchemy's repository for our users."""

        model_type = User

    class PeerAsyncUserRepository(SQLAlchemyAsyncRepository[User]):  # type: ignore[no-redef]
        """advanced-alchemy's asyncio repository for our users."""

        model_type = User


def available() -> bool:
    """Whether advanced-alchemy is installed."""
    return PeerUserRepository is not None


def user_repository(session: Any) -> Any:
    """advanced-alchemy's repository for users on `session`."""
    return PeerUserRepository(session=session, auto_expunge=False, auto_refresh=False)


def async_available() -> bool:
    """Whether advanced-alchemy's asyncio repository is installed."""
    return PeerAsyncUserRepository is not None


def async_user_repository(session: Any) -> Any:
    """advanced-alchemy's asyncio repository for users on `session` (an AsyncSession)."""
    return PeerAsyncUserRepository(session=session, auto_expunge=False, auto_refresh=False)
