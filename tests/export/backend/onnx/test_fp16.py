"""The FP16 recipe on hand-built graphs (seconds): the list is the whole list, kept means kept, errors are one line."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def _in_graph(with_value_info: bool = True):
    """Conv -> InstanceNorm -> Max(., 0) like torch's dynamo exporter writes it (initializers in value_info)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    scale = numpy_helper.from_array((1 + 1e-4 * rng.standard_normal(4)).astype(np.float32), "in.scale")
    bias = numpy_helper.from_array((1e-5 * rng.standard_normal(4)).astype(np.float32), "in.bias")
    zero = numpy_helper.from_array(np.zeros((1,), np.float32), "zero")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("InstanceNormalization", ["c", "in.scale", "in.bias"], ["n"], name="inorm"),
             helper.make_node("Max", ["n", "zero"], ["y"], name="max")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    vi = [helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims)) for t in (w, scale, bias, zero)]
    g = helper.make_graph(nodes, "g", [x], [y], initializer=[w, scale, bias, zero],
                          value_info=vi if with_value_info else [])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])
    onnx.checker.check_model(m)
    return m


def _types(m):
    m = onnx.shape_inference.infer_shapes(m)
    t = {v.name: v.type.tensor_type.elem_type for v in list(m.graph.value_info) + list(m.graph.input) +
         list(m.graph.output)}
    t.update({i.name: i.data_type for i in m.graph.initializer})
    return t


def test_the_converters_hidden_default_list_is_not_added():
    """Max is in onnxconverter-common's DEFAULT_OP_BLOCK_LIST; not in ours, so it computes in FP16."""
    from onnxconverter_common.float16 import DEFAULT_OP_BLOCK_LIST

    from segstyle.export.backend.onnx.fp16 import convert_fp16

    assert "Max" in DEFAULT_OP_BLOCK_LIST
    out = convert_fp16(_in_graph(), ["InstanceNormalization"])
    t = _types(out)
    mx = next(n for n in out.graph.node if n.name == "max")
    assert t[mx.input[1]] == TensorProto.FLOAT16 and t[mx.input[0]] == TensorProto.FLOAT16
    kept = convert_fp16(_in_graph(), ["InstanceNormalization", "Max"])
    mx = next(n for n in kept.graph.node if n.name == "max")
    assert _types(kept)[mx.input[0]] == TensorProto.FLOAT
    meta = {p.key: p.value for p in kept.metadata_props}
    assert meta["segstyle.fp16_kept_fp32"] == "InstanceNormalization,Max"


@pytest.mark.parametrize("with_value_info", [True, False])
def test_kept_op_initializers_stay_fp32_bit_identical(with_value_info):
    from segstyle.export.backend.onnx.fp16 import convert_fp16, fp32_islands, kept_initializer_mismatches

    src = _in_graph(with_value_info)
    out = convert_fp16(src, ["InstanceNormalization"])
    inorm = next(n for n in out.graph.node if n.op_type == "InstanceNormalization")
    inits = {t.name: t for t in out.graph.initializer}
    for name in ("in.scale", "in.bias"):
        assert name in inorm.input  # no Cast in between
        want = numpy_helper.to_array(next(t for t in src.graph.initializer if t.name == name))
        got = numpy_helper.to_array(inits[name])
        assert got.dtype == np.float32 and got.tobytes() == want.tobytes()
    assert inits["w"].data_type == TensorProto.FLOAT16  # the conv weight is converted
    assert kept_initializer_mismatches(src, out, ["InstanceNormalization"]) == []
    assert fp32_islands(out, ["InstanceNormalization"]) == {"InstanceNormalization": 1}


def test_mismatch_detector_sees_an_initializer_rounded_behind_a_cast():
    """What the converter does unguarded: scale -> FP16 initializer -> Cast(FLOAT) -> InstanceNorm."""
    from onnxconverter_common import float16

    from segstyle.export.backend.onnx.fp16 import kept_initializer_mismatches

    src = _in_graph(True)
    raw = float16.convert_float_to_float16(onnx.load_from_string(src.SerializeToString()), keep_io_types=True,
                                           op_block_list=["InstanceNormalization"])
    bad = kept_initializer_mismatches(src, raw, ["InstanceNormalization"])
    assert sorted(b.split(" ")[0] for b in bad) == ["inorm:in.bias", "inorm:in.scale"]
    assert all("behind a Cast" in b for b in bad)


def test_checker_error_is_one_line_naming_the_graph(monkeypatch):
    from segstyle.export.backend.onnx.fp16 import convert_fp16
    from segstyle.core.errors import SegstyleError

    def broken(*a, **k):
        raise onnx.checker.ValidationError("Field 'type' of 'value_info' is required\n\n==> Context: Bad node")

    model = _in_graph()
    monkeypatch.setattr(onnx.checker, "check_model", broken)
    with pytest.raises(SegstyleError) as e:
        convert_fp16(model, ["InstanceNormalization"], name="net/model.onnx")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("net/model.onnx: FP16 conversion failed: ValidationError: Field")


def test_fp16_input_and_bad_list_are_one_line():
    from segstyle.export.backend.onnx.fp16 import convert_fp16
    from segstyle.core.errors import SegstyleError

    once = convert_fp16(_in_graph(), ["InstanceNormalization"])
    with pytest.raises(SegstyleError, match="g.onnx: the graph is already FP16"):
        convert_fp16(once, ["InstanceNormalization"], name="g.onnx")
    with pytest.raises(SegstyleError, match="op types"):
        convert_fp16(_in_graph(), ["instancenorm"])
