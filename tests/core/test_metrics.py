"""segstyle.core.metrics against independent implementations (torchmetrics, direct numpy bincount)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from segstyle.core.metrics import ConfusionMatrix, binary_iou, majority_matrix, metrics_from_confusion

C = 6


def _random_batch(seed: int, absent=(4,)):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, C, (3, 17, 23), generator=g)
    pred = torch.randint(0, C, (3, 17, 23), generator=g)
    # Class 4 absent from both GT and prediction; class 5 only in the prediction (false positives).
    for a in absent:
        target[target == a] = 0
        pred[pred == a] = 1
    target[target == 5] = 2
    target[torch.rand(target.shape, generator=g) < 0.2] = 255  # void pixels
    return target, pred


def _numpy_reference(targets, preds):
    t = np.concatenate([x.numpy().ravel() for x in targets])
    p = np.concatenate([x.numpy().ravel() for x in preds])
    keep = t != 255
    t, p = t[keep], p[keep]
    iou, acc = [], []
    for c in range(C):
        inter = np.sum((t == c) & (p == c))
        union = np.sum((t == c) | (p == c))
        iou.append(inter / union if union else math.nan)
        acc.append(inter / np.sum(t == c) if np.sum(t == c) else math.nan)
    iou = np.array(iou)
    freq = np.array([np.sum(t == c) for c in range(C)]) / t.size
    return {
        "pixel_acc": np.mean(t == p),
        "mean_class_acc": np.nanmean(acc),
        "iou": iou,
        "miou": np.nanmean(iou),
        "fwiou": np.nansum(freq * iou),
    }


def test_matches_numpy_over_several_batches():
    batches = [_random_batch(s) for s in range(4)]
    cm = ConfusionMatrix(C)
    for t, p in batches:
        cm.update(t, p)
    m = cm.compute()
    ref = _numpy_reference([b[0] for b in batches], [b[1] for b in batches])
    assert m["pixel_acc"] == pytest.approx(ref["pixel_acc"], abs=1e-12)
    assert m["mean_class_acc"] == pytest.approx(ref["mean_class_acc"], abs=1e-12)
    assert m["miou"] == pytest.approx(ref["miou"], abs=1e-12)
    assert m["fwiou"] == pytest.approx(ref["fwiou"], abs=1e-12)
    np.testing.assert_allclose(np.array(m["iou"], dtype=float), ref["iou"], atol=1e-12, equal_nan=True)
    # absent class: NaN IoU, excluded from mIoU; predicted-only class: IoU 0, included
    assert math.isnan(m["iou"][4]) and m["iou"][5] == 0.0
    assert m["pixels"] == sum(int((t != 255).sum()) for t, _ in batches)


def test_matches_torchmetrics_jaccard_with_ignore_index():
    tm = pytest.importorskip("torchmetrics.classification")
    t, p = _random_batch(7)
    cm = ConfusionMatrix(C)
    cm.update(t, p)
    m = cm.compute()
    jac = tm.MulticlassJaccardIndex(num_classes=C, ignore_index=255, average="none")(p, t)
    present = ~torch.isnan(torch.tensor(m["iou"], dtype=torch.float64))
    assert torch.allclose(torch.tensor(m["iou"], dtype=torch.float64)[present], jac.double()[present], atol=1e-6)
    assert m["miou"] == pytest.approx(jac[present].double().mean().item(), abs=1e-6)
    acc = tm.MulticlassAccuracy(num_classes=C, ignore_index=255, average="micro")(p, t)
    assert m["pixel_acc"] == pytest.approx(acc.item(), abs=1e-6)
    cm_tm = tm.MulticlassConfusionMatrix(num_classes=C, ignore_index=255)(p, t)
    assert torch.equal(cm.mat, cm_tm.long())


def test_out_of_range_targets_are_dropped_and_shapes_checked():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 1, 255, 2]), torch.tensor([0, 2, 1, 2]))
    assert cm.mat.sum() == 3 and cm.mat[1, 2] == 1
    with pytest.raises(ValueError):
        cm.update(torch.zeros(4, dtype=torch.long), torch.zeros(5, dtype=torch.long))


def test_binary_iou_and_majority_baseline():
    # rows = target, cols = prediction; classes pet 0, background 1, border 2
    mat = torch.tensor([[50, 10, 5], [20, 100, 0], [5, 5, 10]])
    fg = [0, 2]
    tp = 50 + 5 + 5 + 10
    fn = 10 + 5
    fp = 20 + 0
    assert binary_iou(mat, fg) == pytest.approx(tp / (tp + fn + fp))
    base = metrics_from_confusion(majority_matrix(mat, 1))
    assert base["pixel_acc"] == pytest.approx(120 / 205)
    # majority predictor: IoU of class 1 is 120/205, classes 0 and 2 are 0 -> mIoU over 3 classes
    assert base["miou"] == pytest.approx((120 / 205) / 3)


def test_pet_iou_hand_computed_on_a_real_trimap(realdata):
    """Pet IoU as evaluate computes it (ConfusionMatrix + binary_iou over pet+border) against counting
    foreground pixels by hand, on a real Pets trimap and a prediction shifted by 7 px."""
    from segstyle.pipelines.data.datasets import build_dataset
    from segstyle.models.classes import PETS_TRIMAP_CLASSES

    ds = build_dataset("pets", realdata, "test", pets_mode="trimap")
    _, mask = ds[0]
    target = torch.as_tensor(mask).long()
    pred = torch.roll(target, shifts=7, dims=1)
    pred[pred == 255] = 1  # a prediction has no void
    cm = ConfusionMatrix(3)
    cm.update(target, pred)
    fg = [PETS_TRIMAP_CLASSES.index("pet"), PETS_TRIMAP_CLASSES.index("border")]
    t, p = target.numpy(), pred.numpy()
    keep = t != 255
    t_fg, p_fg = np.isin(t, fg) & keep, np.isin(p, fg) & keep
    by_hand = (t_fg & p_fg).sum() / (t_fg | p_fg).sum()
    assert 0.3 < by_hand < 0.99  # the shift really moved pixels across the outline
    assert binary_iou(cm.mat, fg) == pytest.approx(float(by_hand), abs=1e-12)
    # tiny hand case: 2x3 target [[pet, bg, border], [bg, bg, pet]], prediction [[pet, pet, bg], [bg, bg, border]]
    cm2 = ConfusionMatrix(3)
    cm2.update(torch.tensor([[0, 1, 2], [1, 1, 0]]), torch.tensor([[0, 0, 1], [1, 1, 2]]))
    # foreground pet+border: target {(0,0),(0,2),(1,2)}, prediction {(0,0),(0,1),(1,2)}: inter 2, union 4
    assert binary_iou(cm2.mat, [0, 2]) == pytest.approx(0.5)


# ---- boundary F-score -------------------------------------------------------------------------------

def _disk(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_boundary_f_is_one_for_the_truth_and_falls_with_the_contour_distance():
    from segstyle.core.metrics import BoundaryF

    gt = _disk(64, 80, 32, 40, 15).astype(np.int64)
    scores = {}
    for shift in (0, 1, 3, 8):
        bf = BoundaryF(1, tolerance=2)
        bf.update(gt, np.roll(gt, shift, axis=1))
        scores[shift] = bf.compute()["boundary_f"]
    assert scores[0] == 1.0 and scores[1] == 1.0   # within the tolerance
    assert 0.4 < scores[3] < 0.8 and scores[8] < 0.3  # the flanks moved beyond it (top and bottom barely move)
    # the region metrics barely notice what the contour metric sees
    a, b = gt.astype(bool), np.roll(gt, 3, axis=1).astype(bool)
    assert (a & b).sum() / (a | b).sum() > 0.7
    const = BoundaryF(1)
    const.update(gt, np.zeros_like(gt))
    assert const.compute() == {"boundary_precision": 1.0, "boundary_recall": 0.0, "boundary_f": 0.0}


def test_boundary_f_counts_pixels_over_the_split_and_checks_shapes():
    from segstyle.core.metrics import BoundaryF

    big = _disk(64, 64, 32, 32, 20).astype(np.int64)
    small = _disk(16, 16, 8, 8, 4).astype(np.int64)
    bf = BoundaryF(1, tolerance=1)
    bf.update(big, big)                   # every contour pixel matched
    bf.update(small, np.zeros_like(small))  # nothing predicted: its GT contour pixels are all missed
    c = BoundaryF.contour
    n_big, n_small = int(c(big == 1).sum()), int(c(small == 1).sum())
    assert math.isclose(bf.compute()["boundary_recall"], n_big / (n_big + n_small))
    assert bf.compute()["boundary_precision"] == 1.0
    with pytest.raises(ValueError, match="shape"):
        bf.update(big, small)
    empty = BoundaryF(1)
    empty.update(np.full((4, 4), 255), np.ones((4, 4)))  # no labelled pixel: skipped, not scored
    assert empty.images == 0 and math.isnan(empty.compute()["boundary_f"])


def test_boundary_f_draws_the_gt_contour_through_the_middle_of_a_void_band():
    """A Pet trimap: pet disk (r 10), a void border band to r 16, background outside. The true outline
    lies in the band, so a prediction at r 13 is right within 1 px; reading the band as background
    (the GT contour at r 10) would miss it, and so would reading it as foreground (r 16)."""
    from segstyle.core.metrics import BoundaryF

    h = w = 64
    gt = np.zeros((h, w), np.int64)
    gt[_disk(h, w, 32, 32, 16)] = 255
    gt[_disk(h, w, 32, 32, 10)] = 1
    scores = {}
    for r in (10, 13, 16):
        bf = BoundaryF(1, tolerance=1)
        bf.update(gt, _disk(h, w, 32, 32, r).astype(np.int64))
        scores[r] = bf.compute()["boundary_f"]
    assert scores[13] > 0.95 and scores[10] < 0.5 and scores[16] < 0.5
    band = np.zeros((8, 12), np.int64)
    band[:, 6:] = 0
    band[:, :3] = 1
    band[:, 3:9] = 255  # a vertical band 6 px wide: its left half goes to 1, its right half to 0
    filled = BoundaryF(1).fill_void(band)
    assert (filled[:, :6] == 1).all() and (filled[:, 6:] == 0).all()
