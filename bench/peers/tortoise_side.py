"""Tortoise ORM on the project's tables, on the asyncio drivers its documentation names
(asyncpg, asyncmy, aiosqlite). Its UUIDField stores 36 characters where the project's tables
hold 32 hex digits (SQLite, MariaDB): there the key is a 32-character text field."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import URL

try:
    from tortoise import Tortoise
except ImportError:  # the bench extra is not installed
    Tortoise = None


def available() -> bool:
    return Tortoise is not None


def db_url(url: URL, connections: int) -> str:
    """Tortoise's URL for the database at `url`, with a pool of `connections`."""
    name = url.get_backend_name()
    if name == "sqlite":
        return f"sqlite://{url.database}"
    scheme = "asyncpg" if name == "postgresql" else "mysql"
    password = f":{url.password}" if url.password else ""
    size = f"minsize={connections}&maxsize={connections}"
    return f"{scheme}://{url.username}{password}@{url.host}:{url.port}/{url.database}?{size}"


async def start(url: URL, connections: int) -> Any:
    """Initialise Tortoise on `url`; its user model for that backend."""
    native = url.get_backend_name() == "postgresql"
    module = "bench.peers.tortoise_models_uuid" if native else "bench.peers.tortoise_models_hex"
    # As its FastAPI and Starlette integrations set it up: one context for every task.
    await Tortoise.init(
        db_url=db_url(url, connections), modules={"peers": [module]}, _enable_global_fallback=True
    )
    return Tortoise.apps["peers"]["User"]


async def stop() -> None:
    await Tortoise.close_connections()
