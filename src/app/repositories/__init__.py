"""Repositories and the Unit of Work."""

from app.repositories.base import Repository
from app.repositories.items import ItemRepository
from app.repositories.unit_of_work import UnitOfWork
from app.repositories.users import UserRepository

__all__ = ["ItemRepository", "Repository", "UnitOfWork", "UserRepository"]
