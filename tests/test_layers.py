"""One layering with no circle: every segstyle import, lazy ones included, read from the source.

Layers, lowest first (docs/ARCHITECTURE.md): ``segstyle.core`` (errors, atomic io, hashing,
provenance, metrics, seeds) < ``segstyle.models`` (nn.Modules, registry, checkpoint format, class
names) < ``segstyle.export`` (per-backend loaders and runners, comparison, bundle) <
``segstyle.pipelines`` (data, training, evaluation, editing, orchestration) < the command modules
(``*.cli``). A module may import its own layer or lower ones, never a higher one, and no set of
modules may import each other in a circle. ``segstyle.export.portable`` ships inside bundles and
imports no segstyle module at all (numpy and the standard library only).

The reader is an AST walk, not an import: a function-level ``from segstyle... import`` counts the
same as a top-level one, because a lazy import that reaches up is still a layer violation.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"core": "segstyle.core", "models": "segstyle.models", "export": "segstyle.export",
           "pipelines": "segstyle.pipelines"}
LAYERS = ("segstyle.core", "segstyle.models", "segstyle.export", "segstyle.pipelines")
PORTABLE = "segstyle.export.portable"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    parts[0] = FOLDERS[parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    return {module_name(p, root): p for top in FOLDERS if (root / top).is_dir() for p in (root / top).rglob("*.py")}


def import_graph(root: Path) -> dict[str, set[tuple[str, int]]]:
    """module -> {(imported segstyle module, line)}; ``from pkg import name`` resolves to ``pkg.name``
    when that is a module, else to ``pkg`` (the deepest module that exists)."""
    mods = modules(root)

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[tuple[str, int]]] = {}
    for mod, path in mods.items():
        base = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        edges = graph.setdefault(mod, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                pkg = node.module or ""
                if node.level:
                    b = base
                    for _ in range(node.level - 1):
                        b = b.rpartition(".")[0]
                    pkg = f"{b}.{pkg}" if pkg else b
                targets = [f"{pkg}.{a.name}" if f"{pkg}.{a.name}" in mods else pkg for a in node.names]
            else:
                continue
            for t in targets:
                if t == "segstyle" or t.startswith("segstyle."):
                    r = resolve(t)
                    if r is not None and r != mod:
                        edges.add((r, node.lineno))
    return graph


def layer(mod: str) -> int:
    if mod.rpartition(".")[2] == "cli":
        return len(LAYERS)
    for i, top in enumerate(LAYERS):
        if mod == top or mod.startswith(top + "."):
            return i
    raise AssertionError(f"{mod} is in no layer")


def upward_imports(graph) -> list[str]:
    out = []
    for mod, edges in sorted(graph.items()):
        for target, line in sorted(edges):
            if layer(target) > layer(mod):
                out.append(f"{mod}:{line} imports {target} (a higher layer)")
            if mod.startswith(PORTABLE) and not target.startswith(PORTABLE):
                out.append(f"{mod}:{line} imports {target} (bundle files import no segstyle module)")
    return out


def cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(t for t, _ in graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(t for t, _ in graph.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def test_every_source_module_is_in_a_layer():
    graph = import_graph(REPO)
    assert len(graph) > 60  # the walk found the tree (a wrong root would pass everything below)
    for mod in graph:
        layer(mod)


def test_no_upward_import():
    assert upward_imports(import_graph(REPO)) == []


def test_no_import_cycle():
    assert cycles(import_graph(REPO)) == []


def test_benchmarks_import_no_test_module():
    """Benchmarks are measured code paths; they must not depend on the test suite's helpers."""
    bad = []
    for p in sorted((REPO / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [f"{p.name}:{node.lineno} {n}" for n in names if n.split(".")[0] in ("tests", "conftest")
                    or n.split(".")[0].startswith("test_")]
    assert bad == []


@pytest.fixture
def tree(tmp_path):
    """A copy of the four source folders to plant violations in."""
    for top in FOLDERS:
        shutil.copytree(REPO / top, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def test_a_planted_upward_import_is_found(tree):
    # lazy, inside a function: the kind the old tree had (models/fused_region_style.py -> pipelines)
    _append(tree / "models" / "registry.py", "\n\ndef _late():\n    from segstyle.pipelines.predict import predict_logits\n")
    _append(tree / "core" / "io.py", "\nfrom segstyle.models import classes  # noqa\n")
    _append(tree / "export" / "portable" / "compare.py", "\nfrom segstyle.core.errors import SegstyleError  # noqa\n")
    found = upward_imports(import_graph(tree))
    assert any(f.startswith("segstyle.models.registry:") and "segstyle.pipelines.predict" in f for f in found)
    assert any(f.startswith("segstyle.core.io:") and "segstyle.models.classes" in f for f in found)
    assert any(f.startswith("segstyle.export.portable.compare:") and "bundle files" in f for f in found)
    assert len(found) == 3


def test_a_planted_cycle_is_found(tree):
    # within one layer, so only the cycle check can see it (the old perceptual_loss <-> random_features)
    _append(tree / "models" / "frozen_features.py", "\n\ndef _late():\n    from segstyle.models import random_features\n")
    assert upward_imports(import_graph(tree)) == []
    assert cycles(import_graph(tree)) == [["segstyle.models.frozen_features", "segstyle.models.random_features"]]
    # a relative import is read too
    _append(tree / "export" / "backend" / "pyt" / "loader.py", "\n\ndef _x():\n    from ..onnx import loader  # noqa\n")
    assert ["segstyle.export.backend.onnx.loader", "segstyle.export.backend.pyt.loader"] in cycles(import_graph(tree))
