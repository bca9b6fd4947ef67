"""``segstyle run``: the main job — data, then every ``dvc.yaml`` stage through the Prefect flow.

Order of work, and why:

1. ``params.yaml`` (and ``--profile``) are validated first: a wrong type, an unknown key or an
   unknown profile is one line and a non-zero exit before any stage or server starts.
2. One run per repository at a time: an ``fcntl`` lock on ``.dvc/tmp/segstyle-run.lock``. A second
   ``segstyle run`` exits with a clear message (or waits with ``--wait``); DVC's own repository lock
   would otherwise fail it halfway with a less helpful error. Holding it, the DVC stage locks a
   killed run left behind are recovered (:mod:`segstyle.pipelines.recovery`) before any DVC call.
3. ``data/`` absent: ``dvc pull data.dvc`` when a remote has it, else ``segstyle data sample``
   (:mod:`segstyle.pipelines.data.ensure`; the embedded sample is byte-identical to ``data.dvc``).
4. The flow (:mod:`segstyle.pipelines.flow`) runs the stages, ``--jobs`` at a time, on Prefect's
   thread-pool task runner; the rich progress shows one line per running stage.
5. A summary table (stage, status, time) and the total time; ``artifacts/pipeline_report.md``
   holds the metrics report. A failed stage is named and the exit code is non-zero; its upstream
   outputs stay in place and the next ``segstyle run`` resumes at that stage.

SIGTERM stops the running stages' process groups and exits 143 with one line; DVC and Prefect
exceptions become one ``segstyle: error:`` line too (never a traceback).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import click

from segstyle.pipelines.config import load_params
from segstyle.core.errors import SegstyleError, UsageError, first_line, user_errors

class RichProgress:
    """Flow listener drawing one overall bar plus one line per *running* stage (several with
    ``--jobs``), and a line per finished stage above them."""

    STYLE = {"ran": "green", "restored": "green", "skipped": "dim", "skipped-no-GPU": "yellow",
             "failed": "bold red", "not-run": "red"}

    def __init__(self, console):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, \
            TimeElapsedColumn

        self.console = console
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True)
        self.task = self.progress.add_task("starting Prefect", total=None)
        self.running: dict[str, tuple[int, float]] = {}  # stage -> (progress task id, start time)

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def on_plan(self, plan, profile):
        self.progress.update(self.task, total=len(plan), description=f"profile {profile}")
        self.console.print(f"[bold]segstyle run[/] profile [cyan]{profile}[/]: {len(plan)} stages")

    def on_stage_start(self, info):
        tid = self.progress.add_task(f"  running {info.name}", total=None)
        self.running[info.name] = (tid, time.perf_counter())

    def on_stage_end(self, out):
        tid, t_start = self.running.pop(out.name, (None, time.perf_counter()))
        if tid is not None:
            self.progress.remove_task(tid)
        style = self.STYLE.get(out.status, "")
        secs = out.seconds or (time.perf_counter() - t_start)
        note = f"  {out.message}" if out.message else ""
        self.console.print(f"  [{style}]{out.status:<14}[/] {out.name:<28} {secs:7.1f} s{note}")
        self.progress.advance(self.task)

    def on_report(self, report):
        pass


def summary_table(report, total: float):
    from rich.table import Table

    table = Table(title=f"segstyle run — profile {report.profile}", show_footer=True)
    table.add_column("stage", footer="total")
    table.add_column("status")
    table.add_column("time (s)", justify="right", footer=f"{total:.1f}")
    for s in report.stages:
        style = RichProgress.STYLE.get(s.status, "")
        table.add_row(s.name, f"[{style}]{s.status}[/]", f"{s.seconds:.1f}")
    return table


def up_to_date_report(root: Path, plan, profile: str, t0: float):
    """A report with every stage skipped if DVC says nothing is out of date, else None.

    Why a fast path: when there is nothing to run, starting Prefect's temporary server (10-30 s on
    two cores) would be most of the run. DVC's status is the same check the flow's tasks make, so
    the answer is the same; scheduled runs (``segstyle serve``) always go through the flow.
    """
    from segstyle.core.io import write_json, write_text
    from segstyle.pipelines.report import REPORT_PATH, PipelineReport, StageOutcome, build_markdown
    from segstyle.pipelines.stages import StatusReader, cuda_available

    reader = StatusReader(root)
    try:
        pending = [s for s in plan if reader.changed(s.name)]
    finally:
        reader.close()
    if any(not s.gpu for s in pending) or (pending and cuda_available()):
        return None
    outcomes = [StageOutcome(name=s.name, status="skipped-no-GPU" if s in pending else "skipped",
                             message="needs CUDA" if s in pending else "up to date") for s in plan]
    report = PipelineReport(profile=profile, stages=outcomes, seconds=time.perf_counter() - t0)
    path = root / REPORT_PATH
    write_text(path, build_markdown(report, plan, root))
    report.report_path = str(path)
    write_json(path.with_suffix(".json"), report.model_dump())
    return report


def _check_nproc_supported() -> None:
    """``--nproc`` reaches the train stage as ``SEGSTYLE_NPROC``; refuse it if train cannot read it."""
    from segstyle.pipelines.train import cli as train_cli

    if not any(getattr(p, "envvar", None) == "SEGSTYLE_NPROC" for p in train_cli.params):
        raise UsageError("--nproc needs `segstyle train --nproc` (envvar SEGSTYLE_NPROC), which this version lacks; "
                         "run DDP by hand: torchrun --nproc-per-node N -m segstyle.pipelines.train --dataset voc")


class Terminated(SegstyleError):
    """``segstyle run`` received SIGTERM; its running stages were stopped (exit 143, as a shell reports)."""

    exit_code = 143


@contextlib.contextmanager
def _sigterm_stops_stages(root: Path, echo):
    """While the run is in progress, SIGTERM stops every running stage's process group, clears the
    DVC locks they held, and ends the command with one line (never a traceback).

    Prefect installs its own SIGTERM handler for the duration of a flow run; when it fires it
    re-raises the signal to the handler found here, so this one runs in either case. Only the main
    thread can install handlers (tests call :func:`execute` from it too; elsewhere it is a no-op).
    """
    from segstyle.pipelines.recovery import STOPPED, stop_stage_groups

    STOPPED.clear()

    def _handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the cleanup
        stop_stage_groups(root, grace=10.0)  # the flow may have stopped them already (Prefect's handler)
        stopped = sorted(set(STOPPED))
        raise Terminated("terminated by SIGTERM" + (f"; stopped stage(s) {', '.join(stopped)}" if stopped else "")
                         + "; the next `segstyle run` resumes where this one stopped")

    try:
        previous = signal.signal(signal.SIGTERM, _handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def execute(root: Path, *, profile: str | None, targets: list[str], force: bool, wait: bool, push: bool,
            nproc: int | None, jobs: int | None = None) -> "object":
    """The body of ``segstyle run`` (also used by tests); returns the flow's PipelineReport."""
    with user_errors(), _sigterm_stops_stages(root.resolve(), print):  # DVC / Prefect: one line, never a traceback
        return _execute(root, profile=profile, targets=targets, force=force, wait=wait, push=push, nproc=nproc,
                        jobs=jobs)


def _execute(root: Path, *, profile: str | None, targets: list[str], force: bool, wait: bool, push: bool,
             nproc: int | None, jobs: int | None) -> "object":
    from rich.console import Console

    t0 = time.perf_counter()
    root = root.resolve()
    if not (root / "dvc.yaml").is_file():
        raise UsageError(f"{root}: no dvc.yaml here (run segstyle from the repository root)")
    params = load_params(root / "params.yaml", profile)  # bad params: one line, before anything runs
    if nproc and nproc > 1:
        _check_nproc_supported()
    console = Console(stderr=False)
    from segstyle.pipelines.stages import run_lock

    # the run lock first, then (inside run_lock) the recovery of DVC locks a killed run left, then DVC
    with run_lock(root, wait=wait, echo=lambda m, err=True: console.print(m)):
        from segstyle.pipelines.data.ensure import ensure_data
        from segstyle.pipelines.stages import load_plan, select_profile

        plan = load_plan(root, targets or None)  # unknown targets / broken dvc.yaml: one line, before any stage
        if profile is not None and select_profile(root / "params.yaml", profile):
            console.print(f"params.yaml: profile set to [cyan]{profile}[/] (as `dvc exp run -S profile={profile}`)")
            plan = load_plan(root, targets or None)  # dvc.yaml interpolates ${profile}
        state = ensure_data(root, params.data.root, echo=console.print)
        if state != "present":
            console.print(f"data: {state}")
        if not force:
            report = up_to_date_report(root, plan, params.profile, t0)
            if report is not None:
                console.print(f"all {len(plan)} stages are up to date (DVC status): nothing to run")
                console.print(summary_table(report, time.perf_counter() - t0))
                console.print(f"report: {report.report_path}")
                return report
        # Prefect's own console chatter would fight the progress bar and repeat, as log records, what the
        # progress lines and the summary say once; its logs still reach the API/UI and artifacts/logs/.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        from segstyle.pipelines import flow as pflow

        jobs = jobs or pflow.default_jobs()
        reports = []

        class _Keep:
            def on_plan(self, *a): ...
            def on_stage_start(self, *a): ...
            def on_stage_end(self, *a): ...
            def on_report(self, report): reports.append(report)

        with RichProgress(console) as bar:
            pflow.LISTENERS[:] = [bar, _Keep()]
            try:
                state = pflow.with_jobs(jobs)(root=str(root), profile=profile, targets=list(targets), force=force,
                                              push=push, nproc=nproc, jobs=jobs, return_state=True)
            finally:
                pflow.LISTENERS[:] = []
    if not reports:  # the flow failed before producing a report (e.g. DVC itself broke)
        exc = state.result(raise_on_failure=False)
        if isinstance(exc, SegstyleError):
            raise exc
        detail = first_line(exc) if isinstance(exc, BaseException) else (state.message or str(exc))
        raise SegstyleError(f"pipeline flow {state.name.lower()}: {detail}")
    report = reports[0]
    total = time.perf_counter() - t0
    console.print(summary_table(report, total))
    if report.push:
        console.print(f"dvc: {report.push}")
    console.print(f"report: {report.report_path}")
    if report.failed:
        first = report.failed[0]
        raise SegstyleError(f"stage '{first.name}' failed: {first.message} (log: {first.log}); "
                            "fix it and rerun `segstyle run` to resume from there")
    return report


@click.command("run")
@click.option("--profile", default=None, help="demo|full: set params.yaml's profile (as `dvc exp run -S profile=...`).")
@click.option("--targets", "-t", multiple=True, help="Stage(s) to bring up to date with their upstream (default: all).")
@click.option("--force", is_flag=True, help="Rerun the selected stages even if DVC reports them up to date.")
@click.option("--wait/--no-wait", default=False, show_default=True,
              help="If another `segstyle run` holds the repository, wait for it instead of exiting.")
@click.option("--push/--no-push", default=True, show_default=True, help="`dvc push` outputs when a remote is set.")
@click.option("--nproc", type=click.IntRange(min=1), default=None,
              help="Processes per node for DDP training (torchrun); passed to the train stage as SEGSTYLE_NPROC, "
                   "which takes that many GPUs from the pool.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Stages to run at once (independent branches overlap). Default: CPU count, at most 4, "
                   "at most one per 3 GiB of memory.")
@click.option("--root", type=click.Path(file_okay=False, exists=True), default=".", show_default=True,
              help="Repository root (holds dvc.yaml and params.yaml).")
def cli(profile, targets, force, wait, push, nproc, jobs, root):
    """Run the whole pipeline: data, train, evaluate, style, export, lint, bundle, validate (GPU stages on a GPU)."""
    execute(Path(root), profile=profile, targets=list(targets), force=force, wait=wait, push=push, nproc=nproc,
            jobs=jobs)
