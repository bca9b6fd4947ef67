"""Recover from a killed run: stale DVC stage locks, and the process groups of running stages.

Why this exists. ``dvc repro`` records every path a stage reads or writes in ``.dvc/tmp/rwlock``
(``{"read": {path: [{"pid", "cmd"}]}, "write": {path: {"pid", "cmd"}}}``, see ``dvc/rwlock.py``)
and removes its entries when it finishes. A ``dvc repro`` killed by SIGKILL (a dying worker, the
OOM killer, ``kill -9`` on ``segstyle run``'s process group) leaves them behind. DVC itself clears an
entry only when ``psutil.pid_exists(pid)`` is False, which misses two cases that are common in
containers: the killed process is still a *zombie* (PID 1 is not an init that reaps orphans), or
the PID already belongs to *another process*. The next run then dies with DVC's "is busy ... you can
manually remove .dvc/tmp/rwlock".

:func:`recover_rwlock` runs under segstyle's run lock (so no other ``segstyle run`` is working in the
repository) before any DVC call, and classifies each holder:

- gone, zombie (``/proc/PID/stat`` state ``Z``), or a different process now: the process's start
  time is later than the one segstyle recorded when it launched that PID (:data:`STAGES_FILE`),
  later than the rwlock file's last write, or its command line is not the one DVC recorded. The
  entry is removed (through DVC's own guarded editor, ``dvc.rwlock._edit_rwlock``) and one line names
  the stage whose lock was recovered.
- alive and the same process (e.g. someone's ``dvc repro`` by hand): wait for it (``--wait``) or a
  one-line error naming the PID and the stage.

The stage processes segstyle starts are session leaders (``start_new_session=True``), recorded in
:data:`STAGES_FILE` with their start time, so SIGTERM to ``segstyle run`` and a cancelled Prefect
flow run can stop a stage's *whole* process group (``dvc`` -> shell -> ``segstyle train`` ->
``torchrun`` workers) and then clear whatever locks the group left (:func:`stop_stage_groups`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from segstyle.core.errors import SegstyleError

RWLOCK = Path(".dvc") / "tmp" / "rwlock"
#: Stage processes started by segstyle in this repository: pid -> {stage, pgid, create_time, cmd}.
STAGES_FILE = Path(".dvc") / "tmp" / "segstyle-stages.json"
_FILE_LOCK = threading.Lock()
#: Live stage processes of *this* process (Popen objects), for SIGTERM / cancellation.
ACTIVE: dict[int, tuple[str, object]] = {}
_ACTIVE_LOCK = threading.Lock()
#: Stages this process stopped (SIGTERM, cancellation), for the one-line message of the command.
STOPPED: list[str] = []


@dataclass(frozen=True)
class Holder:
    """One process named in ``.dvc/tmp/rwlock``, and what became of it."""

    pid: int
    cmd: str
    stage: str
    state: str  # "gone" | "zombie" | "reused" | "alive"
    why: str = ""

    @property
    def stale(self) -> bool:
        return self.state != "alive"


def _proc_start_ticks(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) from ``/proc/PID/stat``, None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'
    rest = raw[raw.rindex(")") + 2:].split()
    return rest[0], int(rest[19])


def _boot_time() -> float:
    import psutil

    return psutil.boot_time()


def _create_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        info = _proc_start_ticks(pid)
        if info is None:
            return None
        return _boot_time() + info[1] / os.sysconf("SC_CLK_TCK")


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _same_command(recorded: str, live: list[str]) -> bool:
    """Whether ``live`` (argv of a running process) is the command DVC recorded (``" ".join(sys.argv)``).

    DVC records ``sys.argv``, which lacks the interpreter of a console script (``/venv/bin/dvc repro``
    runs as ``python /venv/bin/dvc repro``) and reads ``.../dvc/__main__.py`` for ``python -m dvc``.
    """
    if not live:
        return False
    joined = " ".join(live)
    if joined == recorded or joined.endswith(" " + recorded):
        return True
    head, _, tail = recorded.partition(" ")
    return bool(tail) and "dvc" in head and joined.endswith(" " + tail) and "dvc" in joined


def read_stage_records(root: Path) -> dict[int, dict]:
    path = Path(root) / STAGES_FILE
    try:
        return {int(k): v for k, v in json.loads(path.read_text()).items()}
    except (FileNotFoundError, ValueError, AttributeError):
        return {}


def _write_stage_records(root: Path, records: dict[int, dict]) -> None:
    from segstyle.core.io import write_json

    write_json(Path(root) / STAGES_FILE, {str(k): v for k, v in records.items()})


def record_stage(root: Path, proc, stage: str, cmd: list[str]) -> None:
    """Remember a stage process segstyle started (pid, process group, start time)."""
    with _ACTIVE_LOCK:
        ACTIVE[proc.pid] = (stage, proc)
    with _FILE_LOCK:
        records = read_stage_records(root)
        records[proc.pid] = {"stage": stage, "pgid": proc.pid, "create_time": _create_time(proc.pid),
                             "cmd": " ".join(cmd)}
        _write_stage_records(root, records)


def forget_stage(root: Path, proc) -> None:
    with _ACTIVE_LOCK:
        ACTIVE.pop(proc.pid, None)
    with _FILE_LOCK:
        records = read_stage_records(root)
        if records.pop(proc.pid, None) is not None:
            _write_stage_records(root, records)


def classify(pid: int, cmd: str, *, recorded: dict[int, dict], written_at: float | None) -> tuple[str, str]:
    """``(state, why)`` of the process that DVC says holds a lock (see the module docstring)."""
    info = _proc_start_ticks(pid)
    if info is None:
        return "gone", "process no longer exists"
    if info[0] in ("Z", "X"):
        return "zombie", "process is a zombie (killed, not yet reaped)"
    started = _create_time(pid)
    rec = recorded.get(pid)
    if rec and rec.get("create_time") and started and abs(started - float(rec["create_time"])) > 1.0:
        return "reused", f"PID {pid} now belongs to a process started later than the stage segstyle launched"
    if started is not None and written_at is not None and started > written_at + 1.0:
        return "reused", f"PID {pid} now belongs to a process started after the lock entry was written"
    live = _cmdline(pid)
    if live is not None and not _same_command(cmd, live):
        return "reused", f"PID {pid} now runs `{' '.join(live)[:80]}`, not `{cmd[:80]}`"
    return "alive", ""


def _stage_of(cmd: str, path: str, stage_of_path: Callable[[str], str | None] | None) -> str:
    name = stage_of_path(path) if stage_of_path else None
    if name:
        return name
    words = cmd.split()
    if "repro" in words:
        args = [w for w in words[words.index("repro") + 1:] if not w.startswith("-")]
        if args:
            return args[-1]
    return f"`{cmd}`"


def holders(root: Path, stage_of_path: Callable[[str], str | None] | None = None) -> list[Holder]:
    """Every process named in ``.dvc/tmp/rwlock``, classified (one Holder per pid)."""
    path = Path(root) / RWLOCK
    try:
        data = json.loads(path.read_text())
        written_at = path.stat().st_mtime
    except (FileNotFoundError, ValueError):
        return []
    recorded = read_stage_records(root)
    seen: dict[int, Holder] = {}
    entries = [(p, i) for p, i in (data.get("write") or {}).items()]
    entries += [(p, i) for p, infos in (data.get("read") or {}).items() for i in infos]
    for lpath, info in entries:
        pid, cmd = int(info["pid"]), str(info["cmd"])
        if pid in seen:
            continue
        state, why = classify(pid, cmd, recorded=recorded, written_at=written_at)
        seen[pid] = Holder(pid=pid, cmd=cmd, stage=_stage_of(cmd, lpath, stage_of_path), state=state, why=why)
    return list(seen.values())


def _clear(root: Path, stale: dict[int, str]) -> None:
    """Remove the entries of ``stale`` (pid -> cmd) with DVC's own guarded rwlock editor."""
    from dvc.fs import localfs
    from dvc.rwlock import _edit_rwlock

    tmp_dir = str((Path(root) / RWLOCK).parent.resolve())
    with _edit_rwlock(tmp_dir, localfs, False) as lock:
        for lpath in list(lock["write"]):
            info = lock["write"][lpath]
            if stale.get(int(info["pid"])) == info["cmd"]:
                del lock["write"][lpath]
        for lpath in list(lock["read"]):
            keep = [i for i in lock["read"][lpath] if stale.get(int(i["pid"])) != i["cmd"]]
            if keep:
                lock["read"][lpath] = keep
            else:
                del lock["read"][lpath]
        if not lock["write"]:
            del lock["write"]
        if not lock["read"]:
            del lock["read"]
    records = read_stage_records(root)
    if any(pid in records for pid in stale):
        with _FILE_LOCK:
            _write_stage_records(root, {k: v for k, v in records.items() if k not in stale})


def _repair_corrupt(root: Path, echo: Callable[[str], object]) -> None:
    """Reset an unreadable ``.dvc/tmp/rwlock``: DVC rewrites it in place (not atomically), so a
    ``dvc repro`` killed in the middle of that write leaves truncated JSON, and then every DVC command
    fails with "Unable to read RWLock-file". Checked under DVC's own guard (``rwlock.lock``), so a
    file that another DVC process is writing right now is never touched."""
    from dvc.lock import make_lock

    path = root / RWLOCK
    try:
        json.loads(path.read_text() or "{}")
        return
    except FileNotFoundError:
        return
    except ValueError:
        pass
    with make_lock(str(path.parent / "rwlock.lock"), tmp_dir=str(path.parent), hardlink_lock=False):
        try:
            json.loads(path.read_text() or "{}")
            return
        except ValueError:
            path.write_text("{}")
    echo(f"recovered {RWLOCK}: it was cut short by a killed DVC process (unreadable JSON); reset")


def recover_rwlock(root: str | Path, *, wait: bool, echo: Callable[[str], object] = print,
                   stage_of_path: Callable[[str], str | None] | None = None, poll: float = 1.0,
                   timeout: float | None = None) -> list[Holder]:
    """Clear stale ``.dvc/tmp/rwlock`` entries; wait for (or refuse) live ones. Returns what was cleared.

    Call it under segstyle's run lock and before any DVC call of the run (DVC's own status check
    would otherwise fail on the stale entry first).
    """
    root = Path(root)
    _repair_corrupt(root, echo)
    cleared: list[Holder] = []
    t0 = time.monotonic()
    announced: set[int] = set()
    while True:
        found = holders(root, stage_of_path)
        stale = [h for h in found if h.stale]
        if stale:
            _clear(root, {h.pid: h.cmd for h in stale})
            for h in stale:
                echo(f"recovered the DVC lock of stage {h.stage}: {h.why} (PID {h.pid})")
            cleared += stale
        alive = [h for h in found if not h.stale and h.pid != os.getpid()]
        if not alive:
            return cleared
        h = alive[0]
        if not wait:
            raise SegstyleError(f"stage {h.stage} is locked by a running process (PID {h.pid}: `{h.cmd}`); "
                                "wait for it to finish or pass --wait")
        if timeout is not None and time.monotonic() - t0 > timeout:
            raise SegstyleError(f"stage {h.stage} is still locked by PID {h.pid} after {timeout:.0f} s")
        if h.pid not in announced:
            echo(f"waiting for PID {h.pid} (`{h.cmd}`), which holds the DVC lock of stage {h.stage}...")
            announced.add(h.pid)
        time.sleep(poll)


def _members(pgid: int) -> list[tuple[int, str, float | None]]:
    """(pid, state, start time) of the processes in session/process group ``pgid``."""
    out = []
    for pid in _group_members(pgid):
        info = _proc_start_ticks(pid)
        if info is not None:
            out.append((pid, info[0], _boot_time() + info[1] / os.sysconf("SC_CLK_TCK")))
    return out


def reap_orphaned_stages(root: str | Path, echo: Callable[[str], object] = print) -> list[str]:
    """Kill what is left of stages whose ``segstyle run`` died (SIGKILL, OOM): called under the run lock.

    Holding the run lock means no live segstyle run owns the recorded stages. A stage's ``dvc``
    leader dies with its parent (``PR_SET_PDEATHSIG``), but the command it started (``python``,
    ``torchrun`` workers) would keep running and writing outputs: every member of the recorded
    group that started no earlier than the recorded leader is killed (a PID reused by an unrelated
    process started later is never the leader, and is left alone unless it joined that group).
    """
    root = Path(root)
    records = read_stage_records(root)
    if not records:
        return []
    stopped = []
    for pid, rec in records.items():
        pgid = int(rec.get("pgid", pid))
        t_leader = float(rec.get("create_time") or 0.0)
        started = _create_time(pid)
        if started is not None and t_leader and abs(started - t_leader) > 1.0:
            members = [m for m in _members(pgid) if m[0] != pid and m[2] is not None and m[2] >= t_leader - 1.0]
        else:
            members = [m for m in _members(pgid) if m[2] is not None and m[2] >= t_leader - 1.0]
        live = [m for m in members if m[1] not in ("Z", "X")]
        for m in live:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(m[0], signal.SIGKILL)
        if live:
            stopped.append(rec.get("stage", "?"))
            echo(f"stopped {len(live)} orphaned process(es) of stage {rec.get('stage', '?')} left by a killed run")
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(
            m[1] not in ("Z", "X") for pid, rec in records.items() for m in _members(int(rec.get("pgid", pid)))
            if m[2] is not None and m[2] >= float(rec.get("create_time") or 0.0) - 1.0):
        time.sleep(0.05)
    with _FILE_LOCK:
        _write_stage_records(root, {})
    return stopped


def _pdeathsig_kill() -> None:  # pragma: no cover - runs in the forked child
    """``preexec_fn`` of a stage process: the kernel SIGKILLs it when the thread that started it dies,
    so a SIGKILLed ``segstyle run`` cannot leave a ``dvc repro`` running unsupervised."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _load_libc():
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover
        return None


_LIBC = _load_libc()
#: ``preexec_fn`` for stage processes (None where prctl is unavailable).
PREEXEC = _pdeathsig_kill if _LIBC is not None else None


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def stop_stage_groups(root: str | Path | None = None, *, grace: float = 10.0, include_recorded: bool = False,
                      only: list[int] | None = None, echo: Callable[[str], object] | None = None) -> list[str]:
    """Stop the process groups of running stages: SIGINT (DVC releases its locks on KeyboardInterrupt),
    then SIGTERM, then SIGKILL after ``grace`` seconds; reap them; clear the locks they left.

    ``include_recorded`` also stops groups recorded in :data:`STAGES_FILE` by another process (a
    Prefect flow-run process that the runner is cancelling), verified by their start time so a
    reused PID is never signalled. ``only`` restricts it to those process groups. Returns the names
    of the stopped stages.
    """
    with _ACTIVE_LOCK:
        mine = {pid: v for pid, v in ACTIVE.items() if only is None or pid in only}
    groups: dict[int, str] = {pid: stage for pid, (stage, _) in mine.items()}
    if include_recorded and root is not None:
        for pid, rec in read_stage_records(Path(root)).items():
            started = _create_time(pid)
            if started and rec.get("create_time") and abs(started - float(rec["create_time"])) <= 1.0:
                groups.setdefault(int(rec.get("pgid", pid)), rec.get("stage", "?"))
    if not groups:
        return []
    if echo:
        echo(f"stopping stage(s) {', '.join(sorted(set(groups.values())))}")
    STOPPED.extend(sorted(set(groups.values())))
    for pgid in groups:
        _signal_group(pgid, signal.SIGINT)
    deadline = time.monotonic() + grace
    escalated = False

    def _alive(pgid: int) -> bool:
        proc = mine.get(pgid, (None, None))[1]
        if proc is not None and proc.poll() is None:
            return True
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        # a group whose members are all zombies counts as stopped
        return any((_proc_start_ticks(p) or ("Z",))[0] not in ("Z", "X") for p in _group_members(pgid))

    while any(_alive(g) for g in groups) and time.monotonic() < deadline:
        if not escalated and time.monotonic() > deadline - grace / 2:
            for pgid in groups:
                _signal_group(pgid, signal.SIGTERM)
            escalated = True
        time.sleep(0.1)
    for pgid in groups:
        _signal_group(pgid, signal.SIGKILL)
    for pgid, (_, proc) in mine.items():
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)
    if root is not None:
        with contextlib.suppress(Exception):
            recover_rwlock(root, wait=False, echo=echo or (lambda m: None))
    return sorted(set(groups.values()))


def _group_members(pgid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            raw = (d / "stat").read_text()
        except OSError:
            continue
        rest = raw[raw.rindex(")") + 2:].split()
        if int(rest[2]) == pgid:
            out.append(int(d.name))
    return out
