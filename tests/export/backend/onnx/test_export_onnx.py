"""ONNX export of every deployable registered model: parity with PyTorch, metadata, FP16 graph, TensorRT lint.

Image networks and noise networks (the DCGAN generator: input (N, nz), batch-only dynamic) alike; the
discriminator (``deployable=False``) is never exported.

Each model is exported once (module fixture) through the real CLI; the other tests read that file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from segstyle.models import get_model_meta, list_models
from segstyle.pipelines.config import load_params

pytestmark = pytest.mark.slow

PARAMS = load_params()


@pytest.fixture(scope="module", params=list_models(deployable=True))
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
    nz = get_model_meta(name).noise_dim
    if nz is not None:  # a noise network: sizes do not apply, batches 1 and 3 of N(0, 1) noise
        assert [r["input_shape"] for r in rep["rows"]] == [[1, nz], [3, nz]]
        assert rep["passed"] and rep["max_abs_err"] <= 1e-4
        return
    export_size = tuple(PARAMS.export.size)
    sizes = {tuple(r["size"]) for r in rep["rows"]}
    assert len(sizes) >= 2 and export_size not in sizes
    assert {r["batch"] for r in rep["rows"]} == {1, 3}
    assert all(r["shape_ok"] for r in rep["rows"])
    assert rep["max_abs_err"] <= 1e-4, f"{name}: {rep['rows']}"
    assert rep["passed"]


def test_no_checkout_path_in_the_graph(exported):
    """The same code and weights exported from another checkout must give the same bytes (DVC hashes
    the file): no absolute path of this machine may be inside, while the module hierarchy stays."""
    import segstyle.models as pkg

    name, path, _ = exported
    raw = path.read_bytes()
    checkout = str(Path(pkg.__path__[0]).resolve().parent)
    assert checkout.encode() not in raw, f"{name}: the graph names files under {checkout}"
    assert b'File "' not in raw  # no Python stack trace at all
    model = onnx.load(str(path), load_external_data=False)
    assert any(p.key == "namespace" for n in model.graph.node for p in n.metadata_props)


def test_single_file_dynamic_dims_and_metadata(exported):
    name, path, _ = exported
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, "parity.json"])  # no external data
    model = onnx.load(str(path), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    onnx.checker.check_model(model, full_check=True)
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    noise = get_model_meta(name).input_kind == "noise"
    assert dims == (["batch", ""] if noise else ["batch", "", "height", "width"])
    meta = {p.key: p.value for p in model.metadata_props}
    task = get_model_meta(name).task
    assert meta["segstyle.model"] == name and meta["segstyle.task"] == task
    # fresh seeded weights: no training moment; the export moment is params.yaml as the CLI read it
    assert meta["segstyle.training.params_digest"] == "none (fresh seeded weights)"
    assert meta["segstyle.export.params_digest"] == load_params().digest()
    from segstyle.core.provenance import git_commit

    assert meta["segstyle.export.git_commit"] == git_commit()
    assert model.graph.output[0].name == ("logits" if task == "segmentation" else "image")
    if task == "segmentation":
        n_out = model.graph.output[0].type.tensor_type.shape.dim[1].dim_value
        assert len(json.loads(meta["segstyle.classes"])) == n_out


# Nodes of each op in params.yaml export.fp16_keep_fp32 that today's graphs hold (issue 9): the
# recipe must name the same nodes, with these counts, in the FP16 graph, the TensorRT pins and the
# bundle's trtexec lines. A model change that alters them must update this table knowingly.
EXPECTED_KEPT = {
    "transformer_net": {"InstanceNormalization": 15, "Resize": 2},
    "unet_mobilenetv2": {"Resize": 5},
    "fcn_resnet18": {},
    "deeplabv3_mobilenet_v3_large": {"ReduceMean": 9, "Resize": 2},
    # default kwargs: unet_mobilenetv2 (5) + the segmentation input/logit resizes (2) + transformer_net (15 + 2); the soft mask
    "fused_region_style": {"InstanceNormalization": 15, "Resize": 9, "Softmax": 1},
    "dcgan_generator": {},
    "segnet": {},  # its unpool is Equal/And/DepthToSpace: nothing the recipe keeps
    "pspnet": {"Resize": 5},  # four pyramid levels + the logits; the bins are MatMuls
    "deeplabv3plus": {"ReduceMean": 1, "Resize": 3},  # ASPP image pooling; ASPP pooling, decoder, head upsampling
    "unet_binary": {"Resize": 4},  # the four skip fits
}
# FP16 graph vs FP32 graph under ONNX Runtime CPU: max abs error <= FP16_REL_ERR x the FP32 output's
# largest magnitude (FP16 keeps ~3 significant digits; measured 0.03-0.35 %), and segmentation
# argmax agreement >= the pipeline's own bound (params validate.bounds.fp16.min_agreement).
FP16_REL_ERR = 0.01


@pytest.fixture(scope="module")
def photos():
    """Two real VOC photos at 128x160 where ../shared exists, else two seeded smooth random images."""
    from conftest import REALDATA

    jpgs = sorted((REALDATA / "voc" / "VOCdevkit" / "VOC2012" / "JPEGImages").glob("*.jpg"))[:2]
    if len(jpgs) == 2:
        from PIL import Image

        return [np.asarray(Image.open(p).convert("RGB").resize((160, 128)), np.float32).transpose(2, 0, 1)[None]
                / 255.0 for p in jpgs]
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(2, 3, 16, 20, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(128, 160), mode="bilinear", align_corners=False)
    return [x[i:i + 1].numpy() for i in range(2)]


def test_fp16_graph_keeps_io_and_every_listed_op_fp32(exported, tmp_path, photos):
    from segstyle.export.backend.onnx.fp16 import export_fp16, fp32_islands, kept_nodes
    from segstyle.export.backend.onnx.routing import is_routed, routed_compare, session_with_switches
    from segstyle.export.backend.onnxrt.loader import ort_session
    from segstyle.export.backend.pyt.loader import load_net
    from segstyle.export.portable.compare import label_map

    name, path, _ = exported
    keep = PARAMS.export.fp16_keep_fp32
    out = tmp_path / "fp16.onnx"
    m16 = export_fp16(path, out, keep)
    assert m16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert m16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in m16.graph.initializer)
    counts = {op: len(v) for op, v in kept_nodes(m16, keep).items() if v}
    assert counts == EXPECTED_KEPT[name]
    assert fp32_islands(m16, keep) == counts  # every listed node computes in FP32, none only partly
    meta = {p.key: p.value for p in m16.metadata_props}
    assert meta["segstyle.fp16_kept_fp32"] == ",".join(sorted(set(keep)))
    ref, half = ort_session(path), ort_session(out)
    nz = get_model_meta(name).noise_dim
    if nz is not None:
        photos = [torch.randn(4, nz, generator=torch.Generator().manual_seed(0)).numpy()]
    net = load_net(name, None, seed=PARAMS.seed).net  # the weights the export CLI used
    net = net if is_routed(net) else None
    for x in photos:
        y = ref.run(None, {"input": x})[0]
        z = half.run(None, {"input": x})[0]
        assert np.isfinite(z).all()
        err = float(np.abs(z.astype(np.float64) - y).max())
        bound = FP16_REL_ERR * float(np.abs(y).max())
        if net is None:
            assert err <= bound, (name, err, float(np.abs(y).max()))
        else:  # argmax switches: judged with the FP16 graph's own switches, each flip an FP16-sized near-tie
            r = routed_compare(net, *session_with_switches(out), torch.from_numpy(x), atol=bound,
                               decision_rtol=FP16_REL_ERR)
            assert r["passed"], (name, r)
            assert sum(r["flipped_windows"]) > 0 and r["forced_max_abs_err"] < err  # what the plain check met
        if get_model_meta(name).task == "segmentation":
            agree = float((label_map(z, 1) == label_map(y, 1)).mean() * 100)
            assert agree >= PARAMS.validate_.bounds["fp16"].min_agreement, (name, agree)


def test_kept_initializers_are_bit_identical(exported, tmp_path):
    """Initializers feeding kept ops are the FP32 graph's tensors, byte for byte, with no Cast in between."""
    from onnx import numpy_helper

    from segstyle.export.backend.onnx.fp16 import export_fp16

    name, path, _ = exported
    keep = set(PARAMS.export.fp16_keep_fp32)
    src = onnx.load(str(path))
    m16 = export_fp16(path, tmp_path / "fp16.onnx", sorted(keep))
    src_inits = {t.name: numpy_helper.to_array(t) for t in src.graph.initializer}
    out_inits = {t.name: t for t in m16.graph.initializer}
    fed = [(n.name, i) for n in src.graph.node if n.op_type in keep for i in n.input if i in src_inits]
    kept16 = {n.name: n for n in m16.graph.node if n.op_type in keep}
    checked = 0
    for node_name, init in fed:
        assert init in kept16[node_name].input, f"{node_name}: {init} now reaches it through another tensor"
        got = numpy_helper.to_array(out_inits[init])
        want = src_inits[init]
        assert got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes(), init
        checked += 1
    if name == "transformer_net":
        assert checked >= 30  # 15 InstanceNorm scale + bias (Resize scales/sizes may be constants)


def test_recipe_is_one_list_across_graph_pins_and_trtexec(exported, tmp_path):
    """FP16 graph, the Python builder's weak-path pins and the trtexec lines name the same nodes."""
    from segstyle.export.backend.onnx.fp16 import export_fp16, kept_nodes
    from segstyle.export.backend.trt.loader import (
        fp32_pins,
        pins_in_command,
        profile_shapes,
        trtexec_commands,
    )

    name, path, _ = exported
    keep = PARAMS.export.fp16_keep_fp32
    m16 = export_fp16(path, tmp_path / "fp16.onnx", keep)
    in_graph = {op: v for op, v in kept_nodes(m16, keep).items() if v}
    pins = fp32_pins(onnx.load(str(path)), keep)
    cmds = trtexec_commands(input_name="input", shapes=profile_shapes(PARAMS.engine.profiles),
                            workspace_mb=PARAMS.engine.workspace_mb, pins=pins)
    in_line = pins_in_command(cmds["weak_fp16_trt10"])
    assert {op: len(v) for op, v in in_graph.items()} == EXPECTED_KEPT[name]
    assert {op: v for op, v in pins.items() if v} == in_graph
    assert sorted(in_line) == sorted(n for v in in_graph.values() for n in v)
    assert "--stronglyTyped" in cmds["strong_fp16"] and "model_fp16.onnx" in cmds["strong_fp16"]
    assert "--fp16" not in cmds["strong_fp16"] and "--layerPrecisions" not in cmds["strong_fp16"]
    if not in_line:
        assert "--precisionConstraints" not in cmds["weak_fp16_trt10"]


@pytest.mark.parametrize("trt", ["10.3", "10.x", "11.x"])
def test_lint_reports_the_real_ops_and_passes(exported, tmp_path, cli, trt):
    """Every deployable graph parses for each TensorRT release we claim (SegNet's unpool and PSPNet's
    pyramid included: models/pooling.py)."""
    name, path, _ = exported
    out = tmp_path / "lint.json"
    assert cli(["export", "lint", str(path), "--trt", trt, "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {r["op"] for r in rep["ops"]} == ops
    assert rep["ok"] and rep["errors"] == 0


def test_parity_catches_a_graph_that_baked_in_the_export_shape(tmp_path):
    """A shape-dependent Python branch traced at export breaks other sizes: parity must say so."""
    from segstyle.export.backend.pyt.loader import LoadedNet
    from segstyle.export.backend.onnx.exporter import parity, torch_to_onnx_proto
    from segstyle.export.backend.onnx.loader import save_onnx

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
    from segstyle.models.checkpoint import save_checkpoint

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


@pytest.mark.parametrize("name", list_models(deployable=True))
def test_forward_makes_no_tensor_from_python_data(name):
    """`engine bench`'s +cuda_graph backend captures the forward: a tensor built from a Python list or
    number inside it is a host-to-device copy per call, which CUDA-graph capture refuses (the fused
    graph's class ids did that; found on an H200 by benchmarks/gpu_bench.sh). On the CPU the copy shows
    as aten.lift_fresh in the dispatched ops."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from segstyle.export.backend.pyt.loader import example_input
    from segstyle.models import build_model

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.seen.add(str(func))
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    net = build_model(name, pretrained=False).eval()
    x = example_input(get_model_meta(name).noise_dim, 1, (64, 64), torch.Generator().manual_seed(0))
    with torch.no_grad(), Ops() as ops:
        net(x)
    assert len(ops.seen) > 5 and "aten.lift_fresh.default" not in ops.seen, sorted(ops.seen)
