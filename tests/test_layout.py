"""The package layout, checked statically (nothing here imports ganlab).

Layers, from the bottom: ``ganlab.core`` (task-free machinery) < ``ganlab.models`` (pure nn.Modules) <
the tasks ``ganlab.cyclegan`` and ``ganlab.sr`` (independent of each other) < ``ganlab.experiments``
< ``ganlab.cli`` (argument parsing, reached only through ``ganlab.cli`` and ``ganlab.__main__``). The
public Python API (``ganlab.api``, re-exported lazily by the top package ``ganlab``) sits above the tasks:
it may import them, the CLI may import it, nothing below it may. The HTTP app ``ganlab.serve`` sits above
the API (it serves what ``ganlab.load`` loads); only the CLI imports it.

Every ``import`` / ``from ... import`` of a ganlab module is read with :mod:`ast`, module-level and
function-local alike, relative imports resolved. An import names its *explicit* target only:
``import ganlab.models`` and ``from ganlab.models import ResnetGenerator`` import the package
``ganlab.models`` (its ``__init__.py``); ``from ganlab.core import config`` and ``import ganlab.core.config``
import the submodule ``ganlab.core.config``. The parent packages' ``__init__`` that Python also runs on
the way are not counted as imports (an empty ``__init__`` would otherwise sit on spurious cycles).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PKG = SRC / "ganlab"

MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80

LAYERS = ("core", "models", "cyclegan", "sr", "experiments", "serve", "cli")


@dataclass(frozen=True)
class Import:
    source: str  # importing module, e.g. ganlab.cyclegan.trainer
    target: str  # imported ganlab module, e.g. ganlab.models (a package: its __init__)
    path: Path
    line: int
    module_level: bool  # runs when ``source`` is imported: not in a function, not under TYPE_CHECKING

    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def module_files() -> dict[str, Path]:
    files = {module_name(p): p for p in sorted(PKG.rglob("*.py")) if "__pycache__" not in p.parts}
    assert "ganlab" in files and "ganlab.core" in files, f"no ganlab package found under {SRC}"
    return files


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _ImportCollector(ast.NodeVisitor):
    def __init__(self, module: str, path: Path, modules: Iterable[str]) -> None:
        self.module = module
        self.path = path
        self.modules = set(modules)
        self.is_package = path.name == "__init__.py"
        self.local_depth = 0  # > 0: inside a function (or lambda) body, or an ``if TYPE_CHECKING:`` block
        self.found: list[Import] = []

    def _add(self, target: str, node: ast.stmt) -> None:
        self.found.append(Import(self.module, target, self.path, node.lineno, self.local_depth == 0))

    def _nested(self, node: ast.AST) -> None:
        self.local_depth += 1
        self.generic_visit(node)
        self.local_depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _nested

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.visit(node.test)
        self.local_depth += 1
        for stmt in node.body:
            self.visit(stmt)
        self.local_depth -= 1
        for stmt in node.orelse:
            self.visit(stmt)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name == "ganlab" or alias.name.startswith("ganlab."):
                self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            package = self.module.split(".") if self.is_package else self.module.split(".")[:-1]
            if node.level - 1 >= len(package):
                raise AssertionError(f"{self.path}:{node.lineno}: relative import beyond the top package")
            package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        if not (base == "ganlab" or base.startswith("ganlab.")):
            return
        targets = []
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            targets.append(sub if alias.name != "*" and sub in self.modules else base)
        for target in dict.fromkeys(targets):  # one per target and statement, in order
            self._add(target, node)


@cache
def all_imports() -> tuple[Import, ...]:
    files = module_files()
    found: list[Import] = []
    for name, path in files.items():
        collector = _ImportCollector(name, path, files)
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        found += collector.found
    return tuple(found)


def layer(module: str) -> str:
    """``ganlab.cyclegan.demo.run`` -> ``cyclegan``; the top package ``ganlab`` -> ``ganlab``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "ganlab"


def _rule_broken(src: str, dst: str) -> str | None:
    """Why an import from layer ``src`` of layer ``dst`` breaks the layering (None: it does not)."""
    if dst == "cli" and src not in ("cli", "__main__"):
        return "only ganlab.cli and ganlab.__main__ may import ganlab.cli"
    if src == "core" and dst in ("models", "cyclegan", "sr", "experiments", "cli"):
        return "ganlab.core imports nothing from models, cyclegan, sr, experiments or cli"
    if src == "models" and dst not in ("core", "models"):
        return "ganlab.models may import only ganlab.core and ganlab.models"
    if src in ("cyclegan", "sr") and dst in ({"cyclegan", "sr"} - {src}) | {"experiments", "cli"}:
        return f"ganlab.{src} may not import ganlab.{dst} (cyclegan and sr are independent tasks below experiments)"
    if src == "experiments" and dst == "cli":
        return "ganlab.experiments may not import ganlab.cli"
    if dst in ("api", "ganlab") and src not in ("api", "ganlab", "cli", "__main__", "serve"):
        return "the public API (ganlab, ganlab.api) sits above the tasks; only the CLI and ganlab.serve may import it"
    if dst == "serve" and src not in ("serve", "cli"):
        return "only ganlab.cli may import ganlab.serve (the HTTP app sits above the API and the tasks)"
    if src == "serve" and dst in ("experiments", "cli"):
        return f"ganlab.serve may not import ganlab.{dst}"
    return None


def _format(problems: list[str], what: str) -> str:
    return f"{len(problems)} {what}:\n  " + "\n  ".join(problems)


def test_layers_exist() -> None:
    files = module_files()
    missing = [name for name in LAYERS if f"ganlab.{name}" not in files]
    assert not missing, f"missing layer packages (no __init__.py): {', '.join(missing)}"


def test_imports_resolve_to_ganlab_modules() -> None:
    """An import of a ganlab module that does not exist (a leftover of a move) fails only when it runs."""
    files = module_files()
    problems = [
        f"{imp.where()}: {imp.source} imports {imp.target}, which is not a module under src/ganlab"
        for imp in all_imports()
        if imp.target not in files
    ]
    assert not problems, _format(problems, "imports of missing ganlab modules")


def test_layering() -> None:
    problems = []
    for imp in all_imports():
        why = _rule_broken(layer(imp.source), layer(imp.target))
        if why:
            kind = "" if imp.module_level else " (function-local)"
            problems.append(f"{imp.where()}: {imp.source} imports {imp.target}{kind}: {why}")
    assert not problems, _format(problems, "layering violations")


# -------------------------------------------------------------------------------------------------
# Import cycles
# -------------------------------------------------------------------------------------------------


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; returns the components that hold a cycle (2+ nodes, or a self-loop)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def one_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest cycle through the component's first node: [a, b, ..., a]."""
    start, members = component[0], set(component)
    parent: dict[str, str] = {}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [*reversed(path), start]
            if w not in parent:
                parent[w] = v
                queue.append(w)
    raise AssertionError(f"no cycle through {start} in {component}")


def cycle_report(edges: dict[tuple[str, str], list[Import]]) -> list[str]:
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    problems = []
    for component in strongly_connected(graph):
        cycle = one_cycle(graph, component)
        lines = [" -> ".join(cycle)]
        for a, b in zip(cycle, cycle[1:]):
            evidence = ", ".join(f"{imp.where()} imports {imp.target}" for imp in edges[a, b][:3])
            lines.append(f"    {a} -> {b}: {evidence}")
        if len(component) > len(cycle) - 1:
            lines.append(f"    (all of {', '.join(component)} import each other in a circle)")
        problems.append("\n".join(lines))
    return problems


def test_checker_reads_imports() -> None:
    """The collector itself: relative, function-local and TYPE_CHECKING imports, submodule vs package."""
    source = """
from typing import TYPE_CHECKING
import ganlab.models
from . import config
from .. import models
from ..core import errors, missing_name
from ganlab.models import ResnetGenerator
if TYPE_CHECKING:
    from ganlab.sr import step
def f():
    import ganlab.cli
"""
    modules = {"ganlab.models", "ganlab.cyclegan.config", "ganlab.core", "ganlab.core.errors", "ganlab.sr"}
    collector = _ImportCollector("ganlab.cyclegan.x", PKG / "cyclegan" / "x.py", modules)
    collector.visit(ast.parse(source))
    got = [(imp.target, imp.line, imp.module_level) for imp in collector.found]
    assert got == [
        ("ganlab.models", 3, True),
        ("ganlab.cyclegan.config", 4, True),
        ("ganlab.models", 5, True),
        ("ganlab.core.errors", 6, True),
        ("ganlab.core", 6, True),
        ("ganlab.models", 7, True),
        ("ganlab.sr", 9, False),
        ("ganlab.cli", 11, False),
    ]


def test_checker_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert strongly_connected(graph) == [["a", "b", "c"], ["e"]]
    assert one_cycle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    imp = Import("x", "y", PKG / "x.py", 1, True)
    report = cycle_report({("x", "y"): [imp], ("y", "x"): [imp], ("y", "z"): [imp]})
    assert len(report) == 1 and report[0].startswith("x -> y -> x\n")


def test_no_module_level_import_cycle() -> None:
    """Between modules, counting what runs at import time (not function-local, not TYPE_CHECKING)."""
    edges: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for imp in all_imports():
        if imp.module_level:
            edges[imp.source, imp.target].append(imp)
    problems = cycle_report(edges)
    assert not problems, _format(problems, "module-level import cycles")


def package_of(module: str) -> str:
    """The layer package a module belongs to (``ganlab.cyclegan`` for ``ganlab.cyclegan.demo.run``); the
    top package ``ganlab`` and ``ganlab.__main__`` stand for themselves."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_no_package_import_cycle() -> None:
    """Between the layer packages, counting every import, function-local ones included: a function-local
    import can break a module cycle at import time, but not a cycle between layers."""
    edges: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for imp in all_imports():
        a, b = package_of(imp.source), package_of(imp.target)
        if a != b:
            edges[a, b].append(imp)
    problems = cycle_report(edges)
    assert not problems, _format(problems, "import cycles between packages (all imports)")


# -------------------------------------------------------------------------------------------------
# Sizes
# -------------------------------------------------------------------------------------------------


def test_file_sizes() -> None:
    problems = []
    for path in module_files().values():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_FILE_LINES:
            problems.append(f"{path.relative_to(REPO)}: {n} lines")
    assert not problems, _format(problems, f"files over {MAX_FILE_LINES} lines")


def test_function_sizes() -> None:
    problems = []
    for name, path in module_files().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        scopes: dict[ast.AST, str] = {tree: name}
        for node in ast.walk(tree):  # breadth-first: a parent's qualified name is known before its children
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    scopes[child] = f"{scopes.get(node, scopes[tree])}.{child.name}"
                elif node in scopes:
                    scopes.setdefault(child, scopes[node])
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    problems.append(f"{path.relative_to(REPO)}:{node.lineno}: {scopes[node]}: {n} lines")
    assert not problems, _format(problems, f"functions over {MAX_FUNCTION_LINES} lines")
