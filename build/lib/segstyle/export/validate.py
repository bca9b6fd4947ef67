"""Does a deployed backend still give PyTorch FP32's answers on real validation images?

Random-input parity (``export onnx``) proves the graph; this proves the *precision*: an FP16 engine
whose logits wobble may still flip argmax decisions on real images. For segmentation it reports,
against the PyTorch FP32 reference, the pixel agreement of the argmax, the mIoU of both against the
ground truth and their difference, and max/mean absolute logit error; for style, PSNR / SSIM / max
absolute error of the stylised images. Thresholds come from ``params.yaml`` ``validate``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from segstyle.pipelines.errors import SegstyleError

IGNORE = 255


def resize_pair(image: torch.Tensor, mask: torch.Tensor | None, size: tuple[int, int]):
    """Plain resize to the validation size: bilinear image (0..1 float), nearest mask."""
    x = F.interpolate(image[None].float() / 255.0, size=size, mode="bilinear", align_corners=False,
                      antialias=True)[0]
    m = None
    if mask is not None:
        m = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].to(torch.uint8)
    return x, m


def seg_samples(dataset: str, params, size: tuple[int, int], n: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """First ``n`` samples of the validation split, resized to ``size``."""
    from segstyle.pipelines.data.datasets import build_dataset

    split = params.data.splits[dataset].val
    ds = build_dataset(dataset, params.data.root, split, pets_mode=params.data.pets_mode)
    if len(ds) == 0:
        raise SegstyleError(f"{dataset} split '{split}' under {params.data.root} is empty")
    for i in range(min(n, len(ds))):
        img, mask = ds[i]
        yield resize_pair(torch.as_tensor(img), torch.as_tensor(mask), size)


def content_images(folder: str | Path, size: tuple[int, int], n: int) -> Iterator[torch.Tensor]:
    from segstyle.pipelines.io import read_image

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not files:
        raise SegstyleError(f"{folder}: no .jpg/.png content images")
    for p in files[:n]:
        img = torch.from_numpy(read_image(p)).permute(2, 0, 1)
        yield resize_pair(img, None, size)[0]


class Confusion:
    """Confusion matrix accumulated over images; mIoU over classes present in truth or prediction."""

    def __init__(self, n: int):
        self.n = n
        self.m = np.zeros((n, n), dtype=np.int64)

    def update(self, pred: np.ndarray, truth: np.ndarray) -> None:
        keep = truth != IGNORE
        t, p = truth[keep].astype(np.int64), pred[keep].astype(np.int64)
        ok = (t < self.n) & (p < self.n)
        self.m += np.bincount(t[ok] * self.n + p[ok], minlength=self.n * self.n).reshape(self.n, self.n)

    def miou(self) -> float:
        inter = np.diag(self.m).astype(np.float64)
        union = self.m.sum(0) + self.m.sum(1) - inter
        valid = union > 0
        return float((inter[valid] / union[valid]).mean() * 100) if valid.any() else float("nan")


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(data_range**2 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> float:
    """Mean SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1=0.01, K2=0.03) over channels."""
    a, b = a.double(), b.double()
    if a.dim() == 3:
        a, b = a[None], b[None]
    c = a.shape[1]
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5**2))
    g = (g / g.sum())
    win = (g[:, None] * g[None, :]).expand(c, 1, 11, 11).contiguous()

    def blur(t):
        return F.conv2d(t, win, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    saa, sbb, sab = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
    return float(s.mean())


def validate_segmentation(ref, backend, samples, num_classes: int) -> dict[str, Any]:
    """Compare ``backend`` with ``ref`` (both :class:`~segstyle.export.backends.Backend`) on (image, mask) pairs."""
    from tqdm import tqdm

    c_ref, c_b = Confusion(num_classes), Confusion(num_classes)
    agree = total = 0
    max_err, sum_err, n_err = 0.0, 0.0, 0
    n = 0
    for x, mask in tqdm(list(samples), desc=f"validate {backend.name}", unit="img", leave=False):
        r = ref(x[None])
        o = backend(x[None])
        if o.shape != r.shape:
            raise SegstyleError(f"{backend.name} output shape {tuple(o.shape)} differs from PyTorch {tuple(r.shape)}")
        if r.shape[1] != num_classes:
            raise SegstyleError(f"model has {r.shape[1]} classes but the dataset has {num_classes}")
        pr, pb = r.argmax(1)[0].numpy(), o.argmax(1)[0].numpy()
        agree += int((pr == pb).sum())
        total += pr.size
        c_ref.update(pr, mask.numpy())
        c_b.update(pb, mask.numpy())
        d = (o.double() - r.double()).abs()
        max_err = max(max_err, float(d.max()))
        sum_err += float(d.sum())
        n_err += d.numel()
        n += 1
    m_ref, m_b = c_ref.miou(), c_b.miou()
    return {"images": n, "pixel_agreement_pct": 100.0 * agree / max(total, 1), "miou_reference": m_ref,
            "miou_backend": m_b, "delta_miou_pts": m_b - m_ref, "max_abs_logit_err": max_err,
            "mean_abs_logit_err": sum_err / max(n_err, 1)}


def validate_style(ref, backend, images) -> dict[str, Any]:
    from tqdm import tqdm

    ps, ss, max_err, n = [], [], 0.0, 0
    for x in tqdm(list(images), desc=f"validate {backend.name}", unit="img", leave=False):
        r = ref(x[None]).clamp(0, 1)
        o = backend(x[None])
        if o.shape != r.shape:
            raise SegstyleError(f"{backend.name} output shape {tuple(o.shape)} differs from PyTorch {tuple(r.shape)}")
        if not torch.isfinite(o).all():
            ps.append(float("-inf"))
            ss.append(float("nan"))
            max_err = float("inf")
            n += 1
            continue
        o = o.clamp(0, 1)
        ps.append(psnr(o, r))
        ss.append(ssim(o, r))
        max_err = max(max_err, float((o - r).abs().max()))
        n += 1
    finite = [p for p in ps if math.isfinite(p)]
    return {"images": n, "psnr_db_min": min(ps), "psnr_db_mean": float(np.mean(finite)) if finite else min(ps),
            "ssim_min": min(ss), "max_abs_err": max_err}


def check_thresholds(task: str, metrics: dict[str, Any], th) -> list[str]:
    """Violations of ``params.validate`` (empty: passed)."""
    bad = []
    if task == "segmentation":
        if not metrics["pixel_agreement_pct"] >= th.min_agreement:
            bad.append(f"pixel agreement {metrics['pixel_agreement_pct']:.3f}% < {th.min_agreement}%")
        d = metrics["delta_miou_pts"]
        if not (math.isnan(d) or abs(d) <= th.max_delta_miou):
            bad.append(f"|delta mIoU| {abs(d):.3f} pt > {th.max_delta_miou} pt")
    else:
        if not metrics["psnr_db_min"] >= th.min_psnr:
            bad.append(f"PSNR {metrics['psnr_db_min']:.2f} dB < {th.min_psnr} dB")
    return bad
