"""The interface every inference backend implements (Polygraphy's ``BaseRunner`` in small).

Every backend takes a float32 0..1 NCHW tensor (or (N, nz) noise) and returns the deployment output
(segmentation logits or the image) as a tensor on its own device; :meth:`Backend.sync` waits for it.
``prepare`` moves the input to where the backend reads it, so benchmarks time inference, not the
host-to-device copy. A backend that cannot run here raises one :class:`SegstyleError` line.
"""

from __future__ import annotations

from typing import Any

import torch


class Backend:
    name: str
    device: torch.device = torch.device("cpu")

    def prepare(self, x: torch.Tensor) -> Any:
        return x

    def run(self, prepared: Any) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Run and return the output as float32 on the CPU (for metrics)."""
        out = self.run(self.prepare(x))
        self.sync()
        return out.float().cpu()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
