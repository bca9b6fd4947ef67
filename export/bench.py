"""Latency and throughput of several backends side by side, in one process, on the same inputs.

Per size: ``warmup`` untimed runs of each backend (cuDNN/TensorRT autotuning, CUDA-graph capture,
ORT arena growth), then ``iters`` timed rounds, each running every backend once (interleaved, so
background load affects all alike). On CUDA each run is timed with a pair of CUDA events on
the current stream (GPU time, no host jitter); on the CPU with ``time.perf_counter``. Inputs are
prepared on the backend's device beforehand, so copies are not timed. p50/p95/p99 come from the
per-run samples; throughput is batch / mean latency.
"""

from __future__ import annotations

import os
import platform
from typing import Any, Sequence

import torch

from segstyle.core.devices import cpuinfo
from segstyle.export.timing import summarize, time_backends


def environment() -> dict[str, Any]:
    import onnxruntime as ort

    env = {"python": platform.python_version(), "torch": torch.__version__, "onnxruntime": ort.__version__,
           "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
           "torch_threads": torch.get_num_threads(),
           "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()]}
    env["cpu"] = cpuinfo("model name") or env["cpu"]
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        env.update({"gpu": torch.cuda.get_device_name(), "compute_capability": f"{major}.{minor}",
                    "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()})
    try:
        import tensorrt as trt

        env["tensorrt"] = trt.__version__
    except ImportError:
        env["tensorrt"] = None
    return env


def run_bench(backends: dict[str, Any], sizes: Sequence[Sequence[int]], batch: int, *, warmup: int,
              iters: int, seed: int = 0, noise_dim: int | None = None) -> list[dict[str, Any]]:
    """Time every backend on the same inputs: a random image batch per size, or for a noise network
    (``noise_dim``: the DCGAN generator) one N(0, 1) batch, where sizes do not apply."""
    from tqdm import tqdm

    from segstyle.export.backend.pyt.loader import example_input

    rows = []
    gen = torch.Generator().manual_seed(seed)
    for size in tqdm(sizes if noise_dim is None else [None], desc="bench sizes", unit="size"):
        x = example_input(noise_dim, batch, size, gen)
        with torch.no_grad():
            times = time_backends(backends, x, warmup=warmup, iters=iters)
        for name in backends:
            rows.append({"backend": name, "size": list(size) if size is not None else [noise_dim], "batch": batch,
                         **summarize(times[name], batch)})
    return rows


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for col in ("backend", "HxW", "batch", "p50 ms", "p95 ms", "p99 ms", "img/s"):
        t.add_column(col, justify="right" if col != "backend" else "left")
    for r in rows:
        t.add_row(r["backend"], "x".join(map(str, r["size"])), str(r["batch"]), f"{r['p50_ms']:.2f}",
                  f"{r['p95_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['throughput_img_s']:.1f}")
    Console(width=120).print(t)
