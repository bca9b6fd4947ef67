"""Does every deployed backend still give PyTorch FP32's answers on real images? Fixed bounds say.

Random-input parity (``export onnx``) proves the graph; this proves the *precision*: an FP16 graph
whose logits wobble may still flip argmax decisions on real images. Per network, every backend this
machine has is run on the same images as PyTorch FP32 (the reference):

- ``ort-cpu`` on the FP32 graph, the FP16 graph and each INT8 graph (``--onnx-int8``; the TensorRT
  target's graph too, as an accuracy stand-in for its engine, row key ``ort-cpu-int8-trt``): always;
- ``torch-fp16``, ``ort-cuda`` (FP16 graph) and ``tensorrt`` (the engine): where CUDA / TensorRT
  exist, otherwise a row "not run: <reason>" (never silently absent);
- ``aoti-cpu`` / ``aoti-cuda`` (an AOTInductor package, :mod:`segstyle.export.backend.aoti`): where
  a package for that device is given, otherwise "not run: <reason>".

Inputs are the whole validation split (or any ``--images`` folder) at natural sizes, batch 1;
images outside the TensorRT profile are resized into it for the ``tensorrt`` row only, and for an
``aoti`` row into the package's ranges and onto its H/W alignment (each such row's reference is
recomputed at that size; the record counts the resized images). Segmentation: argmax pixel agreement, mIoU of backend and
reference on the same labels (one :class:`~segstyle.core.metrics.ConfusionMatrix` each), and
the explained share of disagreeing pixels (:class:`~segstyle.export.portable.compare.AgreementCounts`).
Style: PSNR and SSIM against PyTorch's image (torchmetrics). Verdicts come from the fixed
:class:`~segstyle.export.portable.compare.Bounds` of the row's precision (``params.yaml``
``validate.bounds``); an INT8 row of a network that ``export.int8.not_deployable`` lists is measured
and shown but does not fail the record, unless it passes every bound (then the entry is stale).
Segmentation rows also carry per-class IoU deltas; ONNX rows the graph's size.

Two files per run: the *record* (everything: rows, reasons, per-image figures, paths; a plain
output) and the *metrics* file (figures only, one block per backend, not-run rows as ``ran: 0``),
which DVC tracks so ``dvc metrics diff`` shows a precision regression between commits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from segstyle.export.inputs import Inputs, Sample
from segstyle.export.portable.compare import AgreementCounts, Bounds, PARITY, compare_arrays, label_map, merge
from segstyle.core.devices import cuda_reason
from segstyle.models.classes import output_channels
from segstyle.core.errors import SegstyleError
from segstyle.export.backend.onnx.loader import graph_precision, int8_target, load_onnx, onnx_precision
from segstyle.export.backend.onnxrt.loader import ort_cuda_reason
from segstyle.export.backend.trt.loader import tensorrt_reason


@dataclass
class BackendPlan:
    """A backend to compare, or the reason it cannot run here."""

    backend: str
    precision: str
    artifact: str | None = None
    make: Callable[[], Any] | None = None
    reason: str | None = None
    fit: tuple[Sequence[int], Sequence[int], int] | None = None  # (min HxW, max HxW, align) inputs are resized into
    graph: str | None = None     # INT8 graphs: the target they were quantised for (cpu | trt)

    @property
    def key(self) -> str:
        return row_key(self.backend, self.precision, self.graph)


def row_key(backend: str, precision: str, graph: str | None = None) -> str:
    """``ort-cpu-fp16``; ``torch-fp16`` (the name already says it); ``ort-cpu-int8-trt`` (the TensorRT INT8
    graph under ONNX Runtime CPU: an accuracy stand-in for the engine)."""
    key = backend if backend.endswith(precision) else f"{backend}-{precision}"
    return key + (f"-{graph}" if graph and graph != "cpu" else "")


# ---- inputs --------------------------------------------------------------------------------------


def bound_task(task: str) -> str:
    """Which fixed bound judges a task: argmax agreement for segmentation, PSNR for every network
    whose deployed output is a 0..1 image (style, the fused region-style graph, the DCGAN generator)."""
    return "segmentation" if task == "segmentation" else "style"


def fit_to_profile(sample: Sample, lo: Sequence[int], hi: Sequence[int], align: int = 1) -> tuple[Sample, bool]:
    """Resize (aspect kept) into a profile's [min, max] H and W, and onto multiples of ``align``;
    unchanged when already inside and aligned.

    Downscales only where ``max`` requires it; an image below ``min`` is upscaled (the engine
    cannot run it otherwise); each side then goes to the nearest multiple of ``align`` inside the
    bounds (an AOTInductor package exported for multiples of 32 takes nothing else). Masks follow
    with nearest-neighbour.
    """
    h, w = sample.image.shape[1:]
    s = 1.0
    if h > hi[0] or w > hi[1]:
        s = min(hi[0] / h, hi[1] / w)
    elif h < lo[0] or w < lo[1]:
        s = max(lo[0] / h, lo[1] / w)

    def onto(v: float, a: int, b: int) -> int:
        lo_a, hi_a = align * math.ceil(a / align), align * (b // align)
        return min(max(align * int(round(v / align)), lo_a), hi_a)

    nh, nw = onto(h * s, lo[0], hi[0]), onto(w * s, lo[1], hi[1])
    if (nh, nw) == (h, w):
        return sample, False
    img = F.interpolate(sample.image[None], size=(nh, nw), mode="bilinear", align_corners=False,
                        antialias=s < 1)[0]
    mask = None
    if sample.mask is not None:
        mask = F.interpolate(sample.mask[None, None].float(), size=(nh, nw), mode="nearest")[0, 0].to(torch.uint8)
    return Sample(sample.name, img, mask), True


# ---- backends ------------------------------------------------------------------------------------


def plan_backends(requested: Sequence[str], *, net, onnx_fp32: str | None, onnx_fp16: str | None,
                  engine: str | None, engine_precision: str = "fp16", threads: int | None = None,
                  packages: Sequence[str] = (), onnx_int8: Sequence[str] = ()) -> list[BackendPlan]:
    """What to compare: ``requested`` backend names, or ``all`` (every backend, not-run rows included).

    ``onnx_int8``: INT8 graphs, each an ``ort-cpu`` row (the ``trt`` target's graph too, as an accuracy
    stand-in for its engine); with ``all`` a ``tensorrt int8`` row says why it did not run.

    ``packages``: AOTInductor packages, each used by the ``aoti-<device>`` row of its sidecar's device
    (rebuilt from its exported program first when its rebuild key does not match this machine).
    """
    from segstyle.export.backend.registry import BACKENDS, make_backend, parse_backend

    names = list(BACKENDS[1:]) if list(requested) == ["all"] else [parse_backend(s)[0] for s in requested]
    plans: list[BackendPlan] = []
    for name in names:
        if name == "torch-fp32":
            raise SegstyleError("torch-fp32 is the reference; compare another backend with it")
        if name == "torch-fp16":
            why = cuda_reason()
            plans.append(BackendPlan("torch-fp16", "fp16", None, None if why else
                                     (lambda: make_backend("torch-fp16", net=net)), why))
        elif name == "ort-cpu":
            for path in (p for p in (onnx_fp32, onnx_fp16, *onnx_int8) if p):
                graph = load_onnx(path, check=False)
                plans.append(BackendPlan("ort-cpu", graph_precision(graph), str(path),
                                         (lambda p=path: make_backend("ort-cpu", onnx_path=p, threads=threads)),
                                         graph=int8_target(graph)))
        elif name == "ort-cuda":
            path = onnx_fp16 or onnx_fp32
            why = ort_cuda_reason() or (None if path else "no ONNX graph given")
            plans.append(BackendPlan("ort-cuda", onnx_precision(path) if path else "fp16", path and str(path),
                                     None if why else (lambda p=path: make_backend("ort-cuda", onnx_path=p)), why))
        elif name == "tensorrt":
            why = tensorrt_reason()
            if why is None and not engine:
                why = "no engine given (--engine; the engine_validate stage validates the built engine)"
            plans.append(BackendPlan("tensorrt", engine_precision, engine and str(engine),
                                     None if why else (lambda: make_backend("tensorrt", engine_path=engine)), why))
            if list(requested) == ["all"] and onnx_int8 and engine_precision != "int8":
                plans.append(BackendPlan("tensorrt", "int8", None, None,
                                         tensorrt_reason() or "no INT8 engine given (build one from the trt INT8 "
                                         "graph: segstyle engine build --onnx model_int8.onnx)"))
        elif name in ("aoti-cpu", "aoti-cuda"):
            plans.append(_aoti_plan(name, packages))
    return plans


def _aoti_plan(name: str, packages: Sequence[str]) -> BackendPlan:
    """The ``aoti-<device>`` row: the given package for that device, or why it cannot run."""
    from segstyle.export.backend.aoti.loader import Ranges, aoti_reason, ensure_package, read_sidecar
    from segstyle.export.backend.registry import make_backend

    device = name.split("-")[1]
    sides = {str(p): read_sidecar(p) for p in packages}
    mine = [p for p, side in sides.items() if (side or {}).get("device", device) == device]
    why = aoti_reason(device)
    if why is None and not mine:
        why = ("no package given (--package; the pipeline's aoti_validate stage validates the packages it builds)"
               if not packages
               else f"no {device} package among {', '.join(sides)}")
    if why is not None or not mine:
        return BackendPlan(name, "fp16" if device == "cuda" else "fp32", None, None, why)
    package = mine[0]
    side = sides[package]
    if side is None:
        raise SegstyleError(f"{package}: no readable sidecar {package}.json (build it with segstyle engine build "
                            "--backend aoti)")

    def make():
        _, reasons = ensure_package(None, package, device=device, precision=side["precision"])
        if reasons:
            import sys

            print(f"{package}: rebuilt before running ({'; '.join(reasons)})", file=sys.stderr)
        return make_backend(name, package_path=package)

    r = Ranges.from_json(side["ranges"])
    fit = None if r.height is None else ((r.height[0], r.width[0]), (r.height[1], r.width[1]), r.align)
    return BackendPlan(name, side["precision"], package, make, None, fit=fit)


# ---- comparison ----------------------------------------------------------------------------------

def _finite_or_none(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


@dataclass
class Reference:
    """PyTorch FP32 outputs, computed once per image (and per profile-fitted size)."""

    backend: Any
    cache: dict[tuple, torch.Tensor] = field(default_factory=dict)

    def __call__(self, s: Sample) -> torch.Tensor:
        key = (s.name, tuple(s.image.shape))
        if key not in self.cache:
            self.cache[key] = self.backend(s.image[None])
        return self.cache[key]


def compare_segmentation(ref: Reference, backend, samples: Sequence[Sample], num_classes: int,
                         labels: bool, desc: str, logit_tolerance: float) -> dict[str, Any]:
    """Figures of one backend against the reference over ``samples`` (see module docstring);
    ``logit_tolerance``: the fixed tolerance of the backend's precision behind the explained share."""
    from tqdm import tqdm

    from segstyle.core.metrics import ConfusionMatrix

    counts = AgreementCounts(logit_tolerance=logit_tolerance)
    cm_ref, cm_b = ConfusionMatrix(num_classes), ConfusionMatrix(num_classes)
    comps = []
    for s in tqdm(samples, desc=desc, unit="img", leave=False):
        r = ref(s)
        o = backend(s.image[None])
        if o.shape != r.shape:
            raise SegstyleError(f"{backend.name}: output shape {tuple(o.shape)} differs from PyTorch's "
                                f"{tuple(r.shape)} on {s.name}")
        if r.shape[1] != output_channels(num_classes):
            raise SegstyleError(f"the model has {r.shape[1]} output channels but the labels have {num_classes} "
                                f"classes ({output_channels(num_classes)} channels)")
        row = counts.add(o.numpy(), r.numpy())
        row["image"] = s.name
        comps.append(compare_arrays(o.numpy(), r.numpy(), PARITY, argmax_axis=1))
        if labels and s.mask is not None:
            cm_ref.update(s.mask, label_map(r)[0])
            cm_b.update(s.mask, label_map(o)[0])
    c = merge(comps)
    figures: dict[str, Any] = {
        "images": counts.images, "agreement_pct": counts.agreement_pct,
        "disagreeing_pixels": counts.disagreeing, "explained_pct": counts.explained_pct,
        "max_abs_logit_err": _finite_or_none(c.max_abs), "mean_abs_logit_err": _finite_or_none(c.mean_abs),
        "finite": c.finite, **counts.alpha_figures(),
    }
    if labels:
        c_ref, c_b = cm_ref.compute(), cm_b.compute()
        m_ref, m_b = c_ref["miou"] * 100.0, c_b["miou"] * 100.0
        figures.update({"miou_reference": m_ref, "miou_backend": m_b, "delta_miou_pts": m_b - m_ref,
                        # per class, in points (None where the class is in neither prediction nor labels)
                        "delta_iou_pts": [_finite_or_none((b - r) * 100.0) for r, b in zip(c_ref["iou"], c_b["iou"])]})
    return {"figures": figures, "per_image": counts.per_image}


def psnr_ssim(output: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """PSNR (dB) and SSIM (Gaussian 11x11, sigma 1.5) of 0..1 images, from torchmetrics."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    if not torch.isfinite(output).all():
        return float("-inf"), float("nan")
    o, r = output.double().clamp(0, 1), reference.double().clamp(0, 1)
    p = float(peak_signal_noise_ratio(o, r, data_range=1.0))
    s = float(structural_similarity_index_measure(o, r, data_range=1.0, gaussian_kernel=True, sigma=1.5,
                                                  kernel_size=11))
    return p, s


def compare_style(ref: Reference, backend, samples: Sequence[Sample], desc: str) -> dict[str, Any]:
    from tqdm import tqdm

    per_image, comps = [], []
    for s in tqdm(samples, desc=desc, unit="img", leave=False):
        r = ref(s)
        o = backend(s.image[None])
        if o.shape != r.shape:
            raise SegstyleError(f"{backend.name}: output shape {tuple(o.shape)} differs from PyTorch's "
                                f"{tuple(r.shape)} on {s.name}")
        p, q = psnr_ssim(o, r)
        comps.append(compare_arrays(o.clamp(0, 1).numpy() if torch.isfinite(o).all() else o.numpy(),
                                    r.clamp(0, 1).numpy(), PARITY))
        per_image.append({"image": s.name, "psnr_db": _finite_or_none(p), "ssim": _finite_or_none(q)})
    ps = [r["psnr_db"] if r["psnr_db"] is not None else -math.inf for r in per_image]
    ss = [r["ssim"] if r["ssim"] is not None else math.nan for r in per_image]
    finite = [p for p in ps if math.isfinite(p)]
    c = merge(comps)
    figures = {"images": len(per_image), "psnr_db_min": _finite_or_none(min(ps)),
               "psnr_db_mean": _finite_or_none(float(np.mean(finite))) if finite else None,
               "ssim_min": _finite_or_none(float(np.min(ss))), "max_abs_err": _finite_or_none(c.max_abs),
               "finite": c.finite}
    return {"figures": figures, "per_image": per_image}


def latency_p50(backends: dict[str, Any], size: Sequence[int], iters: int,
                noise_dim: int | None = None) -> dict[str, float]:
    """p50 latency (ms) of each backend at one size (a noise network: one (1, nz) vector), runs
    interleaved (export/timing.py, as segstyle engine bench times).

    A matrix column, not a benchmark: few runs, so the stage stays cheap on the 2-core demo
    machine; ``segstyle engine bench`` is the measurement with warm-up, repeats and percentiles.
    """
    from segstyle.export.timing import summarize, time_backends
    from segstyle.export.backend.pyt.loader import example_input

    x = example_input(noise_dim, 1, size, torch.Generator().manual_seed(0))
    with torch.no_grad():
        times = time_backends(backends, x, warmup=1, iters=iters)
    return {k: summarize(v, 1)["p50_ms"] for k, v in times.items()}


def engine_precisions(engine: str | Path | None) -> tuple[dict[str, Any], list[str]]:
    """Layer precisions TensorRT chose for ``engine`` (from its sidecar, written at build time by
    :func:`segstyle.export.backend.trt.loader.build_engine`): figures, and violations when a kept op ran FP16.

    An engine without that record is not proven: that is a violation too, not a silent pass.
    """
    from segstyle.export.backend.trt.loader import read_sidecar

    side = read_sidecar(engine) if engine else None
    lp = (side or {}).get("layer_precisions")
    if not isinstance(lp, dict):
        return {}, [f"no layer precisions recorded for {engine} (rebuild with segstyle engine build)"]
    ran16 = list(lp.get("kept_ran_fp16") or [])
    figures = {"fp32_layers": len(lp.get("fp32_layers") or []), "layers": int(lp.get("layers") or 0),
               "kept_ran_fp16": len(ran16), "kept_unplaced": len(lp.get("kept_unplaced") or [])}
    bad = [f"kept op ran FP16: {ran16[0]}" + (f" (+{len(ran16) - 1} more)" if len(ran16) > 1 else "")] if ran16 else []
    return figures, bad


def validate_network(network: str, loaded, inputs: Inputs, plans: Sequence[BackendPlan], *,
                     bounds: dict[str, Bounds], not_deployable: dict[str, str] | None = None,
                     num_classes: int | None, profile: tuple[Sequence[int], Sequence[int]] | None,
                     latency_size: Sequence[int] | None, latency_iters: int = 7) -> dict[str, Any]:
    """Run every plan against PyTorch FP32 on ``inputs``; returns the full record (see module doc)."""
    from segstyle.export.backend.pyt.runner import TorchBackend

    ref = Reference(TorchBackend(loaded.net, fp16=False, options=set(), device="cpu"))
    rows: list[dict[str, Any]] = []
    ran: dict[str, Any] = {}
    for plan in plans:
        row: dict[str, Any] = {"backend": plan.backend, "precision": plan.precision, "artifact": plan.artifact}
        if plan.graph:
            row["graph"] = plan.graph
        b = bounds[plan.precision]
        if plan.make is None:
            rows.append({**row, "ran": False, "reason": plan.reason})
            continue
        try:
            backend = plan.make()
        except SegstyleError as e:
            rows.append({**row, "ran": False, "reason": str(e)})
            continue
        samples, resized = inputs.samples, 0
        fit = plan.fit or ((*profile, 1) if plan.backend == "tensorrt" and profile is not None else None)
        if fit is not None and loaded.noise_dim is None:
            fitted = [fit_to_profile(s, *fit) for s in samples]
            samples, resized = [f for f, _ in fitted], sum(r for _, r in fitted)
        desc = f"{network} {plan.key}"
        if loaded.task == "segmentation":
            res = compare_segmentation(ref, backend, samples, num_classes or 0, inputs.labels, desc, b.logit_tolerance)
        else:
            res = compare_style(ref, backend, samples, desc)
        figures = res["figures"]
        violations = b.violations(bound_task(loaded.task), figures)
        if plan.artifact and Path(plan.artifact).is_file() and plan.backend.startswith("ort"):
            figures["size_mb"] = Path(plan.artifact).stat().st_size / 1e6
        if not figures.get("finite", True):
            violations.append("non-finite outputs (NaN/inf)")
        if plan.backend == "tensorrt":
            layer_figures, layer_bad = engine_precisions(plan.artifact)
            figures.update(layer_figures)
            violations += layer_bad
        if plan.backend.startswith("aoti"):
            side = getattr(backend, "sidecar", {})
            row["package"] = {k: side.get(k) for k in ("compile_seconds", "torch_version", "cpu_isa", "cpu_model",
                                                        "threads", "gpu_name", "compute_capability", "size_bytes",
                                                        "program_sha256", "ranges") if k in side}
        passed = not violations
        why_not = (not_deployable or {}).get(network) if plan.precision == "int8" else None
        if why_not is not None:  # measured and shown, but not gated; a pass means the entry is stale
            row["not_deployable"] = why_not
            if passed:
                violations.append(f"passes every int8 bound but params export.int8.not_deployable lists {network}: "
                                  "delete the entry")
        rows.append({**row, "ran": True, "figures": figures, "violations": violations, "passed": passed,
                     "resized_for_profile": resized, "per_image": res["per_image"]})
        ran[plan.key] = backend
    latency = None
    if latency_size and ran:
        p50 = latency_p50({"torch-fp32": ref.backend, **ran}, latency_size, latency_iters, loaded.noise_dim)
        size = list(latency_size) if loaded.noise_dim is None else [1, loaded.noise_dim]
        latency = {"size": size, "iters": latency_iters, "reference_p50_ms": p50["torch-fp32"]}
        for row in rows:
            key = row_key(row["backend"], row["precision"], row.get("graph"))
            if row["ran"] and key in p50:
                row["figures"]["p50_ms"] = p50[key]
    return {
        "network": network, "model": loaded.model, "task": loaded.task, "checkpoint": loaded.checkpoint,
        "classes": list(loaded.classes or []),
        "reference": "torch-fp32 (cpu)", "inputs": {
            "source": inputs.source, "images": len(inputs.samples), "labels": inputs.labels,
            "sizes": sorted({"x".join(str(int(d)) for d in s.image.shape[-2:]) for s in inputs.samples})},
        "bounds": {p: bd.to_dict() for p, bd in bounds.items()},
        "latency": latency, "rows": rows,
        # a not-deployable row counts as expected while it fails; one that passes is a stale entry
        "passed": all((not r["passed"]) if "not_deployable" in r else r.get("passed", True) for r in rows),
    }


METRIC_FIGURES = {
    "segmentation": ("agreement_pct", "delta_miou_pts", "explained_pct", "max_abs_logit_err", "alpha_psnr_db_min",
                     "fp32_layers", "kept_ran_fp16", "size_mb"),
    "style": ("psnr_db_min", "ssim_min", "max_abs_err", "fp32_layers", "kept_ran_fp16", "size_mb"),
}
METRIC_FIGURES["generation"] = METRIC_FIGURES["style"]


def metrics_view(record: dict[str, Any]) -> dict[str, Any]:
    """The DVC metrics file: precision figures only, one block per row that ran.

    Left to ``record.json`` (and the matrix): paths, reasons, per-image lists, the rows that did not
    run on this machine (a GPU row is "not run: no CUDA" on every CPU machine: a column of zeros in
    ``dvc metrics show`` says nothing the record does not) and p50 latencies (a timing changes on
    every run, so ``dvc metrics diff`` would always list it and hide a real precision change).
    """
    out: dict[str, Any] = {"images": record["inputs"]["images"], "passed": int(record["passed"])}
    ref = next((r["figures"].get("miou_reference") for r in record["rows"] if r["ran"]
                and "miou_reference" in r["figures"]), None)
    if ref is not None:
        out["miou_reference"] = ref
    for row in record["rows"]:
        key = row_key(row["backend"], row["precision"], row.get("graph"))
        if not row["ran"]:
            continue
        f = row["figures"]
        block = {k: f[k] for k in METRIC_FIGURES[record["task"]] if f.get(k) is not None}
        block["passed"] = int(row["passed"])
        out[key] = block
    return out


def violation_lines(record: dict[str, Any]) -> list[str]:
    from segstyle.export.portable.compare import violation_line

    return [violation_line(record["network"], f"{r['backend']} {r['precision']}"
                           + (f" ({r['graph']} graph)" if r.get("graph") else ""), r["violations"])
            for r in record["rows"] if r["ran"] and r["violations"] and (r["passed"] or "not_deployable" not in r)]
