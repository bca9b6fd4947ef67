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
import time
from typing import Any, Sequence

import numpy as np
import torch


def environment() -> dict[str, Any]:
    import onnxruntime as ort

    env = {"python": platform.python_version(), "torch": torch.__version__, "onnxruntime": ort.__version__,
           "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
           "torch_threads": torch.get_num_threads(),
           "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()]}
    try:
        with open("/proc/cpuinfo") as f:
            env["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
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


def _time_once(backend, prepared) -> float:
    """One run's latency in milliseconds (CUDA events on GPU, wall clock on CPU)."""
    if backend.device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        backend.run(prepared)
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))
    t0 = time.perf_counter()
    backend.run(prepared)
    return (time.perf_counter() - t0) * 1e3


def time_backends(backends: dict[str, Any], x: torch.Tensor, *, warmup: int, iters: int) -> dict[str, list[float]]:
    """Per-run latencies of every backend, runs interleaved round-robin.

    Interleaving makes the comparison fair on a shared or thermally throttling machine: a burst of
    background load hits every backend alike instead of whichever happened to be running.
    """
    prepared = {n: b.prepare(x) for n, b in backends.items()}
    for n, b in backends.items():
        for _ in range(warmup):
            b.run(prepared[n])
        b.sync()
    times: dict[str, list[float]] = {n: [] for n in backends}
    for _ in range(iters):
        for n, b in backends.items():
            times[n].append(_time_once(b, prepared[n]))
    return times


def summarize(times_ms: Sequence[float], batch: int) -> dict[str, float]:
    a = np.asarray(times_ms, dtype=np.float64)
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()), "min_ms": float(a.min()),
            "throughput_img_s": float(batch * 1e3 / a.mean()), "iters": int(a.size)}


def run_bench(backends: dict[str, Any], sizes: Sequence[Sequence[int]], batch: int, *, warmup: int,
              iters: int, seed: int = 0, noise_dim: int | None = None) -> list[dict[str, Any]]:
    """Time every backend on the same inputs: a random image batch per size, or for a noise network
    (``noise_dim``: the DCGAN generator) one N(0, 1) batch, where sizes do not apply."""
    from tqdm import tqdm

    from segstyle.export.netload import example_input

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
