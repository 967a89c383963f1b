"""The names README examples and callers import: pinned, so a rename is a conscious change."""

from __future__ import annotations

import app.db.errors
import app.repositories
import app.seed
import app.services


def test_repositories_export_the_documented_names() -> None:
    assert set(app.repositories.__all__) == {
        "ItemRepository",
        "OffsetPage",
        "Page",
        "Repository",
        "UnitOfWork",
        "UserRepository",
        "run_in_transaction",
        "transactional",
    }


def test_errors_export_the_documented_names() -> None:
    assert set(app.db.errors.__all__) == {
        "ConflictError",
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
    assert set(app.services.__all__) == {"create_item", "register_user"}
    assert {"SeedOptions", "seed_database"} <= set(app.seed.__all__)


def test_every_exported_name_exists() -> None:
    for module in (app.repositories, app.db.errors, app.services, app.seed):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
