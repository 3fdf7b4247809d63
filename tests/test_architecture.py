"""The layers of the code base, checked by reading every import (AST), so the structure stays true.

    utils/    leaf utilities       import only other leaf utilities
    models/   the network          imports leaf utilities
    data/     datasets and loaders imports leaf utilities
    engine/   the workflows        imports the network, data and leaf utilities
    scripts   train.py, val.py ... import anything above (never each other)

Upstream import paths (``utils.general``, ``models.yolo``, ...) are kept as thin re-exports ("shims") for users;
nothing in the project imports them. Project imports sit at module level: an import inside a function is only
allowed for optional third-party packages, never to dodge a cycle.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("utils", "models", "data", "engine")
ALLOWED = {  # layer -> layers it may import
    "utils": {"utils"},
    "models": {"models", "utils"},
    "data": {"data", "utils"},
    "engine": {"engine", "models", "data", "utils"},
    "script": {"engine", "models", "data", "utils"},
}
# Upstream (v5.0 / v6 / v7) module paths kept for users: re-exports only, imported by nothing in the project.
SHIMS = {
    "utils.general", "utils.datasets", "utils.dataloaders", "utils.augmentations", "utils.autoanchor",
    "utils.downloads", "utils.google_utils", "models.common", "models.experimental", "models.yolo",
    "models.export", "test",
}
# Scripts still being turned into thin command lines over the engine (remove each entry when it is done).
PENDING: set = set()
SKIP_DIRS = {"tests", ".git", ".venv", "venv", ".ci", "runs", "datasets", "weights", "docs", "__pycache__"}


def project_files() -> Dict[str, Path]:
    """Dotted module name -> file, for every Python file of the project (tests excluded)."""
    out = {}
    for f in ROOT.rglob("*.py"):
        rel = f.relative_to(ROOT)
        if SKIP_DIRS & set(rel.parts) or any(p.startswith(".") for p in rel.parts):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


MODULES = project_files()


# Command lines that live beside their layer's code (python data/check.py, ...): scripts like train.py.
SCRIPT_MODULES = {"data.check", "data.convert"}


def layer(module: str) -> str:
    top = module.split(".")[0]
    if top in PACKAGES and not module.startswith("data.scripts") and module not in SCRIPT_MODULES:
        return top
    return "script"


def resolve(name: str) -> Optional[str]:
    """The project module an imported dotted name refers to (longest existing prefix), None if third-party."""
    parts = name.split(".")
    if parts[0] not in MODULES and parts[0] not in PACKAGES:
        return None
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in MODULES:
            return candidate
    return None


def imports_of(module: str) -> List[Tuple[str, int, bool]]:
    """(imported project module, line, at module level?) for every import statement of ``module``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                                                    ast.Lambda))
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                # 'from pkg import mod' imports the submodule when it exists
                names = [f"{child.module}.{a.name}" for a in child.names]
            else:
                visit(child, nested)
                continue
            for n in names:
                target = resolve(n)
                if target is not None and target != module:
                    found.append((target, child.lineno, top))
    visit(tree, True)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def test_layers_import_only_downwards():
    bad = []
    for m, imports in GRAPH.items():
        if m in SHIMS or m in PENDING:
            continue
        for target, line, _ in imports:
            if target in SHIMS:
                bad.append(f"{MODULES[m].relative_to(ROOT)}:{line} imports the compatibility shim {target}")
            elif layer(target) not in ALLOWED[layer(m)]:
                bad.append(f"{MODULES[m].relative_to(ROOT)}:{line} ({layer(m)}) imports {target} ({layer(target)})")
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_project_imports_are_at_module_level():
    bad = [f"{MODULES[m].relative_to(ROOT)}:{line} imports {target} inside a function"
           for m, imports in GRAPH.items() if m not in SHIMS | PENDING
           for target, line, top in imports if not top]
    assert not bad, "\n".join(bad)


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out: List[List[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_no_import_cycles():
    graph: Dict[str, Set[str]] = defaultdict(set)
    for m, imports in GRAPH.items():
        for target, _, _ in imports:  # module- and function-level alike
            graph[m].add(target)
    assert _cycles(graph) == []


def test_scripts_do_not_import_each_other():
    scripts = {m for m in MODULES if layer(m) == "script"}
    bad = [f"{m} imports {t}" for m, imports in GRAPH.items() if m not in SHIMS | PENDING
           for t, _, _ in imports if t in scripts]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("shim", sorted(SHIMS))
def test_shims_only_re_export(shim):
    """A shim holds imports, assignments of names and at most a command-line entry point."""
    tree = ast.parse(MODULES[shim].read_text(encoding="utf-8"))
    classes = [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    assert not classes, f"{shim} defines classes {classes}; it should only re-export"
    functions = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    assert all(f.name in ("main", "cli", "parse_opt", "test", "_root_export") for f in functions), \
        f"{shim} defines {[f.name for f in functions]}"
