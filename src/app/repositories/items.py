"""Items: CRUD plus listing by owner."""

from __future__ import annotations

import uuid

from app.db.models import Item
from app.repositories.repository import Repository


class ItemRepository(Repository[Item]):
    """Items, listed by owner in creation order."""

    model = Item

    def list_by_owner(
        self, owner_id: uuid.UUID | str, *, limit: int = 50, offset: int = 0
    ) -> list[Item]:
        """One page of the owner's items, oldest first."""
        return self.list(
            where={"owner_id": owner_id}, order_by=["created_at"], limit=limit, offset=offset
        )
