"""``segstyle run --jobs 1`` against ``--jobs 2``, cold, and what a stage costs before its work starts.

Two parts, one script (issue 11, items 3 and 5):

1. **Start-up cost per stage**, at two commits (``--before`` and the checkout's HEAD), interleaved
   and repeated (median): ``segstyle --help``, ``segstyle data verify --help``, ``segstyle run --help``,
   ``--help`` of every stage command (what its imports cost: torch or not), and DVC's own
   bookkeeping for one stage (``dvc repro --single-item --force`` of a stage whose command is
   ``true``, in a throwaway repository). Each commit's code is imported through a ``PYTHONPATH``
   shim (``segstyle/{pipelines,models,export}`` -> that commit's folders) in front of the editable
   install, so both commits run with the same interpreter and libraries.
2. **Cold pipeline**: ``segstyle run --jobs 1`` and ``--jobs 2``, two runs each, interleaved
   (1, 2, 1, 2: machines differ 2x from run to run), each in a fresh ``git clone`` of HEAD with the
   sample ``data/``. Compared between modes: the ``dvc.lock`` hashes of every cached output (a
   stage counts as deterministic when both ``--jobs 1`` runs agree), evaluation metrics to 1e-4;
   then a no-change rerun must skip every stage.

    .venv/bin/python benchmarks/pipeline_jobs.py             # ~20-40 min on 2 cores; writes benchmarks/pipeline_jobs.{json,md}
    .venv/bin/python benchmarks/pipeline_jobs.py --quick     # seconds-to-minutes check of the script itself (tiny
                                                             # targets, 1 repeat); writes to --out-dir (default /tmp)
    .venv/bin/python benchmarks/pipeline_jobs.py --startup-only

Run it on a quiet machine; the load average before and after is recorded with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import env_prefix  # noqa: E402

BIN = Path(sys.executable).parent
SEGSTYLE = str(BIN / "segstyle")
DVC = str(BIN / "dvc")
#: The commit before issue 11's items 2-7 (the parent of "Pipeline: stages run concurrently ...").
DEFAULT_BEFORE = "c17db27"
STARTUP_COMMANDS = [
    ["--help"], ["run", "--help"], ["data", "verify", "--help"], ["train", "--help"], ["evaluate", "--help"],
    ["train-style", "--help"], ["export", "onnx", "--help"], ["export", "fp16", "--help"],
    ["export", "lint", "--help"], ["bundle", "--help"], ["engine", "validate", "--help"],
]
QUICK_TARGETS = ["verify@voc", "verify@pets"]


def sh(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True, timeout: float | None = None):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}\n{(r.stdout + r.stderr)[-3000:]}")
    return r


def clone(ref: str, dest: Path) -> Path:
    sh(["git", "clone", "-q", str(REPO), str(dest)], cwd=REPO)
    sh(["git", "checkout", "-q", ref], cwd=dest)
    return dest


def shim(checkout: Path, where: Path) -> Path:
    """A PYTHONPATH entry whose ``segstyle.*`` are ``checkout``'s folders (ahead of the editable install)."""
    pkg = where / "segstyle"
    pkg.mkdir(parents=True, exist_ok=True)
    for name in ("core", "models", "export", "pipelines"):
        if (checkout / name).is_dir():  # core/ exists from the layering commit on
            (pkg / name).symlink_to(checkout / name)
    return where


def code_env(shim_dir: Path, no_gpu: bool = True) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(shim_dir) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PATH"] = str(BIN) + os.pathsep + env.get("PATH", "")
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if no_gpu:  # the cold-pipeline comparison is about the CPU stages
        env["SEGSTYLE_FORCE_NO_GPU"] = env.get("SEGSTYLE_FORCE_NO_GPU", "1")
    return env


def timed(cmd: list[str], cwd: Path, env: dict, timeout: float | None = None) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - t0, r


def dvc_toy(where: Path) -> Path:
    """A throwaway repository with one stage whose command does nothing: what DVC itself costs."""
    where.mkdir(parents=True)
    sh(["git", "init", "-q"], cwd=where)
    sh([DVC, "init", "-q"], cwd=where)
    sh([DVC, "config", "core.analytics", "false"], cwd=where)
    (where / "dvc.yaml").write_text("stages:\n  noop:\n    cmd: true > o.txt\n    outs: [o.txt]\n")
    return where


def measure_startup(refs: dict[str, str], repeats: int, work: Path) -> dict:
    """Median seconds per command and per commit, interleaved so both see the same machine load."""
    envs, checkout = {}, {}
    for label, ref in refs.items():
        checkout[label] = clone(ref, work / f"code-{label}")
        envs[label] = code_env(shim(checkout[label], work / f"shim-{label}"), no_gpu=False)
        # which code runs: the shim must win over the editable install
        r = sh([sys.executable, "-c", "import os, segstyle.pipelines.cli as m; print(os.path.realpath(m.__file__))"], cwd=work,
               env=envs[label])
        assert r.stdout.strip().startswith(str(checkout[label])), (label, r.stdout)
    toy = dvc_toy(work / "dvc-toy")
    sh([DVC, "repro", "--single-item", "noop"], cwd=toy)
    # a no-change `segstyle run` of the tiny test repository (its GPU-only stage stays pending on a CPU
    # machine): what the orchestrator costs when there is nothing to do
    from tiny_repo import make_repo

    tiny = {}
    for label in refs:
        tiny[label] = make_repo(work / f"tiny-{label}")
        # the params file of that commit: an older config model rejects keys added since
        shutil.copy(checkout[label] / "params.yaml", tiny[label] / "params.yaml")
        sh([SEGSTYLE, "run", "--no-push"], cwd=tiny[label], env=envs[label], timeout=900)
    samples: dict[str, dict[str, list[float]]] = {label: {} for label in refs}
    for _ in range(repeats):
        for cmd in STARTUP_COMMANDS:
            for label in refs:
                secs, r = timed([SEGSTYLE, *cmd], work, envs[label])
                if r.returncode != 0:
                    raise SystemExit(f"{label}: segstyle {' '.join(cmd)} failed: {(r.stdout + r.stderr)[-500:]}")
                samples[label].setdefault("segstyle " + " ".join(cmd), []).append(secs)
        for label in refs:
            secs, r = timed([DVC, "repro", "--single-item", "--force", "noop"], toy, envs[label])
            samples[label].setdefault("dvc repro --single-item --force (no-op stage)", []).append(secs)
            secs, r = timed([SEGSTYLE, "run", "--no-push"], tiny[label], envs[label])
            if r.returncode != 0 or "up to date" not in r.stdout:
                raise SystemExit(f"{label}: no-change segstyle run did not skip: {(r.stdout + r.stderr)[-800:]}")
            samples[label].setdefault("segstyle run, nothing to do (tiny repo, 7 stages)", []).append(secs)
            secs, r = timed([sys.executable, "-c", "pass"], work, envs[label])
            samples[label].setdefault("python -c pass", []).append(secs)
    torch_free = {}
    for label in refs:
        r = sh([sys.executable, "-c", "import sys, segstyle.pipelines.run, segstyle.pipelines.stages, "
                "segstyle.pipelines.data.cli; print('torch' in sys.modules)"], cwd=work, env=envs[label])
        torch_free[label] = r.stdout.strip() == "False"
    return {"refs": {label: sh(["git", "rev-parse", "--short", ref], cwd=checkout[label]).stdout.strip()
                     for label, ref in refs.items()},
            "repeats": repeats,
            "median_s": {label: {k: round(statistics.median(v), 3) for k, v in d.items()} for label, d in samples.items()},
            "run_module_imports_torch": {label: not v for label, v in torch_free.items()}}


def sample_data(cache: Path) -> Path:
    if not (cache / "voc").is_dir():
        sh([SEGSTYLE, "data", "sample", "--root", str(cache)], cwd=REPO)
    return cache


def lock_hashes(repo: Path) -> dict[str, str]:
    """``stage:path -> md5`` of every cached (non-metric, non-plot) output in dvc.lock."""
    import yaml

    from segstyle.pipelines.stages import load_plan

    outs = {s.name: set(s.outs) for s in load_plan(repo)}  # metrics and plots (cache: false) left out
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    out = {}
    for stage, entry in (lock.get("stages") or {}).items():
        for o in entry.get("outs", []):
            if o["path"] in outs.get(stage, ()):
                out[f"{stage}:{o['path']}"] = o.get("md5", "")
    return out


def eval_metrics(repo: Path) -> dict[str, float]:
    """``<dataset>.<figure> -> value`` from every evaluation's DVC metrics file (figures only, written by
    write_dvc_metrics): the numbers two runs must agree on. Nested figures (the baseline) are left out."""
    vals = {}
    for f in sorted((repo / "artifacts" / "eval").glob("*/metrics.json")):
        doc = json.loads(f.read_text())
        for k, v in doc.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                vals[f"{f.parent.name}.{k}"] = float(v)
    return vals


def pipeline_run(jobs: int, data: Path, work: Path, idx: int, targets: list[str], ref: str) -> dict:
    repo = clone(ref, work / f"run{idx}-jobs{jobs}")
    shutil.copytree(data, repo / "data")
    env = code_env(shim(repo, work / f"shim-run{idx}"))
    cmd = [SEGSTYLE, "run", "--jobs", str(jobs), "--no-push", *[a for t in targets for a in ("--targets", t)]]
    load0 = os.getloadavg()[0]
    secs, r = timed(cmd, repo, env, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"segstyle run --jobs {jobs} failed:\n{(r.stdout + r.stderr)[-3000:]}")
    report = json.loads((repo / "artifacts" / "pipeline_report.json").read_text())
    ran = [s["name"] for s in report["stages"] if s["status"] in ("ran", "restored")]
    return {"jobs": jobs, "wall_s": round(secs, 1), "load_before": round(load0, 2), "stages_ran": len(ran),
            "stage_s": {s["name"]: round(s["seconds"], 1) for s in report["stages"]},
            "hashes": lock_hashes(repo), "eval": eval_metrics(repo), "repo": str(repo), "env": env}


def compare(runs: list[dict]) -> dict:
    j1 = [r for r in runs if r["jobs"] == 1]
    j2 = [r for r in runs if r["jobs"] == 2]
    keys = sorted(set(j1[0]["hashes"]))
    deterministic = [k for k in keys if len({r["hashes"].get(k) for r in j1}) == 1]
    mismatched = [k for k in deterministic if any(r["hashes"].get(k) != j1[0]["hashes"][k] for r in j2)]
    metric_diff = max((abs(r["eval"][k] - j1[0]["eval"][k]) for r in runs for k in j1[0]["eval"]), default=0.0)
    return {"outputs": len(keys), "deterministic_outputs": len(deterministic),
            "nondeterministic_outputs": sorted(set(keys) - set(deterministic)),
            "jobs2_hash_mismatches": mismatched, "eval_max_abs_diff": metric_diff,
            "eval_within_1e-4": metric_diff <= 1e-4}


def write_md(path: Path, res: dict) -> None:
    st = res.get("startup")
    lines = ["# `segstyle run --jobs`: cold pipeline and per-stage start-up", "",
             f"Raw numbers: `{path.with_suffix('.json').name}`. Command: `{res['command']}`. "
             f"Machine: {res['machine']}; measured {res['date']}, load average "
             f"{res['load_avg_start'][0]:.1f} at the start and {res['load_avg_end'][0]:.1f} at the end "
             "(other jobs share the CPUs when it exceeds the CPU count: compare columns, not absolute values).", ""]
    if st:
        a, b = list(st["refs"])
        lines += ["## Start-up cost before a stage's work (median of "
                  f"{st['repeats']}, seconds; {a} = {st['refs'][a]}, {b} = {st['refs'][b]})", "",
                  f"| command | {a} | {b} |", "|---|---:|---:|"]
        for k in st["median_s"][a]:
            lines.append(f"| `{k}` | {st['median_s'][a][k]:.2f} | {st['median_s'][b][k]:.2f} |")
        lines += ["", "Importing `segstyle.pipelines.run`, `.stages`, `.data.cli` loads torch: "
                  + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in st["run_module_imports_torch"].items())
                  + ". The no-change `segstyle run` row is where the orchestrator imported torch (to ask CUDA) "
                  "before; a stage that needs torch still pays its import (the `--help` rows).", ""]
    pl = res.get("pipeline")
    if pl:
        lines += ["## Cold pipeline (fresh clone, sample data, interleaved)", "",
                  f"Code measured: commit `{pl.get('commit', 'not recorded')}` (all four runs).", "",
                  "| run | --jobs | wall (s) | stages ran | load avg before |", "|---|---:|---:|---:|---:|"]
        for i, r in enumerate(pl["runs"], 1):
            lines.append(f"| {i} | {r['jobs']} | {r['wall_s']:.1f} | {r['stages_ran']} | {r['load_before']} |")
        c = pl["compare"]
        lines += ["", f"Median --jobs 2 / --jobs 1: **{pl['ratio']:.2f}** (target <= 0.75: "
                  f"{'met' if pl['ratio'] <= 0.75 else 'not met'}).",
                  f"Outputs compared: {c['outputs']}, deterministic (both --jobs 1 runs agree): "
                  f"{c['deterministic_outputs']}; --jobs 2 mismatches: {c['jobs2_hash_mismatches'] or 'none'}; "
                  f"non-deterministic: {c['nondeterministic_outputs'] or 'none'}.",
                  f"Evaluation metrics max |diff| {c['eval_max_abs_diff']:.2e} (within 1e-4: {c['eval_within_1e-4']}).",
                  f"No-change rerun: {pl['rerun']['wall_s']:.1f} s, every stage skipped: {pl['rerun']['all_skipped']}.",
                  ""]
    else:
        lines += ["## Cold pipeline", "", "Not measured in this file (run the script without `--startup-only`).", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny targets, one repeat: checks the script, not the figures")
    ap.add_argument("--startup-only", action="store_true")
    ap.add_argument("--cold-only", action="store_true",
                    help="skip the start-up part; keep the start-up figures of the committed pipeline_jobs.json")
    ap.add_argument("--before", default=DEFAULT_BEFORE, help="commit to compare start-up costs with")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out-dir", type=Path, default=None,
                    help="where pipeline_jobs.{json,md} go (default: benchmarks/, or a temp dir with --quick)")
    a = ap.parse_args()
    out_dir = a.out_dir or (Path(tempfile.gettempdir()) / "pipeline_jobs_quick" if a.quick else REPO / "benchmarks")
    out_dir.mkdir(parents=True, exist_ok=True)
    repeats = 1 if a.quick else a.repeats
    work = Path(tempfile.mkdtemp(prefix="pipeline_jobs_"))
    res: dict = {"command": env_prefix() + "python benchmarks/pipeline_jobs.py" + (" --quick" if a.quick else "")
                 + (" --startup-only" if a.startup_only else ""),
                 "machine": f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}",
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "load_avg_start": os.getloadavg()}
    try:
        if a.cold_only:
            prev = json.loads((out_dir / "pipeline_jobs.json").read_text())
            res["startup"] = {**prev["startup"], "measured": f"earlier run: {prev['date']}, {prev['command']}"}
            res["command"] += " --cold-only"
        else:
            res["startup"] = measure_startup({"before": a.before, "after": "HEAD"}, repeats, work)
        if not a.startup_only:
            data = sample_data(work / "sample-data")
            targets = QUICK_TARGETS if a.quick else []
            # one commit for all four runs: HEAD resolved once (commits landing meanwhile do not mix in)
            ref = sh(["git", "rev-parse", "HEAD"], cwd=REPO).stdout.strip()
            runs = [pipeline_run(j, data, work, i, targets, ref) for i, j in enumerate((1, 2, 1, 2), 1)]
            last = runs[-1]
            secs, r = timed([SEGSTYLE, "run", "--no-push", *[x for t in targets for x in ("--targets", t)]],
                            Path(last["repo"]), last["env"], timeout=600)
            rep = json.loads((Path(last["repo"]) / "artifacts" / "pipeline_report.json").read_text())
            rerun = {"wall_s": round(secs, 1), "rc": r.returncode,
                     "all_skipped": r.returncode == 0 and all(s["status"] in ("skipped", "skipped-no-GPU")
                                                              for s in rep["stages"])}
            med = {j: statistics.median(x["wall_s"] for x in runs if x["jobs"] == j) for j in (1, 2)}
            for x in runs:
                x.pop("env")
            res["pipeline"] = {"commit": ref[:7], "targets": targets or "all", "runs": runs, "compare": compare(runs), "rerun": rerun,
                               "median_wall_s": med, "ratio": med[2] / med[1]}
    finally:
        res["load_avg_end"] = os.getloadavg()
        shutil.rmtree(work, ignore_errors=True)
    (out_dir / "pipeline_jobs.json").write_text(json.dumps(res, indent=2) + "\n")
    write_md(out_dir / "pipeline_jobs.md", res)
    print(f"wrote {out_dir / 'pipeline_jobs.json'} and {out_dir / 'pipeline_jobs.md'}")


if __name__ == "__main__":
    main()
