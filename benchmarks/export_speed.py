"""Our ONNX export vs torch's legacy exporter, side by side under ONNX Runtime CPU, every deployable image network.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/export_speed.py [--rounds 6] [--runs 10] [--size 320]

For each network the same seeded weights are exported twice: by the project's own
``segstyle.export.backend.onnx.exporter.export_onnx`` (``torch.onnx.export(dynamo=True)``, params ``export.opset``,
shape inference, checker) and by ``torch.onnx.export(dynamo=False, opset_version=17)`` with the
same dynamic batch/H/W. Both graphs run in ONE process under ONNX Runtime's CPU provider (2
intra-op threads, batch 1, ``--size`` x ``--size``, default graph optimisation level), in
``--rounds`` rounds of ``--runs`` timed runs each, interleaved run by run (one run of each graph in
turn, the starting graph rotating), so load drifts hit all graphs alike. A third session of *our* graph runs as an A/A control: the
ratio of two identical graphs is pure noise, and its largest per-round deviation from 1 is the
stated noise band. Verdict "ok": ours/legacy p50 ratio - 1 <= noise band.

To show where time goes, each graph's nodes are counted by op type and ONNX Runtime's profiler
attributes kernel time to op types (``--profile-runs`` extra runs, outside the timing). The load
average before and after is recorded: a figure taken on a busy machine says so.
The DCGAN generator (deployable, but fed a noise vector, not a photo) is not part of this
comparison. Writes benchmarks/export_speed.json and benchmarks/export_speed.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import sys
import tempfile
import time
import warnings

from segstyle.export.settings import ExportSettings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import env_prefix  # noqa: E402


def legacy_export(loaded, dest: Path, size: int = 129) -> None:
    """torch's TorchScript-based exporter, opset 17, same wrapper and dynamic axes as ours."""
    import torch

    from segstyle.export.backend.pyt.loader import ExportWrapper

    wrapper = ExportWrapper(loaded.net).eval()
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    dyn = {"input": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch", 2: "height", 3: "width"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (x,), str(dest), dynamo=False, opset_version=17, input_names=["input"],
                          output_names=["output"], dynamic_axes=dyn)


def op_counts(path: Path) -> dict[str, int]:
    import onnx

    m = onnx.load(str(path))
    return dict(sorted(collections.Counter(n.op_type for n in m.graph.node).items()))


def session(path: Path, threads: int, profile: bool = False):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if profile:
        so.enable_profiling = True
        so.profile_file_prefix = str(path.with_suffix(""))
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def op_time(path: Path, x, threads: int, runs: int) -> dict[str, float]:
    """ms per run by op type, from ONNX Runtime's own profiler."""
    s = session(path, threads, profile=True)
    name = s.get_inputs()[0].name
    for _ in range(runs):
        s.run(None, {name: x})
    events = json.loads(Path(s.end_profiling()).read_text())
    agg: dict[str, float] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            agg[e["args"]["op_name"]] += e["dur"] / 1000.0 / runs
    return {k: round(v, 2) for k, v in sorted(agg.items(), key=lambda kv: -kv[1])}


def bench_model(name: str, args, tmp: Path) -> dict:
    import numpy as np

    from segstyle.export.backend.pyt.loader import load_net
    from segstyle.export.backend.onnx.exporter import export_onnx
    from segstyle.pipelines.config import load_params

    params = load_params(REPO / "params.yaml")
    loaded = load_net(name, None, seed=0)
    ours, legacy = tmp / f"{name}_ours.onnx", tmp / f"{name}_legacy.onnx"
    export_onnx(loaded, ExportSettings.from_params(params), ours)
    legacy_export(loaded, legacy)
    x = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)
    graphs = {"ours": ours, "legacy": legacy, "ours (A/A control)": ours}
    sess = {k: session(p, args.threads) for k, p in graphs.items()}
    feeds = {k: {s.get_inputs()[0].name: x} for k, s in sess.items()}
    for k, s in sess.items():
        for _ in range(args.warmup):
            s.run(None, feeds[k])
    times = {k: [] for k in sess}
    per_round = []
    order = list(sess)
    for r in range(args.rounds):
        rt = {k: [] for k in sess}
        for i in range(args.runs):  # one run of each graph in turn, the starting graph rotating
            j = (r * args.runs + i) % len(order)
            for k in order[j:] + order[:j]:
                t0 = time.perf_counter()
                sess[k].run(None, feeds[k])
                rt[k].append((time.perf_counter() - t0) * 1000)
        for k in sess:
            times[k].extend(rt[k])
        med = {k: float(np.median(v)) for k, v in rt.items()}
        per_round.append({"ours/legacy": med["ours"] / med["legacy"], "A/A": med["ours (A/A control)"] / med["ours"]})
    p50 = {k: float(np.median(v)) for k, v in times.items()}
    ratio = p50["ours"] / p50["legacy"]
    band = max(abs(r["A/A"] - 1) for r in per_round)
    return {
        "model": name, "nodes": {k: sum(op_counts(p).values()) for k, p in (("ours", ours), ("legacy", legacy))},
        "op_counts": {"ours": op_counts(ours), "legacy": op_counts(legacy)},
        "p50_ms": {k: round(v, 2) for k, v in p50.items()},
        "p90_ms": {k: round(float(np.percentile(v, 90)), 2) for k, v in times.items()},
        "ratio_ours_over_legacy": round(ratio, 4), "noise_band": round(band, 4),
        "per_round": [{k: round(v, 4) for k, v in r.items()} for r in per_round],
        "verdict": "ok" if ratio - 1 <= band else "slower beyond noise",
        "op_ms": {"ours": op_time(ours, x, args.threads, args.profile_runs),
                  "legacy": op_time(legacy, x, args.threads, args.profile_runs)},
    }


def write_md(rec: dict, path: Path) -> None:
    lines = [
        "# Export speed: our ONNX export vs torch's legacy exporter (ONNX Runtime CPU)", "",
        f"Command: `{rec['command']}` at commit `{rec['commit']}` "
        f"(JSON: `benchmarks/export_speed.json`).", "",
        f"Setting: ONNX Runtime {rec['env']['onnxruntime']} CPUExecutionProvider, {rec['threads']} intra-op "
        f"threads, batch 1, {rec['size']}x{rec['size']}, {rec['rounds']} rounds x {rec['runs']} runs per graph, "
        "interleaved run by run; torch " + rec["env"]["torch"] + ". Ours: `segstyle.export.backend.onnx.exporter.export_onnx` "
        "(dynamo=True, opset " + str(rec["opset"]) + "); legacy: `torch.onnx.export(dynamo=False, opset_version=17)`.",
        "", f"Machine load (1-min load average on {rec['env']['cpus']} CPUs): {rec['load_before']:.2f} before, "
        f"{rec['load_after']:.2f} after{' - a busy machine: figures are noisier than on a quiet one' if max(rec['load_before'], rec['load_after']) > rec['env']['cpus'] else ''}.",
        "", "Noise band: the largest per-round deviation from 1 of an A/A ratio (our graph against a second "
        "session of itself). Verdict ok: ours/legacy - 1 <= noise band.", "",
        "| network | nodes ours / legacy | p50 ours ms | p50 legacy ms | ours/legacy | noise band | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rec["results"]:
        lines.append(f"| {r['model']} | {r['nodes']['ours']} / {r['nodes']['legacy']} | {r['p50_ms']['ours']:.2f} | "
                     f"{r['p50_ms']['legacy']:.2f} | {r['ratio_ours_over_legacy']:.3f} | "
                     f"±{r['noise_band']:.3f} | {r['verdict']} |")
    lines += ["", "## Where the time goes (ONNX Runtime profiler, ms per run by op type, top 5)", ""]
    for r in rec["results"]:
        top = lambda d: ", ".join(f"{k} {v:.1f}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:5])  # noqa: E731
        lines += [f"- **{r['model']}** ours: {top(r['op_ms']['ours'])}; legacy: {top(r['op_ms']['legacy'])}"]
    if rec.get("notes"):
        lines += ["", "## Findings", ""] + [f"- {n}" for n in rec["notes"]]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=None, help="comma-separated (default: every registered model)")
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--profile-runs", type=int, default=5)
    ap.add_argument("--notes", default=None, help="JSON file with a list of findings to carry into the .md")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "export_speed.json"))
    ap.add_argument("--md-only", action="store_true", help="rewrite the .md from the JSON (+ --notes), no runs")
    args = ap.parse_args()
    if args.md_only:
        rec = json.loads(Path(args.out).read_text())
        if args.notes:
            from segstyle.core.io import write_json

            rec["notes"] = json.loads(Path(args.notes).read_text())
            write_json(args.out, rec)
        write_md(rec, Path(args.out).with_suffix(".md"))
        return

    import onnxruntime
    import torch
    from tqdm import tqdm

    from segstyle.models import list_models
    from segstyle.pipelines.config import load_params
    from segstyle.core.io import write_json

    torch.set_num_threads(args.threads)
    models = args.models.split(",") if args.models else list_models(deployable=True, input_kind="image")
    load_before = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory(prefix="segstyle-export-speed-") as d:
        for name in tqdm(models, desc="export + time", unit="net"):
            results.append(bench_model(name, args, Path(d)))
    from segstyle.core.provenance import git_state

    argv = " ".join(sys.argv[1:])
    rec = {
        "command": f"{env_prefix()}.venv/bin/python benchmarks/export_speed.py{' ' + argv if argv else ''}",
        "commit": git_state(REPO, short=True)[0], "size": args.size, "threads": args.threads, "rounds": args.rounds,
        "runs": args.runs, "opset": load_params(REPO / "params.yaml").export.opset,
        "load_before": load_before, "load_after": os.getloadavg()[0],
        "env": {"onnxruntime": onnxruntime.__version__, "torch": torch.__version__, "python": platform.python_version(),
                "cpus": os.cpu_count()},
        "results": results,
        "notes": json.loads(Path(args.notes).read_text()) if args.notes else [],
    }
    out = Path(args.out)
    write_json(out, rec)
    write_md(rec, out.with_suffix(".md"))
    for r in results:
        print(f"{r['model']:32s} ours {r['p50_ms']['ours']:8.2f} ms  legacy {r['p50_ms']['legacy']:8.2f} ms  "
              f"ratio {r['ratio_ours_over_legacy']:.3f} (noise ±{r['noise_band']:.3f}) {r['verdict']}")


if __name__ == "__main__":
    main()
