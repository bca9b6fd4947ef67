"""Segmentation metrics from one confusion matrix accumulated over a whole split.

Same construction as torchvision's ``references/segmentation/utils.ConfusionMatrix``: pixels whose
target is outside ``[0, num_classes)`` (the 255 void label) are dropped, every other pixel adds one to
``mat[target, prediction]``. Averaging per image instead would over-weight small images and classes
that happen to be easy in a few pictures, so all figures are computed from the summed matrix:

- pixel accuracy: trace / total
- mean class accuracy: nanmean over classes present in the ground truth of recall
- IoU per class: TP / (TP + FP + FN); NaN where the class is absent from GT *and* prediction
- mIoU: nanmean of the per-class IoU (classes present in GT or prediction)
- frequency-weighted IoU: sum over classes of (GT pixel share x IoU)
"""

from __future__ import annotations

import math
from typing import Sequence

import torch


class ConfusionMatrix:
    """``update(target, pred)`` with integer tensors of equal shape; ``compute()`` returns a dict."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu"):
        self.num_classes = num_classes
        self.mat = torch.zeros((num_classes, num_classes), dtype=torch.int64, device=device)

    def update(self, target: torch.Tensor, pred: torch.Tensor) -> None:
        n = self.num_classes
        t = target.reshape(-1).to(self.mat.device, torch.int64)
        p = pred.reshape(-1).to(self.mat.device, torch.int64)
        if t.shape != p.shape:
            raise ValueError(f"target has {t.numel()} pixels, prediction {p.numel()}")
        k = (t >= 0) & (t < n)
        self.mat += torch.bincount(n * t[k] + p[k], minlength=n * n).reshape(n, n)

    def reduce_from_all_processes(self) -> None:
        """Sum the matrices of all DDP ranks (no-op outside distributed runs)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.mat)

    def compute(self) -> dict:
        return metrics_from_confusion(self.mat)


def metrics_from_confusion(mat: torch.Tensor, class_names: Sequence[str] | None = None) -> dict:
    """All scalar and per-class metrics from a (C, C) matrix of [target, prediction] counts."""
    h = mat.double().cpu()
    tp = torch.diag(h)
    gt = h.sum(1)
    pr = h.sum(0)
    total = h.sum()
    union = gt + pr - tp
    with torch.no_grad():
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
        recall = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, float("nan")))
    freq = gt / total if total > 0 else torch.zeros_like(gt)
    valid = ~torch.isnan(iou)
    out = {
        "pixel_acc": _f(tp.sum() / total) if total > 0 else float("nan"),
        "mean_class_acc": _nanmean(recall),
        "miou": _nanmean(iou),
        "fwiou": _f((freq[valid] * iou[valid]).sum()) if total > 0 else float("nan"),
        "iou": [_f(x) for x in iou],
        "class_acc": [_f(x) for x in recall],
        "pixels": int(total.item()),
    }
    if class_names is not None:
        out["class_names"] = list(class_names)
    return out


def binary_iou(mat: torch.Tensor, positive: Sequence[int]) -> float:
    """IoU of the union of ``positive`` classes against the rest (e.g. pet vs background)."""
    h = mat.double().cpu()
    pos = torch.zeros(h.shape[0], dtype=torch.bool)
    pos[list(positive)] = True
    tp = h[pos][:, pos].sum()
    fn = h[pos][:, ~pos].sum()
    fp = h[~pos][:, pos].sum()
    denom = tp + fn + fp
    return _f(tp / denom) if denom > 0 else float("nan")


def binary_dice(mat: torch.Tensor, positive: Sequence[int]) -> float:
    """Dice (F1) of the union of ``positive`` classes against the rest: 2 TP / (2 TP + FP + FN), from
    the same confusion matrix as :func:`binary_iou` (Dice = 2 IoU / (1 + IoU))."""
    iou = binary_iou(mat, positive)
    return _f(torch.tensor(2 * iou / (1 + iou))) if iou == iou else float("nan")


def majority_matrix(mat: torch.Tensor, majority_class: int) -> torch.Tensor:
    """The confusion matrix of predicting ``majority_class`` everywhere, from the GT counts in ``mat``."""
    base = torch.zeros_like(mat)
    base[:, majority_class] = mat.sum(1)
    return base


def _nanmean(x: torch.Tensor) -> float:
    v = x[~torch.isnan(x)]
    return _f(v.mean()) if v.numel() else float("nan")


def _f(x) -> float:
    v = float(x)
    return v if not math.isnan(v) else float("nan")
