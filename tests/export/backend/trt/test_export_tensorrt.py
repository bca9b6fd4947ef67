"""TensorRT engine logic: what can be checked without TensorRT is checked; the rest needs the real thing.

Nothing here imitates TensorRT: the pure-Python parts (profiles from params, sidecar staleness, the
install hint) are tested directly, and the build/run test is skipped unless TensorRT and CUDA exist.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from segstyle.export.settings import ExportSettings
from segstyle.export.backend.trt.loader import expected_sidecar, profile_shapes, stale_reasons
from segstyle.pipelines.config import load_params

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
PARAMS = load_params()


def test_profiles_come_from_params():
    s = profile_shapes(PARAMS.engine.profiles)
    p = PARAMS.engine.profiles
    assert s["min"] == (p.min[0], 3, p.min[1], p.min[2])
    assert s["opt"] == (p.opt[0], 3, p.opt[1], p.opt[2])
    assert s["max"] == (p.max[0], 3, p.max[1], p.max[2])


def test_a_noise_network_keeps_its_batch_only_profile():
    """The DCGAN generator's engine profile is (batch, nz) from the registry: profile_shapes (the
    build and the sidecar key) must keep it, not read it as [batch, H, W]."""
    from segstyle.export.backend.trt.loader import engine_shapes
    from segstyle.models import get_model_meta

    nz = get_model_meta("dcgan_generator").noise_dim
    shapes = engine_shapes("dcgan_generator", nz, PARAMS.engine.profiles)
    assert shapes == {"min": (1, nz), "opt": (16, nz), "max": (64, nz)}
    assert profile_shapes(shapes) == shapes
    assert profile_shapes({k: (1, 3, 8, 8) for k in ("min", "opt", "max")})["max"] == (1, 3, 8, 8)


def _side(**over):
    base = dict(trt_version="10.3.0", gpu={"gpu_name": "Orin", "compute_capability": "8.7"}, onnx_sha256="ab",
                profiles=profile_shapes(PARAMS.engine.profiles), precision="fp16")
    base.update(over)
    return expected_sidecar(**base)


def test_matching_sidecar_is_current():
    assert stale_reasons(_side(), _side()) == []


@pytest.mark.parametrize("field,over", [
    ("gpu_name", {"gpu": {"gpu_name": "NVIDIA H100", "compute_capability": "8.7"}}),
    ("compute_capability", {"gpu": {"gpu_name": "Orin", "compute_capability": "9.0"}}),
    ("tensorrt_version", {"trt_version": "11.0.0"}),
    ("onnx_sha256", {"onnx_sha256": "cd"}),
    ("precision", {"precision": "fp32"}),
])
def test_other_gpu_trt_onnx_or_precision_means_rebuild(field, over):
    reasons = stale_reasons(_side(), _side(**over))
    assert len(reasons) == 1 and reasons[0].startswith(field)


def test_missing_sidecar_means_rebuild():
    assert stale_reasons(None, _side()) == ["no readable sidecar"]


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed: the install hint is not shown")
def test_without_tensorrt_one_line_install_hint(tmp_path, cli, capsys):
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"irrelevant: TensorRT is checked first")
    assert cli(["engine", "build", "--onnx", str(onnx_file)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "pip install --extra-index-url https://pypi.nvidia.com tensorrt" in err[0] and "bundle" in err[0]


@pytest.mark.tensorrt
@pytest.mark.cuda
@pytest.mark.skipif(not (HAS_TRT and torch.cuda.is_available()), reason="needs TensorRT and a CUDA GPU")
def test_build_run_and_reuse_engine(tmp_path):
    """Real TensorRT: build FP16 engine, compare with PyTorch, reuse when current, rebuild when stale."""
    import json

    from segstyle.export.backend.trt.runner import TensorRTBackend
    from segstyle.export.backend.pyt.loader import export_output, load_net
    from segstyle.export.backend.onnx.exporter import export_onnx
    from segstyle.export.backend.trt.loader import ensure_engine, sidecar_path

    loaded = load_net("transformer_net", None, seed=0)
    onnx_path = tmp_path / "tn.onnx"
    export_onnx(loaded, ExportSettings.from_params(PARAMS), onnx_path)
    engine = tmp_path / "tn.engine"
    kw = dict(profiles=PARAMS.engine.profiles, workspace_mb=1024, timing_cache=tmp_path / "t.cache",
              precision="fp16", keep_fp32=PARAMS.export.fp16_keep_fp32)
    side, reasons = ensure_engine(onnx_path, engine, **kw)
    assert reasons == ["no engine file"] and engine.is_file() and (tmp_path / "t.cache").is_file()
    assert side["gpu_name"] == torch.cuda.get_device_name()
    assert side["typing"] == "strongly-typed" and side["keep_fp32"] == sorted(set(PARAMS.export.fp16_keep_fp32))
    lp = side["layer_precisions"]  # from the engine inspector: every InstanceNorm layer stayed FP32
    assert lp["ok"] and lp["kept_ran_fp16"] == [] and len(lp["kept"]["InstanceNormalization"]["fp32"]) + \
        len(lp["kept"]["InstanceNormalization"]["unplaced"]) == 15
    x = torch.rand(1, 3, 128, 160)
    out = TensorRTBackend(engine)(x)
    ref = export_output(loaded.net, x)
    assert torch.isfinite(out).all() and (out - ref).abs().max() < 0.05
    assert ensure_engine(onnx_path, engine, **kw)[1] == []
    stale = json.loads(sidecar_path(engine).read_text())
    stale["gpu_name"] = "some other GPU"
    sidecar_path(engine).write_text(json.dumps(stale))
    assert ensure_engine(onnx_path, engine, **kw)[1][0].startswith("gpu_name")


# ----------------------------------------------------------------------------- pure logic, no TensorRT

def _side2(**over):
    base = dict(trt_version="10.3.0", gpu={"gpu_name": "Orin", "compute_capability": "8.7"}, onnx_sha256="ab",
                profiles=profile_shapes(PARAMS.engine.profiles), precision="fp16", typing="strongly-typed",
                keep_fp32=["InstanceNormalization", "Resize"])
    base.update(over)
    return expected_sidecar(**base)


@pytest.mark.parametrize("field,over", [
    ("keep_fp32", {"keep_fp32": ["InstanceNormalization"]}),
    ("typing", {"typing": "weakly-typed (BuilderFlag.FP16 + FP32 pins)"}),
    ("profiles", {"profiles": {"min": (1, 3, 64, 64), "opt": (1, 3, 256, 256), "max": (1, 3, 512, 512)}}),
    ("onnx_sha256", {"onnx_sha256": "ff"}),
    ("tensorrt_version", {"trt_version": "10.3.1"}),
    ("gpu_name", {"gpu": {"gpu_name": "Orin Nano", "compute_capability": "8.7"}}),
])
def test_rebuild_key_covers_recipe_typing_profiles_onnx_trt_and_gpu(field, over):
    reasons = stale_reasons(_side2(), _side2(**over))
    assert len(reasons) == 1 and reasons[0].startswith(field + ":"), reasons


def test_kept_list_order_does_not_make_an_engine_stale():
    a = _side2(keep_fp32=["Resize", "InstanceNormalization"])
    assert stale_reasons(a, _side2()) == []


@pytest.mark.parametrize("major,fp16_graph,precision,typing,want", [
    (10, False, "fp16", "strong", "strongly-typed"),
    (10, True, "fp16", "strong", "strongly-typed"),
    (11, False, "fp16", "strong", "strongly-typed"),
    (11, False, "fp32", "strong", "strongly-typed"),
    (10, False, "fp16", "weak", "weakly-typed (BuilderFlag.FP16 + FP32 pins)"),
])
def test_typing_path(major, fp16_graph, precision, typing, want):
    from segstyle.export.backend.trt.loader import typing_path

    assert typing_path(major, fp16_graph=fp16_graph, precision=precision, typing=typing) == want


@pytest.mark.parametrize("major,fp16_graph,precision,typing,msg", [
    (11, False, "fp16", "weak", "no weakly typed build"),
    (10, True, "fp16", "weak", "FP32 graph"),
    (10, True, "fp32", "strong", "not fp32"),
    (10, False, "fp32", "weak", "FP16 only"),
])
def test_impossible_typing_is_one_line(major, fp16_graph, precision, typing, msg):
    from segstyle.export.backend.trt.loader import typing_path
    from segstyle.core.errors import SegstyleError

    with pytest.raises(SegstyleError, match=msg):
        typing_path(major, fp16_graph=fp16_graph, precision=precision, typing=typing)


def _graph_with(nodes):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y]))


def test_pins_use_the_parsers_layer_names():
    from onnx import helper

    from segstyle.export.backend.trt.loader import fp32_pins

    m = _graph_with([helper.make_node("Relu", ["x"], ["a"], name="relu"),
                     helper.make_node("Resize", ["a", "", "s"], ["b"], name="up"),
                     helper.make_node("Resize", ["b", "", "s"], ["y"])])  # unnamed: onnx-tensorrt's node_of_y
    pins = fp32_pins(m, ["Resize", "Softmax"])
    assert pins == {"Resize": ["up", "node_of_y"], "Softmax": []}


def test_a_pin_trtexec_cannot_carry_is_an_error():
    from onnx import helper

    from segstyle.export.backend.trt.loader import fp32_pins
    from segstyle.core.errors import SegstyleError

    m = _graph_with([helper.make_node("Resize", ["x", "", "s"], ["y"], name="up,1")])
    with pytest.raises(SegstyleError, match="up,1"):
        fp32_pins(m, ["Resize"])


def test_resolve_pins_matches_exactly_or_fails():
    from segstyle.export.backend.trt.loader import resolve_pins
    from segstyle.core.errors import SegstyleError

    pins = {"InstanceNormalization": ["node_in1", "node_in2"], "Resize": []}
    assert resolve_pins(["conv", "node_in1", "node_in2", "node_in2_1"], pins) == ["node_in1", "node_in2"]
    with pytest.raises(SegstyleError, match="none of the 2 FP32 pins"):
        resolve_pins(["conv", "(Unnamed Layer* 3) [Normalization]"], pins)
    with pytest.raises(SegstyleError, match="1 of 2 FP32 pins .* first 'node_in2'"):
        resolve_pins(["conv", "node_in1"], pins)
    assert resolve_pins(["conv"], {"Resize": []}) == []


def test_trtexec_lines_carry_the_pins_and_typing():
    from segstyle.export.backend.trt.loader import pins_in_command, trtexec_commands

    shapes = {"min": (1, 3, 128, 128), "opt": (1, 3, 512, 512), "max": (4, 3, 1024, 1024)}
    c = trtexec_commands(input_name="input", shapes=shapes, workspace_mb=2048,
                         pins={"InstanceNormalization": ["n1", "n2"], "Resize": ["r"]})
    assert pins_in_command(c["weak_fp16_trt10"]) == ["n1", "n2", "r"]
    assert "--layerOutputTypes=n1:fp32,n2:fp32,r:fp32" in c["weak_fp16_trt10"]
    assert "--precisionConstraints=obey" in c["weak_fp16_trt10"] and "--onnx=model.onnx" in c["weak_fp16_trt10"]
    for key in ("strong_fp16", "fp32"):
        assert "--stronglyTyped" in c[key] and pins_in_command(c[key]) == []
    assert "--minShapes=input:1x3x128x128 --optShapes=input:1x3x512x512 --maxShapes=input:4x3x1024x1024" in c["fp32"]
    assert all("--profilingVerbosity=detailed --exportLayerInfo=" in v for v in c.values())


# Layer information as the engine inspector / trtexec --exportLayerInfo write it with
# ProfilingVerbosity.DETAILED (TensorRT developer guide, "Engine Inspector"): fused layers are named
# "a + b", Myelin regions "{ForeignNode[a...b]}", tensors carry "Format/Datatype".
LAYER_INFO = {"Layers": [
    {"Name": "node_conv2d", "LayerType": "CaskConvolution",
     "Inputs": [{"Name": "input", "Location": "Device", "Dimensions": [1, 3, 512, 512],
                 "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
     "Outputs": [{"Name": "conv2d", "Location": "Device", "Dimensions": [1, 32, 512, 512],
                  "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
     "ParameterType": "Convolution", "Metadata": "[ONNX Layer: node_conv2d]"},
    {"Name": "node_instance_norm_input_cast_0 + node_instance_norm", "LayerType": "Normalization",
     "Inputs": [{"Name": "conv2d", "Location": "Device", "Dimensions": [1, 32, 512, 512],
                 "Format/Datatype": "Row major linear FP16 format"}],
     "Outputs": [{"Name": "in1", "Location": "Device", "Dimensions": [1, 32, 512, 512],
                  "Format/Datatype": "Row major linear FP32"}],
     "Metadata": "[ONNX Layer: node_instance_norm_input_cast_0]\x1e[ONNX Layer: node_instance_norm]"},
    {"Name": "node_instance_norm_1", "LayerType": "Normalization",
     "Inputs": [{"Name": "x", "Location": "Device", "Dimensions": [1, 32, 512, 512],
                 "Format/Datatype": "Row major linear FP16 format"}],
     "Outputs": [{"Name": "in2", "Location": "Device", "Dimensions": [1, 32, 512, 512],
                  "Format/Datatype": "Row major linear FP16 format"}]},
    {"Name": "{ForeignNode[node_relu...node_add]}", "LayerType": "Myelin",
     "Inputs": [{"Name": "in2", "Location": "Device", "Dimensions": [1, 32, 512, 512],
                 "Format/Datatype": "Row major linear FP16 format"}],
     "Outputs": [{"Name": "y", "Location": "Device", "Dimensions": [1, 3, 512, 512],
                  "Format/Datatype": "Row major linear FP32"}]},
], "Bindings": ["input", "y"]}


def test_layer_report_names_fp32_layers_and_kept_ops_that_ran_fp16():
    from segstyle.export.backend.trt.loader import layer_precision_report

    rep = layer_precision_report(LAYER_INFO, {"InstanceNormalization": ["node_instance_norm",
                                                                        "node_instance_norm_1"],
                                              "Resize": ["node_upsample"]})
    assert rep["layers"] == 4 and rep["by_precision"] == {"fp16": 2, "fp32": 2}
    assert rep["fp32_layers"] == ["node_instance_norm_input_cast_0 + node_instance_norm",
                                  "{ForeignNode[node_relu...node_add]}"]
    assert rep["kept"]["InstanceNormalization"] == {"fp32": ["node_instance_norm"], "fp16": ["node_instance_norm_1"],
                                                    "unplaced": []}
    assert rep["kept_ran_fp16"] == ["node_instance_norm_1 (InstanceNormalization) in layer 'node_instance_norm_1' "
                                    "ran fp16"]
    assert rep["kept_unplaced"] == ["node_upsample"] and rep["ok"] is False
    ok = layer_precision_report(LAYER_INFO, {"InstanceNormalization": ["node_instance_norm"]})
    assert ok["ok"] is True and ok["kept_ran_fp16"] == []


def test_layer_report_refuses_information_without_formats():
    from segstyle.export.backend.trt.loader import layer_precision_report
    from segstyle.core.errors import SegstyleError

    with pytest.raises(SegstyleError, match="names only"):
        layer_precision_report({"Layers": ["node_conv2d", "node_instance_norm"]}, {})
    na = {"Layers": [{"Name": "a", "Inputs": [{"Format/Datatype": "N/A due to dynamic shapes"}],
                      "Outputs": [{"Format/Datatype": "N/A due to dynamic shapes"}]}]}
    with pytest.raises(SegstyleError, match="no tensor formats"):
        layer_precision_report(na, {})


def test_readme_jetson_page_is_exactly_the_generated_commands():
    """The README's Jetson block holds the lines jetson_commands() gives the bundle README, in order."""
    import re
    from pathlib import Path

    from segstyle.export.backend.trt.loader import jetson_commands

    text = (Path(__file__).resolve().parents[4] / "README.md").read_text()
    section = text[text.index("### On a Jetson"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = [ln for ln in block.splitlines() if ln.strip()]
    want = jetson_commands(input_name="input", shapes=profile_shapes(PARAMS.engine.profiles),
                           workspace_mb=PARAMS.engine.workspace_mb)
    assert lines == want
    assert any("--stronglyTyped" in ln and "/usr/src/tensorrt/bin/trtexec" in ln for ln in lines)
    assert any("--system-site-packages" in ln for ln in lines) and "sudo jetson_clocks" in lines


# ----------------------------------------------------------------------------- check.py --engine: layer precisions

# the manifest's per-precision bounds, as the bundle writes them (params.yaml validate.bounds)
BOUNDS = {p: {"min_agreement": 99.5, "max_delta_miou": 0.3, "min_psnr": 35.0, "logit_tolerance": 0.05}
          for p in ("fp32", "fp16", "int8")}
KEPT = {"InstanceNormalization": ["node_instance_norm", "node_instance_norm_1"]}


def _layer_info(in1_fp32: bool) -> dict:
    """LAYER_INFO with the second InstanceNorm's output FP32 (kept op ran FP32) or as is (it ran FP16)."""
    import copy

    info = copy.deepcopy(LAYER_INFO)
    if in1_fp32:
        info["Layers"][2]["Outputs"][0]["Format/Datatype"] = "Row major linear FP32"
    return info


@pytest.fixture
def engine_bundle(tmp_path):
    """A bundle as check.py sees it (manifest, golden data, the three shipped scripts) and a file
    standing for the engine: enough to reach the layer check without TensorRT."""
    import hashlib
    import json
    import shutil

    import numpy as np
    from polygraphy.comparator import IterationResult, RunResults
    from polygraphy.json import save_json

    import segstyle.export.portable as portable

    here = __import__("pathlib").Path(portable.__file__).parent
    b = tmp_path / "bundle"
    b.mkdir()
    shutil.copyfile(here / "check.py", b / "check.py")
    shutil.copyfile(here / "compare.py", b / "segstyle_compare.py")
    shutil.copyfile(here / "layer_precision.py", b / "segstyle_layer_precision.py")
    x = np.zeros((1, 3, 8, 8), np.float32)
    save_json([{"input": x}], str(b / "inputs.json"))
    res = RunResults()
    res.append(("pytorch-fp32", [IterationResult(outputs={"image": x}, runner_name="pytorch-fp32")]))
    res.save(str(b / "outputs.json"))
    files = ["check.py", "segstyle_compare.py", "segstyle_layer_precision.py", "inputs.json", "outputs.json"]
    manifest = {"network": "style", "model": "transformer_net", "task": "style", "input": "input",
                "output": "image", "bounds": BOUNDS,
                "fp16_kept_nodes": KEPT,
                "files": {f: hashlib.sha256((b / f).read_bytes()).hexdigest() for f in files}}
    (b / "manifest.json").write_text(json.dumps(manifest))
    (b / "model_fp16.engine").write_bytes(b"stands for a serialized engine")
    return b


def _check_engine(bundle, *args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, str(bundle / "check.py"), "--engine", "model_fp16.engine", *args],
                          capture_output=True, text=True, cwd=bundle)


def test_check_fails_naming_the_kept_op_that_ran_fp16(engine_bundle):
    """trtexec's --exportLayerInfo file beside the engine: a kept InstanceNorm in FP16 fails, before running."""
    import json

    (engine_bundle / "model_fp16.layers.json").write_text(json.dumps(_layer_info(in1_fp32=False)))
    proc = _check_engine(engine_bundle)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("FAIL style tensorrt model_fp16.engine: kept op ran FP16: "
                                               "node_instance_norm_1 (InstanceNormalization)")
    out = proc.stdout
    assert "layer precisions from model_fp16.layers.json:" in out
    assert "  node_instance_norm_input_cast_0 + node_instance_norm\n" in out  # the layers that ran FP32
    assert "kept InstanceNormalization: 1/2 FP32, 1 FP16, 0 not placed" in out


def test_check_passes_the_layer_proof_when_kept_ops_ran_fp32(engine_bundle, tmp_path):
    """Same engine, the InstanceNorm ran FP32: the layer proof passes (then the engine must run)."""
    import importlib.util
    import json
    import sys

    info = tmp_path / "elsewhere.json"
    info.write_text(json.dumps(_layer_info(in1_fp32=True)))
    proc = _check_engine(engine_bundle, "--layer-info", str(info))
    assert "kept InstanceNormalization: 2/2 FP32, 0 FP16, 0 not placed" in proc.stdout
    assert "kept op ran FP16" not in proc.stderr
    if not HAS_TRT:  # nothing fakes the run: without TensorRT the next step is a one-line refusal
        assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
            "check.py: --engine needs TensorRT's Python package (tensorrt) plus polygraphy or cuda-python"]
    spec = importlib.util.spec_from_file_location("bundle_check_under_test", engine_bundle / "check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    manifest = json.loads((engine_bundle / "manifest.json").read_text())
    lines, bad, record = mod.layer_check(engine_bundle / "model_fp16.engine", manifest, (1, 3, 8, 8), info)
    assert bad == [] and record["checked"] and record["ok"]
    assert record["fp32_layers"] == ["node_instance_norm_input_cast_0 + node_instance_norm", "node_instance_norm_1",
                                     "{ForeignNode[node_relu...node_add]}"]
    sys.modules.pop("segstyle_layer_precision", None)
    sys.modules.pop("segstyle_compare", None)


@pytest.mark.skipif(HAS_TRT, reason="with TensorRT the engine inspector is the fallback source")
def test_check_without_layer_information_says_not_checked(engine_bundle):
    proc = _check_engine(engine_bundle)
    assert ("layer precisions: not checked: no model_fp16.layers.json or model_fp16.engine.layers.json beside the "
            "engine and tensorrt is not importable") in proc.stdout
    assert "kept op ran FP16" not in proc.stderr


def test_check_refuses_names_only_layer_information(engine_bundle, tmp_path):
    """A build without profilingVerbosity=detailed lists layer names only: not a proof, said so."""
    import json

    (engine_bundle / "model_fp16.layers.json").write_text(json.dumps({"Layers": ["node_conv2d"], "Bindings": []}))
    proc = _check_engine(engine_bundle)
    assert "layer precisions: not checked: layer information holds names only" in proc.stdout


def test_layer_precision_module_is_standard_library_only_and_the_one_implementation():
    """The bundle's copy must import with no site-packages (check.py needs numpy alone), and
    segstyle's TensorRT code must use it rather than a second copy."""
    import subprocess
    import sys

    import segstyle.export.portable.layer_precision as lp
    import segstyle.export.backend.trt.loader as trt_mod

    code = ("import importlib.util, sys; s = importlib.util.spec_from_file_location('lp', sys.argv[1]); "
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); print(sorted(m.__dict__)[:1])")
    proc = subprocess.run([sys.executable, "-S", "-I", "-c", code, lp.__file__], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert trt_mod.layer_members is lp.layer_members and trt_mod._lp is lp
    from segstyle.core.errors import SegstyleError

    with pytest.raises(SegstyleError, match="names only"):
        trt_mod.layer_precision_report({"Layers": ["x"]}, {})


def test_check_applies_the_psnr_bound_to_a_generation_network(engine_bundle):
    """The DCGAN generator's bundle (task 'generation', 0..1 image output) is judged like style: PSNR."""
    import importlib.util
    import sys

    import numpy as np

    spec = importlib.util.spec_from_file_location("bundle_check_gen", engine_bundle / "check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    manifest = {"task": "generation", "bounds": BOUNDS}
    ref = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    golden = [(np.zeros((2, 100), np.float32), ref)]
    bad, figures = mod.check([ref.copy()], golden, manifest, "onnxruntime g.onnx")
    assert bad == [] and figures["psnr_db_min"] > 100
    bad, figures = mod.check([np.clip(ref + 0.05, 0, 1)], golden, manifest, "onnxruntime g.onnx")
    assert 20 < figures["psnr_db_min"] < 35 and len(bad) == 1 and "PSNR" in bad[0].upper()
    sys.modules.pop("segstyle_compare", None)
