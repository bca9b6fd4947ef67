"""Gatys et al. style transfer by optimisation: the quality reference for the feed-forward network.

Recipe of d2l's "Neural Style Transfer" chapter: the synthesised image starts as the content image,
is optimised directly with Adam (lr 0.3) and a StepLR schedule, against VGG19 content (conv4_2)
and style (conv1_1..conv5_1 Gram matrices) targets plus total variation; weights come from
``params.yaml`` ``gatys``. As in d2l the variable is the ImageNet-normalised image (so Adam's
step size and the TV weight mean what they mean there) and the style image is resized to the
content's working size. Hundreds of VGG passes per image: this is why it cannot be an engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from segstyle.models.perceptual_loss import LAYERS, VGGFeatures, content_loss, feature_targets, gram_matrix, style_loss, tv_loss
from segstyle.pipelines.config import GatysConfig
from segstyle.core.errors import SegstyleError
from segstyle.pipelines.style.images import fit_max_side, to_tensor, to_uint8


@dataclass
class GatysResult:
    image: np.ndarray                      # (h, w, 3) uint8 at the working size
    history: dict[str, list[float]] = field(default_factory=dict)  # per step: content, style, tv, total

    @property
    def reduction(self) -> float:
        """Fraction by which the total loss fell from the first to the last step."""
        t = self.history["total"]
        return 1.0 - t[-1] / t[0]


def check_working_size(h: int, w: int, vgg: str) -> None:
    """VGG halves the size once per block before the deepest layer used; refuse sizes that vanish."""
    style_layers, content_layer = LAYERS[vgg]
    need = 2 ** (max(int(n[-3]) for n in (*style_layers, content_layer)) - 1)
    if min(h, w) < need:
        raise SegstyleError(f"working image {w}x{h} is too small for {vgg}'s deepest layer; "
                            f"its shorter side needs >= {need} px (raise --max-side or use a larger image)")


def gatys(content: np.ndarray, style: np.ndarray, cfg: GatysConfig, *, steps: int | None = None,
          max_side: int | None = None, pretrained: bool = True, device: torch.device | str = "cpu",
          vgg: VGGFeatures | None = None, progress: bool = True, desc: str = "gatys") -> GatysResult:
    """Stylise ``content`` (RGB uint8) with ``style``; returns the image at the working size.

    The working size is ``content`` downscaled to ``max_side`` (default ``cfg.max_side``).
    ``vgg`` lets callers reuse one feature extractor across images.
    """
    steps = steps or cfg.steps
    work = fit_max_side(content, max_side or cfg.max_side)
    h, w = work.shape[:2]
    check_working_size(h, w, cfg.vgg)
    style_layers, content_layer = LAYERS[cfg.vgg]
    style_rgb = cv2.resize(style, (w, h), interpolation=cv2.INTER_AREA)
    if vgg is None:
        vgg = VGGFeatures(cfg.vgg, (*style_layers, content_layer), pretrained=pretrained)
    vgg = vgg.to(device)
    x_content = vgg.normalize(to_tensor(work).to(device))
    x_style = vgg.normalize(to_tensor(style_rgb).to(device))
    target_c, target_s = feature_targets(vgg, x_content, x_style, style_layers, content_layer, normalized=True)

    z = x_content.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    hist: dict[str, list[float]] = {k: [] for k in ("content", "style", "tv", "total")}
    bar = tqdm(range(steps), desc=desc, unit="step", disable=not progress, leave=False)
    for _ in bar:
        opt.zero_grad(set_to_none=True)
        f = vgg(z, normalized=True)
        c = cfg.content_weight * content_loss(f[content_layer], target_c)
        s = cfg.style_weight * style_loss([gram_matrix(f[n]) for n in style_layers], target_s)
        t = cfg.tv_weight * tv_loss(z)
        total = c + s + t
        total.backward()
        opt.step()
        sched.step()
        for k, v in zip(hist, (c, s, t, total)):
            hist[k].append(float(v.detach()))
        bar.set_postfix(loss=f"{hist['total'][-1]:.4g}")
    with torch.no_grad():
        image = to_uint8(z * vgg.normalizer.std + vgg.normalizer.mean)
    return GatysResult(image=image, history=hist)
