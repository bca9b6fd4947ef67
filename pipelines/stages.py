"""The stage graph as DVC sees it, and the two DVC operations the pipeline needs per stage.

``dvc.yaml`` is the only place the DAG is written. :func:`load_plan` asks DVC's Python API
(``Repo.index.graph``: nodes are stages, an edge points from a stage to a stage it depends on) for
the stages to run and orders them dependencies-first, keeping ``dvc.yaml`` order between
independent stages so runs are deterministic. The Prefect flow (``segstyle.pipelines.flow``) turns each
:class:`StageInfo` into a task; nothing here imports Prefect, so tests and ``segstyle run`` can
inspect the plan cheaply.

Per stage, :class:`StatusReader` reads DVC's status in-process (fast: no interpreter start) and
:func:`repro_stage` runs ``dvc --wait-for-lock repro --single-item <stage>`` in a subprocess, so the
stage command's output is captured to a log file and a crash in a stage cannot take the
orchestrator down.

Why several ``dvc repro`` processes may run at once (``segstyle run --jobs N``), and dvc.lock stays
intact. Read from DVC 3.x's source, not assumed:

- ``dvc repro`` holds the repository lock (``.dvc/tmp/lock``, ``zc.lockfile``: an ``fcntl`` lock the
  OS drops when the process dies) only for its bookkeeping: building the index, checking the
  stage, hashing outputs, saving the run cache and writing ``dvc.lock``. Around the stage's own
  command it *releases* it (``dvc/stage/run.py``: ``unlocked_repo(cmd_run)``) and takes it again
  afterwards, so all ``dvc.lock`` writes are serialised by that lock and each one re-reads the file
  and updates only its stage's entry (``Lockfile.dump``).
- While the command runs, the stage holds DVC's per-path ``rwlock`` entries: read on its deps,
  write on its outs. Two stages the flow starts together are independent (neither is upstream of
  the other), so their paths do not conflict.
- ``--wait-for-lock`` makes the re-acquisition wait instead of failing after DVC's 3 s default, so a
  stage that finished while its neighbour hashes a checkpoint does not fail; lock failures that still
  happen (the rwlock "is busy", another tool's DVC call) stay transient and the flow retries them.

The alternative (run the command ourselves, then ``dvc commit`` under a lock, checking deps did not
change) would reimplement what ``dvc repro`` already does correctly and lose DVC's run cache. In
this process, DVC calls go through :data:`DVC_LOCK` (one ``Repo`` object is not thread-safe), and
:meth:`StatusReader.changed` retries while a stage subprocess holds the repository lock.

A stage whose ``meta`` has ``gpu: true`` (engine build / validate / bench) needs CUDA; the flow skips
it where ``torch.cuda.is_available()`` is False (see :func:`cuda_available`). ``gpu: optional`` marks a
stage that uses a GPU when there is one (training); both take devices from
:class:`segstyle.pipelines.gpu_pool.DevicePool`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from segstyle.pipelines.config import PROFILES
from segstyle.core.io import write_text
from segstyle.core.errors import SegstyleError, UsageError, first_line

#: Serialises every DVC call made by this process (DVC holds a repo-wide lock while it works).
DVC_LOCK = threading.RLock()

#: Output of a failed ``dvc repro`` that means "try again later", not "the stage is broken".
TRANSIENT_PATTERNS = (
    re.compile(r"unable to acquire lock", re.I),
    re.compile(r"is busy, it is being blocked by", re.I),
    re.compile(r"database is locked", re.I),
    re.compile(r"resource temporarily unavailable", re.I),
    re.compile(r"connection (?:reset|refused|aborted)", re.I),
    re.compile(r"timed? ?out", re.I),
)

LOG_DIR = Path("artifacts") / "logs"
LOCK_PATH = Path(".dvc") / "tmp" / "segstyle-run.lock"
_HELD: dict[str, int] = {}


@dataclass(frozen=True)
class StageInfo:
    """One ``dvc.yaml`` stage (``foreach`` entries are separate stages, e.g. ``train@voc``)."""

    name: str
    cmd: str
    upstream: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    deps: tuple[str, ...] = ()
    outs: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    plots: tuple[str, ...] = ()
    gpu: bool = False  # needs CUDA (``meta: {gpu: true}``): skipped-no-GPU without it
    gpu_optional: bool = False  # uses a GPU when there is one (``meta: {gpu: optional}``)
    desc: str = ""

    @property
    def ddp(self) -> bool:
        """Whether ``--nproc`` applies: the train command reads ``SEGSTYLE_NPROC`` (torchrun relaunch)."""
        return self.cmd.startswith("segstyle train ")

    @property
    def uses_gpu(self) -> bool:
        return self.gpu or self.gpu_optional or self.ddp


@dataclass
class ReproResult:
    """What one ``dvc repro --single-item`` did."""

    name: str
    returncode: int
    seconds: float
    log: Path
    restored: bool = False  # DVC's run cache restored the outputs instead of running the command
    tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def transient(self) -> bool:
        text = "\n".join(self.tail)
        return self.returncode in (-9, 137) or any(p.search(text) for p in TRANSIENT_PATTERNS)

    def error_line(self) -> str:
        """The most useful single line of the failure: the stage's own one-line error if any."""
        for prefix in ("segstyle: error:", "ERROR:", "Error:"):
            for line in reversed(self.tail):
                if line.strip().startswith(prefix):
                    return line.strip()
        for line in reversed(self.tail):
            if line.strip():
                return line.strip()
        return f"exit code {self.returncode}"


class StageFailed(SegstyleError):
    """A stage command failed; the message names the stage and the log file."""

    def __init__(self, result: ReproResult):
        self.result = result
        super().__init__(f"stage '{result.name}' failed: {result.error_line()} (log: {result.log})")

    def __reduce__(self):  # picklable for Prefect's result handling
        return (StageFailed, (self.result,))


class TransientStageError(StageFailed):
    """A failure that is worth retrying (DVC lock contention, a killed process, a network hiccup)."""

    def __reduce__(self):
        return (TransientStageError, (self.result,))


def _open_repo(root: str | Path):
    from dvc.exceptions import DvcException, NotDvcRepoError
    from dvc.repo import Repo

    try:
        return Repo(str(root))
    except NotDvcRepoError:
        raise UsageError(f"{root}: not a DVC repository (run `dvc init`)") from None
    except DvcException as e:
        raise UsageError(f"{root}: {_one_line(e)}") from None


def _one_line(e: BaseException) -> str:
    text = first_line(e)
    cause = e.__cause__
    if cause is not None and str(cause).strip():
        text = f"{text}: {first_line(cause)}"
    return " ".join(text.split())


def load_plan(root: str | Path = ".", targets: list[str] | None = None) -> list[StageInfo]:
    """Stages of ``dvc.yaml`` in run order (dependencies first); ``targets`` and their upstream only.

    ``targets`` accepts what ``dvc repro`` accepts: a stage name, a ``foreach`` entry
    (``train@voc``) or a whole ``foreach`` group (``train``). Data-source stages (``data.dvc``) have
    no command and are not part of the plan. DVC's own errors (bad ``dvc.yaml``, a cycle, a missing
    interpolated parameter) become one :class:`UsageError` line.
    """
    import networkx as nx
    from dvc.dependency.param import ParamsDependency
    from dvc.exceptions import DvcException

    root = Path(root)
    with DVC_LOCK:
        repo = _open_repo(root)
        try:
            graph = repo.index.graph
            order = {s: i for i, s in enumerate(repo.index.stages)}
            if targets:
                chosen = []
                for t in targets:
                    try:
                        chosen.extend(repo.stage.collect(_target(root, t)))
                    except DvcException as e:
                        raise UsageError(f"unknown stage target '{t}': {_one_line(e)}") from None
                keep = set()
                for s in chosen:
                    keep |= set(nx.dfs_postorder_nodes(graph, s))
                graph = graph.subgraph(keep)
            # Edges point at dependencies: reverse them so a topological sort puts them first.
            ordered = list(nx.lexicographical_topological_sort(graph.reverse(copy=True), key=lambda s: order[s]))
            plan = []
            for s in ordered:
                if not s.cmd:
                    continue
                meta = s.meta or {}
                plan.append(
                    StageInfo(
                        name=_address(s, root),
                        cmd=s.cmd if isinstance(s.cmd, str) else " && ".join(s.cmd),
                        upstream=tuple(sorted(_address(u, root) for u in _cmd_upstream(graph, s))),
                        params=tuple(k for p in s.params for k in (p.params or [])),
                        deps=tuple(str(d.def_path) for d in s.deps if not isinstance(d, ParamsDependency)),
                        outs=tuple(str(o.def_path) for o in s.outs if not o.metric and not o.plot),
                        metrics=tuple(str(o.def_path) for o in s.outs if o.metric),
                        plots=tuple(str(o.def_path) for o in s.outs if o.plot),
                        gpu=meta.get("gpu") is True,
                        gpu_optional=meta.get("gpu") == "optional",
                        desc=s.desc or "",
                    )
                )
            return plan
        except DvcException as e:
            raise UsageError(f"dvc.yaml: {_one_line(e)}") from None
        finally:
            repo.close()


def _address(stage, root: Path) -> str:
    """``dvc repro`` target of ``stage`` relative to the repository root (not to the cwd)."""
    rel = os.path.relpath(stage.dvcfile.path, root)
    return stage.name if rel == "dvc.yaml" else f"{Path(rel).as_posix()}:{stage.name}"


def _target(root: Path, name: str) -> str:
    """Absolute form of a stage address, so in-process DVC calls do not depend on the cwd."""
    path, _, stage = name.rpartition(":")
    return f"{(root / (path or 'dvc.yaml')).resolve()}:{stage}"


def _cmd_upstream(graph, stage) -> set:
    """Nearest upstream stages that have a command (looking through data-source stages)."""
    found, todo = set(), list(graph.successors(stage))
    while todo:
        s = todo.pop()
        if s.cmd:
            found.add(s)
        else:
            todo.extend(graph.successors(s))
    return found


class StatusReader:
    """DVC's view of which stages are out of date, read in-process.

    One ``Repo`` object is reused while nothing changes on disk (a warm run asks about every stage
    in well under a second); :meth:`invalidate` drops it after a stage ran, because DVC caches the
    index and file hashes per ``Repo`` instance.
    """

    def __init__(self, root: str | Path = "."):
        self.root = Path(root)
        self._repo = None

    def invalidate(self) -> None:
        with DVC_LOCK:
            if self._repo is not None:
                self._repo.close()
                self._repo = None

    def changed(self, name: str, *, patience: float = 600.0) -> dict:
        """``{}`` if ``name`` is up to date, else DVC's status entry (what changed).

        Retries while a concurrent ``dvc repro`` holds the repository lock or a conflicting rwlock
        entry (its bookkeeping takes seconds; DVC's own in-process wait is 3 s), up to ``patience``.
        """
        from dvc.lock import LockError

        t0, delay = time.monotonic(), 0.2
        while True:
            with DVC_LOCK:
                try:
                    if self._repo is None:
                        self._repo = _open_repo(self.root)
                    st = self._repo.status(targets=[_target(self.root, name)], with_deps=False)
                    return {k: v for k, v in st.items() if v}
                except LockError as e:
                    self.invalidate()
                    if time.monotonic() - t0 > patience:
                        raise SegstyleError(f"DVC status of stage {name}: {_one_line(e)}") from None
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def close(self) -> None:
        self.invalidate()


def stage_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for stage commands: this interpreter's ``bin`` first so ``segstyle`` resolves
    to the same installation even when the virtualenv is not activated (``make run``)."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def dvc_command() -> list[str]:
    """``dvc`` of this interpreter's installation (falls back to ``python -m dvc``)."""
    exe = Path(sys.executable).parent / "dvc"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "dvc"]


def repro_stage(root: str | Path, name: str, *, force: bool = False, env: dict[str, str] | None = None,
                on_line=None) -> ReproResult:
    """Run ``dvc --wait-for-lock repro --single-item [--force] <name>``; output to ``artifacts/logs/<name>.log``.

    ``on_line`` (optional) receives each output line as it arrives (the flow forwards them to
    Prefect's logger). Never raises for a failing stage: the caller decides (retry or report).
    No in-process lock is held while it runs (see the module docstring: DVC serialises its own
    bookkeeping). The process starts its own session, so the stage's whole process group can be
    stopped (:func:`segstyle.pipelines.recovery.stop_stage_groups`) and is recorded with its start
    time for the recovery of a killed run.
    """
    from segstyle.pipelines.recovery import PREEXEC, forget_stage, record_stage

    root = Path(root)
    log = root / LOG_DIR / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [*dvc_command(), "--wait-for-lock", "repro", "--single-item", *(["--force"] if force else []), name]
    tail: list[str] = []
    restored = False
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(cmd, cwd=root, env=stage_env(env), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
                                start_new_session=True, preexec_fn=PREEXEC)
        try:
            record_stage(root, proc, name, cmd)
            assert proc.stdout is not None
            for line in proc.stdout:
                fh.write(line)
                fh.flush()  # `tail -f artifacts/logs/<stage>.log` follows a running stage
                line = line.rstrip("\n")
                # tqdm/rich redraws arrive as carriage-return chunks: keep the last frame only.
                line = line.rsplit("\r", 1)[-1]
                tail.append(line)
                if len(tail) > 60:
                    del tail[:-60]
                if "is cached - skipping run" in line:
                    restored = True
                if on_line is not None:
                    on_line(line)
            rc = proc.wait()
        finally:
            if proc.poll() is None:  # interrupted while the stage runs: stop its whole group
                from segstyle.pipelines.recovery import stop_stage_groups

                stop_stage_groups(root, grace=5.0, only=[proc.pid])
            forget_stage(root, proc)
    return ReproResult(name=name, returncode=rc, seconds=time.perf_counter() - t0, log=log,
                       restored=restored, tail=tail)


def default_remote(root: str | Path = ".") -> str | None:
    """The name of DVC's default remote (``core.remote``), or None when none is configured."""
    with DVC_LOCK:
        repo = _open_repo(root)
        try:
            return repo.config.get("core", {}).get("remote") or None
        finally:
            repo.close()


def dvc_push(root: str | Path = ".", targets: list[str] | None = None) -> subprocess.CompletedProcess:
    """``dvc push`` of the stages' outputs (to the default remote)."""
    with DVC_LOCK:
        return subprocess.run([*dvc_command(), "push", *(targets or [])], cwd=root, env=stage_env(),
                              capture_output=True, text=True)


def cuda_available() -> bool:
    """Whether GPU stages can run here. ``SEGSTYLE_FORCE_NO_GPU=1`` pretends there is no GPU."""
    from segstyle.core.devices import cuda_reason

    return cuda_reason() is None


_PROFILE_LINE = re.compile(r"^(profile:[ \t]*)([^\s#]+)", re.M)


def select_profile(params_path: str | Path, profile: str) -> bool:
    """Set the top-level ``profile:`` of ``params.yaml`` (what ``dvc exp run -S profile=...`` does).

    The stage commands read the profile from the file and ``dvc.yaml`` interpolates it
    (``train.${profile}``), so writing it there is what makes ``dvc.lock`` record the profile each
    artifact was built with. Only that one line is rewritten (comments kept). Returns True if the
    file changed.
    """
    if profile not in PROFILES:
        raise UsageError(f"unknown profile '{profile}'; choose one of: {', '.join(PROFILES)}")
    path = Path(params_path)
    text = path.read_text()
    m = _PROFILE_LINE.search(text)
    if m is None:
        raise UsageError(f"{path}: no top-level 'profile:' key")
    if m.group(2) == profile:
        return False
    write_text(path, text[: m.start(2)] + profile + text[m.end(2):])
    return True


@contextlib.contextmanager
def run_lock(root: str | Path, *, wait: bool, echo=print, recover: bool = True) -> Iterator[None]:
    """Hold the per-repository run lock (released by the OS if the process dies).

    Re-entrant within a process: ``segstyle run`` takes it before preparing data and the flow it
    starts takes it again (a served or API-triggered flow run takes it itself).

    On first acquisition (``recover``), before any DVC call of the run, the DVC stage locks a
    killed run left behind are cleared and live holders waited for (``wait``) or refused
    (:func:`segstyle.pipelines.recovery.recover_rwlock`): holding the run lock means no other
    ``segstyle run`` can be the owner of those entries.
    """
    key = str(Path(root).resolve())
    if _HELD.get(key):
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    path = Path(root) / LOCK_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")
    acquired = False
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            if not wait:
                raise SegstyleError(f"another `segstyle run` is in progress ({holder}); "
                                    "wait for it to finish or pass --wait") from None
            echo(f"segstyle: waiting for the running `segstyle run` ({holder}) to finish...")
            fcntl.flock(fh, fcntl.LOCK_EX)
        acquired = True
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        _HELD[key] = 1
        try:
            if recover:
                from segstyle.pipelines.recovery import reap_orphaned_stages, recover_rwlock

                reap_orphaned_stages(root, echo=echo)
                recover_rwlock(root, wait=wait, echo=echo)
            yield
        finally:
            _HELD.pop(key, None)
    finally:
        if acquired:
            with contextlib.suppress(OSError):
                fh.seek(0)
                fh.truncate()
        fh.close()  # closing releases the flock
