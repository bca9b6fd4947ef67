"""Is there a CUDA GPU here? The one answer for the orchestrator, validation and every backend.

:func:`cuda_reason` says why not, in the words the validation records and the deployment matrix
print ("no CUDA GPU visible"); it decides without importing torch where no NVIDIA driver is loaded
(importing torch costs 2-5 s on our 2-core machines, and the orchestrator asks on every run).
``SEGSTYLE_FORCE_NO_GPU=1`` pretends there is no GPU.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

NO_GPU = "no CUDA GPU visible"


def nvidia_driver_absent() -> bool:
    """True when this Linux machine has no NVIDIA driver loaded, decided without importing torch.

    Why: importing torch only to learn that CUDA is unavailable costs 2-5 s on our 2-core machines,
    and the orchestrator asks on every ``segstyle run`` (also on a no-change rerun).
    """
    if not sys.platform.startswith("linux"):
        return False  # cannot tell cheaply: let torch decide
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir() and any(gpus.iterdir()):
        return False
    # containers may hide /proc/driver but expose the device nodes; WSL exposes /dev/dxg
    return not any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg"))


def cpuinfo(field: str) -> str | None:
    """The first ``field`` line of ``/proc/cpuinfo`` ("model name", "flags", ...), or None (no such file or
    line): the CPU facts the AOTInductor rebuild key, the INT8 recipe and the benchmark records read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == field:
                    return value.strip()
    except OSError:
        pass
    return None


def cuda_reason() -> str | None:
    """None when a CUDA GPU is usable here, else the one-line reason (:data:`NO_GPU`)."""
    if os.environ.get("SEGSTYLE_FORCE_NO_GPU") == "1" or nvidia_driver_absent():
        return NO_GPU
    import torch

    return None if torch.cuda.is_available() else NO_GPU
