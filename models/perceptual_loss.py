"""Perceptual losses for style transfer: frozen VGG features, content MSE, Gram style loss, TV.

Two layer sets, chosen by ``params.yaml`` (``style.vgg`` for the network, ``gatys.vgg`` for the
optimisation):

- ``vgg16`` (Johnson et al., pytorch/examples ``fast_neural_style``): style relu1_2, relu2_2,
  relu3_3, relu4_3; content relu2_2.
- ``vgg19`` (Gatys et al., d2l): style conv1_1, conv2_1, conv3_1, conv4_1, conv5_1; content conv4_2.
  Features are taken after the ReLU that follows each named conv: d2l's code reads the conv
  output, but torchvision's ReLU is in-place, so what it actually gets is the rectified map, as in
  the Caffe model Gatys used. (d2l's code picks index 25, conv4_4, as content; we follow the
  paper's conv4_2.)

Inputs are 0..1 RGB; ImageNet normalisation happens inside (``normalized=True`` skips it for the
Gatys optimisation, which, like d2l, optimises the normalised image). Gram matrices are computed
in float32 (their sums overflow FP16 under CUDA autocast) and normalised by ``c*h*w`` so the style
weight does not depend on image size.

Quality needs ImageNet weights (``pretrained=True``, torchvision's ``VGG16_Weights`` /
``VGG19_Weights`` through :func:`segstyle.models.weights.load_tv_weights`). A *randomly initialised*
deep VGG gives losses that decrease but pictures that are not paintings (uniform colour blobs), so
offline training uses ``loss_net="random"`` instead: shallow random multi-scale filter banks
(:mod:`segstyle.models.random_features`, Ustyuzhaninov et al. 2017), whose Gram statistics do carry a
style's colours and strokes without trained weights.
"""

from __future__ import annotations

from typing import Iterable, Mapping, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from segstyle.models.frozen_features import FrozenFeatures

# torchvision's VGG configurations "D" (vgg16) and "E" (vgg19): channels, "M" = max-pool.
_CFG = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}

# The colour term's projections (colour_weight > 0): enough directions to cover RGB space evenly.
COLOUR_DIRECTIONS, COLOUR_SEED = 32, 1

# Which layers each recipe reads: (style layers, content layer).
LAYERS = {
    "vgg16": (("relu1_2", "relu2_2", "relu3_3", "relu4_3"), "relu2_2"),
    "vgg19": (("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"), "conv4_2"),
}


def _build_features(arch: str) -> tuple[nn.Sequential, dict[str, int]]:
    """torchvision's ``vgg.features`` layout (same indices, so its state dict loads) + layer names.

    Each conv gets two names pointing at its ReLU's index: ``convB_I`` and ``reluB_I``.
    """
    layers: list[nn.Module] = []
    names: dict[str, int] = {}
    block, idx, cin = 1, 1, 3
    for v in _CFG[arch]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
            block, idx = block + 1, 1
            continue
        layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
        names[f"conv{block}_{idx}"] = names[f"relu{block}_{idx}"] = len(layers) - 1
        cin, idx = v, idx + 1
    return nn.Sequential(*layers), names


class VGGFeatures(FrozenFeatures):
    """Frozen VGG ``features`` truncated after the deepest requested layer; returns ``{name: map}``."""

    def __init__(self, arch: str = "vgg16", layers: Iterable[str] | None = None, pretrained: bool = False):
        super().__init__()
        if arch not in _CFG:
            raise ValueError(f"unknown VGG '{arch}'; choose one of {sorted(_CFG)}")
        features, names = _build_features(arch)
        style, content = LAYERS[arch]
        self.layers = tuple(dict.fromkeys(layers if layers is not None else (*style, content)))
        unknown = [n for n in self.layers if n not in names]
        if unknown:
            raise ValueError(f"{arch} has no layer(s) {unknown}")
        if pretrained:
            from torchvision.models import VGG16_Weights, VGG19_Weights

            from segstyle.models.weights import load_tv_weights

            weights = {"vgg16": VGG16_Weights.IMAGENET1K_V1, "vgg19": VGG19_Weights.IMAGENET1K_V1}[arch]
            sd = load_tv_weights(weights)
            features.load_state_dict({k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")})
        else:
            # torchvision's VGG initialisation, so random features keep a sensible scale in depth.
            for m in features.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(m.bias)
        self.index = {n: names[n] for n in self.layers}
        self._by_index: dict[int, list[str]] = {}
        for n, i in self.index.items():
            self._by_index.setdefault(i, []).append(n)
        self.features = features[: max(self.index.values()) + 1]
        self.freeze()

    def extract(self, x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            for n in self._by_index.get(i, ()):
                out[n] = x
        return out


def luminance(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) 0..1 RGB -> its Rec. 601 luma (0.299 R + 0.587 G + 0.114 B) on all three channels."""
    w = x.new_tensor((0.299, 0.587, 0.114)).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True).expand(-1, 3, -1, -1)


def _wide(x: torch.Tensor) -> torch.Tensor:
    """Upcast FP16/BF16 to float32 (sums of squares overflow FP16); leave float32/64 as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def gram_matrix(f: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C) Gram matrix (at least float32), divided by C*H*W."""
    b, c, h, w = f.shape
    f = _wide(f).reshape(b, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def content_loss(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between feature maps (the target carries no gradient)."""
    return F.mse_loss(_wide(y), _wide(target.detach()))


def style_loss(grams: Iterable[torch.Tensor], targets: Iterable[torch.Tensor]) -> torch.Tensor:
    """Sum over layers of the mean squared Gram difference; a (1, C, C) target broadcasts over B."""
    total = None
    for g, t in zip(grams, targets, strict=True):
        term = F.mse_loss(g, t.detach().to(g.dtype).expand_as(g))
        total = term if total is None else total + term
    if total is None:
        raise ValueError("style_loss needs at least one layer")
    return total


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation (d2l): half the mean absolute difference of neighbours, both axes."""
    x = _wide(x)
    return 0.5 * ((x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean() + (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean())


class LossTerms(NamedTuple):
    """Weighted loss terms; ``total`` = content + style + tv (what is back-propagated)."""

    content: torch.Tensor
    style: torch.Tensor
    tv: torch.Tensor
    total: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in self._asdict().items()}


def relative_style_loss(grams: Iterable[torch.Tensor], targets: Iterable[torch.Tensor]) -> torch.Tensor:
    """Sum over layers of ||G - T||_F / ||T||_F (mean over the batch).

    Used with the random filter banks: their Gram matrices differ in scale by orders of magnitude
    from bank to bank, and an absolute MSE would let one bank (the one with the largest
    activations) decide the whole loss. Dividing by the target's own norm makes every scale
    count and makes ``style_weight`` independent of filter count and image size. The norm is not
    squared on purpose: the squared ratio grows with the fourth power of the feature amplitude,
    and a feed-forward network's first Adam steps then overshoot into losses 1000x the start
    (measured); the plain ratio keeps the balance with the content term steady.
    """
    total = None
    for g, t in zip(grams, targets, strict=True):
        t = t.detach().to(g.dtype).expand_as(g)
        term = ((g - t) ** 2).sum(dim=(1, 2)).sqrt().div(t.pow(2).sum(dim=(1, 2)).sqrt().clamp_min(1e-12)).mean()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("relative_style_loss needs at least one layer")
    return total


def relative_content_loss(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE divided by the target's mean square: a scale-free content term (random banks)."""
    y, target = _wide(y), _wide(target.detach())
    return F.mse_loss(y, target) / target.pow(2).mean().clamp_min(1e-12)


def colour_swd(output: torch.Tensor, style_sorted: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Sliced Wasserstein-2 distance (squared) between each output image's pixel colours and the style's.

    ``output``: (B, 3, H, W) 0..1 RGB; ``style_sorted``: (M, D) the style's pixels projected on the D
    unit ``directions`` (3, D) and sorted per direction. Each image's projected pixels are sorted and
    compared with the style's quantiles at the same levels (so H*W != M is fine); the mean squared
    difference over pixels and directions is returned, averaged over the batch. Sorting is
    differentiable almost everywhere, so this pulls the whole colour *distribution* of every image
    toward the style's (what a colour-transfer method does), not only its mean and covariance.
    """
    b = output.shape[0]
    px = _wide(output).reshape(b, 3, -1).transpose(1, 2) @ directions.to(torch.float32)  # (B, N, D)
    px = px.sort(dim=1).values
    n, m = px.shape[1], style_sorted.shape[0]
    idx = torch.linspace(0, m - 1, n, device=px.device).round().long()
    return (px - style_sorted[idx].unsqueeze(0)).pow(2).mean()


LOSS_NETS = ("vgg", "random")


def build_loss_net(loss_net: str, *, vgg: str = "vgg16", pretrained: bool = False) -> tuple[nn.Module, tuple[str, ...], tuple[str, ...]]:
    """The frozen feature network of a perceptual loss and its (style layers, content layers).

    ``vgg``: ImageNet VGG (``pretrained``; the full profile) with :data:`LAYERS`. ``random``: the
    random multi-scale filter banks of :mod:`segstyle.models.random_features` (no weights to
    download; the demo profile), style on every bank, content on the finest ones.
    """
    if loss_net == "vgg":
        style_layers, content_layer = LAYERS[vgg]
        return VGGFeatures(vgg, (*style_layers, content_layer), pretrained=pretrained), style_layers, (content_layer,)
    if loss_net == "random":
        from segstyle.models.random_features import DEFAULT_CONTENT, RandomFilterBanks

        net = RandomFilterBanks()
        return net, net.layers, DEFAULT_CONTENT
    raise ValueError(f"unknown loss network '{loss_net}'; choose one of {list(LOSS_NETS)}")


class PerceptualLoss(nn.Module):
    """Johnson et al.'s training loss for a fixed style image.

    ``forward(output, content)``: both 0..1 RGB (B, 3, H, W); the content target is the network's
    own input. The style image's Gram matrices are computed once (``set_style``) and kept as
    buffers, so the style image can have any size.

    ``loss_net="vgg"`` is the paper's loss (absolute Gram MSE, content MSE on one VGG layer);
    ``loss_net="random"`` uses random filter banks with the scale-free
    :func:`relative_style_loss` / :func:`relative_content_loss`, so its weights are of order 1,
    and compares content on the :func:`luminance` of output and input. Why: a random bank's
    filters are colour-specific (ImageNet VGG's deep layers are largely colour-invariant), so a
    content term on the colour image pins the photo's palette and fights the style term; on the
    luminance it keeps what makes the content recognisable (edges, shapes, shading) and leaves the
    colours to the style term. Measured on the demo network (real photos, issue 10's metrics):
    256 steps with the colour content term moved the palette 24 % and the independent-bank
    texture 15 % toward the style; 128 steps with the luminance term 33 % and 26 %.

    ``colour_weight`` (0 = off, the paper's loss) adds :func:`colour_swd` to the *style* term: the
    sliced Wasserstein distance between every output image's pixel colours and the style image's.
    Why: the random banks' Gram matrices constrain colour only through second moments of filter
    responses, and a few hundred CPU steps move the palette little; matching the colour
    distribution directly is what moves it (measured: benchmarks/style_quality.md). It is part of
    the style term, so ``metrics.csv`` keeps its columns.
    """

    def __init__(self, style: torch.Tensor, *, loss_net: str = "vgg", vgg: str = "vgg16", pretrained: bool = False,
                 content_weight: float = 1.0, style_weight: float = 1e5, tv_weight: float = 0.0,
                 colour_weight: float = 0.0):
        super().__init__()
        self.loss_net = loss_net
        self.features, self.style_layers, self.content_layers = build_loss_net(loss_net, vgg=vgg, pretrained=pretrained)
        self._style_fn = relative_style_loss if loss_net == "random" else style_loss
        self._content_fn = relative_content_loss if loss_net == "random" else content_loss
        self.content_on_luminance = loss_net == "random"
        self.weights = {"content": content_weight, "style": style_weight, "tv": tv_weight, "colour": colour_weight}
        # Fixed projection directions of the colour term (a pure function of COLOUR_SEED, so the loss
        # is the same function in every run and after --resume).
        d = torch.randn(3, COLOUR_DIRECTIONS, generator=torch.Generator().manual_seed(COLOUR_SEED))
        self.register_buffer("colour_directions", d / d.norm(dim=0, keepdim=True), persistent=False)
        self.set_style(style)

    @torch.no_grad()
    def set_style(self, style: torch.Tensor) -> None:
        if style.ndim != 4 or style.shape[:2] != (1, 3):
            raise ValueError(f"style must be (1, 3, H, W), got {tuple(style.shape)}")
        feats = self.features(style.to(self.features.normalizer.mean.device))
        for i, n in enumerate(self.style_layers):
            self.register_buffer(f"gram_{i}", gram_matrix(feats[n]), persistent=False)
        pixels = style.to(self.colour_directions.device).float()[0].reshape(3, -1).T
        self.register_buffer("style_colours", (pixels @ self.colour_directions).sort(dim=0).values, persistent=False)

    @property
    def style_grams(self) -> list[torch.Tensor]:
        return [getattr(self, f"gram_{i}") for i in range(len(self.style_layers))]

    def forward(self, output: torch.Tensor, content: torch.Tensor) -> LossTerms:
        fy = self.features(output)
        if self.content_on_luminance:
            with torch.no_grad():
                fc = self.features(luminance(content), layers=self.content_layers)
            fyc = self.features(luminance(output), layers=self.content_layers)
        else:
            with torch.no_grad():
                fc = self.features(content, layers=self.content_layers)
            fyc = fy
        c = self.weights["content"] * sum(self._content_fn(fyc[n], fc[n]) for n in self.content_layers)
        s = self.weights["style"] * self._style_fn([gram_matrix(fy[n]) for n in self.style_layers], self.style_grams)
        if self.weights["colour"]:
            s = s + self.weights["colour"] * colour_swd(output, self.style_colours, self.colour_directions)
        t = self.weights["tv"] * tv_loss(output)
        return LossTerms(c, s, t, c + s + t)


def feature_targets(vgg: VGGFeatures, content: torch.Tensor, style: torch.Tensor, style_layers: Mapping | Iterable[str],
                    content_layer: str, *, normalized: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Content feature map and style Gram matrices (no gradient): the fixed targets of Gatys."""
    with torch.no_grad():
        fc = vgg(content, normalized=normalized)[content_layer]
        fs = vgg(style, normalized=normalized)
        return fc, [gram_matrix(fs[n]) for n in style_layers]
