"""The Prefect flow that runs ``dvc.yaml`` (the stage graph is never written twice).

``segstyle_pipeline`` asks DVC for the stage graph (:func:`segstyle.pipelines.stages.load_plan`), then runs
each stage as a Prefect task as soon as its upstream stages are done. Why this split of
responsibilities:

- DVC decides *whether* a stage must run (hashes of deps, params, outs; ``dvc.lock``) and runs it
  (``dvc repro --single-item``), so ``dvc repro`` by hand and a scheduled Prefect run give the same
  artifacts and the same lock file. A stage DVC reports up to date becomes a task in the
  ``Skipped`` state: it is not rerun.
- Prefect adds what DVC lacks: schedules (``segstyle serve``), concurrency through its task runners,
  retries with backoff for transient failures (lock contention, a killed process), per-stage logs and
  timing in the UI, and a markdown report artifact.

Concurrency (``jobs``): the flow submits every stage whose upstream stages finished to the flow's
task runner, at most ``jobs`` at a time; the graph's independent branches (voc, pets, style; the
export chain of each network) then overlap. Locally the task runner is Prefect's
``ThreadPoolTaskRunner(max_workers=jobs)``: each task thread waits on a ``dvc repro`` subprocess, so
threads are enough (the work happens in the subprocesses). On a cluster, the maintained
integrations plug in the same way, with a checkout of the repository at the same path on every
worker (DVC state lives in the repository)::

    from prefect_dask import DaskTaskRunner      # pip install prefect-dask   (or prefect_ray.RayTaskRunner)
    segstyle_pipeline.with_options(task_runner=DaskTaskRunner(address="tcp://scheduler:8786"))(jobs=8)

Tasks look their status reader and GPU pool up per process (:func:`_runtime`), so a remote worker
uses its own GPUs. Why DVC allows overlapping ``dvc repro`` processes without corrupting ``dvc.lock``
is explained in :mod:`segstyle.pipelines.stages`. A failing stage does not stop independent branches;
everything downstream of it is reported ``not-run``, and the next run resumes at the failed stage
because DVC skips whatever finished.

Stopping: a SIGTERM (``segstyle run`` killed politely; Prefect's runner cancelling a served run sends
one) reaches the flow as an exception in the scheduling loop, which stops the process groups of the
running stages before it propagates; the ``on_cancellation``/``on_crashed`` hooks do the same from
the runner's side for the groups recorded on disk, and clear the DVC locks they left
(:mod:`segstyle.pipelines.recovery`).
"""

# No `from __future__ import annotations`: Prefect builds the parameter schema from real annotations
# (a deployment run loads this module by path and could not resolve postponed ones).
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Literal, Protocol

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff
from pydantic import BaseModel, ConfigDict, Field

from segstyle.pipelines.config import load_params
from segstyle.core.errors import SegstyleError, first_line
from segstyle.pipelines.gpu_pool import DevicePool
from segstyle.core.io import write_json, write_text
from segstyle.pipelines.report import REPORT_PATH, PipelineReport, StageOutcome, build_markdown
from segstyle.pipelines.stages import (
    StageFailed,
    StageInfo,
    StatusReader,
    TransientStageError,
    cuda_available,
    default_remote,
    dvc_push,
    load_plan,
    repro_stage,
    run_lock,
    select_profile,
)

FLOW_NAME = "segstyle-pipeline"


class PipelineOptions(BaseModel):
    """Flow parameters, validated before anything runs (also for runs triggered from the UI/API)."""

    model_config = ConfigDict(extra="forbid")

    root: str = "."
    profile: Literal["demo", "full"] | None = None
    targets: list[str] = Field(default_factory=list)
    force: bool = False
    push: bool = True
    nproc: int | None = Field(default=None, ge=1, description="processes per node for DDP training (torchrun)")
    jobs: int | None = Field(default=None, ge=1, description="stages at a time (default: default_jobs())")


def thread_env() -> dict[str, str]:
    """``OMP_NUM_THREADS`` for every stage: the CPUs shared out between :func:`default_jobs` stages,
    whatever ``--jobs`` is.

    Why: torch (and OpenMP/BLAS) start one thread per CPU in every process; two training stages on
    two cores then run four spinning threads and were measured 5x slower than one after the other.
    Why not ``CPUs // --jobs``: the intra-op thread count changes the order of float sums (the U-Net's
    gradients differ bitwise at 1 and 2 threads), so ``--jobs 1`` and ``--jobs 2`` trained different
    checkpoints (benchmarks/pipeline_jobs.md). Fixed per machine, ``--jobs`` only schedules and never
    changes a hash. A value the user exported is kept (it changes the hashes, as it should).
    """
    if "OMP_NUM_THREADS" in os.environ:
        return {}
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return {"OMP_NUM_THREADS": str(max(1, cpus // default_jobs()))}


def default_jobs() -> int:
    """How many stages to run at once when ``--jobs`` is not given: the CPU count, at most 4, and at
    most one per 3 GiB of memory (a demo training stage peaks near 2 GiB; more at once swaps)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        mem_gib = 12.0
    return max(1, min(cpus, 4, int(mem_gib // 3)))


class PipelineFailed(SegstyleError):
    """Raised at the end of a run where a stage failed; names the stage(s)."""

    def __init__(self, report: PipelineReport):
        self.report = report
        names = ", ".join(s.name for s in report.failed)
        first = report.failed[0]
        super().__init__(f"stage {names} failed: {first.message}")

    def __reduce__(self):
        return (PipelineFailed, (self.report,))


class Listener(Protocol):
    """Progress hooks (``segstyle run`` draws its rich progress from these)."""

    def on_plan(self, plan: list[StageInfo], profile: str) -> None: ...
    def on_stage_start(self, info: StageInfo) -> None: ...
    def on_stage_end(self, outcome: StageOutcome) -> None: ...
    def on_report(self, report: PipelineReport) -> None: ...


#: In-process listeners; the flow's parameters stay plain data so deployments can run it too.
LISTENERS: list[Listener] = []


def _emit(event: str, *args: Any) -> None:
    for listener in list(LISTENERS):
        getattr(listener, event)(*args)


def prepare(opts: PipelineOptions):
    """Validate params.yaml (and the requested profile) before any stage; select the profile;
    make sure ``data/`` is there (a scheduled run on a fresh clone pulls or samples it)."""
    from segstyle.pipelines.data.ensure import ensure_data

    params_path = Path(opts.root) / "params.yaml"
    params = load_params(params_path, opts.profile)  # one UsageError line on a bad file/profile
    if opts.profile is not None:
        select_profile(params_path, opts.profile)
    ensure_data(Path(opts.root), params.data.root, echo=get_run_logger().info)
    return params


def _is_transient(task, task_run, state) -> bool:
    """Retry only failures that another attempt can fix (see ``TRANSIENT_PATTERNS``)."""
    exc = state.data
    if not isinstance(exc, BaseException):
        try:
            exc = state.result(raise_on_failure=False)
        except Exception:  # pragma: no cover - defensive
            return False
    return isinstance(exc, TransientStageError)


_RUNTIMES: dict[str, tuple[StatusReader, DevicePool]] = {}
_RUNTIMES_LOCK = threading.Lock()


def _runtime(root: str) -> tuple[StatusReader, DevicePool]:
    """This process's status reader and GPU pool for ``root`` (created on first use, so a task that
    runs in another process, e.g. on a Dask worker, uses that machine's own)."""
    key = str(Path(root).resolve())
    with _RUNTIMES_LOCK:
        if key not in _RUNTIMES:
            _RUNTIMES[key] = (StatusReader(root), DevicePool())
        return _RUNTIMES[key]


def _drop_runtime(root: str) -> None:
    with _RUNTIMES_LOCK:
        rt = _RUNTIMES.pop(str(Path(root).resolve()), None)
    if rt is not None:
        rt[0].close()


@task(name="dvc-stage", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=5),
      retry_condition_fn=_is_transient)
def run_stage(info: StageInfo, root: str, force: bool, env: dict[str, str], devices: int = 0):
    """Run one dvc.yaml stage unless DVC reports it up to date (then the task is ``Skipped``).

    ``devices`` GPUs are taken from the pool for the stage's lifetime and passed as
    ``CUDA_VISIBLE_DEVICES`` (0: the stage does not use a GPU here).
    """
    logger = get_run_logger()
    reader, pool = _runtime(root)
    if not force:
        changed = reader.changed(info.name)
        if not changed:
            logger.info("%s: up to date, skipped", info.name)
            return Completed(name="Skipped", message="up to date", data={"status": "skipped", "seconds": 0.0})
        logger.info("%s: out of date: %s", info.name, changed)
    with pool.take(devices) as ids:
        stage_env = dict(env)
        if devices:
            stage_env["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
            logger.info("%s: CUDA_VISIBLE_DEVICES=%s", info.name, stage_env["CUDA_VISIBLE_DEVICES"])
        logger.info("$ dvc repro --single-item %s%s", "--force " if force else "", info.name)
        res = repro_stage(root, info.name, force=force, env=stage_env, on_line=lambda line: logger.info("%s", line))
    reader.invalidate()
    if not res.ok:
        logger.error("%s failed (exit %s): %s", info.name, res.returncode, res.error_line())
        raise (TransientStageError if res.transient else StageFailed)(res)
    return {"status": "restored" if res.restored else "ran", "seconds": res.seconds, "log": str(res.log),
            "devices": ",".join(ids)}


@task(name="gpu-stage-skipped", cache_policy=NO_CACHE)
def skip_gpu_stage(info: StageInfo):
    get_run_logger().info("%s needs CUDA; torch.cuda.is_available() is False here: skipped-no-GPU", info.name)
    return Completed(name="Skipped", message="skipped-no-GPU", data={"status": "skipped-no-GPU", "seconds": 0.0})


@task(name="dvc-push", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=5))
def push_outputs(root: str) -> str:
    remote = default_remote(root)
    if not remote:
        return "no remote configured"
    proc = dvc_push(root)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        raise SegstyleError(f"dvc push to '{remote}' failed: {lines[-1] if lines else proc.returncode}")
    out = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    return f"pushed to '{remote}': {out[-1] if out else 'ok'}"


def _stop_after_cancel(flow, flow_run, state) -> None:
    """``on_cancellation``/``on_crashed`` hook: stop the recorded stage process groups of this
    repository that are still alive (the runner may have killed only the flow-run process) and
    clear the DVC locks they held, so the next run starts clean."""
    from segstyle.pipelines.recovery import stop_stage_groups

    root = (flow_run.parameters or {}).get("root", ".")
    stop_stage_groups(root, grace=5.0, include_recorded=True)


@flow(name=FLOW_NAME, validate_parameters=True, log_prints=True,
      task_runner=ThreadPoolTaskRunner(max_workers=default_jobs()),
      on_cancellation=[_stop_after_cancel], on_crashed=[_stop_after_cancel])
def segstyle_pipeline(
    root: str = ".",
    profile: Literal["demo", "full"] | None = None,
    targets: list[str] | None = None,
    force: bool = False,
    push: bool = True,
    nproc: int | None = None,
    jobs: int | None = None,
) -> dict:
    """Run every ``dvc.yaml`` stage (or ``targets`` and their upstream), each once its upstream is done,
    at most ``jobs`` at a time."""
    t0 = time.perf_counter()
    opts = PipelineOptions(root=root, profile=profile, targets=targets or [], force=force, push=push, nproc=nproc,
                           jobs=jobs)
    logger = get_run_logger()
    with run_lock(opts.root, wait=True, echo=logger.warning):
        return _run_pipeline(opts, t0, logger)


def with_jobs(jobs: int | None):
    """The flow with a thread-pool task runner of ``jobs`` workers (what ``segstyle run --jobs`` calls)."""
    return segstyle_pipeline.with_options(task_runner=ThreadPoolTaskRunner(max_workers=jobs or default_jobs()))


def _devices_for(info: StageInfo, pool: DevicePool, nproc: int | None) -> int:
    """GPUs a stage takes from the pool: none without GPUs or for a CPU stage, ``nproc`` for DDP training."""
    if not len(pool) or not info.uses_gpu:
        return 0
    return nproc if (info.ddp and nproc) else 1


def _run_pipeline(opts: PipelineOptions, t0: float, logger) -> dict:
    from segstyle.pipelines.recovery import stop_stage_groups

    active = prepare(opts).profile
    plan = load_plan(opts.root, opts.targets or None)
    jobs = opts.jobs or default_jobs()
    logger.info("profile %s; %d stages, %d at a time: %s", active, len(plan), jobs, ", ".join(s.name for s in plan))
    _emit("on_plan", plan, active)

    env = {"SEGSTYLE_NPROC": str(opts.nproc)} if opts.nproc else {}
    env.update(thread_env())
    gpu = cuda_available()
    _, pool = _runtime(opts.root)
    if opts.nproc and len(pool) and any(s.ddp for s in plan):
        pool.check(opts.nproc, "--nproc")
    names = {s.name for s in plan}
    outcomes: dict[str, StageOutcome] = {}
    pending = list(plan)
    running: dict[str, tuple[StageInfo, Any]] = {}
    finished: "queue.Queue[str]" = queue.Queue()

    def _record(info: StageInfo, out: StageOutcome) -> None:
        outcomes[info.name] = out
        _emit("on_stage_end", out)

    try:
        while pending or running:
            for info in list(pending):
                if len(running) >= jobs:
                    break
                if any(u in names and u not in outcomes for u in info.upstream):
                    continue  # an upstream stage is still pending or running
                pending.remove(info)
                _emit("on_stage_start", info)
                blocked = [u for u in info.upstream if outcomes.get(u) and outcomes[u].status in ("failed", "not-run")]
                if blocked:
                    _record(info, StageOutcome(name=info.name, status="not-run",
                                               message=f"upstream {', '.join(blocked)} failed"))
                elif info.gpu and not gpu:
                    skip_gpu_stage.with_options(task_run_name=info.name)(info)
                    _record(info, StageOutcome(name=info.name, status="skipped-no-GPU", message="needs CUDA"))
                else:
                    fut = run_stage.with_options(task_run_name=info.name).submit(
                        info, opts.root, opts.force, env, _devices_for(info, pool, opts.nproc))
                    running[info.name] = (info, fut)
                    fut.add_done_callback(lambda f, n=info.name: finished.put(n))
            if not running:
                if pending:  # cannot happen with a DAG from load_plan; never spin
                    raise SegstyleError(f"no runnable stage among {', '.join(s.name for s in pending)}")
                break
            try:  # a timeout keeps the main thread responsive to signals while it waits
                done = finished.get(timeout=0.5)
            except queue.Empty:
                continue
            info, fut = running.pop(done)
            fut.wait()  # done already; this stores the final state on the future (no API round trip)
            _record(info, _outcome(info, fut.state))
    except BaseException:
        # SIGTERM (Prefect raises it here as TerminationSignal), Ctrl-C, a bug: never leave stages running
        stopped = stop_stage_groups(opts.root, grace=10.0)
        if stopped:
            logger.warning("stopped running stage(s): %s", ", ".join(stopped))
        raise
    finally:
        _drop_runtime(opts.root)

    push_msg = ""
    ok = not any(o.status == "failed" for o in outcomes.values())
    if opts.push and ok and any(o.status in ("ran", "restored") for o in outcomes.values()):
        state = push_outputs(opts.root, return_state=True)
        push_msg = str(state.result(raise_on_failure=False)) if state.is_completed() else \
            f"push failed: {state.message or state.result(raise_on_failure=False)}"

    report = PipelineReport(profile=active, stages=[outcomes[s.name] for s in plan if s.name in outcomes],
                            seconds=time.perf_counter() - t0,
                            push=push_msg)
    md = build_markdown(report, plan, Path(opts.root))
    report_file = Path(opts.root) / REPORT_PATH
    write_text(report_file, md)
    report.report_path = str(report_file)
    write_json(report_file.with_suffix(".json"), report.model_dump())
    create_markdown_artifact(md, key="segstyle-pipeline-report", description=f"segstyle pipeline ({active})")
    _emit("on_report", report)
    if report.failed:
        raise PipelineFailed(report)
    return report.model_dump()


def _outcome(info: StageInfo, state) -> StageOutcome:
    if state.is_completed():
        data = state.result(raise_on_failure=False) or {}
        if not isinstance(data, dict):
            data = {}
        return StageOutcome(name=info.name, status=data.get("status", "ran"), seconds=float(data.get("seconds", 0.0)),
                            log=str(data.get("log", "")))
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, StageFailed):
        r = exc.result
        return StageOutcome(name=info.name, status="failed", seconds=r.seconds, message=r.error_line(), log=str(r.log))
    msg = first_line(exc) if isinstance(exc, BaseException) else (state.message or "failed")
    return StageOutcome(name=info.name, status="failed", message=msg)
