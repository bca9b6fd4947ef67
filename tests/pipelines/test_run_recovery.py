"""Recovery from a killed run (issue 11, item 2), on the tiny DVC repository of benchmarks/tiny_repo.py.

- Planted ``.dvc/tmp/rwlock`` entries held by a zombie, by a PID that now runs another program and by
  a PID that is gone: DVC itself refuses to run the stage ("is busy"); ``recover_rwlock`` clears them
  with one line per stage and DVC runs again. A live holder is a one-line error naming PID and stage,
  or waited for.
- ``segstyle run`` SIGKILLed (its whole process group) during a stage, inside a "container" whose
  init does not reap (a child-subreaper that never waits): the next run, started at once with the
  killed processes still zombies, completes with every stage up to date and no traceback, for
  ``--jobs 1`` and ``--jobs 2``.
- SIGTERM to ``segstyle run`` stops the running stage's whole process group and leaves no lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from flow_repo import BIN, make_repo, runs

from segstyle.core.errors import SegstyleError, first_line
from segstyle.pipelines.recovery import RWLOCK, recover_rwlock


def _state(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return raw[raw.rindex(")") + 2:].split()[0]


def _zombie() -> subprocess.Popen:
    proc = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while _state(proc.pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _state(proc.pid) == "Z"
    return proc


def _repro_cmd(stage: str) -> str:
    return f"{BIN / 'dvc'} --wait-for-lock repro --single-item {stage}"


def _plant(repo: Path, write: dict[str, tuple[int, str]], read: dict[str, list[tuple[int, str]]]) -> None:
    (repo / RWLOCK).parent.mkdir(parents=True, exist_ok=True)
    (repo / RWLOCK).write_text(json.dumps({
        "write": {str(repo / p): {"pid": pid, "cmd": cmd} for p, (pid, cmd) in write.items()},
        "read": {str(repo / p): [{"pid": pid, "cmd": cmd} for pid, cmd in infos] for p, infos in read.items()},
    }))


def _entries(repo: Path) -> list:
    """Every holder still named in ``.dvc/tmp/rwlock`` (DVC may leave empty ``read``/``write`` maps)."""
    path = repo / RWLOCK
    data = json.loads(path.read_text() or "{}") if path.exists() else {}
    return [*(data.get("write") or {}).values(), *(i for v in (data.get("read") or {}).values() for i in v)]


def _dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "dvc"), *args], cwd=repo, capture_output=True, text=True, timeout=120)


def test_first_line_never_raises():
    assert first_line(ValueError("")) == "ValueError"
    assert first_line(RuntimeError("\n\n  second\nthird")) == "second"
    assert first_line(OSError("x" * 50), limit=10) == "xxxxxxx..."

    class Broken(Exception):
        def __str__(self):
            raise RuntimeError("no")

    assert first_line(Broken()) == "Broken"


def test_planted_stale_entries_are_recovered(tmp_path):
    repo = make_repo(tmp_path / "repo")
    zombie = _zombie()
    gone = subprocess.Popen(["true"])
    gone.wait()
    reused = subprocess.Popen(["sleep", "60"])  # a live process that is not the recorded dvc command
    try:
        _plant(repo, write={"out/prep_voc.txt": (zombie.pid, _repro_cmd("prep@voc")),
                            "out/style.txt": (reused.pid, _repro_cmd("train_style"))},
               read={"step.py": [(gone.pid, _repro_cmd("evaluate")), (reused.pid, _repro_cmd("train_style"))]})
        # the bug this fixes: DVC counts the zombie (and the reused PID) as live holders
        proc = _dvc(repo, "repro", "--single-item", "prep@voc")
        assert proc.returncode != 0 and "is busy" in proc.stdout + proc.stderr
        proc = _dvc(repo, "repro", "--single-item", "train_style")
        assert proc.returncode != 0 and "is busy" in proc.stdout + proc.stderr

        lines: list[str] = []
        cleared = recover_rwlock(repo, wait=False, echo=lines.append)
        assert {(h.stage, h.state) for h in cleared} == {("prep@voc", "zombie"), ("train_style", "reused"),
                                                         ("evaluate", "gone")}
        assert len(lines) == 3 and all(ln.startswith("recovered the DVC lock of stage ") for ln in lines)
        assert _entries(repo) == []
        proc = _dvc(repo, "repro", "--single-item", "prep@voc")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert runs(repo) == ["prep@voc"]
    finally:
        reused.kill()
        reused.wait()
        zombie.wait()


def test_truncated_rwlock_is_reset(tmp_path):
    repo = make_repo(tmp_path / "repo")
    (repo / RWLOCK).parent.mkdir(parents=True, exist_ok=True)
    (repo / RWLOCK).write_text('{"write": {"/x/out": {"pid": 12')  # DVC killed mid-write
    assert "Unable to read RWLock-file" in _dvc(repo, "repro", "--single-item", "prep@voc").stderr
    lines: list[str] = []
    recover_rwlock(repo, wait=False, echo=lines.append)
    assert len(lines) == 1 and "unreadable JSON" in lines[0]
    assert _dvc(repo, "repro", "--single-item", "prep@voc").returncode == 0


def test_dvc_and_prefect_exceptions_are_one_line(tmp_path, cli, capsys, monkeypatch):
    """An exception DVC raises anywhere under `segstyle run` is one line, not a traceback."""
    from dvc.exceptions import DvcException

    from segstyle.pipelines import stages

    repo = make_repo(tmp_path / "repo")

    def boom(*a, **k):
        raise DvcException("index exploded\nsecond line of detail")

    monkeypatch.setattr(stages, "load_plan", boom)
    assert cli(["run", "--root", str(repo)]) == 1
    err = capsys.readouterr().err
    assert err == "segstyle: error: dvc: DvcException: index exploded\n"


def test_live_holder_is_one_line_or_waited_for(tmp_path):
    repo = make_repo(tmp_path / "repo")
    cmd = _repro_cmd("export")
    # a live process whose command line is the recorded dvc command (as `dvc repro` by hand would be)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *cmd.split()])
    try:
        time.sleep(0.2)
        _plant(repo, write={"out/model.onnx": (holder.pid, cmd)}, read={})
        with pytest.raises(SegstyleError) as e:
            recover_rwlock(repo, wait=False, echo=lambda m: None)
        msg = str(e.value)
        assert "\n" not in msg and f"PID {holder.pid}" in msg and "stage export" in msg and "--wait" in msg

        threading.Timer(1.0, holder.kill).start()
        lines: list[str] = []
        t0 = time.monotonic()
        cleared = recover_rwlock(repo, wait=True, echo=lines.append, poll=0.1, timeout=30)
        assert time.monotonic() - t0 >= 0.9  # it waited for the holder
        assert lines[0].startswith(f"waiting for PID {holder.pid}") and [h.stage for h in cleared] == ["export"]
        assert _entries(repo) == []
    finally:
        holder.kill()
        holder.wait()


# A tiny "container init": becomes the child subreaper (orphans are reparented to it) and never reaps
# until the end, like PID 1 in a container without an init. It starts `segstyle run`, SIGKILLs its
# whole process group while a stage runs, counts the zombies, starts the next run at once.
KILLER = textwrap.dedent(
    """
    import ctypes, json, os, signal, subprocess, sys, time
    from pathlib import Path
    repo, segstyle, jobs = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
    cmd = [segstyle, "run", "--jobs", jobs, "--no-push"]
    first = subprocess.Popen(cmd, cwd=repo, stdout=open(repo / "first.out", "w"), stderr=subprocess.STDOUT,
                             start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        started = (repo / "runs.log").read_text().split() if (repo / "runs.log").exists() else []
        if "prep@voc" in started and (jobs == "1" or "prep@pets" in started):
            break
        time.sleep(0.1)
    else:
        sys.exit("the slow stage never started")
    time.sleep(1.0)
    os.killpg(first.pid, signal.SIGKILL)  # the run's whole process group, as an OOM kill of a worker would
    time.sleep(0.5)
    zombies = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                raw = (d / "stat").read_text()
            except OSError:
                continue
            rest = raw[raw.rindex(")") + 2:].split()
            if rest[0] == "Z" and int(rest[1]) == os.getpid():
                zombies.append(int(d.name))
    (repo / "SLOW").unlink()
    second = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=400)
    cpu_stages = ["prep@voc", "prep@pets", "train_style", "evaluate", "export", "bundle"]  # engine needs CUDA
    status = subprocess.run([str(Path(segstyle).parent / "dvc"), "status", *cpu_stages], cwd=repo,
                            capture_output=True, text=True)
    print(json.dumps({"zombies": zombies, "first_pid": first.pid, "rc": second.returncode,
                      "out": second.stdout, "err": second.stderr, "status": status.stdout + status.stderr}))
    """
)

SLOW_STEP = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    if sys.argv[1].startswith("prep@") and Path("SLOW").exists():
        open("runs.log", "a").write(sys.argv[1] + "\\n")
        time.sleep(120)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_sigkilled_run_with_unreaped_processes_is_recovered(tmp_path, prefect_api, jobs, monkeypatch):
    repo = make_repo(tmp_path / "repo")
    (repo / "step.py").write_text(SLOW_STEP + (repo / "step.py").read_text())
    subprocess.run(["git", "commit", "-qam", "slow"], cwd=repo, check=True)
    (repo / "SLOW").touch()
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "SEGSTYLE_FORCE_NO_GPU": "1"}
    proc = subprocess.run([sys.executable, "-c", KILLER, str(repo), str(BIN / "segstyle"), jobs],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    # the killed run and its `dvc repro` leader(s) are zombies of the non-reaping init when the next run starts
    assert res["first_pid"] in res["zombies"] and len(res["zombies"]) >= 1 + int(jobs)
    text = res["out"] + res["err"]
    assert res["rc"] == 0, text[-3000:]
    assert "Traceback" not in text and "recovered the DVC lock of stage prep@voc" in text
    assert "Data and pipelines are up to date" in res["status"], res["status"]
    assert _entries(repo) == []


@pytest.mark.slow
def test_sigterm_stops_the_stage_group_and_leaves_no_lock(tmp_path, prefect_api):
    repo = make_repo(tmp_path / "repo")
    # the stage starts a grandchild that would outlive a plain kill of the dvc process
    (repo / "step.py").write_text(textwrap.dedent(
        """
        import subprocess, sys, time
        from pathlib import Path
        if sys.argv[1] == "prep@voc" and Path("SLOW").exists():
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
            Path("grandchild.pid").write_text(str(child.pid))
            open("runs.log", "a").write("prep@voc\\n")
            time.sleep(120)
        """) + (repo / "step.py").read_text())
    subprocess.run(["git", "commit", "-qam", "slow"], cwd=repo, check=True)
    (repo / "SLOW").touch()
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "SEGSTYLE_FORCE_NO_GPU": "1"}
    run = subprocess.Popen([str(BIN / "segstyle"), "run", "--jobs", "1", "--no-push"], cwd=repo, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (repo / "grandchild.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    grandchild = int((repo / "grandchild.pid").read_text())
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 143, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segstyle: error: terminated by SIGTERM; stopped stage(s) prep@voc"), err
    assert "Traceback" not in out + err
    assert _state(grandchild) in (None, "Z")  # the stage's whole process group was stopped
    assert _entries(repo) == []


def test_cancellation_hook_stops_recorded_stage_groups_and_clears_their_lock(tmp_path):
    """Cancelling a flow run from the Prefect UI/CLI: the runner kills the flow-run process, then calls
    the flow's ``on_cancellation`` hook (``on_crashed`` when it died). The hook must stop the stage
    process groups that process recorded on disk -- children included -- and clear their DVC locks,
    while a record whose PID now belongs to another process (start time differs) is left alone."""
    from types import SimpleNamespace

    from segstyle.pipelines import flow
    from segstyle.pipelines.recovery import STAGES_FILE, _create_time

    for f in (flow.segstyle_pipeline, flow.with_jobs(2)):  # `segstyle run --jobs N` keeps the hooks
        assert flow._stop_after_cancel in f.on_cancellation_hooks
        assert flow._stop_after_cancel in f.on_crashed_hooks
    repo = make_repo(tmp_path / "repo")
    # a "stage": a shell whose background children ignore SIGINT (non-interactive bash), so only the
    # hook's SIGTERM/SIGKILL escalation on the whole group stops them
    script = "sleep 300 & sleep 300 & wait"
    stage = subprocess.Popen(["bash", "-c", script], start_new_session=True)
    decoy = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(_members(stage.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        children = [p for p in _members(stage.pid) if p != stage.pid]
        assert len(children) == 2
        records = {
            str(stage.pid): {"stage": "train_style", "pgid": stage.pid, "create_time": _create_time(stage.pid),
                             "cmd": f"bash -c {script}"},
            # a PID recorded by a run long gone and reused since: its start time differs
            str(decoy.pid): {"stage": "evaluate", "pgid": decoy.pid, "create_time": _create_time(decoy.pid) - 100,
                             "cmd": "dvc repro evaluate"},
        }
        (repo / STAGES_FILE).parent.mkdir(parents=True, exist_ok=True)
        (repo / STAGES_FILE).write_text(json.dumps(records))
        _plant(repo, write={"out/style.txt": (stage.pid, f"bash -c {script}")}, read={})

        flow._stop_after_cancel(flow.segstyle_pipeline, SimpleNamespace(parameters={"root": str(repo)}), None)

        stage.wait(timeout=5)
        assert all(_state(p) in (None, "Z") for p in children), "the stage's children survived the cancel"
        assert decoy.poll() is None, "a reused PID was signalled"
        assert _entries(repo) == [], "the cancelled stage's DVC lock was left behind"
    finally:
        for p in (stage, decoy):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _members(pgid: int) -> list[int]:
    from segstyle.pipelines.recovery import _group_members

    return [p for p in _group_members(pgid) if _state(p) not in (None, "Z")]
