"""Repositories and the Unit of Work, blocking and asyncio."""

from app.repositories.async_repository import (
    AsyncItemRepository,
    AsyncRepository,
    AsyncUserRepository,
)
from app.repositories.async_transactions import run_in_transaction_async, transactional_async
from app.repositories.async_unit_of_work import AsyncUnitOfWork
from app.repositories.base import OffsetPage, Page, Repository
from app.repositories.items import ItemRepository
from app.repositories.transactions import run_in_transaction, transactional
from app.repositories.unit_of_work import UnitOfWork
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
    "run_in_transaction",
    "run_in_transaction_async",
    "transactional",
    "transactional_async",
]
