"""The Prefect flow over dvc.yaml, on a tiny throwaway DVC + git repository (see benchmarks/tiny_repo.py).

Proves: dependency order comes from dvc.yaml; an immediate second run skips every stage (both the
CLI's no-op fast path and the flow's own per-task DVC check); changing one parameter reruns only the
stages that depend on it; a failing stage is named, its upstream outputs stay, the next run resumes
there; transient failures are retried; GPU stages are skipped-no-GPU without CUDA; two runs at once
do not both proceed; outputs are pushed to the DVC remote; the markdown report is published.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from flow_repo import BIN, ORDER, make_repo, runs, set_param

from segstyle.core.errors import SegstyleError


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setenv("SEGSTYLE_FORCE_NO_GPU", "1")


def _status(report) -> dict[str, str]:
    return {s.name: s.status for s in report.stages}


@pytest.mark.slow
def test_order_skip_and_param_change(tmp_path, prefect_api, no_gpu):
    from segstyle.pipelines.flow import segstyle_pipeline
    from segstyle.pipelines.run import execute
    from segstyle.pipelines.stages import load_plan

    repo = make_repo(tmp_path / "repo", remote=tmp_path / "remote")
    plan = load_plan(repo)
    assert [s.name for s in plan] == ORDER
    pos = {s.name: i for i, s in enumerate(plan)}
    assert all(pos[u] < pos[s.name] for s in plan for u in s.upstream)
    assert {s.name: set(s.upstream) for s in plan}["export"] == {"prep@voc", "train_style"}

    # cold run, one stage at a time: every CPU stage runs once, in dvc.yaml's dependency order; the GPU
    # stage is skipped
    rep = execute(repo, profile=None, targets=[], force=False, wait=False, push=True, nproc=None, jobs=1)
    assert runs(repo) == ORDER[:-1]
    assert _status(rep) == {**{n: "ran" for n in ORDER[:-1]}, "engine": "skipped-no-GPU"}
    assert "pushed" in rep.push and any((tmp_path / "remote").rglob("*"))
    md = (repo / "artifacts" / "pipeline_report.md").read_text()
    assert "| `evaluate` | `metrics.json` | miou 0.5, pixel_acc 0.75" in md and "skipped-no-GPU" in md
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["segstyle-pipeline-report"])))
        assert arts and "evaluate" in arts[0].data

    # immediate second run: nothing runs (CLI fast path), and the flow itself also skips every task
    rep = execute(repo, profile=None, targets=[], force=False, wait=False, push=True, nproc=None)
    assert runs(repo) == [] and set(_status(rep).values()) == {"skipped", "skipped-no-GPU"}
    out = segstyle_pipeline(root=str(repo), push=False)
    assert runs(repo) == [] and {s["status"] for s in out["stages"]} == {"skipped", "skipped-no-GPU"}

    # an export parameter reruns only the export side
    set_param(repo, "opset: 20", "opset: 18")
    rep = execute(repo, profile=None, targets=[], force=False, wait=False, push=False, nproc=None)
    assert runs(repo) == ["export", "bundle"]
    assert [n for n, s in _status(rep).items() if s == "ran"] == ["export", "bundle"]

    # a profile switch (as `dvc exp run -S profile=full`): params.yaml and dvc.lock record it
    rep = execute(repo, profile="full", targets=["prep@voc"], force=False, wait=False, push=False, nproc=None)
    assert runs(repo) == ["prep@voc"] and rep.profile == "full"
    assert "profile: full" in (repo / "params.yaml").read_text()
    assert "train.full" in (repo / "dvc.lock").read_text()


@pytest.mark.slow
def test_failed_stage_is_named_and_next_run_resumes(tmp_path, prefect_api, no_gpu, monkeypatch):
    from segstyle.pipelines import flow
    from segstyle.pipelines.run import execute

    repo = make_repo(tmp_path / "repo")
    (repo / "FAIL_export").touch()
    with pytest.raises(SegstyleError) as e:
        execute(repo, profile=None, targets=[], force=False, wait=False, push=False, nproc=None)
    assert "stage 'export' failed" in str(e.value) and "exploded on purpose" in str(e.value)
    # not retried (not transient); with --jobs the independent stages may finish in any order
    assert sorted(runs(repo)) == sorted(["prep@voc", "prep@pets", "train_style", "evaluate", "export"])
    md = (repo / "artifacts" / "pipeline_report.md").read_text()
    assert "| `export` | failed |" in md and "| `bundle` | not-run |" in md
    assert (repo / "out" / "prep_voc.txt").is_file() and (repo / "out" / "metrics.json").is_file()

    # the next run resumes at the failed stage; a transient failure (DVC lock contention) is retried
    (repo / "FAIL_export").unlink()
    monkeypatch.setattr(flow, "run_stage", flow.run_stage.with_options(retry_delay_seconds=0))
    rep = execute(repo, profile=None, targets=[], force=False, wait=False, push=False, nproc=None)
    assert runs(repo) == ["export", "bundle"]
    assert _status(rep)["export"] == "ran" and _status(rep)["prep@voc"] == "skipped"


@pytest.mark.slow
def test_transient_failure_is_retried(tmp_path, prefect_api, no_gpu, monkeypatch):
    from segstyle.pipelines import flow

    repo = make_repo(tmp_path / "repo")
    # first attempt of prep@pets fails the way DVC does under lock contention, the retry succeeds
    (repo / "step.py").write_text(
        "import sys, pathlib\n"
        "if sys.argv[1] == 'prep@pets' and not pathlib.Path('retried').exists():\n"
        "    pathlib.Path('retried').touch(); open('runs.log', 'a').write('prep@pets\\n')\n"
        "    sys.exit('ERROR: Unable to acquire lock. Most likely another DVC process is running')\n"
        + (repo / "step.py").read_text()
    )
    monkeypatch.setattr(flow, "run_stage", flow.run_stage.with_options(retry_delay_seconds=0))
    out = flow.segstyle_pipeline(root=str(repo), targets=["evaluate"], push=False)
    log = runs(repo)
    assert sorted(log) == ["evaluate", "prep@pets", "prep@pets", "prep@voc"] and log[-1] == "evaluate"
    assert [s["status"] for s in out["stages"]] == ["ran", "ran", "ran"]


def test_second_run_exits_while_first_holds_the_lock(tmp_path):
    from segstyle.pipelines.stages import run_lock

    repo = make_repo(tmp_path / "repo")
    with run_lock(repo, wait=False):
        proc = subprocess.run([str(BIN / "segstyle"), "run", "--root", str(repo)], capture_output=True, text=True,
                              timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segstyle: error: another `segstyle run` is in progress (pid")
    assert runs(repo) == [] and not (repo / "dvc.lock").exists()
    # released: the lock file is free again (a crashed holder releases it too: flock dies with the process)
    with run_lock(repo, wait=False):
        pass


def test_unknown_target_is_one_line(tmp_path, cli, capsys):
    repo = make_repo(tmp_path / "repo")
    assert cli(["run", "--root", str(repo), "--targets", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown stage target 'nope'" in err[0]
    assert runs(repo) == []


def test_absent_data_is_pulled_from_the_dvc_remote(tmp_path):
    """Scale-out through a DVC remote (a local directory here; S3 by `dvc remote add -d s3://...`)."""
    import shutil

    from segstyle.pipelines.data.ensure import ensure_data

    repo = make_repo(tmp_path / "repo", remote=tmp_path / "remote")
    dvc = lambda *a: subprocess.run([str(BIN / "dvc"), *a], cwd=repo, check=True, capture_output=True)  # noqa: E731
    dvc("add", "data")
    dvc("push", "data.dvc")
    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / ".dvc" / "cache")
    assert ensure_data(repo, "data", echo=lambda *a: None) == "pulled"
    assert (repo / "data" / "x.txt").read_text() == "sample"
    assert ensure_data(repo, "data", echo=lambda *a: None) == "present"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
