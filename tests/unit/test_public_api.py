"""The public surface: each public module's `__all__` is exactly what it defines or re-exports,
every name README imports is exported, and the asyncio face has every blocking method with the
same signature."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest

import app.repositories
from app.repositories import aio

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_MODULES = (
    "app.repositories",
    "app.db.errors",
    "app.services",
    "app.seed",
    "app.migration_ops",
    "app.integrations.fastapi",
    "app.observability",
)


def _public_classes_and_functions(module: ModuleType) -> set[str]:
    """What `module` offers: the public classes and functions it defines; a package's
    `__init__` (and `app.migration_ops`, the public name of `app.migrations.ops`) offers those
    it takes from the project's modules as well."""
    reexports = Path(module.__file__ or "").name == "__init__.py" or module.__name__.endswith(
        "migration_ops"
    )
    found = set()
    for name, value in vars(module).items():
        if name.startswith("_") or not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        origin = getattr(value, "__module__", "") or ""
        if origin == module.__name__ or (reexports and origin.startswith("app.")):
            found.add(name)
    return found


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_lists_what_the_module_offers_and_nothing_it_took_from_elsewhere(name: str) -> None:
    module = importlib.import_module(name)
    offered = _public_classes_and_functions(module)
    exported = set(getattr(module, "__all__", ()))
    assert offered - exported == set(), "offered but not in __all__"
    for extra in exported - offered:  # type aliases and constants the module defines
        value = getattr(module, extra)
        taken = inspect.isclass(value) or inspect.isfunction(value)
        assert not taken, f"{name}.__all__ names {extra}, which another module defines"


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_exported_name_exists(name: str) -> None:
    module = importlib.import_module(name)
    for exported in module.__all__:
        assert hasattr(module, exported), f"{name}.{exported}"


_README_IMPORT = re.compile(r"from (app(?:\.\w+)*) import (?:\(([^)]*)\)|([^\n#]+))")


def test_every_name_readme_imports_from_the_project_is_exported() -> None:
    text = (ROOT / "README.md").read_text()
    imports = [
        (module, name.strip())
        for module, grouped, single in _README_IMPORT.findall(text)
        for name in (grouped or single).split(",")
        if name.strip()
    ]
    assert imports, "README shows imports"
    for module_name, name in imports:
        module = importlib.import_module(module_name)
        exported = getattr(module, "__all__", None)
        assert hasattr(module, name), f"README imports {module_name}.{name}, which is gone"
        if exported is not None:
            assert name in exported, f"README imports {module_name}.{name}, not in its __all__"


def _public_methods(cls: type) -> dict[str, object]:
    return {
        name: getattr(cls, name)
        for name in dir(cls)
        if not name.startswith("_") and inspect.isfunction(getattr(cls, name))
    }


# Hooks for subclasses, and what the asyncio face uses of the blocking one: not calls.
_NOT_CALLS = {
    "prepare", "prepare_columns", "iteration_statement", "for_model", "route", "adopt",
    "make_repository",
}  # fmt: skip


@pytest.mark.parametrize(
    ("blocking", "asyncio_face"),
    [
        (app.repositories.UserRepository, app.repositories.AsyncUserRepository),
        (app.repositories.ItemRepository, app.repositories.AsyncItemRepository),
        (app.repositories.UnitOfWork, app.repositories.AsyncUnitOfWork),
    ],
)
def test_the_asyncio_face_has_every_blocking_method_with_the_same_signature(
    blocking: type, asyncio_face: type
) -> None:
    wanted = {n: m for n, m in _public_methods(blocking).items() if n not in _NOT_CALLS}
    found = _public_methods(asyncio_face)
    assert set(wanted) <= set(found), sorted(set(wanted) - set(found))
    for name, method in wanted.items():
        twin = found[name]
        generated = hasattr(twin, "__signature__")  # `awaited(method)` gives the method's
        if generated:
            assert twin.__wrapped__ is method, f"{name} awaits another blocking method"
        # The twin's own parameters: for a generated one what it declares, not what
        # `functools.wraps` points back to; for one written out (a context manager's too) its
        # function's.
        own = twin if generated else inspect.unwrap(twin)  # type: ignore[arg-type]
        signature = inspect.signature(own, follow_wrapped=False)  # type: ignore[arg-type]
        expected = inspect.signature(inspect.unwrap(method))  # type: ignore[arg-type]
        assert [(p.name, p.kind, p.default) for p in signature.parameters.values()] == [
            (p.name, p.kind, p.default) for p in expected.parameters.values()
        ], name
        if name == "iterate":  # a stream of rows: `async for item in uow.items.iterate(...)`
            assert inspect.isasyncgenfunction(twin), name
        elif name != "savepoint" and name != "repository":
            assert inspect.iscoroutinefunction(twin), name


def test_a_twin_made_from_another_method_is_caught() -> None:
    """The signature test above fails when a twin awaits the wrong method or takes other
    arguments."""

    class Wrong(app.repositories.AsyncUserRepository):
        get_by_email = aio.awaited(app.repositories.UserRepository.get_one)

    twin = Wrong.get_by_email
    method = app.repositories.UserRepository.get_by_email
    assert inspect.signature(twin, follow_wrapped=False) != inspect.signature(method)
    assert twin.__wrapped__ is not method
