"""Perceptual loss pieces: values, shapes and gradients of each loss; VGG layers; offline weights."""

from __future__ import annotations

import urllib.error

import pytest
import torch

from segstyle.models.perceptual_loss import (LAYERS, PerceptualLoss, VGGFeatures, content_loss, gram_matrix, style_loss,
                                    tv_loss)
from segstyle.core.errors import SegstyleError


def test_gram_matrix_shape_value_and_symmetry():
    f = torch.ones(2, 3, 4, 5)
    g = gram_matrix(f)
    assert g.shape == (2, 3, 3)
    # every entry: sum over h*w of 1*1 = 20, divided by c*h*w = 60
    assert torch.allclose(g, torch.full((2, 3, 3), 1 / 3))
    r = gram_matrix(torch.randn(1, 6, 7, 3))
    assert torch.allclose(r, r.transpose(1, 2))


def test_gram_matrix_is_float32_for_half_input():
    g = gram_matrix((torch.randn(1, 4, 64, 64) * 300).half())
    assert g.dtype == torch.float32 and torch.isfinite(g).all()


def test_content_loss_value_and_gradient():
    y = torch.zeros(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    t = torch.full((1, 2, 3, 3), 2.0, dtype=torch.float64)
    loss = content_loss(y, t)
    assert loss.item() == pytest.approx(4.0)
    assert loss.shape == ()
    torch.autograd.gradcheck(lambda a: content_loss(a, t), (torch.randn(1, 2, 3, 3, dtype=torch.float64,
                                                                         requires_grad=True),))
    assert content_loss(t, t).item() == 0.0


def test_style_loss_value_broadcast_and_gradient():
    torch.manual_seed(0)
    feats = [torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True),
             torch.randn(2, 6, 3, 2, dtype=torch.float64, requires_grad=True)]
    targets = [gram_matrix(torch.randn(1, 3, 7, 7, dtype=torch.float64)),
               gram_matrix(torch.randn(1, 6, 4, 4, dtype=torch.float64))]
    loss = style_loss([gram_matrix(f) for f in feats], targets)
    assert loss.shape == () and loss.item() > 0
    # a batch whose Grams equal the (broadcast) targets has zero loss
    same = [t.expand(2, -1, -1) for t in targets]
    assert style_loss(same, targets).item() == pytest.approx(0.0, abs=1e-12)
    torch.autograd.gradcheck(lambda a, b: style_loss([gram_matrix(a), gram_matrix(b)], targets), tuple(feats))


def test_tv_loss_value_and_gradient():
    assert tv_loss(torch.ones(1, 3, 8, 8)).item() == 0.0
    # vertical stripes 0,1,0,1: every horizontal neighbour differs by 1, vertical ones by 0
    x = torch.zeros(1, 1, 4, 4)
    x[..., 1::2] = 1
    assert tv_loss(x).item() == pytest.approx(0.5)
    torch.autograd.gradcheck(tv_loss, (torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True),))


@pytest.mark.parametrize("arch,channels", [("vgg16", {"relu1_2": 64, "relu2_2": 128, "relu3_3": 256, "relu4_3": 512}),
                                           ("vgg19", {"conv1_1": 64, "conv2_1": 128, "conv3_1": 256,
                                                      "conv4_1": 512, "conv4_2": 512, "conv5_1": 512})])
def test_vgg_features_layers_and_shapes(arch, channels):
    torch.manual_seed(0)
    vgg = VGGFeatures(arch)
    assert set(vgg.layers) == set(channels) == {*LAYERS[arch][0], LAYERS[arch][1]}
    assert not any(p.requires_grad for p in vgg.parameters())
    out = vgg(torch.rand(1, 3, 32, 48))
    stride = {"1": 1, "2": 2, "3": 4, "4": 8, "5": 16}
    for name, c in channels.items():
        s = stride[name[-3]]
        assert out[name].shape == (1, c, 32 // s, 48 // s), name
        assert (out[name] >= 0).all()  # read after the ReLU
    vgg.train()
    assert not vgg.training  # frozen stays in eval


def test_vgg_state_dict_matches_torchvision_layout():
    """The pretrained path loads torchvision's ``features.*`` keys into our truncated copy."""
    import torchvision

    from segstyle.models.perceptual_loss import _build_features

    feats, _ = _build_features("vgg16")
    ref = torchvision.models.vgg16(weights=None).features
    feats.load_state_dict(ref.state_dict())  # raises on any key or shape mismatch


def test_pretrained_vgg_offline_is_one_line_error(monkeypatch, tmp_path):
    import torchvision.models._api as api

    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(SegstyleError) as e:
        VGGFeatures("vgg16", pretrained=True)
    msg = str(e.value)
    assert "\n" not in msg and "--no-pretrained" in msg and "vgg16" in msg


def test_perceptual_loss_terms_and_gradient_flow():
    torch.manual_seed(0)
    loss_fn = PerceptualLoss(torch.rand(1, 3, 40, 56), vgg="vgg16", content_weight=1.0, style_weight=1e5,
                             tv_weight=1e-2)
    content = torch.rand(2, 3, 32, 32)
    out = torch.rand(2, 3, 32, 32, requires_grad=True)
    terms = loss_fn(out, content)
    for v in terms:
        assert v.shape == () and torch.isfinite(v)
    assert torch.allclose(terms.total, terms.content + terms.style + terms.tv)
    assert terms.content > 0 and terms.style > 0 and terms.tv > 0
    terms.total.backward()
    assert out.grad is not None and out.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss_fn.parameters())
    # content term vanishes when the output is the content image itself
    assert loss_fn(content, content).content.item() == 0.0
