"""Repositories and the Unit of Work."""

from app.repositories.base import OffsetPage, Page, Repository
from app.repositories.items import ItemRepository
from app.repositories.transactions import run_in_transaction, transactional
from app.repositories.unit_of_work import UnitOfWork
from app.repositories.users import UserRepository

__all__ = [
    "ItemRepository",
    "OffsetPage",
    "Page",
    "Repository",
    "UnitOfWork",
    "UserRepository",
    "run_in_transaction",
    "transactional",
]
