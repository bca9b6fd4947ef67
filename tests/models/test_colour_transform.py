"""The whitening-colouring step of the demo style network (models/colour_transform.py)."""

from __future__ import annotations

import pytest
import torch

from segstyle.models.colour_transform import ColourTransform, colour_stats, inv_sqrt_newton_schulz


def spd(cond: float, n: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of SPD 3x3 matrices with the given condition number, and their exact inverse square roots."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, 3, 3, generator=g, dtype=torch.float64))
    w = torch.tensor([1.0, cond ** -0.5, 1.0 / cond], dtype=torch.float64) * 0.2
    a = q @ torch.diag_embed(w.expand(n, 3)) @ q.transpose(1, 2)
    return a, q @ torch.diag_embed(w.rsqrt().expand(n, 3)) @ q.transpose(1, 2)


@pytest.mark.parametrize("cond", [1.0, 30.0, 750.0, 1e4])
def test_newton_schulz_matches_the_eigendecomposition(cond):
    a, want = spd(cond)
    got = inv_sqrt_newton_schulz(a.float()).double()
    assert float(((got - want).norm(dim=(1, 2)) / want.norm(dim=(1, 2))).max()) < 1e-3
    assert torch.allclose(got @ a @ got, torch.eye(3, dtype=torch.float64).expand_as(a), atol=1e-3)


def images(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two photos with different colour statistics (a reddish gradient, a dark noisy one) and a 'style'."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 64), indexing="ij")
    a = torch.stack([0.3 + 0.6 * xx, 0.1 + 0.5 * yy, 0.1 * xx]) + 0.5 * torch.rand(3, 48, 64, generator=g)
    b = 0.1 + 0.6 * torch.rand(3, 48, 64, generator=g) ** 3
    style = torch.rand(3, 40, 40, generator=g) ** 2
    return torch.stack([a, b]), style


def test_every_output_image_takes_the_style_colour_statistics():
    x, style = images()
    ct = ColourTransform()
    ct.set_target(style)
    s_mean, s_cov = colour_stats(style[None])
    y = ct(x)
    mean, cov = colour_stats(y)
    assert torch.allclose(mean, s_mean.expand(2, 3), atol=1e-4)
    # EPS (1e-3) shrinks each direction by var / (var + EPS): a few % for these spreads (var >= 0.02).
    err = (cov - s_cov).norm(dim=(1, 2)) / s_cov.norm()
    assert float(err.max()) < 0.06, err
    before = (colour_stats(x)[1] - s_cov).norm(dim=(1, 2)) / s_cov.norm()
    assert float(before.min()) > 0.5  # the inputs really were far from the style


def test_each_image_is_transformed_on_its_own_statistics():
    x, style = images()
    ct = ColourTransform()
    ct.set_target(style)
    both = ct(x)
    assert torch.allclose(both[0], ct(x[:1])[0], atol=1e-5)
    assert torch.allclose(both[1], ct(x[1:])[0], atol=1e-5)


def test_half_input_is_computed_in_float32_and_returned_in_half():
    """A mean over 1024x1024 pixels: the statistics run in float32 (an FP16 sum of squares overflows)."""
    ct = ColourTransform()
    ct.set_target(images()[1])
    x = torch.rand(1, 3, 1024, 1024)
    y16 = ct(x.half())
    assert y16.dtype == torch.float16 and torch.isfinite(y16).all()
    assert float((y16.float() - ct(x)).abs().max()) < 2e-2


def test_transformer_net_keeps_its_colour_target_through_a_checkpoint(tmp_path):
    from segstyle.models import build_model
    from segstyle.models.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint

    x, style = images()
    kw = {"base_channels": 8, "num_residual": 1, "residual": True, "colour_match": True}
    net = build_model("transformer_net", **kw)
    net.colour.set_target(style)
    save_checkpoint(tmp_path / "c.pt", {"model": "transformer_net", "model_kwargs": kw, "params": {},
                                        "data_version": "x", "state_dict": net.state_dict()})
    back = model_from_checkpoint(load_checkpoint(tmp_path / "c.pt")).eval()
    assert torch.equal(back.colour.cov_sqrt, net.colour.cov_sqrt)
    with torch.no_grad():
        y = back(x)  # the residual net starts as the identity: the output is the colour step alone
    assert torch.allclose(colour_stats(y)[0], colour_stats(style[None])[0].expand(2, 3), atol=2e-2)
    assert "colour.mean" not in build_model("transformer_net").state_dict()  # off by default (the reference net)


def test_a_nearly_flat_image_is_not_blown_up():
    """EPS caps the gain: a grey image with faint noise keeps a faint spread instead of the style's."""
    ct = ColourTransform()
    ct.set_target(images()[1])
    flat = 0.5 + 0.002 * torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    gain = float(ct(flat).std() / flat.std())
    style_over_eps = float(ct.cov_sqrt.diagonal().max() / ct.eps ** 0.5)
    assert gain <= style_over_eps * 1.05 and ct(flat).std() < 0.1
