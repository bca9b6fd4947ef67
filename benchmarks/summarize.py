"""Render one benchmark folder (``segstyle engine bench`` JSONs + validation records) as its README.md.

    python benchmarks/summarize.py benchmarks/cpu --out benchmarks/cpu/README.md
    python benchmarks/summarize.py benchmarks/gpu --out benchmarks/gpu/README.md

Inputs, all JSON in the folder: ``run.json`` (written by ``cpu_bench.sh`` / ``gpu_bench.sh``: the
command, the commit whose code was measured, the date), one ``segstyle engine bench`` record per
model (``<model>.json``), and optionally validation records under ``validate/``
(``segstyle engine validate --out``), rendered through :mod:`segstyle.export.matrix`, the
deployment matrix's own table code, so there is one way to print a validation row.

The README is a pure function of those files (:func:`render`): tests/test_benchmark_docs.py
re-renders it and compares, so a table edited by hand or left behind by a rerun fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load(p: Path) -> dict:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"{p}: not readable JSON ({type(e).__name__})") from None


def render(folder: str | Path) -> str:
    """README.md text for ``folder`` (see module doc); SystemExit with one line when inputs are missing."""
    d = Path(folder)
    try:
        shown = d.resolve().relative_to(REPO).as_posix()  # the same text whatever the working directory
    except ValueError:
        shown = d.as_posix()
    run_file = d / "run.json"
    if not run_file.is_file():
        raise SystemExit(f"{run_file}: missing (cpu_bench.sh / gpu_bench.sh write it: command and commit)")
    run = _load(run_file)
    benches = [(p, _load(p)) for p in sorted(d.glob("*.json")) if p.name != "run.json"]
    benches = [(p, r) for p, r in benches if isinstance(r, dict) and "results" in r]
    if not benches:
        raise SystemExit(f"{d}: no `segstyle engine bench` JSON files")
    env = benches[0][1]["environment"]
    where = env.get("gpu") or env.get("cpu")
    loads = [r["environment"].get("load_average_1_5_15", [None])[0] for _, r in benches]
    loads = [x for x in loads if x is not None]
    lines = [f"# Benchmarks: {where}", "",
             f"Command: `{run['command']}` at commit `{run['commit']}`"
             + (f" (uncommitted: {', '.join(run['uncommitted'])})" if run.get("uncommitted") else "")
             + f" ({run['date']}); JSON: "
             f"`{d.name}/<model>.json` (`segstyle engine bench`), `{d.name}/run.json`"
             + (f", validation records `{d.name}/validate/*.json`" if (d / "validate").is_dir() else "")
             + f". Rendered by `python benchmarks/summarize.py {shown} --out {shown}/README.md`.", "",
             f"torch {env['torch']}, onnxruntime {env['onnxruntime']}, TensorRT {env.get('tensorrt') or 'absent'}; "
             f"{env.get('cpu_count', '?')} CPUs, {env.get('torch_threads', '?')} thread(s) per runtime; timer: "
             f"{benches[0][1]['timer']}"
             + (f"; 1-minute load average {min(loads):.1f}-{max(loads):.1f} during the runs" if loads else "") + ".",
             "",
             "Backends of one model run interleaved in one process on the same inputs: compare a row with the "
             "`torch-fp32` and `ort-cpu` (FP32 graph) rows of the same model and size (the last two columns), not "
             "with other machines. `ort-cpu-int8` is the cpu-target INT8 graph, `ort-cpu-int8-trt` the TensorRT "
             "INT8 graph under ONNX Runtime (an accuracy stand-in: its speed says nothing about TensorRT).", "",
             "| model | backend | HxW | batch | p50 ms | p95 ms | p99 ms | img/s | torch-fp32 p50 / this p50 "
             "| ort-cpu FP32 p50 / this p50 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in benches:
        ref = {(tuple(x["size"]), x["batch"]): x["p50_ms"] for x in r["results"] if x["backend"] == "torch-fp32"}
        ort = {(tuple(x["size"]), x["batch"]): x["p50_ms"] for x in r["results"] if x["backend"] == "ort-cpu"}
        for x in r["results"]:
            base = ref.get((tuple(x["size"]), x["batch"]))
            speed = f"{base / x['p50_ms']:.2f}x" if base else "-"
            o = ort.get((tuple(x["size"]), x["batch"]))
            vs_ort = f"{o / x['p50_ms']:.2f}x" if o and x["backend"].startswith("ort-cpu") else "-"
            # an image network's size is [H, W]; a noise network's (the DCGAN generator) its noise length
            shape = "x".join(map(str, x["size"])) if len(x["size"]) == 2 else f"noise {x['size'][0]}"
            lines.append(f"| {r['model']} | {x['backend']} | {shape} | {x['batch']} | "
                         f"{x['p50_ms']:.2f} | {x['p95_ms']:.2f} | {x['p99_ms']:.2f} | "
                         f"{x['throughput_img_s']:.1f} | {speed} | {vs_ort} |")
    if (d / "validate").is_dir():
        from segstyle.export.matrix import COLUMNS, cells, find_records, matrix_rows

        records = find_records([d / "validate"])
        if records:
            lines += ["", "## Validation against PyTorch FP32 (the deployment matrix's rows)", "",
                      "| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
            rows = matrix_rows(records)
            lines += ["| " + " | ".join(c.replace("|", "/") for c in cells(row)) + " |" for row in rows]
            unbenched = sorted({row["network"] for row in rows} - {p.stem for p, _ in benches})
            if unbenched:
                lines += ["", f"Latency table: not measured for {', '.join(unbenched)} (validation records only; "
                          "their p50 column above is `engine validate`'s own timing)."]
    return "\n".join(lines) + "\n"


def stamp(folder: str | Path, command: str, commit: str | None = None) -> dict:
    """Write ``folder/run.json`` before a benchmark run: the command, the commit of the code being
    measured (where the installed ``segstyle`` lives) and its uncommitted files, the UTC date.

    ``commit`` names it where the code was copied and git there is missing or stale (a lent GPU machine
    gets the working tree with an older ``.git``): it wins over git's HEAD, and the copy must be of a
    clean tree at that commit."""
    import subprocess
    import time

    import segstyle.export

    from segstyle.core.io import write_json

    code = Path(next(iter(segstyle.export.__path__))).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=code, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "export", "models", "pipelines", "params.yaml"],
                               cwd=code, capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        head, dirty = commit or "unknown", []
    if commit and not (head.startswith(commit) or commit.startswith(head)):
        dirty = []  # git there is at another commit: its status says nothing about this tree
    run = {"command": command, "commit": commit or head, "uncommitted": sorted(line[3:] for line in dirty),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    write_json(Path(folder) / "run.json", run)
    return run


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default="benchmarks/cpu")
    ap.add_argument("--out", default=None, help="README.md to write (atomically); default: print")
    ap.add_argument("--stamp", metavar="COMMAND", default=None,
                    help="instead: write FOLDER/run.json (command, commit, date) before a benchmark run")
    ap.add_argument("--commit", default=None,
                    help="with --stamp: the commit of a clean tree copied where git is missing or stale "
                         "(else git's HEAD)")
    args = ap.parse_args(argv)
    if args.stamp:
        Path(args.folder).mkdir(parents=True, exist_ok=True)
        stamp(args.folder, args.stamp, args.commit)
        return
    text = render(args.folder)
    if args.out:
        from segstyle.core.io import write_text

        write_text(args.out, text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
