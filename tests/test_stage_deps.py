"""Every dvc.yaml stage depends on exactly the segstyle source its command runs (issue 19, item 3).

DVC reruns a stage when one of its ``deps`` changes, so a code dep that is too narrow leaves a stale
artifact behind (an edit of ``core/provenance.py`` must re-export every ONNX file), and one that is too
broad reruns work for nothing (an edit of ``export/bench.py`` must not re-export, re-bundle or
re-validate). This file computes, without running any stage, the source files each stage's command
executes and checks ``dvc.yaml`` against them in both directions.

The closure of one ``segstyle ...`` command (AST only; the click command is found through
:data:`segstyle.pipelines.cli.COMMANDS` and the click groups, as tests/test_dvc_graph.py does):

- the entry point ``segstyle.pipelines.cli`` runs for every command, so its whole import closure belongs to
  every stage;
- in the module that defines the command's callback (and each group callback on the way), only the
  module-level imports plus the imports inside the callback and inside every same-module top-level
  function or class it names, transitively: another command in that module (``bench_cmd`` of
  ``export/cli.py``, which lazily imports ``export/bench.py``) is not part of the closure unless called;
- every other segstyle module reached is taken whole: all its imports, function-level (lazy) ones included,
  transitively, except those under ``if TYPE_CHECKING:`` (never executed). ``from pkg import name`` is the
  module ``pkg.name`` when that is a module, else ``pkg``; relative imports are resolved; importing
  ``a.b.c`` executes ``a/__init__.py`` and ``a/b/__init__.py``, so every package ``__init__.py`` above a
  reached module is reached too (and followed whole);
- the non-Python files a module reads next to itself (:data:`DATA_DIRS`) are part of its closure.

A dep covers a file when it is that file or a folder above it (DVC hashes a directory dep whole). A stage
fails when a closure file is not covered, when a code-folder dep (under core/, models/, export/,
pipelines/) holds a ``.py`` file outside the closure, or when a code-file dep is outside the closure.
Non-code deps (data, artifacts) are not checked here.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import shlex
from functools import lru_cache
from pathlib import Path, PurePosixPath

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]

# Non-Python files a module reads relative to its own file ("module": folders, repo-relative). Every module
# whose source mentions ``__file__`` must be listed (test_every_module_that_reads_beside_itself_is_listed).
DATA_DIRS: dict[str, tuple[str, ...]] = {
    # TensorRT's ONNX operator matrices (JSON per release) and the onnx-tensorrt 10.1 markdown: DATA = ...("data")
    "segstyle.export.backend.trt.lint": ("export/backend/trt/data",),
    # the bundle ships these files copied byte for byte (PORTABLE = .../"portable"): they are its data too
    "segstyle.export.bundle": ("export/portable",),
    # check.py runs inside a written bundle and reads that bundle (HERE), not the repository
    "segstyle.export.portable.check": (),
    # BUILTIN_PARAMS (a link to params.yaml) is read only where ./params.yaml is absent: outside a checkout,
    # never in a stage (stages run in the repository, whose params dvc.yaml tracks key by key)
    "segstyle.pipelines.config": (),
}


def _package_dirs(base: Path) -> dict[str, str]:
    """``segstyle.core`` -> ``core`` ...: the installed namespace, from pyproject's package-dir."""
    doc = tomllib.loads((base / "pyproject.toml").read_text())
    return dict(doc["tool"]["setuptools"]["package-dir"])


# ---------------------------------------------------------------------------------------------- the closure


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, *, into_functions: bool):
    """ast.walk without ``if TYPE_CHECKING:`` bodies (and, unless ``into_functions``, without function bodies)."""
    todo = [node]
    while todo:
        n = todo.pop()
        yield n
        for child in ast.iter_child_nodes(n):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                todo.extend(child.orelse)
                continue
            if not into_functions and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            todo.append(child)


class Sources:
    """The segstyle modules under ``base``: module name <-> file, parsed once each."""

    def __init__(self, base: Path, packages: dict[str, str] | None = None):
        self.base = base
        self.packages = packages if packages is not None else _package_dirs(base)
        self.roots = tuple(sorted(set(self.packages.values())))

    @lru_cache(maxsize=None)
    def file(self, module: str) -> str | None:
        """Repo-relative path of ``module`` (``x.py`` or ``x/__init__.py``), None when not a segstyle module."""
        for prefix, folder in self.packages.items():
            if module == prefix or module.startswith(prefix + "."):
                p = self.base / folder / Path(*module[len(prefix) + 1:].split(".")) if module != prefix \
                    else self.base / folder
                for cand in (p.with_name(p.name + ".py"), p / "__init__.py"):
                    if cand.is_file():
                        return cand.relative_to(self.base).as_posix()
                return None
        return None

    @lru_cache(maxsize=None)
    def tree(self, module: str) -> ast.Module:
        return ast.parse((self.base / self.file(module)).read_text(), filename=self.file(module))

    def is_package(self, module: str) -> bool:
        f = self.file(module)
        return f is not None and f.endswith("/__init__.py")

    def parents(self, module: str) -> list[str]:
        """Packages whose ``__init__.py`` importing ``module`` executes (the segstyle ones)."""
        parts = module.split(".")
        return [p for i in range(1, len(parts)) if self.file(p := ".".join(parts[:i])) is not None]

    def imports(self, module: str, nodes) -> set[str]:
        """segstyle modules imported by the statements in ``nodes`` (nodes of ``module``'s tree)."""
        found: set[str] = set()
        package = module if self.is_package(module) else module.rpartition(".")[0]
        for n in nodes:
            if isinstance(n, ast.Import):
                found.update(a.name for a in n.names)
            elif isinstance(n, ast.ImportFrom):
                if n.level:
                    up = package.split(".")
                    up = up[: len(up) - (n.level - 1)]
                    base = ".".join(up + ([n.module] if n.module else []))
                else:
                    base = n.module or ""
                for a in n.names:
                    sub = f"{base}.{a.name}"
                    found.add(sub if a.name != "*" and self.file(sub) is not None else base)
            elif (isinstance(n, ast.Call) and isinstance(n.func, (ast.Attribute, ast.Name))
                  and (n.func.attr if isinstance(n.func, ast.Attribute) else n.func.id) == "import_module"
                  and n.args and isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str)):
                found.add(n.args[0].value)  # importlib.import_module("segstyle....") with a literal name
        return {m for m in found if self.file(m) is not None}

    @lru_cache(maxsize=None)
    def module_imports(self, module: str) -> frozenset[str]:
        """Everything ``module`` can import: module level and inside its functions (lazy imports)."""
        return frozenset(self.imports(module, _walk(self.tree(module), into_functions=True)))

    def function_imports(self, module: str, function: str) -> set[str]:
        """Imports of ``module`` at module level, in ``function`` and in the top-level functions/classes it names."""
        tree = self.tree(module)
        top = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        assert function in top, f"{module}: no top-level function {function} (the command's callback)"
        found = self.imports(module, _walk(tree, into_functions=False))
        seen, todo = {function}, [function]
        while todo:
            node = top[todo.pop()]
            found |= self.imports(module, _walk(node, into_functions=True))
            for ref in ast.walk(node):
                if isinstance(ref, ast.Name) and ref.id in top and ref.id not in seen:
                    seen.add(ref.id)
                    todo.append(ref.id)
        return found

    def closure(self, whole: set[str], partial: dict[str, set[str]] | None = None,
                via: dict[str, str | None] | None = None) -> set[str]:
        """Files run when the modules ``whole`` are imported and the functions ``partial`` (module -> names) run.

        The modules of ``partial`` themselves count as imported (file and parents) but only the named
        functions' imports are followed, unless another reached module imports them (then whole).
        ``via`` (optional) receives, per module reached, the module (or ``module:function``) that imported it.
        """
        files: set[str] = set()
        todo: list[tuple[str, str | None]] = [(m, None) for m in whole]
        for module, names in (partial or {}).items():
            files.add(self.file(module))
            todo += [(p, module) for p in self.parents(module)]
            for name in sorted(names):
                todo += [(m, f"{module}:{name}") for m in self.function_imports(module, name)]
        seen: set[str] = set()
        while todo:
            m, by = todo.pop()
            if m in seen:
                continue
            seen.add(m)
            if via is not None:
                via[m] = by
            files.add(self.file(m))
            todo += [(n, m) for n in (*self.parents(m), *sorted(self.module_imports(m)))]
            for folder in DATA_DIRS.get(m, ()):
                files.update(p.relative_to(self.base).as_posix() for p in sorted((self.base / folder).rglob("*"))
                             if p.is_file() and "__pycache__" not in p.parts)
        return files


# ------------------------------------------------------------------------------------- commands and stages


ENTRY = "segstyle.pipelines.cli"


def _callback(cmd) -> tuple[str, str]:
    fn = inspect.unwrap(cmd.callback)  # params_options wraps with functools.wraps
    return fn.__module__, fn.__name__


def command_functions(argv: list[str]) -> dict[str, set[str]]:
    """module -> callback names that ``segstyle <argv>`` runs: the group callbacks on the way and the command's."""
    import click

    from segstyle.pipelines.cli import COMMANDS, cli as root_cli

    assert argv[0] == "segstyle" and argv[1] in COMMANDS, argv
    out: dict[str, set[str]] = {}
    cmd, rest = root_cli.get_command(click.Context(root_cli), argv[1]), argv[2:]
    while True:
        module, name = _callback(cmd)
        out.setdefault(module, set()).add(name)
        if not isinstance(cmd, click.Group) or (cmd.invoke_without_command and rest[0] not in cmd.commands):
            return out  # a command, or a group that runs its own callback (``segstyle bundle --out ...``)
        cmd, rest = cmd.get_command(click.Context(cmd), rest[0]), rest[1:]
        assert cmd is not None, argv


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    cmd: str
    deps: tuple[str, ...]


class Checker:
    """Closures of the real stages of dvc.yaml, and the check of a stage's deps against them."""

    def __init__(self, base: Path = REPO):
        self.src = Sources(base)
        self._by_callbacks: dict[frozenset, frozenset[str]] = {}

    @staticmethod
    def _partial(cmd: str) -> dict[str, set[str]]:
        partial: dict[str, set[str]] = {}
        for part in cmd.split("&&"):
            for module, names in command_functions(shlex.split(part)).items():
                partial.setdefault(module, set()).update(names)
        return partial

    def command_closure(self, cmd: str) -> frozenset[str]:
        """Files that the stage command ``cmd`` (one or more ``segstyle ...`` joined by ``&&``) runs."""
        partial = self._partial(cmd)
        key = frozenset((m, n) for m, names in partial.items() for n in names)
        if key not in self._by_callbacks:  # foreach items differ in arguments only: one closure per callback set
            self._by_callbacks[key] = frozenset(self.src.closure({ENTRY}, partial))
        return self._by_callbacks[key]

    def import_chain(self, cmd: str, file: str) -> str:
        """How the command reaches ``file``: ``a.b <- c.d <- module:callback`` (for failure messages)."""
        via: dict[str, str | None] = {}
        self.src.closure({ENTRY}, self._partial(cmd), via)
        module = next((m for m in via if self.src.file(m) == file), None)
        chain = []
        while module is not None:
            chain.append(module)
            module = via.get(module)
        return " <- ".join(chain) or f"{file}: not reached"

    def is_code(self, dep: str) -> bool:
        return PurePosixPath(dep).parts[0] in self.src.roots

    def check(self, stage: Stage) -> tuple[list[str], list[str]]:
        """(closure files no dep covers, over-broad code deps with the reason) for ``stage``."""
        needed = self.command_closure(stage.cmd)
        missing = sorted(f for f in needed if not any(covers(d, f) for d in stage.deps))
        broad = []
        for d in (d for d in stage.deps if self.is_code(d)):
            path = self.src.base / d
            if path.is_dir():
                files = (p.relative_to(self.src.base).as_posix() for p in path.rglob("*.py")
                         if "__pycache__" not in p.parts)
                extra = sorted(f for f in files if f not in needed)
                if extra:
                    broad.append(f"{d}/ holds {len(extra)} file(s) the command never runs: {', '.join(extra)}")
            elif d not in needed:
                broad.append(f"{d} is not run by the command")
        return missing, broad


def covers(dep: str, path: str) -> bool:
    """DVC's rule (its own ``isin_or_eq``): a dep covers a file when it is the file or a folder above it."""
    from dvc.fs import localfs

    return localfs.isin_or_eq(str(REPO / path), str(REPO / dep))


def stale_after_edit(stages, path: str) -> set[str]:
    """Stages whose deps change when ``path`` is edited (what ``dvc status`` would report as changed deps)."""
    return {s.name for s in stages if any(covers(d, path) for d in s.deps)}


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    from segstyle.pipelines.stages import load_plan

    return [Stage(s.name, s.cmd, tuple(s.deps)) for s in load_plan(REPO)]


@pytest.fixture(scope="module")
def checker() -> Checker:
    return Checker()


def _group(name: str) -> str:
    return name.split("@")[0]


def _named(stages, group: str) -> list[Stage]:
    found = [s for s in stages if _group(s.name) == group]
    assert found, f"no {group} stage in dvc.yaml"
    return found


# -------------------------------------------------------------------------------------------------- tests


def test_every_stage_depends_on_exactly_the_code_it_runs(stages, checker):
    """(a) every file of a stage's closure is covered by a dep; (b) no code dep reaches beyond the closure."""
    problems = []
    for s in stages:
        missing, broad = checker.check(s)
        problems += [f"{s.name}: runs {f} but no dep covers it" for f in missing]
        problems += [f"{s.name}: over-broad dep {b}" for b in broad]
    assert not problems, "dvc.yaml deps do not match the imports:\n  " + "\n  ".join(problems)


def test_closures_hold_what_runs_and_only_that(stages, checker):
    """Spot checks of the rule on the real tree, so a closure that is empty or everything cannot pass."""
    everything = {p.relative_to(REPO).as_posix() for r in checker.src.roots for p in (REPO / r).rglob("*.py")
                  if "__pycache__" not in p.parts}
    for s in stages:
        c = checker.command_closure(s.cmd)
        # the entry point, every callback's module and the packages above it are always there
        modules = {ENTRY, *Checker._partial(s.cmd)}
        assert {checker.src.file(p) for m in modules for p in (m, *checker.src.parents(m))} <= c, s.name
        assert {f for f in c if f.endswith(".py")} < everything, f"{s.name}: closure is the whole tree"
    onnx = checker.command_closure(_named(stages, "export_onnx")[0].cmd)
    assert {"export/cli.py", "export/__init__.py", "export/backend/__init__.py", "export/backend/onnx/loader.py",
            "core/provenance.py", "models/__init__.py"} <= onnx
    # bench_cmd sits in export/cli.py beside onnx_cmd, but only `engine bench` imports export/bench.py
    assert "export/bench.py" not in onnx
    assert all("export/bench.py" in checker.command_closure(s.cmd) for s in _named(stages, "engine_bench"))
    # lint reads TensorRT's operator tables beside export/backend/trt/lint.py
    lint = checker.command_closure(_named(stages, "lint")[0].cmd)
    assert "export/backend/trt/data/trt_onnx_operators_10.3.json" in lint
    # `segstyle data verify` starts without torch: none of the model code is in its closure
    verify = checker.command_closure(_named(stages, "verify")[0].cmd)
    assert not any(f.startswith("models/") for f in verify)


def test_an_edit_of_provenance_reruns_every_export_and_bundle(stages):
    stale = stale_after_edit(stages, "core/provenance.py")
    for group in ("export_onnx", "bundle"):
        assert {s.name for s in _named(stages, group)} <= stale, f"{group}: {sorted(stale)}"


# Only `engine bench` runs export/bench.py: validation times the backends with export/timing.py (which
# export/bench.py imports too) and bundle's golden images read their input types from export/inputs.py, so an
# edit of export/bench.py reruns none of the stages below.
@pytest.mark.parametrize("group", [
    "export_onnx", "export_fp16", "lint", "engine_build", "bundle", "validate", "engine_validate",
])
def test_an_edit_of_bench_reruns_no_export_bundle_or_validation(stages, checker, group):
    stale = stale_after_edit(stages, "export/bench.py") & {s.name for s in _named(stages, group)}
    assert not stale, (f"an edit of export/bench.py reruns {sorted(stale)}: "
                       f"{checker.import_chain(_named(stages, group)[0].cmd, 'export/bench.py')}")


def test_an_edit_of_bench_reruns_the_benchmarks(stages, checker):
    """The other side: every stage whose command runs export/bench.py reruns, engine_bench first of all."""
    stale = stale_after_edit(stages, "export/bench.py")
    assert stale == {s.name for s in stages if "export/bench.py" in checker.command_closure(s.cmd)}
    assert {s.name for s in _named(stages, "engine_bench")} <= stale


def test_the_checker_catches_a_missing_and_an_over_broad_dep(stages, checker):
    """What wrong deps would still pass if the checker were a no-op: it must report each of these."""
    onnx = _named(stages, "export_onnx")[0]
    closure = checker.command_closure(onnx.cmd)
    other = tuple(d for d in onnx.deps if not checker.is_code(d))
    # the closure itself, file by file, is exactly right
    assert checker.check(Stage(onnx.name, onnx.cmd, (*other, *sorted(closure)))) == ([], [])
    # dvc.yaml's deps without core/provenance.py (or the folder above it): reported missing
    assert "core/provenance.py" in closure
    dropped = Stage(onnx.name, onnx.cmd, tuple(d for d in onnx.deps if d not in ("core/provenance.py", "core")))
    assert "core/provenance.py" in checker.check(dropped)[0]
    # the whole export folder (holding export/bench.py) or that file alone: reported over-broad
    _, broad = checker.check(Stage(onnx.name, onnx.cmd, (*onnx.deps, "export")))
    assert any(b.startswith("export/ holds") and "export/bench.py" in b for b in broad), broad
    _, broad = checker.check(Stage(onnx.name, onnx.cmd, (*onnx.deps, "export/bench.py")))
    assert "export/bench.py is not run by the command" in broad
    # data and artifact deps are not code: never reported
    assert checker.check(Stage(onnx.name, onnx.cmd, (*onnx.deps, "data/extra", "artifacts/x.json"))) \
        == checker.check(onnx)
    # a data folder a module reads must be covered too
    lint = _named(stages, "lint")[0]
    missing, _ = checker.check(Stage(lint.name, lint.cmd, tuple(d for d in lint.deps if "trt" not in d)))
    assert "export/backend/trt/data/trt_onnx_operators_10.3.json" in missing


def test_the_closure_rule_on_a_small_package(tmp_path):
    """The rule itself, on a made-up package: which imports count and which do not."""
    files = {
        "pkg/__init__.py": "from pkg.reg import REG\n",
        "pkg/reg.py": "REG = {}\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/cli.py": (
            "from __future__ import annotations\n"
            "from typing import TYPE_CHECKING\n"
            "from . import top\n"                                  # module level: in the closure
            "if TYPE_CHECKING:\n    from pkg import typing_only\n"  # never executed
            "def helper():\n    from pkg.sub import lazy_helper\n"
            "def unrelated():\n    from pkg import unused\n"
            "class Runner:\n    def go(self):\n        from ..attrs import THING\n"
            "def cmd_a():\n    helper()\n    return Runner()\n"
            "def cmd_b():\n    import pkg.bench\n"
        ),
        "pkg/sub/top.py": "",
        "pkg/sub/lazy_helper.py": "def f():\n    from .deep import x\n",  # taken whole: its lazy import too
        "pkg/sub/deep.py": "x = 1\n",
        "pkg/attrs.py": "THING = 1\n",  # `from ..attrs import THING`: THING is a name, so pkg.attrs
        "pkg/typing_only.py": "", "pkg/unused.py": "", "pkg/bench.py": "",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    src = Sources(tmp_path, {"pkg": "pkg"})
    a = src.closure(set(), {"pkg.sub.cli": {"cmd_a"}})
    assert a == {"pkg/__init__.py", "pkg/reg.py", "pkg/sub/__init__.py", "pkg/sub/cli.py", "pkg/sub/top.py",
                 "pkg/sub/lazy_helper.py", "pkg/sub/deep.py", "pkg/attrs.py"}
    b = src.closure(set(), {"pkg.sub.cli": {"cmd_b"}})
    assert "pkg/bench.py" in b and "pkg/sub/lazy_helper.py" not in b and "pkg/attrs.py" not in b
    # imported by another module, cli.py is taken whole: every function's imports
    whole = src.closure({"pkg.sub.cli"})
    assert {"pkg/bench.py", "pkg/unused.py", "pkg/sub/deep.py"} <= whole and "pkg/typing_only.py" not in whole


def test_every_module_that_reads_beside_itself_is_listed():
    """A module that opens files next to its own source must say which (DATA_DIRS), so the stages cover them."""
    src = Sources(REPO)
    readers = set()
    for root in src.roots:
        for p in (REPO / root).rglob("*.py"):
            if "__pycache__" not in p.parts and "__file__" in p.read_text():
                rel = p.relative_to(REPO).with_suffix("")
                folder, _, rest = rel.as_posix().partition("/")
                prefix = next(k for k, v in src.packages.items() if v == folder)
                name = ".".join([prefix, *rest.split("/")]) if rest else prefix
                readers.add(name[: -len(".__init__")] if name.endswith(".__init__") else name)
    assert readers == set(DATA_DIRS), f"modules using __file__: {sorted(readers)}"
    for module, folders in DATA_DIRS.items():
        assert src.file(module) is not None, module
        for folder in folders:
            assert (REPO / folder).is_dir() and any((REPO / folder).iterdir()), folder
