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


class BoundaryF:
    """Boundary F-score of a foreground mask (the contour accuracy F of DAVIS, Perazzi et al. 2016),
    from counts summed over a split like the confusion matrix (not a mean of per-image scores).

    Per image: the contour of a mask is its foreground pixels with a background 4-neighbour (the
    image edge is not a contour). A predicted contour pixel is matched when a ground-truth contour
    pixel lies within ``tolerance`` px (a disk), and vice versa; precision = matched predicted /
    predicted contour pixels, recall = matched GT / GT contour pixels, F = 2PR / (P + R). The
    tolerance is DAVIS's: ``ceil(0.008 x image diagonal)`` px (5 px at 500x375) unless given.

    Void pixels (255: the Pet trimap's border band, VOC's object outlines) take the label of the
    nearest labelled pixel before the GT contour is drawn, so the contour runs through the middle
    of the band, where the true outline lies; an image with no labelled pixel is skipped.
    """

    DAVIS_BOUND = 0.008

    def __init__(self, positive: int = 1, tolerance: int | None = None, ignore_index: int = 255):
        self.positive, self.tolerance, self.ignore_index = positive, tolerance, ignore_index
        self.pred_matched = self.pred_total = self.gt_matched = self.gt_total = 0
        self.images = 0

    @staticmethod
    def contour(fg: "np.ndarray") -> "np.ndarray":
        """Boolean (H, W): foreground pixels with a background 4-neighbour."""
        import cv2
        import numpy as np

        cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
        inner = cv2.erode(fg.astype(np.uint8), cross, borderType=cv2.BORDER_REPLICATE).astype(bool)
        return fg & ~inner

    def fill_void(self, target: "np.ndarray") -> "np.ndarray | None":
        """``target`` with every void pixel set to its nearest labelled pixel's label (None: all void)."""
        import cv2
        import numpy as np

        void = target == self.ignore_index
        if not void.any():
            return target
        if void.all():
            return None
        # labels of DIST_LABEL_PIXEL number the zero (labelled) pixels 1..K in raster order
        _, lab = cv2.distanceTransformWithLabels(void.astype(np.uint8), cv2.DIST_L2, 5,
                                                 labelType=cv2.DIST_LABEL_PIXEL)
        return target[~void][lab - 1]

    def update(self, target, pred) -> None:
        """One image's (H, W) integer label maps (torch or numpy)."""
        import cv2
        import numpy as np

        t = np.asarray(target.cpu() if hasattr(target, "cpu") else target).astype(np.int64)
        p = np.asarray(pred.cpu() if hasattr(pred, "cpu") else pred).astype(np.int64)
        if t.shape != p.shape or t.ndim != 2:
            raise ValueError(f"boundary F needs two (H, W) maps of one shape, got {t.shape} and {p.shape}")
        t = self.fill_void(t)
        if t is None:
            return
        gt_b, pr_b = self.contour(t == self.positive), self.contour(p == self.positive)
        r = self.tolerance if self.tolerance is not None else math.ceil(self.DAVIS_BOUND * math.hypot(*t.shape))
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        near = lambda b: cv2.dilate(b.astype(np.uint8), disk).astype(bool)  # noqa: E731
        self.pred_matched += int((pr_b & near(gt_b)).sum())
        self.gt_matched += int((gt_b & near(pr_b)).sum())
        self.pred_total += int(pr_b.sum())
        self.gt_total += int(gt_b.sum())
        self.images += 1

    def compute(self) -> dict:
        """``boundary_precision``, ``boundary_recall``, ``boundary_f`` (NaN when no image had a label).

        No predicted contour at all has precision 1 (nothing wrong was drawn) and recall 0 where a
        GT contour exists, so F is 0: a constant prediction scores 0, as DAVIS scores it."""
        if not self.images:
            nan = float("nan")
            return {"boundary_precision": nan, "boundary_recall": nan, "boundary_f": nan}
        prec = self.pred_matched / self.pred_total if self.pred_total else 1.0
        rec = self.gt_matched / self.gt_total if self.gt_total else 1.0
        f = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
        return {"boundary_precision": prec, "boundary_recall": rec, "boundary_f": f}


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
