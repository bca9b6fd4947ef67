"""The project's real dvc.yaml, checked statically through DVC's own API (nothing is run).

Every stage command must be a ``segstyle`` command that the CLI accepts with exactly those
arguments, every parameter a stage tracks must exist in params.yaml, code deps must exist,
outputs live under artifacts/, metrics are uncached JSON, and the graph must keep export-side
parameters away from training (changing ``export.*`` reruns only export-side stages).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from segstyle.pipelines.cli import COMMANDS, cli as root_cli
from segstyle.pipelines.stages import load_plan

REPO = Path(__file__).resolve().parents[1]
GPU_SIDE = ("engine_build", "engine_validate", "engine_bench", "aoti_build_cuda", "aoti_validate_cuda")
EXPORT_SIDE = ("export_onnx", "export_fp16", "export_int8", "export_program", "lint", "bundle", "validate", "aoti_build", "aoti_validate",
               "aoti_bench", "matrix", *GPU_SIDE)
TRAIN_SIDE = ("verify", "train", "evaluate", "train_style", "inpaint", "inpaint_gan", "region_style", "train_gan",
              "fuse_region_style")


@pytest.fixture(scope="module")
def plan():
    return load_plan(REPO)


def _group(name: str) -> str:
    return name.split("@")[0]


def test_every_stage_kind_is_present(plan):
    groups = {_group(s.name) for s in plan}
    assert groups == set(EXPORT_SIDE) | set(TRAIN_SIDE)
    assert {s.name for s in plan if _group(s.name) == "train"} == {"train@voc", "train@pets"}
    assert {s.name for s in plan if s.gpu} == {f"{g}@{n}" for g in GPU_SIDE
                                                for n in ("voc", "pets", "style", "fused", "gan")}


def test_every_cmd_is_an_accepted_segstyle_command(plan):
    import click

    for s in plan:
        for part in s.cmd.split("&&"):
            argv = shlex.split(part)
            assert argv[0] == "segstyle", f"{s.name}: {part}"
            assert argv[1] in COMMANDS, f"{s.name}: unknown command {argv[1]}"
            cmd, rest = root_cli.get_command(click.Context(root_cli), argv[1]), argv[2:]
            while isinstance(cmd, click.Group) and not (cmd.invoke_without_command and rest[0] not in cmd.commands):
                cmd, rest = cmd.get_command(click.Context(cmd), rest[0]), rest[1:]
                assert cmd is not None, f"{s.name}: unknown subcommand in {part}"
            # click parses the arguments exactly as the stage will pass them (unknown options fail)
            cmd.make_context(argv[1], list(rest))


def test_params_exist_and_follow_the_profile(plan):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    profile = raw["profile"]
    for s in plan:
        for key in s.params:
            node = raw
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"{s.name}: params key {key} not in params.yaml"
                node = node[part]
    by = {s.name: set(s.params) for s in plan}
    assert {"profile", f"train.{profile}", f"augment.{profile}"} <= by["train@voc"]
    assert f"style.{profile}" in by["train_style"]


def test_deps_outs_metrics(plan):
    from dvc.repo import Repo

    for s in plan:
        for d in s.deps:
            if not d.startswith(("artifacts/", "data")):
                assert (REPO / d).exists(), f"{s.name}: code dependency {d} does not exist"
        for o in (*s.outs, *s.metrics, *s.plots):
            assert o.startswith("artifacts/"), f"{s.name}: output {o} outside artifacts/"
        for m in s.metrics:
            assert m.endswith(".json")
    with Repo(str(REPO)) as repo:
        for stage in repo.index.stages:
            for out in stage.outs:
                if out.metric or out.plot:
                    assert not out.use_cache, f"{stage.addressing}: {out} should be cache: false"


def test_export_params_reach_only_export_side_stages(plan):
    """Stages tracking export.* / validate.* / engine.*, plus everything downstream of them."""
    down: dict[str, set[str]] = {s.name: set() for s in plan}
    for s in plan:
        for u in s.upstream:
            down[u].add(s.name)
    hit = {s.name for s in plan if any(k.split(".")[0] in ("export", "validate", "engine") for k in s.params)}
    todo = list(hit)
    while todo:
        for n in down[todo.pop()]:
            if n not in hit:
                hit.add(n)
                todo.append(n)
    assert hit and all(_group(n) in EXPORT_SIDE for n in hit)
    assert {_group(n) for n in hit} == set(EXPORT_SIDE)


def test_training_param_change_reaches_export_but_not_the_other_dataset(plan):
    down: dict[str, set[str]] = {s.name: set() for s in plan}
    for s in plan:
        for u in s.upstream:
            down[u].add(s.name)
    reach, todo = set(), ["train@voc"]
    while todo:
        for n in down[todo.pop()]:
            if n not in reach:
                reach.add(n)
                todo.append(n)
    assert "evaluate@voc" in reach and "export_onnx@voc" in reach
    assert not any(n.endswith("@pets") or n.endswith("@style") for n in reach)


# Every DVC metrics file dvc.yaml declares -> the test that runs its writer and checks the written file with
# tests/metrics_helpers.assert_figures_only (issue 9: `dvc metrics show` is one table over every metrics file's
# keys, so a string, path or list in any of them is a column of noise). `{}` stands for the foreach item.
METRICS_WRITER_TESTS = {
    "artifacts/train/{}/timing.json": "pipelines/test_train.py::test_two_runs_give_identical_output_hashes",
    "artifacts/eval/{}/metrics.json": "pipelines/test_evaluate.py::test_evaluate_matches_a_direct_computation",
    "artifacts/style/metrics.json":
        "pipelines/style/test_style_train.py::test_demo_params_train_with_random_banks_and_no_wall_clock_in_cached_outputs",
    "artifacts/gan/metrics.json": "pipelines/test_dcgan.py::test_train_writes_samples_curves_checkpoint_and_resumes",
    "artifacts/edit/inpaint_gan/metrics.json":
        "pipelines/edit/test_gan_inpaint.py::test_cli_all_writes_five_panels_and_scores_a_known_hole",
    "artifacts/validate/{}/metrics.json": "export/test_export_validate.py::test_all_backends_rows_and_figures_only_metrics",
}


def test_every_metrics_file_has_a_figures_only_test(plan):
    """A metrics file added to dvc.yaml without a test that checks its writer's output fails here, and so
    does a listed test that no longer calls assert_figures_only. The plain records that hold the rest
    (verify, parity, fp16 reports, eval/style/gan/validate record.json) are outs, never metrics."""
    import ast

    declared = set()
    for s in plan:
        item = s.name.split("@")[1] if "@" in s.name else None
        for m in s.metrics:
            declared.add(m.replace(f"/{item}/", "/{}/") if item else m)
    assert declared == set(METRICS_WRITER_TESTS)
    for path, ref in METRICS_WRITER_TESTS.items():
        file, name = ref.split("::")
        tree = ast.parse((REPO / "tests" / file).read_text())
        fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name), None)
        assert fn is not None, f"{path}: {ref} does not exist"
        calls = {c.func.id for c in ast.walk(fn) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
        assert "assert_figures_only" in calls, f"{ref} does not check {path} with assert_figures_only"
