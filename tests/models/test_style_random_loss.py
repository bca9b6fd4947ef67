"""Random multi-scale filter banks as a loss network, scale-free losses, and the style-quality metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segstyle.models.perceptual_loss import PerceptualLoss, relative_content_loss, relative_style_loss
from segstyle.models.random_features import RandomFilterBanks, bank_name
from segstyle.models.transformer_net import TransformerNet
from segstyle.pipelines.style import quality as Q


def test_banks_are_deterministic_frozen_and_multiscale():
    a, b = RandomFilterBanks(seed=3), RandomFilterBanks(seed=3)
    c = RandomFilterBanks(seed=4)
    x = torch.rand(2, 3, 40, 56)
    fa, fb, fc = a(x), b(x), c(x)
    assert list(fa) == [bank_name(k, d) for k, d in a.banks]
    for n in fa:
        assert torch.equal(fa[n], fb[n])
        assert not torch.equal(fa[n], fc[n])
        assert (fa[n] >= 0).all()  # ReLU
    assert fa["bank3"].shape == (2, 128, 40, 56)
    assert fa["bank7s4"].shape == (2, 128, 10, 14)
    assert fa["bank7s8"].shape == (2, 128, 5, 7)  # ceil mode: no pixel dropped
    assert not any(p.requires_grad for p in a.parameters()) and not a.train().training
    # filters are zero-mean: a flat grey image excites every filter only through its bias
    flat = a(torch.full((1, 3, 16, 16), 0.5))["bank5"]
    assert torch.allclose(flat, flat[..., :1, :1].expand_as(flat), atol=1e-5)
    # tiny inputs work (replicate padding where reflection cannot)
    assert a(torch.rand(1, 3, 5, 5))["bank7s8"].shape == (1, 128, 1, 1)


def test_relative_losses_are_scale_free_and_zero_at_target():
    g = torch.rand(2, 8, 8)
    t = torch.rand(1, 8, 8)
    assert torch.allclose(relative_style_loss([g * 10], [t * 10]), relative_style_loss([g], [t]))
    assert float(relative_style_loss([t.expand(2, 8, 8)], [t])) == 0
    y, c = torch.rand(1, 4, 5, 5), torch.rand(1, 4, 5, 5)
    assert torch.allclose(relative_content_loss(3 * y, 3 * c), relative_content_loss(y, c))


def test_random_loss_trains_towards_the_style():
    """A few Adam steps on the image itself lower the random-bank style loss and move its colours
    toward the style's (what the demo relies on), with every term finite."""
    torch.manual_seed(0)
    _, xx = torch.meshgrid(torch.arange(48), torch.arange(48), indexing="ij")
    stripes = ((xx // 4) % 2).float()
    style = torch.stack([0.9 + 0 * stripes, 0.8 * stripes, 0.1 + 0 * stripes])[None]  # red/orange stripes
    loss = PerceptualLoss(style, loss_net="random", content_weight=0.1, style_weight=1.0)
    content = torch.rand(1, 3, 48, 48) * 0.3 + 0.35
    z = content.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.03)
    first = None
    for _ in range(30):
        t = loss(z, content)
        first = first if first is not None else float(t.style.detach())
        opt.zero_grad()
        t.total.backward()
        opt.step()
        with torch.no_grad():
            z.clamp_(0, 1)
    assert float(t.style) < 0.5 * first
    assert float(z[:, 0].mean() - z[:, 1:].mean()) > 0.2


def test_random_loss_compares_content_on_luminance_only():
    """The random-bank content term sees the luma, not the colours: a hue shift that keeps every
    pixel's luma costs nothing, the same-size change along the luma costs, and VGG's term (whose
    recipe is the paper's) still sees the hue shift."""
    torch.manual_seed(0)
    content = torch.rand(1, 3, 32, 32) * 0.4 + 0.3
    chroma = torch.tensor([0.587, -0.299, 0.0]).view(1, 3, 1, 1)  # orthogonal to (0.299, 0.587, 0.114)
    bright = torch.tensor([0.2, 0.2, 0.2]).view(1, 3, 1, 1)
    loss = PerceptualLoss(torch.rand(1, 3, 32, 32), loss_net="random", content_weight=1.0, style_weight=0.0)
    assert float(loss(content + 0.3 * chroma, content).content) < 1e-10
    assert float(loss(content + bright, content).content) > 1e-3
    vgg = PerceptualLoss(torch.rand(1, 3, 32, 32), loss_net="vgg", content_weight=1.0, style_weight=0.0)
    assert float(vgg(content + 0.3 * chroma, content).content) > 0


def test_banks_compute_only_the_requested_layers():
    banks = RandomFilterBanks(((3, 1), (5, 2)), filters=8, seed=1)
    x = torch.rand(1, 3, 20, 20)
    assert list(banks(x, layers=["bank5s2"])) == ["bank5s2"]
    assert torch.equal(banks(x, layers=["bank5s2"])["bank5s2"], banks(x)["bank5s2"])


def test_unknown_loss_net_is_refused():
    with pytest.raises(ValueError, match="random"):
        PerceptualLoss(torch.rand(1, 3, 16, 16), loss_net="alexnet")


def test_residual_transformer_starts_as_identity():
    net = TransformerNet(num_residual=1, base_channels=8, residual=True).eval()
    x = torch.rand(1, 3, 21, 35)
    assert torch.equal(net(x), x)
    plain = TransformerNet(num_residual=1, base_channels=8).eval()
    assert not torch.allclose(plain(x), x, atol=1e-2)


def test_quality_metrics_react_to_what_they_claim():
    rng = np.random.default_rng(0)
    import cv2

    # photo-like: smooth random structure everywhere (a flat output has no edges anywhere)
    content = cv2.GaussianBlur(rng.integers(0, 256, (96, 128, 3)).astype(np.float32), (0, 0), 1.5)
    content = cv2.normalize(content, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    content[30:60, 40:90] = (240, 200, 60)
    style = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    style[..., 2] = 20
    same = Q.measure(content, content, style, width=96)  # 96 px: seconds, not the 192 of the benchmark
    assert same.edge_ssim > 0.99 and abs(same.swd_reduction) < 1e-9 and abs(same.gram_reduction) < 1e-9
    blob = np.full_like(content, 128)
    assert Q.measure(content, blob, style, width=96).edge_ssim < 0.15
    # an output that *is* the style (resized) scores full palette and texture moves
    as_style = np.ascontiguousarray(np.tile(style, (2, 2, 1))[:96, :128])
    m = Q.measure(content, as_style, style, width=96)
    assert m.swd_reduction > 0.6 and m.gram_reduction > 0.5 and m.edge_ssim < 0.3


def test_colour_term_matches_colour_distributions_not_positions():
    """colour_swd is zero for the style's own pixels in any order (a distribution, not an image),
    positive for other colours, and PerceptualLoss adds weight x colour_swd to the style term only."""
    from segstyle.models.perceptual_loss import colour_swd

    torch.manual_seed(0)
    style = torch.rand(1, 3, 16, 16)
    loss = PerceptualLoss(style, loss_net="random", content_weight=1.0, style_weight=1.0)
    coloured = PerceptualLoss(style, loss_net="random", content_weight=1.0, style_weight=1.0, colour_weight=10.0)
    d = coloured.colour_directions
    shuffled = style.flatten(2)[..., torch.randperm(256)].reshape(1, 3, 16, 16)
    assert float(colour_swd(shuffled, coloured.style_colours, d)) < 1e-10
    grey = torch.full((1, 3, 16, 16), 0.5)
    gap = float(colour_swd(grey, coloured.style_colours, d))
    assert gap > 1e-3
    # a different size works (the style's quantiles at the output's levels): same colours, about the same distance
    assert abs(float(colour_swd(torch.full((2, 3, 8, 12), 0.5), coloured.style_colours, d)) / gap - 1) < 0.05
    x = torch.rand(2, 3, 16, 16)
    a, b = loss(x, x), coloured(x, x)
    assert torch.equal(a.content, b.content) and torch.equal(a.tv, b.tv)
    assert torch.allclose(b.style - a.style, 10.0 * colour_swd(x, coloured.style_colours, d))
    # gradient descent on the pixels moves the colour distribution toward the style's (measured by the
    # quality module's independent CIELAB sliced-Wasserstein distance, other directions)
    z = grey.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.02)
    for _ in range(60):
        t = colour_swd(z, coloured.style_colours, d)
        opt.zero_grad()
        t.backward()
        opt.step()
    def lab(t):
        return Q.lab_pixels((t[0].detach().clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    before = Q.sliced_wasserstein(lab(grey), lab(style))
    assert Q.sliced_wasserstein(lab(z), lab(style)) < 0.5 * before
