"""ONNX export of every registered model: parity with PyTorch, metadata, FP16 graph, TensorRT lint.

Each model is exported once (module fixture) through the real CLI; the other tests read that file.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from segstyle.models import get_model_meta, list_models
from segstyle.pipelines.config import load_params

pytestmark = pytest.mark.slow

PARAMS = load_params()


@pytest.fixture(scope="module", params=list_models())
def exported(request, tmp_path_factory):
    from segstyle.pipelines.cli import run_cli as cli

    name = request.param
    d = tmp_path_factory.mktemp(f"onnx_{name}")
    out, report = d / f"{name}.onnx", d / "parity.json"
    torch.set_num_threads(2)
    rc = cli(["export", "onnx", "--model", name, "--out", str(out), "--report", str(report)])
    assert rc == 0
    return name, out, json.loads(report.read_text())


def test_parity_unseen_sizes_batch_1_and_3(exported):
    name, _, rep = exported
    export_size = tuple(PARAMS.export.size)
    sizes = {tuple(r["size"]) for r in rep["rows"]}
    assert len(sizes) >= 2 and export_size not in sizes
    assert {r["batch"] for r in rep["rows"]} == {1, 3}
    assert all(r["shape_ok"] for r in rep["rows"])
    assert rep["max_abs_err"] <= 1e-4, f"{name}: {rep['rows']}"
    assert rep["passed"]


def test_single_file_dynamic_dims_and_metadata(exported):
    name, path, _ = exported
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, "parity.json"])  # no external data
    model = onnx.load(str(path), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    onnx.checker.check_model(model, full_check=True)
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]
    meta = {p.key: p.value for p in model.metadata_props}
    task = get_model_meta(name).task
    assert meta["segstyle.model"] == name and meta["segstyle.task"] == task
    assert meta["segstyle.params_digest"] == load_params().digest()  # params.yaml as the CLI read it
    assert meta["segstyle.data_version"] and meta["segstyle.git_commit"]
    assert model.graph.output[0].name == ("logits" if task == "segmentation" else "image")
    if task == "segmentation":
        n_out = model.graph.output[0].type.tensor_type.shape.dim[1].dim_value
        assert len(json.loads(meta["segstyle.classes"])) == n_out


def test_fp16_graph_keeps_io_and_instancenorm_fp32(exported, tmp_path):
    from segstyle.export.fp16 import compare_fp16, export_fp16, fp32_islands
    from segstyle.export.onnx import ort_session

    name, path, _ = exported
    out = tmp_path / "fp16.onnx"
    m16 = export_fp16(path, out, PARAMS.export.fp16_keep_fp32)
    assert m16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert m16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in m16.graph.initializer)
    n_in = sum(n.op_type == "InstanceNormalization" for n in onnx.load(str(path)).graph.node)
    assert fp32_islands(m16, PARAMS.export.fp16_keep_fp32).get("InstanceNormalization", 0) == n_in
    sess = ort_session(path)
    rep = compare_fp16(lambda x: sess.run(None, {"input": x.numpy()})[0], out, sizes=[(64, 96)], batch=1,
                       task=get_model_meta(name).task)
    assert rep["ran"], rep
    assert all(r["finite"] for r in rep["rows"])
    scale = max(1.0, float(np.abs(sess.run(None, {"input": np.full((1, 3, 64, 96), 0.5, np.float32)})[0]).max()))
    assert rep["max_abs_err"] < 0.05 * scale


def test_lint_reports_the_real_ops_and_passes(exported, tmp_path, cli):
    name, path, _ = exported
    out = tmp_path / "lint.json"
    assert cli(["export", "lint", str(path), "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {r["op"] for r in rep["ops"]} == ops
    assert rep["ok"] and rep["errors"] == 0


def test_parity_catches_a_graph_that_baked_in_the_export_shape(tmp_path):
    """A shape-dependent Python branch traced at export breaks other sizes: parity must say so."""
    from segstyle.export.netload import LoadedNet
    from segstyle.export.onnx import parity, save_onnx, torch_to_onnx_proto

    class Fragile(torch.nn.Module):
        def forward(self, x):
            # traced at 64x64 the branch is specialised to "square", so non-square inputs go wrong
            return x * 2 if x.shape[-1] == x.shape[-2] else x * 3

    net = Fragile().eval()
    proto = torch_to_onnx_proto(LoadedNet(net=net, model="fragile", task="style", model_kwargs={}), opset=20,
                                size=(64, 64))
    save_onnx(proto, tmp_path / "f.onnx")
    rep = parity(net, tmp_path / "f.onnx", sizes=[(32, 48), (64, 80)], batches=(1,))
    assert not rep["passed"]


def test_corrupt_onnx_is_one_line(tmp_path, cli, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07not an onnx model at all" * 10)
    for argv in (["export", "lint", str(bad)], ["export", "fp16", str(bad), "--out", str(tmp_path / "o.onnx")]):
        assert cli(argv) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("segstyle: error:") and "bad.onnx" in err[0]
    assert not (tmp_path / "o.onnx").exists()


def test_checkpoint_for_another_model_is_one_line(tmp_path, cli, capsys):
    from segstyle.models import build_model
    from segstyle.pipelines.checkpoint import save_checkpoint

    style = list_models("style")[0]
    seg = list_models("segmentation")[0]
    ck = tmp_path / "style.pt"
    save_checkpoint(ck, {"model": style, "model_kwargs": {}, "params": {}, "data_version": "x",
                         "state_dict": build_model(style).state_dict()})
    out = tmp_path / "m.onnx"
    assert cli(["export", "onnx", "--model", seg, "--checkpoint", str(ck), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and style in err[0] and seg in err[0]
    assert list(tmp_path.iterdir()) == [ck]
