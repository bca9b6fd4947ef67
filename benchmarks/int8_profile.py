"""Where the U-Net's time goes under ONNX Runtime CPU: FP32 graph against the cpu-target INT8 graph, per op type.

    python benchmarks/int8_profile.py            # writes benchmarks/int8_profile.json

A fresh seeded unet_mobilenetv2 (op times do not depend on the weights), exported with the project's
exporter, quantised by `segstyle export int8 --target cpu` on the sample data's training split, then run
under ONNX Runtime's profiler at 512x512, batch 1, 2 threads: the kernel time of every node, summed per op
type and averaged over the timed runs. The README's INT8 section quotes it. Run it with nothing else on
the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "int8_profile.json"
RUNS, THREADS, SIZE = 8, 2, 512


def profile(path: Path) -> dict:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.enable_profiling = True
    so.profile_file_prefix = str(path.with_suffix(""))
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).random((1, 3, SIZE, SIZE), dtype=np.float32)
    for _ in range(1 + RUNS):
        sess.run(None, {"input": x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_op, nodes = Counter(), Counter()
    runs = [e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"]
    timed = sorted(runs, key=lambda e: e["ts"])[1:]  # the first run warms the session up: not counted
    t0 = timed[0]["ts"]
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= t0:
            per_op[e["args"]["op_name"]] += e["dur"]
            nodes[e["args"]["op_name"]] += 1
    run_ms = [e["dur"] / 1000 for e in timed]
    return {"p50_run_ms": float(np.median(run_ms)), "runs": len(run_ms),
            "ms_per_run_by_op": {k: round(v / len(timed) / 1000, 2) for k, v in per_op.most_common()},
            "nodes_by_op": {k: v // len(timed) for k, v in nodes.items()}}


def main() -> None:
    seg = [str(Path(sys.executable).with_name("segstyle"))]
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        subprocess.run([*seg, "export", "onnx", "--model", "unet_mobilenetv2", "--out", str(t / "fp32.onnx")],
                       check=True, cwd=REPO)
        subprocess.run([*seg, "export", "int8", str(t / "fp32.onnx"), "--model", "unet_mobilenetv2", "--target",
                        "cpu", "--out", str(t / "int8_cpu.onnx")], check=True, cwd=REPO)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip()
        doc = {"command": "python benchmarks/int8_profile.py", "commit": commit, "model": "unet_mobilenetv2",
               "input": [1, 3, SIZE, SIZE], "threads": THREADS,
               "fp32": profile(t / "fp32.onnx"), "int8_cpu": profile(t / "int8_cpu.onnx")}
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    for k in ("fp32", "int8_cpu"):
        top = list(doc[k]["ms_per_run_by_op"].items())[:6]
        print(k, f"{doc[k]['p50_run_ms']:.1f} ms:", ", ".join(f"{o} {v}" for o, v in top))


if __name__ == "__main__":
    main()
