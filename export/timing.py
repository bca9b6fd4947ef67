"""How a backend's latency is measured: per-run timings, interleaved across backends, and their summary.

Shared by ``segstyle engine bench`` (:mod:`segstyle.export.bench`, the measurement) and validation's
p50 column (:mod:`segstyle.export.validate`), so both time the same way and validation does not
depend on the benchmark command's code.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch


def time_once(backend, prepared) -> float:
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
            times[n].append(time_once(b, prepared[n]))
    return times


def summarize(times_ms: Sequence[float], batch: int) -> dict[str, float]:
    a = np.asarray(times_ms, dtype=np.float64)
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()), "min_ms": float(a.min()),
            "throughput_img_s": float(batch * 1e3 / a.mean()), "iters": int(a.size)}
