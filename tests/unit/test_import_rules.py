"""The layers' import rules (DESIGN.md §10), read from the source with `ast`, so they hold
without anyone remembering them:

- the domain (engine/domain) imports no infrastructure: no Ray, gRPC, NATS, ClickHouse,
  chDB, and none of engine.runtime, engine.api, engine.bootstrap or the adapters;
- an adapter imports neither the API, the runtime nor the composition root;
- the runtime imports no adapter (engine.bootstrap hands it its ports);
- the console calls the engine through the gRPC API only (no runtime, adapter, settings or servicer);
- no two modules of engine/ and adapters/ import each other, directly or round a loop.

Every import counts for the layer rules (inside functions and under TYPE_CHECKING too:
a lazy import is still a dependency); import cycles are looked for among the imports
that run when a module is loaded.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "adapters")

INFRASTRUCTURE = ("ray", "grpc", "grpc_status", "grpc_health", "grpc_reflection", "nats", "clickhouse_connect", "chdb")


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    layer: str  # modules this rule is about: the layer's package and everything under it
    forbidden: tuple[str, ...]  # imported modules (and their submodules) the layer must not use


RULES = (
    Rule(
        "domain-is-pure",
        "engine.domain",
        (*INFRASTRUCTURE, "engine.runtime", "engine.api", "engine.bootstrap", "engine.cli", "adapters"),
    ),
    # Stock health decides like the domain: pure rules and maths, ports for what waits.
    Rule(
        "health-is-pure",
        "engine.health",
        (*INFRASTRUCTURE, "engine.runtime", "engine.api", "engine.bootstrap", "engine.cli", "adapters"),
    ),
    Rule(
        "finance-is-pure",
        "engine.finance",
        (*INFRASTRUCTURE, "engine.runtime", "engine.api", "engine.bootstrap", "engine.cli", "adapters"),
    ),
    Rule("adapters-stay-below", "adapters", ("engine.api", "engine.runtime", "engine.bootstrap", "engine.cli")),
    Rule("runtime-uses-ports", "engine.runtime", ("adapters", "engine.bootstrap", "engine.cli", "engine.settings")),
    # The console is a client of the public gRPC API: it reaches the engine only through it
    # (so grants apply to every page), never through the runtime, an adapter or the settings.
    Rule(
        "console-calls-the-api",
        "engine.console",
        (
            "ray",
            "nats",
            "clickhouse_connect",
            "chdb",
            "engine.runtime",
            "engine.bootstrap",
            "engine.cli",
            "engine.settings",
            "adapters",
            "engine.api.server",
            "engine.api.servicer",
            "engine.api.authz",
        ),
    ),
    # Replenishment's maths (issue 14) is as pure as the domain: numpy / numba / scipy and engine.domain only.
    Rule(
        "replenish-is-pure",
        "engine.replenish",
        (
            *INFRASTRUCTURE,
            "engine.runtime",
            "engine.api",
            "engine.bootstrap",
            "engine.cli",
            "engine.settings",
            "adapters",
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module
    line: int
    at_load: bool  # runs when the module is loaded (top level, not under TYPE_CHECKING)

    def where(self, root: Path) -> str:
        return f"{module_path(root, self.module).relative_to(root)}:{self.line} imports {self.target}"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_path(root: Path, module: str) -> Path:
    base = root.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def source_files(root: Path) -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((root / package).rglob("*.py"))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(root: Path, path: Path, known: set[str]) -> Iterator[Import]:
    """Every import in the file; `from pkg import mod` counts as importing pkg.mod when it is a module."""
    module = module_name(root, path)
    tree = ast.parse(path.read_text(), str(path))

    def walk(nodes: Iterable[ast.stmt], at_load: bool) -> Iterator[Import]:
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(module, alias.name, node.lineno, at_load)
            elif isinstance(node, ast.ImportFrom):
                target = _absolute(module, path.name == "__init__.py", node)
                yield Import(module, target, node.lineno, at_load)
                for alias in node.names:
                    if f"{target}.{alias.name}" in known:
                        yield Import(module, f"{target}.{alias.name}", node.lineno, at_load)
            elif isinstance(node, ast.If) and _is_type_checking(node):
                yield from walk(node.body, False)
                yield from walk(node.orelse, at_load)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield from walk(node.body, False)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    yield from walk(getattr(node, field, ()) or (), at_load)

    yield from walk(tree.body, True)


def all_imports(root: Path) -> list[Import]:
    files = list(source_files(root))
    known = {module_name(root, f) for f in files}
    return [imp for f in files for imp in imports_of(root, f, known)]


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(root: Path, rule: Rule, imports: Iterable[Import]) -> list[str]:
    return [
        imp.where(root)
        for imp in imports
        if _within(imp.module, rule.layer) and any(_within(imp.target, f) for f in rule.forbidden)
    ]


def cycles(imports: Iterable[Import]) -> list[list[str]]:
    """Strongly connected groups of modules (Tarjan) among the load-time imports."""
    graph: dict[str, set[str]] = {}
    modules = {imp.module for imp in imports}
    for imp in imports:
        # A module's own package runs its __init__ first; that edge is not a cycle of ours.
        if imp.at_load and imp.target in modules and not _within(imp.module, imp.target):
            graph.setdefault(imp.module, set()).add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


# ---- the rules, over this repository ----


@pytest.fixture(scope="module")
def repo_imports() -> list[Import]:
    return all_imports(ROOT)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_layers_import_only_what_they_may(rule: Rule, repo_imports: list[Import]) -> None:
    found = violations(ROOT, rule, repo_imports)
    assert not found, f"{rule.name}: " + "; ".join(found)


def test_no_import_cycles(repo_imports: list[Import]) -> None:
    found = cycles(repo_imports)
    assert not found, "import cycles: " + "; ".join(" ↔ ".join(group) for group in found)


def test_every_package_is_seen(repo_imports: list[Import]) -> None:
    # The checker must read the tree it guards: each layer has modules that import something.
    importing = {imp.module for imp in repo_imports}
    for layer in (
        "engine.domain",
        "engine.runtime",
        "engine.bootstrap",
        "engine.api",
        "engine.cli",
        "adapters",
        "engine.replenish",
        "engine.health",
        "engine.console",
    ):
        assert any(_within(m, layer) for m in importing), layer


# ---- the checker itself, on a small tree made to break every rule ----


def _write(root: Path, module: str, source: str) -> None:
    path = module_path(root, module) if "." in module else root / module / "__init__.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in path.relative_to(root).parents:
        init = root / parent / "__init__.py"
        if parent != Path(".") and not init.exists():
            init.write_text("")
    path.write_text(source)


def test_the_checker_finds_each_kind_of_violation(tmp_path: Path) -> None:
    _write(tmp_path, "engine.domain.model", "def f():\n    import ray\n")
    _write(
        tmp_path,
        "engine.domain.types",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from adapters import x\n",
    )
    _write(tmp_path, "engine.runtime.host", "from adapters.memory import journal\n")
    _write(tmp_path, "adapters.memory.journal", "from ..nats import codec\nfrom engine.runtime import host\n")
    _write(tmp_path, "adapters.nats.codec", "from adapters.memory.journal import x\n")
    _write(tmp_path, "adapters.x", "")
    imports = all_imports(tmp_path)
    by_rule = {rule.name: violations(tmp_path, rule, imports) for rule in RULES}
    assert by_rule["domain-is-pure"] == [
        "engine/domain/model.py:2 imports ray",
        "engine/domain/types.py:3 imports adapters",
        "engine/domain/types.py:3 imports adapters.x",
    ]
    assert by_rule["runtime-uses-ports"] == [
        "engine/runtime/host.py:1 imports adapters.memory",
        "engine/runtime/host.py:1 imports adapters.memory.journal",
    ]
    assert by_rule["adapters-stay-below"] == [
        "adapters/memory/journal.py:2 imports engine.runtime",
        "adapters/memory/journal.py:2 imports engine.runtime.host",
    ]
    assert cycles(imports) == [
        ["adapters.memory.journal", "adapters.nats.codec", "engine.runtime.host"],
    ]
