"""A pool of the machine's GPUs for stages that run at the same time (``segstyle run --jobs N``).

Why: two trainings started together would otherwise both pick ``cuda:0`` (PyTorch's default) and
share one device while the others idle. Each GPU stage takes whole devices from the pool for its
lifetime and sees only those, through ``CUDA_VISIBLE_DEVICES`` (so inside the stage they are
``cuda:0..k-1``, which is what ``torchrun`` and :func:`segstyle.core.runtime.pick_device`
expect): one device by default, ``--nproc N`` devices for a DDP stage. A stage waits until enough
devices are free; a request larger than the pool is a one-line error, not a wait forever.

The device count comes from ``torch.cuda.device_count()``; ``SEGSTYLE_GPU_COUNT`` overrides it
(tests fake a multi-GPU machine with it; a user can also keep GPUs out of the pool). Respecting an
inherited ``CUDA_VISIBLE_DEVICES`` (``CUDA_VISIBLE_DEVICES=2,3 segstyle run``): the pool hands out
those ids.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator

from segstyle.core.devices import nvidia_driver_absent
from segstyle.core.errors import UsageError


def visible_devices() -> list[str]:
    """Ids of the GPUs the pool may hand out (strings, as ``CUDA_VISIBLE_DEVICES`` takes them)."""
    override = os.environ.get("SEGSTYLE_GPU_COUNT")
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    if override is not None:
        count = int(override)
    elif os.environ.get("SEGSTYLE_FORCE_NO_GPU") == "1" or nvidia_driver_absent():
        count = 0
    else:
        try:
            import torch

            count = torch.cuda.device_count()
        except Exception:  # pragma: no cover - no usable torch/CUDA
            count = 0
    if inherited:
        ids = [d.strip() for d in inherited.split(",") if d.strip()]
        return ids[:count]
    return [str(i) for i in range(count)]


class DevicePool:
    """Hands out disjoint sets of GPU ids; :meth:`take` blocks until ``n`` are free."""

    def __init__(self, devices: list[str] | None = None):
        self.devices = list(visible_devices() if devices is None else devices)
        self._free = list(self.devices)
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return len(self.devices)

    def check(self, n: int, what: str = "a stage") -> None:
        if n > len(self.devices):
            raise UsageError(f"{what} needs {n} GPU(s) but the pool has {len(self.devices)} "
                             f"({', '.join(self.devices) or 'none'}); lower --nproc")

    @contextlib.contextmanager
    def take(self, n: int = 1) -> Iterator[list[str]]:
        """Reserve ``n`` devices for the duration of the block (yields their ids)."""
        self.check(n)
        with self._cond:
            self._cond.wait_for(lambda: len(self._free) >= n)
            got, self._free = self._free[:n], self._free[n:]
        try:
            yield got
        finally:
            with self._cond:
                self._free.extend(got)
                self._free.sort(key=self.devices.index)
                self._cond.notify_all()
