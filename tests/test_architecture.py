"""The shape of the package, read from its source: layers, cycles, private names, sizes.

The layers are those of ``docs/architecture.rst`` (and DESIGN.md's module
map).  Every import counts, including imports inside functions and under
``if TYPE_CHECKING``: a lazy import up the layers is still a dependency up
the layers.  Importing a package (``from fleche.caches import Cache``)
depends on its ``__init__`` module.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fleche"

#: Layers from the bottom up: (layer, module-name prefixes).  The most
#: specific prefix wins; a module may import its own layer and those below.
LAYERS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, ("fleche.errors", "fleche._version")),
    (2, ("fleche.digest", "fleche._digest_", "fleche._transpose", "fleche._code_deps")),
    (3, ("fleche.call", "fleche.prepared", "fleche.profile", "fleche.expiry")),
    (4, ("fleche.serializers", "fleche.security", "fleche.storage")),
    (5, ("fleche.caches", "fleche.query")),
    (
        6,
        (
            "fleche.lineage",
            "fleche.explain",
            "fleche.verify",
            "fleche.transfer",
            "fleche.maintenance",
            "fleche.sweep",
            "fleche.legacy",
        ),
    ),
    (
        7,
        (
            "fleche.registry",
            "fleche.config",
            "fleche._config_",
            "fleche.store_layout",
            "fleche.opening",
        ),
    ),
    (
        8,
        (
            "fleche.state",
            "fleche.metadata",
            "fleche.single_flight",
            "fleche.wrapper",
            "fleche.methods",
            "fleche.asynchronous",
            "fleche.executor",
            "fleche.shipping",
            "fleche.isolation",
            "fleche.remote",
            "fleche._remote_",
        ),
    ),
    (9, ("fleche.cli", "fleche.ui", "fleche.demo", "fleche.__main__", "fleche.testing")),
)
#: The package root re-exports the public API: it sits with the faces, above the rest.
ROOT_LAYER = 9

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


@functools.cache
def modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the package: dotted name -> (path, is a package ``__init__``).

    C extensions count by their source (``*.c``): modules that import nothing of fleche.
    """
    found = {}
    for path in [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.c")]:
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def layer_of(module: str) -> int:
    if module == "fleche":
        return ROOT_LAYER
    best = None
    for layer, prefixes in LAYERS:
        for prefix in prefixes:
            if module.startswith(prefix) and (best is None or len(prefix) > len(best[1])):
                best = (layer, prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS and the docs")
    return best[0]


def _owner(name: str) -> str | None:
    """The module an imported dotted name lives in."""
    known = modules()
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


@functools.cache
def imports() -> dict[str, dict[str, list[str]]]:
    """module -> {imported module: [private names it imports from there]}."""
    graph: dict[str, dict[str, list[str]]] = {}
    for module, (path, is_package) in modules().items():
        edges: dict[str, list[str]] = {}
        base = module if is_package else module.rpartition(".")[0]
        source = path.read_text() if path.suffix == ".py" else ""  # C imports nothing of fleche
        tree = ast.parse(source, str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _owner(alias.name) if alias.name.startswith("fleche") else None
                    if target and target != module:
                        edges.setdefault(target, [])
            elif isinstance(node, ast.ImportFrom):
                source = node.module or ""
                if node.level:
                    anchor = base
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    source = f"{anchor}.{source}" if source else anchor
                if not source.startswith("fleche"):
                    continue
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    target = submodule if submodule in modules() else _owner(source)
                    if not target or target == module:
                        continue
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    names = edges.setdefault(target, [])
                    if private and submodule not in modules():
                        names.append(alias.name)
        graph[module] = edges
    return graph


def cycles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    graph = imports()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer() -> None:
    for module in modules():
        layer_of(module)


def test_no_import_cycles() -> None:
    assert cycles() == []


def test_imports_run_down_the_layers() -> None:
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, edges in sorted(imports().items())
        for target in edges
        if layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_no_module_imports_private_names_of_another() -> None:
    private = [
        f"{module} imports {names} from {target}"
        for module, edges in sorted(imports().items())
        for target, names in edges.items()
        if names
    ]
    assert private == []


def test_modules_are_small() -> None:
    long = {
        module: lines
        for module, (path, _) in modules().items()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_functions_are_short() -> None:
    long = {}
    for module, (path, _) in modules().items():
        if path.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{module}.{node.name}"] = lines
    assert long == {}


@pytest.mark.parametrize(
    ("module", "layer"),
    [("fleche.storage.sql", 4), ("fleche.caches.core", 5), ("fleche", ROOT_LAYER)],
)
def test_layers_are_read_by_longest_prefix(module: str, layer: int) -> None:
    assert layer_of(module) == layer
