"""ONNX graph facts every caller asks the same way: a graph's precision, and "is this graph from this network".

One implementation each (``segstyle.export.backend.onnx.loader``): FP16-graph detection used to be
written three times (the FP16 converter, TensorRT's typing path, validation's row label), and the
"this ONNX belongs to this checkpoint" check twice in the commands and once, stricter, in the bundle.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segstyle.core.errors import SegstyleError
from segstyle.export.backend.onnx.loader import check_onnx_source, graph_precision, onnx_precision


def _graph(weight_dtype=np.float32, *, qdq: bool = False, meta: dict[str, str] | None = None) -> onnx.ModelProto:
    """input (1, 4) + w -> output, optionally through a QuantizeLinear/DequantizeLinear pair."""
    w = numpy_helper.from_array(np.ones((1, 4), dtype=weight_dtype), "w")
    inits, nodes, x = [w], [], "input"
    if weight_dtype != np.float32:
        nodes.append(helper.make_node("Cast", ["w"], ["w32"], to=TensorProto.FLOAT))
        wname = "w32"
    else:
        wname = "w"
    if qdq:
        inits += [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
                  numpy_helper.from_array(np.array(0, np.int8), "z")]
        nodes += [helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"])]
        x = "dq"
    nodes.append(helper.make_node("Add", [x, wname], ["output"]))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])
    for k, v in (meta or {}).items():
        m.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(m)
    return m


def test_graph_precision_fp32_fp16_and_int8():
    assert graph_precision(_graph()) == "fp32"
    assert graph_precision(_graph(np.float16)) == "fp16"
    assert graph_precision(_graph(meta={"segstyle.precision": "fp16 mixed (fp32 io)"})) == "fp16"
    # an INT8 graph with FP16 islands is INT8, not "fp16" (the old initializer test said fp16)
    assert graph_precision(_graph(np.float16, qdq=True)) == "int8"
    assert graph_precision(_graph(qdq=True)) == "int8"


def test_onnx_precision_reads_the_file(tmp_path):
    p = tmp_path / "g.onnx"
    onnx.save(_graph(np.float16), p)
    assert onnx_precision(p) == "fp16"


def _loaded(model="unet_mobilenetv2", sha="abc", ckpt="c.pt"):
    return SimpleNamespace(model=model, checkpoint_sha256=sha, checkpoint=ckpt)


def test_check_onnx_source_refuses_another_model_or_checkpoint(tmp_path):
    p = tmp_path / "m.onnx"
    onnx.save(_graph(meta={"segstyle.model": "unet_mobilenetv2", "segstyle.checkpoint_sha256": "abc"}), p)
    assert check_onnx_source(p, _loaded())["segstyle.model"] == "unet_mobilenetv2"
    with pytest.raises(SegstyleError, match="ONNX is for model 'unet_mobilenetv2', not 'fcn_resnet18'"):
        check_onnx_source(p, _loaded(model="fcn_resnet18"))
    with pytest.raises(SegstyleError, match="exported from another checkpoint than other.pt"):
        check_onnx_source(p, _loaded(sha="def", ckpt="other.pt"))
    # fresh seeded weights (no checkpoint): only the model is compared
    assert check_onnx_source(p, _loaded(sha=None, ckpt=None))
    q = tmp_path / "bare.onnx"
    onnx.save(_graph(), q)
    with pytest.raises(SegstyleError, match="ONNX is for model 'unknown'"):
        check_onnx_source(q, _loaded())


def test_validate_refuses_a_graph_of_another_checkpoint(tmp_path, cli, capsys):
    """The commands use the check: a style graph exported from checkpoint A, validated against
    checkpoint B of the same model, is refused in one line before anything runs."""
    import torch

    from segstyle.models import build_model, get_model_meta
    from segstyle.models.checkpoint import save_checkpoint

    cks = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = build_model("transformer_net", pretrained=False)
        ck = {"model": "transformer_net", "model_kwargs": dict(get_model_meta("transformer_net").default_kwargs),
              "state_dict": net.state_dict(), "params": {}, "data_version": "test"}
        cks.append(save_checkpoint(tmp_path / f"ck{seed}.pt", ck))
    graph = tmp_path / "a.onnx"
    assert cli(["export", "onnx", "--checkpoint", str(cks[0]), "--out", str(graph), "--size", "32x32"]) == 0
    capsys.readouterr()
    rc = cli(["engine", "validate", "--backend", "ort-cpu", "--checkpoint", str(cks[1]), "--onnx", str(graph),
              "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "exported from another checkpoint than" in err[0], err
    assert not (tmp_path / "r.json").exists()
