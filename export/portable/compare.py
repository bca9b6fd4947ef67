"""One comparison: tolerances and results as objects, the way Polygraphy's comparator states them.

Four places compare a deployed graph with PyTorch FP32 (export parity, the FP16 graph check,
``engine validate`` and the bundle's ``check.py``). They used to return four result shapes, and
"1e-4" meant max absolute error in one place and per-element abs-or-rel in another. Here a
:class:`Tolerance` names its statistic, and a :class:`ComparisonResult` carries every error figure,
the verdict, and the smallest tolerance that would have passed (Polygraphy's "minimum required
tolerance"), so a failure says by how much.

Semantics follow ``polygraphy.comparator.compare.SimpleThreshold`` / ``check_outputs_match``:

- ``statistic`` ``max`` / ``mean`` / ``median``: the statistic of |a - b| must be ``<= atol`` *or*
  the same statistic of |a - b| / |b| must be ``<= rtol`` (a tolerance of 0 disables that side);
- ``elemwise``: every element must satisfy ``|a - b| <= atol`` or ``|a - b| / |b| <= rtol``.

Deployment is judged on figures a user can read, not on logit error: :class:`Bounds` holds the fixed
numbers of ``params.yaml`` ``validate`` (argmax agreement, |delta mIoU|, style PSNR) and turns a
record into violation lines naming network, backend and figure. Bounds are never derived from the
backend's own error (a check scaled to what it measures cannot fail).

This module needs numpy only: the bundle ships a byte-identical copy beside ``check.py`` so the
device applies the same bounds with the same code.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

STATISTICS = ("max", "mean", "median", "elemwise")


@dataclass(frozen=True)
class Tolerance:
    """How close two outputs must be. ``rtol`` 0 means absolute only (and vice versa)."""

    atol: float
    rtol: float = 0.0
    statistic: str = "max"

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}, not {self.statistic!r}")
        if self.atol < 0 or self.rtol < 0:
            raise ValueError("tolerances must be >= 0")

    def describe(self) -> str:
        parts = [f"atol {self.atol:g}"] + ([f"rtol {self.rtol:g}"] if self.rtol else [])
        return f"{self.statistic} error: {' or '.join(parts)}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The project's tolerances, stated once (tests import these).
#: FP32 ONNX under ONNX Runtime vs PyTorch FP32 on the CPU: the same arithmetic, reordered.
PARITY = Tolerance(atol=1e-4, rtol=0.0, statistic="max")


@dataclass(frozen=True)
class ComparisonResult:
    """Everything one comparison of ``actual`` against ``reference`` found.

    ``required_atol`` / ``required_rtol``: the smallest tolerance of ``tolerance.statistic`` that
    would have passed (either one suffices, as in Polygraphy). ``argmax_agreement_pct``: share of
    positions where the argmax over ``argmax_axis`` agrees (segmentation logits), else None.
    """

    passed: bool
    tolerance: Tolerance
    max_abs: float
    mean_abs: float
    median_abs: float
    max_rel: float
    mean_rel: float
    median_rel: float
    required_atol: float
    required_rtol: float
    finite: bool
    shape: tuple[int, ...]
    argmax_agreement_pct: float | None = None
    name: str = ""

    def __bool__(self) -> bool:
        return self.passed

    def describe(self) -> str:
        """One line: verdict, the figures, and the tolerance that would have passed."""
        agree = "" if self.argmax_agreement_pct is None else f", argmax agreement {self.argmax_agreement_pct:.3f}%"
        what = f"{self.name}: " if self.name else ""
        return (f"{what}{'PASSED' if self.passed else 'FAILED'} ({self.tolerance.describe()}): max abs "
                f"{self.max_abs:.3g}, mean abs {self.mean_abs:.3g}, max rel {self.max_rel:.3g}{agree}; "
                f"would pass at atol {self.required_atol:.3g} or rtol {self.required_rtol:.3g}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["tolerance"] = self.tolerance.to_dict()
        return d


def _stat(a: np.ndarray, statistic: str) -> float:
    if a.size == 0:
        return 0.0
    if statistic in ("max", "elemwise"):
        return float(a.max())
    if statistic == "mean":
        return float(a.mean())
    return float(np.median(a))


# The bundle's copy of segstyle.models.classes.label_map (this module needs numpy only and ships byte
# for byte, so it cannot import the model code); tests/export/portable/test_compare.py keeps the two identical.
def label_map(logits: Any, axis: int = 1) -> Any:
    """The label map a network's logits mean: argmax over the class ``axis``, or, for a one-channel
    (binary foreground) output, ``logit > 0`` (sigmoid > 0.5): an argmax over one channel is 0
    everywhere and would agree with anything. Works on numpy arrays and torch tensors alike (both
    give integer labels); the one rule every comparison, metric and prediction uses."""
    if logits.shape[axis] == 1:
        return (logits > 0).sum(axis)
    return logits.argmax(axis)


def compare_arrays(actual: Any, reference: Any, tolerance: Tolerance, *, argmax_axis: int | None = None,
                   name: str = "") -> ComparisonResult:
    """Compare ``actual`` with ``reference`` (array-likes of equal shape) under ``tolerance``.

    Non-finite values in ``actual`` fail regardless of the tolerance (an FP16 overflow is a NaN/inf,
    and NaN compares false with everything, so it would otherwise slip through a ``<=`` test).
    """
    a = np.asarray(actual, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if a.shape != r.shape:
        raise ValueError(f"shape {a.shape} differs from the reference's {r.shape}")
    finite = bool(np.isfinite(a).all())
    absdiff = np.abs(a - r)
    absdiff[np.isnan(absdiff)] = np.inf
    denom = np.abs(r)
    denom[denom == 0] = np.finfo(np.float64).eps  # Polygraphy adds the same epsilon to zeros
    reldiff = absdiff / denom
    st = tolerance.statistic
    if st == "elemwise":
        bad = (absdiff > tolerance.atol if tolerance.atol or not tolerance.rtol else np.ones_like(absdiff, bool))
        if tolerance.rtol:
            bad &= reldiff > tolerance.rtol
        ok = not bool(bad.any())
    else:
        abs_ok = _stat(absdiff, st) <= tolerance.atol if (tolerance.atol or not tolerance.rtol) else False
        rel_ok = _stat(reldiff, st) <= tolerance.rtol if tolerance.rtol else False
        ok = abs_ok or rel_ok
    agree = None
    if argmax_axis is not None and a.ndim > argmax_axis:
        agree = float((label_map(a, argmax_axis) == label_map(r, argmax_axis)).mean() * 100.0)
    return ComparisonResult(
        passed=bool(ok and finite), tolerance=tolerance,
        max_abs=_stat(absdiff, "max"), mean_abs=float(absdiff.mean()) if absdiff.size else 0.0,
        median_abs=_stat(absdiff, "median"), max_rel=_stat(reldiff, "max"),
        mean_rel=float(reldiff.mean()) if reldiff.size else 0.0, median_rel=_stat(reldiff, "median"),
        required_atol=_stat(absdiff, st), required_rtol=_stat(reldiff, st), finite=finite,
        shape=tuple(a.shape), argmax_agreement_pct=agree, name=name)


def merge(results: Sequence[ComparisonResult], name: str = "") -> ComparisonResult:
    """One result over several comparisons of the same tolerance (e.g. one per input shape).

    Maxima are maxima; means are weighted by element count; the median is the worst median (a
    median of medians is not a median, and the worst one is what a threshold must survive).
    """
    if not results:
        raise ValueError("nothing to merge")
    tol = results[0].tolerance
    if any(r.tolerance != tol for r in results):
        raise ValueError("cannot merge comparisons made under different tolerances")
    sizes = np.array([max(1, int(np.prod(r.shape))) for r in results], dtype=np.float64)
    w = sizes / sizes.sum()
    agrees = [(r.argmax_agreement_pct, s) for r, s in zip(results, sizes) if r.argmax_agreement_pct is not None]
    agree = None
    if agrees:
        # weight by positions, which is the element count divided by the class axis for all alike
        agree = float(sum(a * s for a, s in agrees) / sum(s for _, s in agrees))
    return ComparisonResult(
        passed=all(r.passed for r in results), tolerance=tol,
        max_abs=max(r.max_abs for r in results), mean_abs=float(sum(r.mean_abs * x for r, x in zip(results, w))),
        median_abs=max(r.median_abs for r in results), max_rel=max(r.max_rel for r in results),
        mean_rel=float(sum(r.mean_rel * x for r, x in zip(results, w))),
        median_rel=max(r.median_rel for r in results), required_atol=max(r.required_atol for r in results),
        required_rtol=max(r.required_rtol for r in results), finite=all(r.finite for r in results),
        shape=tuple(results[0].shape), argmax_agreement_pct=agree, name=name or results[0].name)


# ---- segmentation figures on one image ------------------------------------------------------------

@dataclass
class AgreementCounts:
    """Pixel counts of argmax agreement between a backend and the reference, summed over images.

    A disagreeing pixel is *explained* when the reference's top-2 logit margin there is below twice
    ``logit_tolerance``: a backend whose logits stay within that tolerance of PyTorch's can swap two
    classes only where they lie that close, so the flip is precision noise at a decision boundary.
    An unexplained flip means the backend computes something else there (a wrong op, a corrupted
    weight, a bad calibration scale).

    ``logit_tolerance`` is a fixed number per precision (``params.yaml`` ``validate.bounds.<p>``),
    never the backend's own error: scaled to what it measures, the share cannot fail (a corrupted
    FP16 graph, whose error is large everywhere, explained 100 % of its flips that way). The
    backend's largest error over the agreeing pixels is still reported per image.

    A one-logit (foreground) network deploys a soft alpha matte as well as its mask, so for it each
    image's alpha PSNR (``sigmoid`` of both outputs, data range 1) is kept too and
    :attr:`alpha_psnr_db_min` is the worst; :class:`Bounds` holds it to the precision's ``min_psnr``.
    """

    logit_tolerance: float
    pixels: int = 0
    agree: int = 0
    explained: int = 0
    max_abs_logit_err: float = 0.0
    images: int = 0
    per_image: list[dict[str, float]] = field(default_factory=list)
    alpha_psnr_db: list[float] = field(default_factory=list)

    def add(self, logits: Any, reference: Any) -> dict[str, float]:
        """Add one image's (C, H, W) or (1, C, H, W) logits; returns that image's figures."""
        a = np.asarray(logits, dtype=np.float64)
        r = np.asarray(reference, dtype=np.float64)
        if a.ndim == 4:
            a, r = a[0], r[0]
        if a.shape != r.shape:
            raise ValueError(f"logits of shape {a.shape} differ from the reference's {r.shape}")
        err = np.nan_to_num(np.abs(a - r), nan=np.inf).max(0)   # per pixel, over classes
        pa, pr = label_map(a, 0), label_map(r, 0)
        same = pa == pr
        max_err = float(err.max()) if err.size else 0.0
        noise = float(err[same].max()) if same.any() else 0.0
        if r.shape[0] >= 2:
            top2 = np.partition(r, r.shape[0] - 2, axis=0)[-2:]
            margin = top2[1] - top2[0]
        else:
            margin = 2.0 * np.abs(r[0])  # one logit against the fixed 0 boundary: flips only where |r| < tol
        explained = int(((~same) & (margin < 2.0 * self.logit_tolerance)).sum())
        n, k = int(same.size), int(same.sum())
        self.pixels += n
        self.agree += k
        self.explained += explained
        self.max_abs_logit_err = max(self.max_abs_logit_err, max_err)
        self.images += 1
        row = {"pixels": n, "agreement_pct": 100.0 * k / max(n, 1), "disagreeing": n - k,
               "explained": explained, "max_abs_logit_err": max_err, "agreeing_max_abs_logit_err": noise}
        if r.shape[0] == 1:
            row["alpha_psnr_db"] = psnr(sigmoid(a), sigmoid(r))
            self.alpha_psnr_db.append(row["alpha_psnr_db"])
        self.per_image.append(row)
        return row

    @property
    def alpha_psnr_db_min(self) -> float | None:
        """Worst alpha PSNR over the images (one-logit networks; None otherwise)."""
        return min(self.alpha_psnr_db) if self.alpha_psnr_db else None

    def alpha_figures(self) -> dict[str, Any]:
        """``alpha_psnr_db_min`` for a record (strict JSON: None where it is not finite) and
        ``alpha_identical`` (every matte equal to the reference's: an infinite PSNR, which passes);
        empty for a network with several logits."""
        p = self.alpha_psnr_db_min
        if p is None:
            return {}
        return {"alpha_psnr_db_min": p if math.isfinite(p) else None, "alpha_identical": p == float("inf")}

    @property
    def agreement_pct(self) -> float:
        return 100.0 * self.agree / self.pixels if self.pixels else float("nan")

    @property
    def disagreeing(self) -> int:
        return self.pixels - self.agree

    @property
    def explained_pct(self) -> float:
        """Share of disagreeing pixels that are explained (100 when none disagree)."""
        return 100.0 * self.explained / self.disagreeing if self.disagreeing else 100.0


def sigmoid(x: Any) -> np.ndarray:
    """``1 / (1 + exp(-x))`` without overflow (NaN stays NaN): the alpha of a one-logit output."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


def psnr(actual: Any, reference: Any, data_range: float = 1.0) -> float:
    """PSNR in dB; used by the bundle's ``check.py`` where torchmetrics is absent (tested against it)."""
    a = np.asarray(actual, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if not np.isfinite(a).all():
        return float("-inf")
    mse = float(((a - r) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


# ---- fixed bounds -------------------------------------------------------------------------------

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Bounds:
    """The deployment bounds of one precision (``params.yaml`` ``validate.bounds.<precision>``):
    fixed numbers, never scaled to an error. ``logit_tolerance`` is the logit error that precision is
    allowed, behind the explained share of :class:`AgreementCounts`."""

    min_agreement: float = 99.5   # % of pixels whose argmax equals PyTorch FP32's
    max_delta_miou: float = 0.3   # mIoU points
    min_psnr: float = 35.0        # dB: a style network's image, a one-logit network's alpha matte
    logit_tolerance: float = 1e-4

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Bounds":
        return cls(min_agreement=float(d["min_agreement"]), max_delta_miou=float(d["max_delta_miou"]),
                   min_psnr=float(d["min_psnr"]), logit_tolerance=float(d["logit_tolerance"]))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def violations(self, task: str, figures: dict[str, Any]) -> list[str]:
        """Figures that break a bound, each as 'figure value vs bound' (empty: passed).

        A missing or NaN figure that a bound needs is a violation too: "could not measure" must not
        read as "passed".
        """
        bad: list[str] = []

        def num(key):
            v = figures.get(key)
            return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float("nan")

        if task == "segmentation":
            agree = num("agreement_pct")
            if not agree >= self.min_agreement:
                bad.append(f"argmax agreement {agree:.3f}% < {self.min_agreement:g}%")
            if "delta_miou_pts" in figures and figures["delta_miou_pts"] is not None:
                d = num("delta_miou_pts")
                if not abs(d) <= self.max_delta_miou:
                    bad.append(f"|delta mIoU| {abs(d):.3f} pt > {self.max_delta_miou:g} pt")
            if "alpha_psnr_db_min" in figures and not figures.get("alpha_identical"):
                # a one-logit network: its soft matte ships too (None: a non-finite alpha somewhere)
                p = num("alpha_psnr_db_min")
                if not p >= self.min_psnr:
                    bad.append(f"alpha PSNR {p:.2f} dB < {self.min_psnr:g} dB")
        elif task == "style":
            p = num("psnr_db_min")
            if not p >= self.min_psnr:
                bad.append(f"PSNR {p:.2f} dB < {self.min_psnr:g} dB")
        else:
            raise ValueError(f"unknown task {task!r}")
        return bad


def bounds_table(d: dict[str, Any]) -> dict[str, Bounds]:
    """``{precision: Bounds}`` from a mapping of plain dicts (a manifest's ``bounds``); every precision present."""
    missing = [p for p in PRECISIONS if p not in d]
    if missing:
        raise ValueError(f"bounds for {', '.join(missing)} missing")
    return {p: Bounds.from_dict(d[p]) for p in PRECISIONS}


def violation_line(network: str, backend: str, violations: Iterable[str]) -> str:
    """The one line a failing check prints: network, backend, and every figure out of bounds."""
    return f"{network} {backend}: {'; '.join(violations)}"
