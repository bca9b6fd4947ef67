"""The Prefect flow that runs ``dvc.yaml`` (the stage graph is never written twice).

``segstyle_pipeline`` asks DVC for the stage graph (:func:`segstyle.pipelines.stages.load_plan`), then runs
each stage as a Prefect task in dependency order. Why this split of responsibilities:

- DVC decides *whether* a stage must run (hashes of deps, params, outs; ``dvc.lock``) and runs it
  (``dvc repro --single-item``), so ``dvc repro`` by hand and a scheduled Prefect run give the same
  artifacts and the same lock file. A stage DVC reports up to date becomes a task in the
  ``Skipped`` state: it is not rerun.
- Prefect adds what DVC lacks: schedules (``segstyle serve``), retries with backoff for transient
  failures (lock contention, a killed process), per-stage logs and timing in the UI, and a markdown
  report artifact.

DVC calls are serialised (DVC cannot run two reproductions in one repository at once), so tasks
run one after another; a failing stage does not stop independent branches, and everything
downstream of it is reported ``not-run``. The next run resumes at the failed stage because DVC
skips whatever finished.
"""

# No `from __future__ import annotations`: Prefect builds the parameter schema from real annotations
# (a deployment run loads this module by path and could not resolve postponed ones).
import time
from pathlib import Path
from typing import Any, Literal, Protocol

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed
from prefect.tasks import exponential_backoff
from pydantic import BaseModel, ConfigDict, Field

from segstyle.pipelines.config import load_params
from segstyle.pipelines.errors import SegstyleError
from segstyle.pipelines.io import write_json, write_text
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
    from segstyle.pipelines.run import ensure_data

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


@task(name="dvc-stage", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=5),
      retry_condition_fn=_is_transient)
def run_stage(info: StageInfo, root: str, force: bool, env: dict[str, str], reader: StatusReader):
    """Run one dvc.yaml stage unless DVC reports it up to date (then the task is ``Skipped``)."""
    logger = get_run_logger()
    if not force:
        changed = reader.changed(info.name)
        if not changed:
            logger.info("%s: up to date, skipped", info.name)
            return Completed(name="Skipped", message="up to date", data={"status": "skipped", "seconds": 0.0})
        logger.info("%s: out of date: %s", info.name, changed)
    logger.info("$ dvc repro --single-item %s%s", "--force " if force else "", info.name)
    res = repro_stage(root, info.name, force=force, env=env, on_line=lambda line: logger.info("%s", line))
    reader.invalidate()
    if not res.ok:
        logger.error("%s failed (exit %s): %s", info.name, res.returncode, res.error_line())
        raise (TransientStageError if res.transient else StageFailed)(res)
    return {"status": "restored" if res.restored else "ran", "seconds": res.seconds, "log": str(res.log)}


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


@flow(name=FLOW_NAME, validate_parameters=True, log_prints=True)
def segstyle_pipeline(
    root: str = ".",
    profile: Literal["demo", "full"] | None = None,
    targets: list[str] | None = None,
    force: bool = False,
    push: bool = True,
    nproc: int | None = None,
) -> dict:
    """Run every ``dvc.yaml`` stage (or ``targets`` and their upstream) in dependency order."""
    t0 = time.perf_counter()
    opts = PipelineOptions(root=root, profile=profile, targets=targets or [], force=force, push=push, nproc=nproc)
    logger = get_run_logger()
    with run_lock(opts.root, wait=True, echo=logger.warning):
        return _run_pipeline(opts, t0, logger)


def _run_pipeline(opts: PipelineOptions, t0: float, logger) -> dict:
    active = prepare(opts).profile
    plan = load_plan(opts.root, opts.targets or None)
    logger.info("profile %s; %d stages: %s", active, len(plan), ", ".join(s.name for s in plan))
    _emit("on_plan", plan, active)

    env = {"SEGSTYLE_NPROC": str(opts.nproc)} if opts.nproc else {}
    gpu = cuda_available()
    reader = StatusReader(opts.root)
    outcomes: dict[str, StageOutcome] = {}
    try:
        for info in plan:
            _emit("on_stage_start", info)
            blocked = [u for u in info.upstream if outcomes.get(u) and outcomes[u].status in ("failed", "not-run")]
            if blocked:
                out = StageOutcome(name=info.name, status="not-run", message=f"upstream {', '.join(blocked)} failed")
            elif info.gpu and not gpu:
                skip_gpu_stage.with_options(task_run_name=info.name)(info)
                out = StageOutcome(name=info.name, status="skipped-no-GPU", message="needs CUDA")
            else:
                state = run_stage.with_options(task_run_name=info.name)(info, opts.root, opts.force, env, reader,
                                                                         return_state=True)
                out = _outcome(info, state)
            outcomes[info.name] = out
            _emit("on_stage_end", out)
    finally:
        reader.close()

    push_msg = ""
    ok = not any(o.status == "failed" for o in outcomes.values())
    if opts.push and ok and any(o.status in ("ran", "restored") for o in outcomes.values()):
        state = push_outputs(opts.root, return_state=True)
        push_msg = str(state.result(raise_on_failure=False)) if state.is_completed() else \
            f"push failed: {state.message or state.result(raise_on_failure=False)}"

    report = PipelineReport(profile=active, stages=list(outcomes.values()), seconds=time.perf_counter() - t0,
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
    return StageOutcome(name=info.name, status="failed", message=str(exc) or state.message or "failed")
