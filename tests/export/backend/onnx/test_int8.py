"""The INT8 recipe (export/backend/onnx/int8.py) and the sub-pixel rewrite it uses on CPU (subpixel.py).

Each check names the wrong implementation it catches: Q/DQ on a conv's output (TensorRT cannot fuse
conv+bias+ReLU then), an INT32 bias dequantize (TensorRT has none), asymmetric activations for
TensorRT, FP16 Q/DQ scales (subnormal for small weights), a ConvTranspose rewrite that ignores the
output phases, a keep-float selector that silently matches nothing, and a quantiser that is not
deterministic.
"""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper

from segstyle.core.errors import SegstyleError
from segstyle.export.backend.onnx.int8 import (export_int8, int8_consumers, make_recipe, needs_reduce_range,
                                               quantize_int8, select_nodes, tensor_ranges)
from segstyle.export.backend.onnx.subpixel import convtranspose_to_conv, phase_taps

INT8 = {"calibration": {"count": 8, "size": [32, 32], "method": "minmax", "percentile": 99.999}, "keep_float": {}}
KEEP = ["InstanceNormalization", "Resize", "ReduceMean", "Softmax"]


class Block(nn.Module):
    """conv+bias+ReLU, a residual add, a Resize, a Concat and a transposed conv: every placement case."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.c3 = nn.Conv2d(16, 4, 1)
        self.up = nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x):
        a = F.relu(self.c1(x))
        b = F.relu(self.c2(a) + a)                         # residual add
        r = F.interpolate(b, scale_factor=0.5, mode="bilinear", align_corners=False)
        r = F.interpolate(r, size=b.shape[-2:], mode="bilinear", align_corners=False)
        return self.up(self.c3(torch.cat([b, r], 1)))      # concat, 1x1 conv, transposed conv


def _export(module: nn.Module, path, cin: int = 3) -> None:
    torch.manual_seed(0)
    module.eval()
    f = io.BytesIO()
    torch.onnx.export(module, torch.rand(1, cin, 32, 32), f, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}}, opset_version=20, dynamo=False)
    m = onnx.load_from_string(f.getvalue())
    m.metadata_props.add(key="segstyle.model", value="block")
    onnx.save(m, str(path))


@pytest.fixture(scope="module")
def block(tmp_path_factory):
    d = tmp_path_factory.mktemp("int8")
    torch.manual_seed(0)
    net = Block()
    _export(net, d / "block.onnx")
    rng = np.random.default_rng(0)
    cal = [rng.random((1, 3, 32, 32), dtype=np.float32) for _ in range(8)]
    return d, net, cal


def _graph(model):
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return producer, consumers


def _through_casts(name, producer):
    while name in producer and producer[name].op_type == "Cast":
        name = producer[name].input[0]
    return producer.get(name)


def test_trt_placement_follows_tensorrt_rules(block):
    d, _, cal = block
    model, rec = quantize_int8(d / "block.onnx", cal, make_recipe(INT8, KEEP, "trt", "block"))
    producer, consumers = _graph(model)
    inits = {t.name: t for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 3
    for conv in convs:
        # activation and weight arrive through DequantizeLinear (INT8 inputs) ...
        assert _through_casts(conv.input[0], producer).op_type == "DequantizeLinear", conv.name
        assert _through_casts(conv.input[1], producer).op_type == "DequantizeLinear", conv.name
        # ... the bias stays float (no INT32 DequantizeLinear: TensorRT has none) ...
        if len(conv.input) > 2:
            assert conv.input[2] in inits or producer[conv.input[2]].op_type == "Cast"
            assert _through_casts(conv.input[2], producer) is None or \
                _through_casts(conv.input[2], producer).op_type != "DequantizeLinear"
        # ... and nothing quantises the conv's own output: it goes to ReLU / Add / the next op in float
        for c in consumers.get(conv.output[0], []):
            assert c.op_type != "QuantizeLinear", f"Q/DQ on the output of {conv.name}"
    # the residual Add: the conv operand float, the residual one through Q/DQ (TensorRT fuses conv + add)
    add = next(n for n in model.graph.node if n.op_type == "Add")
    kinds = sorted(_through_casts(i, producer).op_type for i in add.input)
    assert kinds == ["Conv", "DequantizeLinear"] and rec["residual_adds_fused"] == [add.name]
    # Concat's inputs are quantised (the feature concat, not the shape arithmetic's); Resize (kept float) is not
    cat = [n for n in model.graph.node if n.op_type == "Concat"][-1]   # graph order: the shape concats come first
    assert all(_through_casts(i, producer).op_type == "DequantizeLinear" for i in cat.input)
    # signed symmetric INT8 everywhere, FP32 scales (FP16 ones are subnormal for small weights)
    for q in (n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")):
        zp = numpy_helper.to_array(inits[q.input[2]]) if len(q.input) > 2 and q.input[2] in inits else None
        assert zp is not None and zp.dtype == np.int8 and not zp.any(), q.name
        assert inits[q.input[1]].data_type == onnx.TensorProto.FLOAT, q.name
    # FP16 between the INT8 layers: the convs compute in FP16, I/O stays FP32
    types = {vi.name: vi.type.tensor_type.elem_type for vi in onnx.shape_inference.infer_shapes(model).graph.value_info}
    assert all(types.get(c.output[0]) == onnx.TensorProto.FLOAT16 for c in convs)
    # Resize (the recipe's float op) computes in FP32: its input is a Cast back up, its output FP32
    resizes = [n for n in model.graph.node if n.op_type == "Resize"]
    assert len(resizes) == 2
    for rs in resizes:
        assert types.get(rs.input[0]) == onnx.TensorProto.FLOAT and types.get(rs.output[0]) == onnx.TensorProto.FLOAT
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert rec["int8_ops"]["Conv"] == 3 and rec["tensor_ranges"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["segstyle.int8_target"] == "trt" and meta["segstyle.precision"].startswith("int8")


def test_cpu_target_u8s8_subpixel_and_close_to_float(block, tmp_path):
    import onnxruntime as ort

    d, net, cal = block
    rec = export_int8(d / "block.onnx", tmp_path / "q.onnx", cal, make_recipe(INT8, KEEP, "cpu", "block"),
                      calibration_ids=[f"i{k}" for k in range(8)], calibration_source="noise")
    model = onnx.load(str(tmp_path / "q.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert "ConvTranspose" not in ops and "DepthToSpace" in ops        # rewritten, so it quantises too
    assert rec["convtranspose_to_subpixel_conv"]["rewritten"] and rec["int8_ops"]["Conv"] == 4
    acts = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert all(inits[q.input[2]].dtype == np.uint8 for q in acts)       # U8 activations (S8 weights)
    assert rec["calibration"]["ids"] == [f"i{k}" for k in range(8)] and rec["sha256"] != rec["source_sha256"]
    x = np.random.default_rng(5).random((2, 3, 40, 24), dtype=np.float32)   # not the export size
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    span = float(ref.max() - ref.min())
    assert got.shape == ref.shape and np.abs(got - ref).max() < 0.1 * span


def test_int8_graph_is_byte_identical_on_a_rerun(block, tmp_path):
    d, _, cal = block
    for target in ("trt", "cpu"):
        r = make_recipe(INT8, KEEP, target, "block")
        a = export_int8(d / "block.onnx", tmp_path / f"a_{target}.onnx", cal, r)
        b = export_int8(d / "block.onnx", tmp_path / f"b_{target}.onnx", cal, r)
        assert (tmp_path / f"a_{target}.onnx").read_bytes() == (tmp_path / f"b_{target}.onnx").read_bytes()
        assert a["tensor_ranges"] == b["tensor_ranges"]
        # other calibration images give another graph: the record is not a constant
        c = export_int8(d / "block.onnx", tmp_path / f"c_{target}.onnx", [x * 0.5 for x in cal], r)
        assert c["sha256"] != a["sha256"]


def test_keep_float_selectors(block):
    d, _, cal = block
    model = onnx.load(str(d / "block.onnx"))
    first, last = select_nodes(model, ["first:Conv", "last:Conv"])
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    assert (first, last) == (convs[0], convs[-1])
    assert select_nodes(model, ["op:Conv"]) == convs
    with pytest.raises(SegstyleError, match="no Softmax node"):
        select_nodes(model, ["first:Softmax"])
    with pytest.raises(SegstyleError, match="no node named"):
        select_nodes(model, ["conv_that_is_not_there"])
    recipe = make_recipe({**INT8, "keep_float": {"block": ["first:Conv"]}}, KEEP, "cpu", "block")
    q, rec = quantize_int8(d / "block.onnx", cal, recipe)
    assert rec["float_nodes"] and rec["int8_ops"]["Conv"] == 3   # the first conv no longer counts
    producer, _ = _graph(q)
    kept = next(n for n in q.graph.node if n.name == rec["float_nodes"][0])
    assert kept.input[1] in {t.name for t in q.graph.initializer}   # a float weight, no DequantizeLinear


def test_reduce_range_follows_vnni():
    assert needs_reduce_range({"avx2", "avx512f"}, "x86_64") is True
    assert needs_reduce_range({"avx2", "avx512_vnni"}, "x86_64") is False
    assert needs_reduce_range({"avx_vnni"}, "x86_64") is False
    assert needs_reduce_range(set(), "aarch64") is False
    assert make_recipe(INT8, KEEP, "trt", None).reduce_range is False   # TensorRT: full INT8 range always
    assert make_recipe(INT8, KEEP, "cpu", None, reduce_range=True).reduce_range is True


def test_refuses_a_quantised_graph_and_empty_calibration(block, tmp_path):
    d, _, cal = block
    r = make_recipe(INT8, KEEP, "cpu", "block")
    export_int8(d / "block.onnx", tmp_path / "q.onnx", cal, r)
    with pytest.raises(SegstyleError, match="already INT8"):
        quantize_int8(tmp_path / "q.onnx", cal, r)
    with pytest.raises(SegstyleError, match="no calibration inputs"):
        quantize_int8(d / "block.onnx", [], r)
    with pytest.raises(SegstyleError, match="target must be one of"):
        make_recipe(INT8, KEEP, "tpu", None)


def test_tensor_ranges_read_back_the_q_nodes(block):
    d, _, cal = block
    model, rec = quantize_int8(d / "block.onnx", cal, make_recipe(INT8, KEEP, "cpu", "block"))
    ranges = tensor_ranges(model)
    lo, hi = ranges["input"]
    # the graph input is the calibration images (0..1): its calibrated range must cover them, roughly
    assert -0.01 <= lo <= 0.01 and 0.95 <= hi <= 1.05
    assert int8_consumers(model)["Conv"] == 4


@pytest.mark.parametrize("cin,cout,k,s,p,op", [(5, 3, 3, 2, 1, 1), (4, 6, 4, 2, 1, 0), (3, 2, 4, 1, 0, 0),
                                               (3, 4, 3, 2, 0, 0), (2, 3, 5, 3, 2, 1), (2, 2, 2, 2, 0, 0)])
def test_subpixel_rewrite_is_exact_at_any_size(tmp_path, cin, cout, k, s, p, op):
    """Every (kernel, stride, pad, output padding) the demo networks use and a few they do not, at sizes
    other than the export's: a rewrite that drops a phase, mixes the channel order or crops wrongly fails."""
    import onnxruntime as ort

    torch.manual_seed(0)
    m = nn.ConvTranspose2d(cin, cout, k, stride=s, padding=p, output_padding=op)
    _export(m, tmp_path / "t.onnx", cin=cin)
    src = onnx.load(str(tmp_path / "t.onnx"))
    out, done, skipped = convtranspose_to_conv(src)
    assert done and not skipped and not any(n.op_type == "ConvTranspose" for n in out.graph.node)
    onnx.checker.check_model(out, full_check=True)
    a = ort.InferenceSession(src.SerializeToString(), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(out.SerializeToString(), providers=["CPUExecutionProvider"])
    for h, w in [(7, 9), (1, 1), (12, 5)]:
        x = np.random.default_rng(h).standard_normal((2, cin, h, w)).astype(np.float32)
        ya, yb = a.run(None, {"input": x})[0], b.run(None, {"input": x})[0]
        assert ya.shape == yb.shape and np.abs(ya - yb).max() < 1e-4


def test_subpixel_leaves_what_it_cannot_rewrite(tmp_path):
    m = nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, groups=2)
    _export(m, tmp_path / "g.onnx", cin=4)
    out, done, skipped = convtranspose_to_conv(onnx.load(str(tmp_path / "g.onnx")))
    assert not done and skipped and "group" in skipped[0][1]
    assert any(n.op_type == "ConvTranspose" for n in out.graph.node)


def test_phase_taps_hand_computed():
    """k3 s2 p1: even outputs take tap 1 at offset 0, odd ones taps 2 (offset 0) and 0 (offset +1)."""
    lo, K, taps = phase_taps(3, 2, 1)
    assert (lo, K) == (0, 2) and taps == {(0, 0): 1, (1, 0): 2, (1, 1): 0}


def test_subpixel_moves_a_following_relu_before_the_interleave(tmp_path):
    """ReLU commutes with DepthToSpace; moved in front, the quantised conv absorbs it (the U-Net decoder's
    DepthToSpace then runs on 8-bit data). The graph must stay exact and end in the ReLU's output name."""
    import onnxruntime as ort

    torch.manual_seed(0)
    m = nn.Sequential(nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1), nn.ReLU())
    _export(m, tmp_path / "r.onnx", cin=4)
    src = onnx.load(str(tmp_path / "r.onnx"))
    out, done, _ = convtranspose_to_conv(src)
    ops = [n.op_type for n in out.graph.node]
    assert ops == ["Conv", "Relu", "DepthToSpace"] and out.graph.node[-1].output[0] == src.graph.output[0].name
    x = np.random.default_rng(0).standard_normal((1, 4, 9, 6)).astype(np.float32)
    ya = ort.InferenceSession(src.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    yb = ort.InferenceSession(out.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert np.abs(ya - yb).max() < 1e-5
