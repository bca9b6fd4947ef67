"""``segstyle run --jobs N`` (issue 11, item 3): independent stages overlap, dvc.lock stays whole, GPU
stages get disjoint ``CUDA_VISIBLE_DEVICES`` sets from the pool (a faked device count: no GPU needed).
"""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
import yaml
from flow_repo import BIN, make_repo, runs

from segstyle.core.errors import UsageError
from segstyle.pipelines.gpu_pool import DevicePool, visible_devices
from segstyle.pipelines.stages import StageInfo

# prepended to the tiny repo's step.py: independent stages sleep, and log when they ran on which devices
TIMED = '''
import os, sys, time
from pathlib import Path
if sys.argv[1] in ("prep@voc", "prep@pets", "train_style"):
    t0 = time.time()
    time.sleep(3)
    with open(f"timing_{sys.argv[1]}.txt", "w") as fh:
        fh.write(f"{t0} {time.time()} {os.environ.get('CUDA_VISIBLE_DEVICES', '-')}")
'''


def test_pool_hands_out_disjoint_sets(monkeypatch):
    monkeypatch.setenv("SEGSTYLE_GPU_COUNT", "4")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    pool = DevicePool()
    assert pool.devices == ["0", "1", "2", "3"]
    held: list[list[str]] = []
    barrier = threading.Barrier(3)
    lock = threading.Lock()

    def worker(n):
        with pool.take(n) as ids:
            with lock:
                held.append(ids)
            barrier.wait(timeout=5)  # all three hold their devices at the same time

    threads = [threading.Thread(target=worker, args=(n,)) for n in (2, 1, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    flat = [d for ids in held for d in ids]
    assert sorted(len(ids) for ids in held) == [1, 1, 2] and sorted(flat) == ["0", "1", "2", "3"]

    # a request waits until devices are free again, and one larger than the pool is a one-line error
    with pool.take(3) as a:
        got = []
        t = threading.Thread(target=lambda: got.append(pool.take(2).__enter__()))
        t.start()
        time.sleep(0.3)
        assert not got  # only one device free: still waiting
    t.join(timeout=5)
    assert got and len(got[0]) == 2  # served once the first request released its devices
    with pytest.raises(UsageError, match="needs 5 GPU"):
        with pool.take(5):
            pass


def test_pool_respects_inherited_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    monkeypatch.setenv("SEGSTYLE_GPU_COUNT", "2")
    assert visible_devices() == ["2", "5"]
    monkeypatch.setenv("SEGSTYLE_GPU_COUNT", "0")
    assert visible_devices() == []


def test_devices_per_stage(monkeypatch):
    from segstyle.pipelines.flow import _devices_for

    pool = DevicePool(["0", "1", "2", "3"])
    train = StageInfo(name="train@voc", cmd="segstyle train --dataset voc --out artifacts/train/voc",
                      gpu_optional=True)
    engine = StageInfo(name="engine_build@voc", cmd="segstyle engine build ...", gpu=True)
    lint = StageInfo(name="lint@voc", cmd="segstyle export lint ...")
    assert [_devices_for(s, pool, None) for s in (train, engine, lint)] == [1, 1, 0]
    assert [_devices_for(s, pool, 2) for s in (train, engine, lint)] == [2, 1, 0]  # --nproc: DDP training only
    assert _devices_for(train, DevicePool([]), 2) == 0  # no GPU: nothing to hand out


@pytest.mark.slow
def test_independent_stages_run_concurrently(tmp_path, prefect_api, monkeypatch):
    """Three independent stages through the flow with jobs=3 and a faked 2-GPU pool."""
    from segstyle.pipelines import flow

    monkeypatch.setenv("SEGSTYLE_FORCE_NO_GPU", "1")  # the GPU-only engine stage is skipped...
    monkeypatch.setenv("SEGSTYLE_GPU_COUNT", "2")  # ...but the pool pretends to hold two devices
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    repo = make_repo(tmp_path / "repo")
    (repo / "step.py").write_text(TIMED + (repo / "step.py").read_text())
    dvc_yaml = repo / "dvc.yaml"
    doc = yaml.safe_load(dvc_yaml.read_text())
    doc["stages"]["prep"]["do"]["meta"] = {"gpu": "optional"}  # uses a GPU when there is one
    doc["stages"]["train_style"]["meta"] = {"gpu": "optional"}
    dvc_yaml.write_text(yaml.safe_dump(doc, sort_keys=False))

    t0 = time.monotonic()
    out = flow.with_jobs(3)(root=str(repo), targets=["prep@voc", "prep@pets", "train_style"], push=False, jobs=3)
    wall = time.monotonic() - t0
    assert sorted(runs(repo)) == ["prep@pets", "prep@voc", "train_style"]
    assert {s["status"] for s in out["stages"]} == {"ran"}

    timing = {n: (repo / f"timing_{n}.txt").read_text().split() for n in ("prep@voc", "prep@pets", "train_style")}
    span = {n: (float(t[0]), float(t[1])) for n, t in timing.items()}
    devs = {n: t[2] for n, t in timing.items()}
    overlap = lambda a, b: max(span[a][0], span[b][0]) < min(span[a][1], span[b][1])  # noqa: E731
    pairs = [(a, b) for a in span for b in span if a < b]
    assert any(overlap(a, b) for a, b in pairs), timing  # stages did run at the same time
    assert set(devs.values()) <= {"0", "1"}
    assert all(devs[a] != devs[b] for a, b in pairs if overlap(a, b)), timing  # disjoint devices
    # three GPU-capable stages, two devices: never three at once (the third waited for a free device)
    assert not all(overlap(a, b) for a, b in pairs), timing
    assert wall < 2 * 3 + 60  # not a strict speed target (that lives in benchmarks/pipeline_jobs.py)

    # dvc.lock: one whole entry per stage, each recording the md5 of the output on disk
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    for name, path in (("prep@voc", "out/prep_voc.txt"), ("prep@pets", "out/prep_pets.txt"),
                       ("train_style", "out/style.txt")):
        entry = lock["stages"][name]
        (rec,) = [o for o in entry["outs"] if o["path"] == path]
        assert rec["md5"] == hashlib.md5((repo / path).read_bytes()).hexdigest()
    import subprocess

    st = subprocess.run([str(BIN / "dvc"), "status", "prep@voc", "prep@pets", "train_style"], cwd=repo,
                        capture_output=True, text=True)
    assert "up to date" in st.stdout, st.stdout + st.stderr


def test_gpu_probe_does_not_import_torch_without_a_driver():
    """`segstyle run` asks whether GPU stages can run on every run: without an NVIDIA driver that must
    not cost a torch import (2-5 s on 2 cores; see benchmarks/pipeline_jobs.md)."""
    import subprocess
    import sys

    from segstyle.core.devices import nvidia_driver_absent

    if not nvidia_driver_absent():
        pytest.skip("an NVIDIA driver is loaded here: torch decides")
    code = ("import sys; from segstyle.pipelines.stages import cuda_available; "
            "from segstyle.pipelines.gpu_pool import DevicePool; "
            "print(cuda_available(), len(DevicePool()), 'torch' in sys.modules)")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("SEGSTYLE_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["False", "0", "False"]


def test_stage_threads_follow_the_machine_not_jobs(monkeypatch):
    """Every stage gets CPUs // default_jobs() OpenMP threads (never 0), the same for any --jobs
    (the thread count changes float results: --jobs must not change a hash); a user's setting is kept."""
    import inspect
    import os

    from segstyle.pipelines import flow

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sysconf", lambda name: {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 2**24}[name],
                        raising=False)  # 64 GiB: memory does not cap the default
    for cpus, threads in ((2, "1"), (4, "1"), (8, "2"), (16, "4"), (1, "1")):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cpus: set(range(n)), raising=False)
        assert flow.thread_env() == {"OMP_NUM_THREADS": threads}, cpus
    assert not inspect.signature(flow.thread_env).parameters  # nothing from --jobs can reach it
    assert "thread_env()" in inspect.getsource(flow._run_pipeline)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert flow.thread_env() == {}
