"""``segstyle serve`` and the process work pool on loopback, against the session's Prefect server.

Bounded in time: every wait has a deadline, and the served / worker processes are stopped in
``finally``. The pipeline is the tiny throwaway DVC repository of benchmarks/tiny_repo.py.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from flow_repo import BIN, make_repo, runs

DEADLINE_S = 150


def _wait_for_deployment(client, name: str, proc: subprocess.Popen, log) -> object:
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"segstyle serve exited early:\n{log.read_text()[-3000:]}"
        try:
            return client.read_deployment_by_name(name)
        except ObjectNotFound:
            time.sleep(1)
    raise AssertionError(f"deployment {name} not registered in {DEADLINE_S} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_serve_registers_cron_deployment_and_runs_it(tmp_path, prefect_api):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    repo = make_repo(tmp_path / "repo")
    log = tmp_path / "serve.log"
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "SEGSTYLE_FORCE_NO_GPU": "1",
           "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    with open(log, "w") as fh:
        proc = subprocess.Popen([str(BIN / "segstyle"), "serve", "--cron", "0 3 * * *", "--name", "loopback",
                                 "--targets", "evaluate", "--root", str(repo)], env=env, stdout=fh,
                                stderr=subprocess.STDOUT)
    try:
        with get_client(sync_client=True) as client:
            dep = _wait_for_deployment(client, "segstyle-pipeline/loopback", proc, log)
            assert [s.schedule.cron for s in dep.schedules] == ["0 3 * * *"]
            assert dep.parameters["root"] == str(repo) and dep.parameters["targets"] == ["evaluate"]
        run = run_deployment("segstyle-pipeline/loopback", timeout=DEADLINE_S)
        assert run.state.is_completed(), f"{run.state}\n{log.read_text()[-3000:]}"
        # the two prep stages are independent and run concurrently (default jobs), in either order;
        # evaluate depends on both, so it must come last
        log_ = runs(repo)
        assert sorted(log_[:2]) == ["prep@pets", "prep@voc"] and log_[2:] == ["evaluate"], log_
        assert (repo / "out" / "metrics.json").is_file()
    finally:
        _stop(proc)


def test_serve_rejects_bad_cron_in_one_line(tmp_path, cli, capsys):
    repo = make_repo(tmp_path / "repo")
    assert cli(["serve", "--cron", "every night", "--root", str(repo)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["segstyle: error: invalid cron expression 'every night' (5 fields: minute hour day month weekday)"]


@pytest.mark.slow
def test_prefect_yaml_deploys_to_a_process_work_pool_and_a_worker_runs_it(tmp_path, prefect_api):
    """The documented work-pool route: `prefect deploy` of prefect.yaml + `prefect worker start`."""
    import shutil

    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    repo = make_repo(tmp_path / "repo")
    project = tmp_path / "project"  # prefect deploy writes nothing into the checkout
    project.mkdir()
    shutil.copy(Path(__file__).resolve().parents[2] / "prefect.yaml", project / "prefect.yaml")
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "SEGSTYLE_FORCE_NO_GPU": "1", "SEGSTYLE_ROOT": str(repo),
           "PREFECT_WORKER_QUERY_SECONDS": "1"}
    prefect = str(BIN / "prefect")

    def sh(*args):
        proc = subprocess.run([prefect, "--no-prompt", *args], cwd=project, env=env, capture_output=True, text=True,
                              timeout=DEADLINE_S)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    sh("work-pool", "create", "segstyle-process", "--type", "process")
    sh("deploy", "--all")
    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name("segstyle-pipeline/nightly")
        assert dep.work_pool_name == "segstyle-process" and dep.parameters["root"] == str(repo)
    run = run_deployment("segstyle-pipeline/nightly", parameters={"targets": ["prep@voc"]}, timeout=0)
    log = tmp_path / "worker.log"
    with open(log, "w") as fh:
        worker = subprocess.Popen([prefect, "worker", "start", "--pool", "segstyle-process", "--run-once"], cwd=project,
                                  env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        worker.wait(timeout=DEADLINE_S)
    finally:
        _stop(worker)
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run.id).state
    assert state.is_completed(), f"{state}\n{log.read_text()[-3000:]}"
    assert runs(repo) == ["prep@voc"]
