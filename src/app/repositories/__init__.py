"""Repositories and the Unit of Work, blocking and asyncio."""

from app.repositories.aio import (
    AsyncItemRepository,
    AsyncRepository,
    AsyncUnitOfWork,
    AsyncUserRepository,
    async_unit_of_work_class,
    run_in_transaction_async,
    transactional_async,
)
from app.repositories.items import ItemRepository
from app.repositories.repository import OffsetPage, Page, Repository
from app.repositories.unit_of_work import (
    UnitOfWork,
    run_in_transaction,
    transactional,
    unit_of_work_class,
)
from app.repositories.users import UserRepository

__all__ = [
    "AsyncItemRepository",
    "AsyncRepository",
    "AsyncUnitOfWork",
    "AsyncUserRepository",
    "ItemRepository",
    "OffsetPage",
    "Page",
    "Repository",
    "UnitOfWork",
    "UserRepository",
    "async_unit_of_work_class",
    "run_in_transaction",
    "run_in_transaction_async",
    "transactional",
    "transactional_async",
    "unit_of_work_class",
]
