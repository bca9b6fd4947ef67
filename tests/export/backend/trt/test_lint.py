"""The TensorRT lint flags ops and attributes TensorRT's ONNX parser lacks (graphs built by hand)."""

from __future__ import annotations

import json

import onnx
from onnx import TensorProto, helper


def _graph(tmp_path, nodes, name="g.onnx", opset=20, extra_inits=()):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [])
    g = helper.make_graph(nodes, "g", [x], [y], initializer=list(extra_inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(m)
    p = tmp_path / name
    onnx.save(m, str(p))
    return p


def test_supported_graph_passes(tmp_path, cli):
    p = _graph(tmp_path, [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Sigmoid", ["h"], ["y"])])
    assert cli(["export", "lint", str(p), "--json", str(tmp_path / "r.json")]) == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["ok"] and {r["op"] for r in rep["ops"]} == {"Relu", "Sigmoid"}


def test_unsupported_op_is_reported_and_fails(tmp_path, cli, capsys):
    # Det: in the ONNX standard, marked N in TensorRT's operator matrix
    nodes = [helper.make_node("Relu", ["x"], ["h"]),
             helper.make_node("Reshape", ["h", "shape"], ["m"]),
             helper.make_node("Det", ["m"], ["y"])]
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [3, 8, 8])
    p = _graph(tmp_path, nodes, extra_inits=[shape])
    assert cli(["export", "lint", str(p), "--json", str(tmp_path / "r.json")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Det" in err[0]
    rep = json.loads((tmp_path / "r.json").read_text())
    assert not rep["ok"]
    assert [i["op"] for i in rep["issues"] if i["level"] == "error"] == ["Det"]
    assert {r["op"]: r["status"] for r in rep["ops"]} == {"Relu": "ok", "Reshape": "ok", "Det": "error"}


def test_unsupported_attributes_are_reported(tmp_path):
    from segstyle.export.backend.trt.lint import lint_model

    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])
    nodes = [
        helper.make_node("Resize", ["x", "", "scales"], ["r"], mode="cubic"),
        helper.make_node("Resize", ["r", "", "scales"], ["r2"], mode="linear",
                         coordinate_transformation_mode="tf_crop_and_resize"),
        helper.make_node("MaxPool", ["r2"], ["y"], kernel_shape=[2, 2], dilations=[2, 2]),
    ]
    p = _graph(tmp_path, nodes, extra_inits=[scales])
    rep = lint_model(onnx.load(str(p)))
    msgs = [i["message"] for i in rep["issues"]]
    assert any("mode 'cubic'" in m for m in msgs)
    assert any("tf_crop_and_resize" in m for m in msgs)
    assert any("dilations" in m for m in msgs)
    assert rep["errors"] == 3 and not rep["ok"]


def test_custom_domain_and_opset_out_of_range(tmp_path):
    from segstyle.export.backend.trt.lint import lint_model

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    g = helper.make_graph([helper.make_node("MyOp", ["x"], ["y"], domain="com.example")], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 8), helper.make_opsetid("com.example", 1)])
    rep = lint_model(m)
    assert any("plugin" in i["message"] for i in rep["issues"])
    assert any("opset 8" in i["message"] for i in rep["issues"])


def test_table_is_the_onnx_tensorrt_matrix():
    from segstyle.export.backend.trt.lint import support_table

    for profile in ("10.3", "10.x", "11.x"):
        t = support_table(profile)
        ops = t["operators"]
        assert "onnx-tensorrt" in t["source"] and len(ops) > 150
        assert ops["InstanceNormalization"]["supported"] and not ops["Det"]["supported"]
        assert "half_pixel" in ops["Resize"]["restrictions"]
    assert support_table()["tensorrt_version"] == "10.3"  # default: the oldest JetPack 6 TensorRT


def test_profiles_differ_a_graph_newer_tensorrt_accepts_and_10_3_rejects(tmp_path, cli, capsys):
    """BlackmanWindow: onnx-tensorrt added it in 10.4; the 10.3 matrix marks it N, 10.15 and 11.x Y."""
    n = helper.make_tensor("n", TensorProto.INT64, [], [8])
    nodes = [helper.make_node("BlackmanWindow", ["n"], ["w"]),
             helper.make_node("Mul", ["x", "w"], ["y"])]
    p = _graph(tmp_path, nodes, opset=20, extra_inits=[n])
    assert cli(["export", "lint", str(p), "--trt", "10.x", "--json", str(tmp_path / "new.json")]) == 0
    assert cli(["export", "lint", str(p), "--trt", "11.x"]) == 0
    capsys.readouterr()
    assert cli(["export", "lint", str(p), "--json", str(tmp_path / "old.json")]) == 1  # default 10.3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TensorRT 10.3" in err[0] and "BlackmanWindow" in err[0]
    old = json.loads((tmp_path / "old.json").read_text())
    new = json.loads((tmp_path / "new.json").read_text())
    assert old["profile"] == "10.3" and old["tensorrt_table_version"] == "10.3"
    assert new["profile"] == "10.x" and new["ok"]
    assert [i["op"] for i in old["issues"] if i["level"] == "error"] == ["BlackmanWindow"]


def test_opset_range_follows_the_profile(tmp_path):
    from segstyle.export.backend.trt.lint import lint_model

    m = onnx.load(str(_graph(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], opset=21)))
    assert not lint_model(m, "10.3")["ok"]  # 10.3: opsets 9..20
    assert lint_model(m, "10.x")["ok"] and lint_model(m, "11.x")["ok"]


def test_slice_with_tensor_axes_is_an_error_only_before_10_3():
    """10.3 accepts tensor Slice axes (changelog); Pad tensor axes came in 10.4."""
    from segstyle.export.backend.trt.lint import lint_model

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    a = helper.make_tensor_value_info("a", TensorProto.INT64, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = [helper.make_tensor(k, TensorProto.INT64, [1], [v]) for k, v in (("s", 0), ("e", 4))]
    pads = helper.make_tensor("p", TensorProto.INT64, [2], [1, 1])
    g = helper.make_graph([helper.make_node("Slice", ["x", "s", "e", "a"], ["h"]),
                           helper.make_node("Pad", ["h", "p", "", "a"], ["y"])], "g", [x, a], [y],
                          initializer=inits + [pads])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])
    old = lint_model(m, "10.3")
    assert [(i["op"], "axes" in i["message"]) for i in old["issues"] if i["level"] == "error"] == [("Pad", True)]
    assert lint_model(m, "10.x")["ok"]


def test_unknown_profile_is_a_usage_error(tmp_path, cli, capsys):
    p = _graph(tmp_path, [helper.make_node("Relu", ["x"], ["y"])])
    assert cli(["export", "lint", str(p), "--trt", "9.0"]) == 2
    assert "9.0" in capsys.readouterr().err


def test_stored_tables_match_their_sources():
    """The 10.3 and 11.x JSON files are what build_tables derives from the stored sources (no hand edits)."""
    from segstyle.export.backend.trt.lint import build_tables, table_path

    for profile, table in build_tables().items():
        assert json.loads(table_path(profile).read_text()) == json.loads(json.dumps(table)), profile
