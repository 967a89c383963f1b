"""The layout README describes: no module of src/app imports itself back through others, and
each layer imports only the layers below it. Every import counts, inside functions and under
TYPE_CHECKING too: a cycle hidden in a function is still a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SOURCE / "app"

# From the bottom up: a module may import modules of its own layer and of the layers before it.
LAYERS = (
    ("app", "app.config"),
    (
        "app.db.types",
        "app.db.error_codes",
        "app.db.models",
        "app.db.errors",
        "app.db.error_events",
        "app.db.telemetry",
    ),
    ("app.dialects",),
    ("app.db.session", "app.db.admin"),
    ("app.topology",),
    ("app.db.runtime",),
    ("app.repositories",),
    ("app.migrations", "app.migration_ops"),
    ("app.schemas", "app.services"),
    ("app.seed",),
    ("app.integrations", "app.testing", "app.observability"),
    ("app.cli", "app.__main__"),
)


def _module_name(path: Path, source: Path) -> str:
    parts = list(path.relative_to(source).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(source: Path) -> dict[str, Path]:
    return {_module_name(path, source): path for path in (source / "app").rglob("*.py")}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The project's modules `path` imports, by name (an imported name that is a module counts
    as that module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            submodules = {f"{base}.{alias.name}" for alias in node.names}
            # `from package import module` imports the module; any other name, the package.
            if not submodules <= known:
                found.add(base)
            found.update(submodules)
    return {module for module in found if module in known and module != name}


def _graph(source: Path = SOURCE) -> dict[str, set[str]]:
    modules = _modules(source)
    known = set(modules)
    return {name: _imports(path, name, known) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    visiting: list[str] = []
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        if module in done:
            return
        if module in visiting:
            cycles.append([*visiting[visiting.index(module) :], module])
            return
        visiting.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
    return cycles


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{module} imports {imported}"
        for module, imports in sorted(graph.items())
        for imported in sorted(imports)
        if _layer(imported) > _layer(module)
    ]


def _layer(module: str) -> int:
    best, index = -1, -1
    for position, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and len(prefix) > best:
                best, index = len(prefix), position
    assert index >= 0, f"{module} is in no layer: add it to LAYERS and README's layout"
    return index


def test_no_module_imports_itself_back_through_others() -> None:
    assert _cycles(_graph()) == []


def test_each_layer_imports_only_the_layers_below_it() -> None:
    assert _upward(_graph()) == []


def test_the_checks_see_a_cycle_hidden_in_a_function_and_an_upward_import(
    tmp_path: Path,
) -> None:
    """The two tests above can fail: run on a small tree that has both faults."""
    repositories = tmp_path / "app" / "repositories"
    repositories.mkdir(parents=True)
    (tmp_path / "app" / "__init__.py").write_text("")
    (repositories / "__init__.py").write_text("")
    (repositories / "_values.py").write_text("def f():\n    from . import _bulk\n")
    (repositories / "_bulk.py").write_text("from app.repositories import _values\n")
    (tmp_path / "app" / "cli").mkdir()
    (tmp_path / "app" / "cli" / "__init__.py").write_text("")
    (repositories / "repository.py").write_text("import app.cli\n")
    graph = _graph(tmp_path)
    assert _cycles(graph) == [
        ["app.repositories._bulk", "app.repositories._values", "app.repositories._bulk"]
    ]
    assert _upward(graph) == ["app.repositories.repository imports app.cli"]
