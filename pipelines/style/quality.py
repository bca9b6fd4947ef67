"""Does a stylised picture look stylised? Three measurable proxies, none of them the training loss.

A style network can lower its own loss and still produce a blob (the old demo did). These checks
look at the pictures from outside, each with the images scaled to :data:`WIDTH` px wide:

- **structure kept**: SSIM (Wang et al. 2004, 11x11 Gaussian window, sigma 1.5) between the Sobel
  gradient-magnitude maps of output and content. Content that survives stylisation keeps its
  edges where they were; a blob or pure texture scores near 0.
- **palette moved**: sliced Wasserstein distance between the CIELAB pixel colours of an image and
  of the style image (mean over random 3-D directions of the 1-D W1 distance of the projected,
  sorted colours). Reported as the relative reduction from content->style to output->style.
- **texture moved**: distance between Gram matrices of an image and of the style image in a
  random filter bank *that the loss did not use* (other seed, other kernel sizes, other filter
  count), relative Frobenius norm summed over banks; reported as the relative reduction.

Used by ``benchmarks/style_quality.py`` (figures in benchmarks/style_quality.{json,md}) and by the
real-data test.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch

WIDTH = 192                          # every image is scaled to this width before measuring
# The independent texture probe: a seed, sizes and width the training loss never uses.
PROBE_SEED, PROBE_SIZES, PROBE_FILTERS = 20_170_424, (4, 9, 17), 96


def scale_to_width(rgb: np.ndarray, width: int = WIDTH) -> np.ndarray:
    """Resize (aspect kept; area filter when shrinking) so the image is ``width`` px wide."""
    h, w = rgb.shape[:2]
    if w == width:
        return rgb
    interp = cv2.INTER_AREA if width < w else cv2.INTER_CUBIC
    return cv2.resize(rgb, (width, max(1, round(h * width / w))), interpolation=interp)


def sobel_magnitude(rgb: np.ndarray) -> np.ndarray:
    """Gradient magnitude of the grey image (3x3 Sobel), float32 in grey-level units (0..255 scale)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.magnitude(gx, gy)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float | None = None) -> float:
    """Mean SSIM of two single-channel float maps (Gaussian 11x11, sigma 1.5, K1 0.01, K2 0.03)."""
    from segstyle.core.similarity import ssim_map

    return float(ssim_map(a, b, data_range).mean())


def edge_ssim(output: np.ndarray, content: np.ndarray) -> float:
    """SSIM of the Sobel maps of two RGB images of the same size (data range: the larger maximum)."""
    return ssim(sobel_magnitude(output), sobel_magnitude(content))


def lab_pixels(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) float32 CIELAB colours (L 0..100, a/b about -128..127) of an RGB ``uint8`` image."""
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    return lab.reshape(-1, 3)


def sliced_wasserstein(x: np.ndarray, y: np.ndarray, *, projections: int = 256, quantiles: int = 512,
                       seed: int = 0) -> float:
    """Sliced W1 distance between two point clouds (N, d) and (M, d) of any sizes.

    Each random unit direction projects both clouds to 1-D, where W1 is the mean absolute
    difference of matching quantiles (``quantiles`` evenly spaced levels, so N != M is fine).
    """
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(projections, x.shape[1]))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    levels = (np.arange(quantiles) + 0.5) / quantiles
    qx = np.quantile(x @ dirs.T, levels, axis=0)
    qy = np.quantile(y @ dirs.T, levels, axis=0)
    return float(np.abs(qx - qy).mean())


class _Probe:
    """The independent random filter bank (lazily built once)."""

    bank = None

    @classmethod
    def get(cls):
        if cls.bank is None:
            from segstyle.models.random_features import RandomFilterBanks

            cls.bank = RandomFilterBanks(PROBE_SIZES, filters=PROBE_FILTERS, seed=PROBE_SEED)
        return cls.bank


def probe_grams(rgb: np.ndarray) -> list[torch.Tensor]:
    """Gram matrices (C x C) of the probe bank's maps for one RGB ``uint8`` image."""
    from segstyle.models.perceptual_loss import gram_matrix
    from segstyle.pipelines.style.images import to_tensor

    with torch.inference_mode():
        feats = _Probe.get()(to_tensor(rgb))
        return [gram_matrix(f)[0] for f in feats.values()]


def gram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Sum over probe banks of ||G(a) - G(b)||_F / ||G(b)||_F (``b`` is the reference: the style)."""
    return float(sum((ga - gb).norm() / gb.norm() for ga, gb in zip(probe_grams(a), probe_grams(b))))


@dataclass(frozen=True)
class StyleQuality:
    """The three checks for one (content, output, style) triple; reductions are fractions (0.25 = 25 %)."""

    edge_ssim: float
    swd_content: float
    swd_output: float
    gram_content: float
    gram_output: float

    @property
    def swd_reduction(self) -> float:
        return 1.0 - self.swd_output / self.swd_content

    @property
    def gram_reduction(self) -> float:
        return 1.0 - self.gram_output / self.gram_content

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "swd_reduction": self.swd_reduction, "gram_reduction": self.gram_reduction}


def measure(content: np.ndarray, output: np.ndarray, style: np.ndarray, width: int = WIDTH) -> StyleQuality:
    """All three checks; every image is first scaled to ``width`` px wide, output and content alike."""
    if output.shape != content.shape:  # e.g. run at a reduced size: compare at the content's size
        output = cv2.resize(output, (content.shape[1], content.shape[0]), interpolation=cv2.INTER_AREA)
    c, o = scale_to_width(content, width), scale_to_width(output, width)
    s = scale_to_width(style, width)
    ls = lab_pixels(s)
    return StyleQuality(
        edge_ssim=edge_ssim(o, c),
        swd_content=sliced_wasserstein(lab_pixels(c), ls),
        swd_output=sliced_wasserstein(lab_pixels(o), ls),
        gram_content=gram_distance(c, s),
        gram_output=gram_distance(o, s),
    )
