"""Our TensorRT calls exist in the real API of every release we claim (issue 20, part 2).

The API comes from NVIDIA's bindings wheels, which ``make setup`` downloads into ``.venv/trt-api``
(:mod:`segstyle.export.backend.trt.api_release`; cached per release after the first run). The
planted snippets show what the checker catches and which gates it understands.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import pytest

from segstyle.core.errors import SegstyleError
from segstyle.export.backend.trt.api_check import DEPRECATED, MISSING, check_files, check_source
from segstyle.export.backend.trt.api_release import PACKAGE, RELEASES, release_api, wheel_for

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[4]
TRT_API = REPO / ".venv" / "trt-api"
SOURCES = sorted(p for top in ("core", "models", "export", "pipelines", "benchmarks") for p in (REPO / top).rglob("*.py"))
R10 = [v for v in RELEASES if v.startswith("10.")]
R11 = [v for v in RELEASES if v.startswith("11.")]


@pytest.fixture(scope="module")
def apis() -> dict[str, dict]:
    missing = [v for v in RELEASES if wheel_for(TRT_API, v) is None]
    if missing:
        pytest.skip(f"no {PACKAGE} wheel for {', '.join(missing)} in {TRT_API} (`make setup` downloads them)")
    if shutil.which("cc") is None:
        pytest.skip("no C compiler (cc) to build the stand-in TensorRT libraries the bindings import")
    return {v: release_api(TRT_API, v) for v in RELEASES}


def _check(code: str, api: dict) -> list[str]:
    return [f"{line}: {subject}" + ("" if problem == MISSING else f" {problem}")
            for line, subject, problem in check_source(textwrap.dedent(code), api)]


def test_the_checked_releases_cover_the_claimed_range():
    """pyproject's tensorrt extra claims 10.x and 11.x: both majors are checked, with the first 10.x wheel
    and JetPack 6.1's release (the newest of each major is in RELEASES by hand: no index is read here)."""
    spec = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["tensorrt"]
    assert spec == ["tensorrt>=10,<12"]
    assert {v.split(".")[0] for v in RELEASES} == {"10", "11"}
    assert "10.0.1" in RELEASES and "10.3.0" in RELEASES  # the first 10.x wheel; JetPack 6.1's release


def test_a_missing_wheel_is_one_line_naming_make_setup(tmp_path):
    with pytest.raises(SegstyleError, match=r"^no tensorrt-cu12-bindings 10\.0\.1 wheel in .*; run `make setup`$"):
        release_api(tmp_path, "10.0.1")


def test_the_recorded_api_is_the_releases_own(apis):
    """The introspected API tells the releases apart (so a check against it means something)."""
    for v in RELEASES:
        api = apis[v]
        assert api["version"] == v and api["wheel"] == wheel_for(TRT_API, v).name
        assert api["classes"]["Builder"]["create_network"]["type"] == "INetworkDefinition"
        assert api["classes"]["ICudaEngine"]["create_execution_context"]["type"] == "IExecutionContext"
        assert api["module"]["float32"]["type"] == "DataType"
        flags, layer = api["classes"]["BuilderFlag"], api["classes"]["ILayer"]
        assert ("FP16" in flags and "OBEY_PRECISION_CONSTRAINTS" in flags and "precision" in layer) == (v in R10)
        assert "STRONGLY_TYPED" in api["classes"]["NetworkDefinitionCreationFlag"]
        assert ("EXPLICIT_BATCH" in api["classes"]["NetworkDefinitionCreationFlag"]) == (v in R10)


@pytest.fixture(scope="module")
def ours(apis) -> dict[str, list[str]]:
    """Release -> the finding lines of our whole source, deprecated names included."""
    return {v: check_files(SOURCES, apis[v], root=REPO, deprecated=True) for v in RELEASES}


@pytest.mark.parametrize("version", RELEASES)
def test_our_code_uses_only_names_the_release_has(ours, version):
    assert [line for line in ours[version] if not line.endswith(f"{DEPRECATED} in TensorRT {version}")] == []


def test_a_removed_call_outside_any_gate_fails_on_11_naming_the_line(apis, tmp_path):
    f = tmp_path / "planted.py"
    f.write_text("def configure(trt, builder):\n"
                 "    config = builder.create_builder_config()\n"
                 "    config.set_flag(trt.BuilderFlag.FP16)\n"
                 "    return config\n")
    for v in R11:
        assert check_files([f], apis[v], root=tmp_path) == [
            f"planted.py:3: trt.BuilderFlag.FP16 does not exist in TensorRT {v}"]
    for v in R10:
        assert check_files([f], apis[v]) == []


def test_a_misspelt_name_fails_on_every_release(apis):
    code = """
        import tensorrt as trt

        def build(logger):
            builder = trt.Builder(logger)
            network = builder.create_netwrok(0)
            return trt.BuilderFlag.FP61, trt.Bulder
    """
    for v in RELEASES:
        assert _check(code, apis[v]) == ["6: trt.Builder.create_netwrok", "7: trt.BuilderFlag.FP61", "7: trt.Bulder"]


GATED = {
    "version gate": """
        def f(trt, config):
            if trt_major(trt.__version__) < 11:
                config.set_flag(trt.BuilderFlag.FP16)
    """,
    "version gate, else branch": """
        def f(trt, config):
            if trt_major(trt.__version__) >= 11:
                pass
            else:
                config.set_flag(trt.BuilderFlag.FP16)
    """,
    "named major, reversed": """
        def f(trt, config):
            major = int(trt.__version__.split(".")[0])
            if 11 > major and config is not None:
                config.set_flag(trt.BuilderFlag.FP16)
    """,
    "hasattr gate": """
        def f(trt, config):
            if hasattr(trt.BuilderFlag, "FP16"):
                config.set_flag(trt.BuilderFlag.FP16)
            if hasattr(trt, "NoSuchThing"):
                trt.NoSuchThing()
    """,
    "early raise": """
        def f(trt, config):
            if trt_major(trt.__version__) >= 11:
                raise RuntimeError("no weak typing on 11")
            config.set_flag(trt.BuilderFlag.FP16)
    """,
    "early return, or-gate": """
        def f(trt, network):
            if not hasattr(trt.BuilderFlag, "FP16") or trt_major(trt.__version__) >= 11:
                return None
            network.get_layer(0).precision = trt.float32
    """,
}


@pytest.mark.parametrize("name", GATED)
def test_a_removed_call_inside_a_gate_passes(apis, name):
    for v in RELEASES:
        assert _check(GATED[name], apis[v]) == [], (name, v)


UNGATED = {  # each line 4 (after the dedent's leading newline) uses a name 11.x lacks, in a path 11.x runs
    "inverted gate": """
        def f(trt, config):
            if trt_major(trt.__version__) >= 11:
                config.set_flag(trt.BuilderFlag.FP16)
    """,
    "hasattr of another name": """
        def f(trt, config):
            if hasattr(trt.BuilderFlag, "TF32"):
                config.set_flag(trt.BuilderFlag.FP16)
    """,
    "raise not certain": """
        def f(trt, config, strict):
            if trt_major(trt.__version__) >= 11:
                if strict: raise RuntimeError("11")
            config.set_flag(trt.BuilderFlag.FP16)
    """,
    "not a version": """
        def f(trt, config, flags):
            major = len(flags)
            config.set_flag(trt.BuilderFlag.FP16) if major < 11 else None
    """,
    "refusal in a called function": """
        def refuse_11(trt):
            if trt_major(trt.__version__) >= 11: raise RuntimeError("11")
        def f(trt): refuse_11(trt); return trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH
    """,
    "aliases": """
        import tensorrt as t2
        def f():
            from tensorrt import NetworkDefinitionCreationFlag as N
            return t2.BuilderFlag.FP16, N.EXPLICIT_BATCH, require_tensorrt().BuilderFlag.INT8
    """,
    "class body, getattr": """
        import tensorrt as trt
        class Flags:
            FP16 = getattr(trt.BuilderFlag, "FP16")
    """,
    "typed by annotation": """
        import tensorrt as trt
        def f(layer: "trt.ILayer"):
            layer.precision = trt.float32
    """,
    "match statement": """
        def f(trt, config, x):
            match x:
                case 1: config.set_flag(trt.BuilderFlag.FP16)
    """,
    "typed via call site and self": """
        class R:
            def __init__(self, trt): self.trt = trt; self.net = trt.Builder(None).create_network(0); _pin(self.net)
            def go(self): return self.trt.BuilderFlag.FP16
        def _pin(network): network.get_layer(0).precision = None
    """,
}


@pytest.mark.parametrize("name", UNGATED)
def test_a_removed_call_that_11_can_reach_fails(apis, name):
    for v in R11:
        found = _check(UNGATED[name], apis[v])
        assert found and all(re.match(r"[3-6]: trt\.", line) for line in found), (name, v, found)
    if name in ("aliases", "typed via call site and self"):
        chains = {line.split(": ")[1] for line in _check(UNGATED[name], apis[R11[-1]])}
        assert chains == ({"trt.BuilderFlag.FP16", "trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH",
                           "trt.BuilderFlag.INT8"} if name == "aliases" else {"trt.BuilderFlag.FP16", "trt.ILayer.precision"})


def test_a_call_that_fits_no_signature_fails(apis, tmp_path):
    """Arguments are bound to pybind11's signatures: unknown keyword, too many or too few positionals."""
    code = """
        def f(trt, blob):
            builder = trt.Builder(trt.Logger())
            config = builder.create_builder_config()
            cache = config.create_timing_cache(blob)
            config.set_timing_cache(cache, ignore_mismatch=False)
            config.set_timing_cache(cache, ignore_mismatc=False)
            network = builder.create_network(0, 1)
            runtime = trt.Runtime()
            return runtime.deserialize_cuda_engine(blob).create_execution_context()
    """
    for v in RELEASES:
        assert _check(code, apis[v]) == [
            "7: trt.IBuilderConfig.set_timing_cache(1 positional, ignore_mismatc=) matches no signature",
            "8: trt.Builder.create_network(2 positional) matches no signature",
            "9: trt.Runtime(0 positional) matches no signature"], v
    f = tmp_path / "planted.py"
    f.write_text("def f(trt):\n    return trt.Runtime()\n")
    assert check_files([f], apis[RELEASES[0]], root=tmp_path) == [
        f"planted.py:2: trt.Runtime(0 positional) matches no signature in TensorRT {RELEASES[0]}"]


def test_the_weak_path_without_its_gate_fails_on_11(apis):
    """loader.py's _pin_weak refuses 11.x first: remove that refusal and the check names the removed API."""
    src = (REPO / "export/backend/trt/loader.py").read_text()
    gate = "    if trt_major(trt.__version__) >= 11:\n        raise SegstyleError(f\"TensorRT {trt.__version__} has no weakly"
    assert src.count(gate) == 1
    ungated = src.replace(gate, "    if False:\n        raise SegstyleError(f\"TensorRT {trt.__version__} has no weakly")
    for v in R11:
        chains = {chain for _, chain, _ in check_source(ungated, apis[v])}
        assert chains == {"trt.BuilderFlag.FP16", "trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS",
                          "trt.ILayer.precision", "trt.ILayer.set_output_type"}, v
    assert check_source(ungated, apis[R10[0]]) == []


# (file, our line, the same line with a name TensorRT 10.0+ does not have, the finding's subject)
MUTANTS = [
    ("export/backend/trt/runner.py", "self.context.execute_async_v3(", "self.context.execute_async_v2(",
     "trt.IExecutionContext.execute_async_v2"),
    ("export/portable/check.py", "ctx.set_input_shape(input_name, tuple(x.shape))",
     "ctx.set_binding_shape(input_name, tuple(x.shape))", "trt.IExecutionContext.set_binding_shape"),
    ("export/portable/layer_precision.py", "inspector.execution_context = context", "inspector.context = context",
     "trt.EngineInspector.context"),
    ("export/backend/trt/loader.py", "(trt.MemoryPoolType.WORKSPACE,", "(trt.MemoryPoolType.WORKSPACES,",
     "trt.MemoryPoolType.WORKSPACES"),
    ("export/backend/trt/loader.py", "cache.serialize()", "cache.serialise()", "trt.ITimingCache.serialise"),
]


@pytest.mark.parametrize("path,ours,mutant,subject", MUTANTS, ids=[m[3] for m in MUTANTS])
def test_a_wrong_name_in_our_code_is_found_on_its_line(apis, path, ours, mutant, subject):
    """Our real call sites are reached (types inferred through self, returns and call sites): break one, see it."""
    src = (REPO / path).read_text()
    assert src.count(ours) == 1
    line = src[:src.index(ours)].count("\n") + 1
    for v in RELEASES:
        assert check_source(src.replace(ours, mutant), apis[v]) == [(line, subject, MISSING)], v


# The deprecated names our code uses, per release: only the TensorRT 10 weakly typed fallback's (deprecated
# with weak typing in 10.12; the fallback exists for devices whose 10.x cannot build the FP16 graph).
WEAK_DEPRECATED = {"trt.BuilderFlag.FP16", "trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS", "trt.ILayer.set_output_type"}


@pytest.mark.parametrize("version", RELEASES)
def test_the_deprecated_names_we_use_are_the_known_ones(ours, version):
    assert {line.split(": ", 1)[1].split(" ")[0] for line in ours[version]} == (
        WEAK_DEPRECATED if version == "10.16.1.11" else set())
    assert all(line.startswith("export/backend/trt/loader.py:") for line in ours[version])


def test_strongly_typed_is_not_set_on_11(apis):
    """11.x deprecated and ignores STRONGLY_TYPED: the old hasattr gate set it there, the version gate does not."""
    src = (REPO / "export/backend/trt/loader.py").read_text()
    ours = "if plan.typing == STRONG and trt_major(trt.__version__) < 11:"
    old = 'if plan.typing == STRONG and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):'
    assert src.count(ours) == 1
    line = src[:src.index(ours)].count("\n") + 2
    for v in R11:
        assert check_source(src, apis[v], deprecated=True) == []
        assert check_source(src.replace(ours, old), apis[v], deprecated=True) == [
            (line, "trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED", DEPRECATED)]
