"""TensorRT engine logic: what can be checked without TensorRT is checked; the rest needs the real thing.

Nothing here imitates TensorRT: the pure-Python parts (profiles from params, sidecar staleness, the
install hint) are tested directly, and the build/run test is skipped unless TensorRT and CUDA exist.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from segstyle.export.tensorrt import expected_sidecar, profile_shapes, stale_reasons
from segstyle.pipelines.config import load_params

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
PARAMS = load_params()


def test_profiles_come_from_params():
    s = profile_shapes(PARAMS.engine.profiles)
    p = PARAMS.engine.profiles
    assert s["min"] == (p.min[0], 3, p.min[1], p.min[2])
    assert s["opt"] == (p.opt[0], 3, p.opt[1], p.opt[2])
    assert s["max"] == (p.max[0], 3, p.max[1], p.max[2])


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

    from segstyle.export.backends import TensorRTBackend
    from segstyle.export.netload import export_output, load_net
    from segstyle.export.onnx import export_onnx
    from segstyle.export.tensorrt import ensure_engine, sidecar_path

    loaded = load_net("transformer_net", None, seed=0)
    onnx_path = tmp_path / "tn.onnx"
    export_onnx(loaded, PARAMS, onnx_path)
    engine = tmp_path / "tn.engine"
    kw = dict(profiles=PARAMS.engine.profiles, workspace_mb=1024, timing_cache=tmp_path / "t.cache",
              precision="fp16", keep_fp32=PARAMS.export.fp16_keep_fp32)
    side, reasons = ensure_engine(onnx_path, engine, **kw)
    assert reasons == ["no engine file"] and engine.is_file() and (tmp_path / "t.cache").is_file()
    assert side["gpu_name"] == torch.cuda.get_device_name()
    x = torch.rand(1, 3, 128, 160)
    out = TensorRTBackend(engine)(x)
    ref = export_output(loaded.net, x)
    assert torch.isfinite(out).all() and (out - ref).abs().max() < 0.05
    assert ensure_engine(onnx_path, engine, **kw)[1] == []
    stale = json.loads(sidecar_path(engine).read_text())
    stale["gpu_name"] = "some other GPU"
    sidecar_path(engine).write_text(json.dumps(stale))
    assert ensure_engine(onnx_path, engine, **kw)[1][0].startswith("gpu_name")
