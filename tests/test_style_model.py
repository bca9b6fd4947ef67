"""Style network: any-size I/O, registry contract, and FP16-safe InstanceNorm (incl. the ONNX graph)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from segstyle.models import build_model, get_model_meta, list_models
from segstyle.models import transformer_net as tn
from segstyle.pipelines.errors import SegstyleError

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


def _elem_types(model) -> dict[str, int]:
    import onnx

    m = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in [*m.graph.value_info, *m.graph.input, *m.graph.output]}
    types.update({i.name: i.data_type for i in m.graph.initializer})
    return types, m


def test_fp16_onnx_export_keeps_instance_norm_in_fp32(tmp_path):
    """Exporter: torch.onnx.export(dynamo=False) of the .half() model; InstanceNormalization stays FP32."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto

    torch.manual_seed(0)
    net = build_model("transformer_net", num_residual=2, base_channels=8).eval().half()  # small: export time
    path = tmp_path / "tn16.onnx"
    torch.onnx.export(net, (torch.rand(1, 3, 32, 40).half(),), str(path), dynamo=False, opset_version=20,
                      input_names=["image"], output_names=["stylized"],
                      dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "stylized": {0: "n", 2: "h", 3: "w"}})
    types, m = _elem_types(onnx.load(str(path)))
    norms = [n for n in m.graph.node if n.op_type == "InstanceNormalization"]
    assert len(norms) == 9  # 5 outer + 2 per residual block
    for n in norms:
        assert all(types[i] == TensorProto.FLOAT for i in n.input), n.name
        assert types[n.output[0]] == TensorProto.FLOAT
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    assert m.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"image": np.random.rand(1, 3, 37, 29).astype(np.float16)})[0]
    assert y.shape == (1, 3, 37, 29) and np.isfinite(y).all()


def test_default_dynamo_export_matches_torch_at_other_sizes(tmp_path):
    """torch.onnx.export's default (dynamo) exporter, FP32, dynamic H/W: same numbers as PyTorch."""
    import onnxruntime as ort

    torch.manual_seed(0)
    net = build_model("transformer_net", num_residual=1, base_channels=8).eval()  # small: export time
    path = tmp_path / "tn.onnx"
    h, w = torch.export.Dim("h", min=5, max=4096), torch.export.Dim("w", min=5, max=4096)
    torch.onnx.export(net, (torch.rand(1, 3, 33, 41),), str(path), input_names=["image"], output_names=["stylized"],
                      dynamic_shapes={"x": {2: h, 3: w}}, opset_version=20)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for hw in [(48, 64), (37, 22)]:
        x = torch.rand(1, 3, *hw)
        y = sess.run(None, {"image": x.numpy()})[0]
        with torch.no_grad():
            ref = net(x).numpy()
        assert y.shape == ref.shape
        np.testing.assert_allclose(y, ref, atol=1e-4)
