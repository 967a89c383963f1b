"""The names README examples and callers import: pinned, so a rename is a conscious change."""

from __future__ import annotations

import inspect

import pytest

import app.db.errors
import app.repositories
import app.seed
import app.services


def test_repositories_export_the_documented_names() -> None:
    assert set(app.repositories.__all__) == {
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
    }


def test_errors_export_the_documented_names() -> None:
    assert set(app.db.errors.__all__) == {
        "ConflictError",
        "ReadOnlyError",
        "DataLayerError",
        "DatabaseUnavailableError",
        "ForeignKeyError",
        "InvalidQueryError",
        "NotFoundError",
        "RetryableError",
        "StaleObjectError",
        "StatementTimeoutError",
        "translate",
        "translating_errors",
    }


def test_services_and_seed_export_their_entry_points() -> None:
    assert set(app.services.__all__) == {
        "create_item",
        "create_item_async",
        "register_user",
        "register_user_async",
    }
    assert {"SeedOptions", "seed_database"} <= set(app.seed.__all__)


def test_every_exported_name_exists() -> None:
    for module in (app.repositories, app.db.errors, app.services, app.seed):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(getattr(cls, name))
        for name in dir(cls)
        if not name.startswith("_") and inspect.isfunction(getattr(cls, name))
    }


@pytest.mark.parametrize(
    ("blocking", "asyncio_face"),
    [
        (app.repositories.UserRepository, app.repositories.AsyncUserRepository),
        (app.repositories.ItemRepository, app.repositories.AsyncItemRepository),
    ],
)
def test_the_asyncio_repositories_have_every_method_with_the_same_signature(
    blocking: type, asyncio_face: type
) -> None:
    wanted = {
        name: signature
        for name, signature in _public_methods(blocking).items()
        if name not in ("prepare", "prepare_columns")  # hooks for subclasses, not calls
    }
    found = _public_methods(asyncio_face)
    assert set(wanted) <= set(found)
    for name, signature in wanted.items():
        assert [p.name for p in found[name].parameters.values()] == [
            p.name for p in signature.parameters.values()
        ], name
        method = getattr(asyncio_face, name)
        if name == "iterate":  # a stream of rows: `async for item in uow.items.iterate(...)`
            assert inspect.isasyncgenfunction(method), name
        else:
            assert inspect.iscoroutinefunction(method), name
