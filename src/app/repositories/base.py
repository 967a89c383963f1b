"""A generic repository: CRUD for one model on a session it is given. It never commits."""

from __future__ import annotations

from app.repositories.core import Data, ModelT
from app.repositories.reading import OffsetPage, Page
from app.repositories.writing import DEFAULT_BATCH_SIZE, WritingMixin


class Repository(WritingMixin[ModelT]):
    """CRUD, pagination, upserts and bulk writes for `model`, on a session it is given.

    It adds and flushes, never commits: the Unit of Work (or whoever owns the session) does.
    """


__all__ = ["DEFAULT_BATCH_SIZE", "Data", "OffsetPage", "Page", "Repository"]
