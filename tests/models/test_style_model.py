"""Style network: any-size I/O, registry contract, and FP16-safe InstanceNorm (incl. the ONNX graph)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from segstyle.models import build_model, get_model_meta, list_models
from segstyle.models import transformer_net as tn
from segstyle.core.errors import SegstyleError

STYLE_MODELS = list_models(task="style")


def test_transformer_net_is_registered_as_style_model():
    assert "transformer_net" in STYLE_MODELS
    meta = get_model_meta("transformer_net")
    assert meta.mean == (0.0, 0.0, 0.0) and meta.std == (1.0, 1.0, 1.0)
    assert "0..1" in meta.input_range


@pytest.mark.parametrize("name", STYLE_MODELS)
@pytest.mark.parametrize("hw", [(5, 5), (33, 47), (64, 64), (70, 31)])
def test_output_has_exact_input_size(name, hw):
    torch.manual_seed(0)
    net = build_model(name, pretrained=False).eval()
    x = torch.rand(1, 3, *hw)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("name", STYLE_MODELS)
def test_pretrained_is_refused(name):
    with pytest.raises(SegstyleError, match="no pretrained weights"):
        build_model(name, pretrained=True)


def test_eval_clamps_and_train_does_not():
    torch.manual_seed(0)
    net = build_model("transformer_net")
    with torch.no_grad():
        net.deconv3.conv.weight.mul_(50)  # push outputs well outside 0..1
    x = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        raw = net.train()(x)
        out = net.eval()(x)
    assert raw.min() < 0 and raw.max() > 1  # training keeps gradients beyond the range
    assert torch.equal(out, raw.clamp(0, 1))


def test_instance_norm32_matches_instance_norm2d_in_fp32():
    torch.manual_seed(0)
    ref = nn.InstanceNorm2d(8, affine=True)
    with torch.no_grad():
        ref.weight.normal_()
        ref.bias.normal_()
    ours = tn.InstanceNorm32(8, affine=True)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 8, 9, 7)
    assert torch.equal(ours(x), ref(x))
    assert ours.state_dict().keys() == ref.state_dict().keys()


def test_instance_norm32_computes_in_fp32_under_half(monkeypatch):
    """Under .half() the normalisation itself sees float32 and returns the input dtype."""
    seen = []
    real = tn.F.instance_norm

    def spy(x, *a, **k):
        seen.append(x.dtype)
        return real(x, *a, **k)

    monkeypatch.setattr(tn.F, "instance_norm", spy)
    m = tn.InstanceNorm32(4, affine=True).half()
    # Activations whose squares sum far past FP16's 65504: naive FP16 statistics would be inf.
    x32 = torch.randn(1, 4, 64, 64) * 300 + 500
    assert torch.isinf((x32.half() * x32.half()).sum(dim=(2, 3))).all()
    y = m(x32.half())
    assert seen == [torch.float32]
    assert y.dtype == torch.float16 and torch.isfinite(y).all()
    ref = nn.functional.instance_norm(x32)
    assert (y.float() - ref).abs().max() < 1e-2


# Export of TransformerNet (FP32 parity at unseen sizes, FP16 graph with every InstanceNorm in FP32) is
# tested through the project's own export functions in tests/export/backend/onnx/test_export_style.py.
