"""What the export layer reads from ``params.yaml``, as one typed object passed explicitly.

Export, parity, the FP16 recipe, engine builds, validation and bundles used to take the whole
``Params``; they read a handful of fields of four sections. :class:`ExportSettings` is exactly those
fields, so a library caller (or a test) sees what an export depends on, the export layer never
imports the pipeline's config model, and the commands build it once (:meth:`from_params`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from segstyle.export.portable.compare import Bounds, bounds_table


class EngineProfile(NamedTuple):
    """An optimisation profile of an image network's input, ``[batch, H, W]`` each (params ``engine.profiles``)."""

    min: tuple[int, int, int]
    opt: tuple[int, int, int]
    max: tuple[int, int, int]


@dataclass(frozen=True)
class ExportSettings:
    opset: int                                   # export.opset
    size: tuple[int, int]                        # export.size: the example input's H x W
    parity_sizes: tuple[tuple[int, int], ...]    # export.parity_sizes
    fp16_keep_fp32: tuple[str, ...]              # export.fp16_keep_fp32: the one FP16 recipe
    engine_profiles: EngineProfile               # engine.profiles
    workspace_mb: int                            # engine.workspace_mb
    timing_cache: str                            # engine.timing_cache
    bounds: dict[str, Bounds]                    # validate.bounds: fixed bounds per precision (fp32, fp16, int8)
    samples: int                                 # validate.samples
    int8: dict[str, Any]                         # export.int8: the INT8 recipe (calibration, float ops)
    seed: int                                    # seed: fresh weights, parity inputs, golden noise
    profile: str                                 # the params profile (demo / full), recorded in metadata
    params_digest: str                           # digest of the parameters at export time (provenance)

    @classmethod
    def from_params(cls, params: Any) -> "ExportSettings":
        """From a validated ``segstyle.pipelines.config.Params`` (read by attribute: no import of it here)."""
        ep = params.engine.profiles
        return cls(
            opset=int(params.export.opset), size=tuple(int(v) for v in params.export.size),
            parity_sizes=tuple(tuple(int(v) for v in s) for s in params.export.parity_sizes),
            fp16_keep_fp32=tuple(params.export.fp16_keep_fp32),
            engine_profiles=EngineProfile(*(tuple(int(v) for v in getattr(ep, k)) for k in ("min", "opt", "max"))),
            workspace_mb=int(params.engine.workspace_mb), timing_cache=str(params.engine.timing_cache),
            bounds=bounds_table({k: v.model_dump() for k, v in params.validate_.bounds.items()}),
            samples=int(params.validate_.samples), int8=params.export.int8.model_dump(mode="json"),
            seed=int(params.seed), profile=str(params.profile), params_digest=params.digest(),
        )
