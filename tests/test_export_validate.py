"""`segstyle engine validate` on real validation images and `engine bench`, on the CPU backends here."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

pytestmark = pytest.mark.slow


@pytest.fixture
def real_params(realdata, repo_root, tmp_path):
    """params.yaml with data.root pointing at the real VOC/Pets samples."""
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["data"]["root"] = str(realdata)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p, raw


def test_segmentation_ort_cpu_matches_pytorch_on_voc(real_params, tmp_path, cli):
    torch.set_num_threads(2)
    params, _ = real_params
    rec = tmp_path / "rec.json"
    rc = cli(["engine", "validate", "--backend", "ort-cpu", "--model", "fcn_resnet18", "--dataset", "voc",
              "--size", "64x80", "--samples", "2", "--params", str(params), "--out", str(rec)])
    assert rc == 0
    r = json.loads(rec.read_text())
    m = r["metrics"]
    assert r["passed"] and r["violations"] == [] and m["images"] == 2
    assert m["pixel_agreement_pct"] >= 99.5 and abs(m["delta_miou_pts"]) <= 0.3
    assert m["max_abs_logit_err"] < 1e-3 and 0 <= m["miou_reference"] <= 100


def test_style_violation_exits_1_with_record(real_params, realdata, tmp_path, cli, capsys):
    """Thresholds are enforced: an unreachable PSNR requirement fails, and the record says why."""
    params, raw = real_params
    raw["validate"]["min_psnr"] = 500.0
    params.write_text(yaml.safe_dump(raw))
    rec = tmp_path / "rec.json"
    rc = cli(["engine", "validate", "--backend", "ort-cpu", "--model", "transformer_net", "--content",
              str(realdata / "style"), "--size", "48x64", "--samples", "2", "--params", str(params),
              "--out", str(rec)])
    assert rc == 1
    r = json.loads(rec.read_text())
    assert not r["passed"] and "PSNR" in r["violations"][0]
    assert r["metrics"]["psnr_db_min"] > 60 and r["metrics"]["ssim_min"] > 0.999  # FP32 ORT ~ exact
    assert "fails validation" in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("backend", ["ort-cuda", "tensorrt"])
def test_unavailable_backend_is_one_line(backend, tmp_path, cli, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the backend may be available")
    onnx_file = tmp_path / "x.onnx"
    onnx_file.write_bytes(b"never read")
    rc = cli(["engine", "validate", "--backend", backend, "--model", "transformer_net", "--onnx",
              str(onnx_file), "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and err[0].startswith("segstyle: error:")
    assert not (tmp_path / "r.json").exists()


def test_bench_cpu_side_by_side(tmp_path, cli):
    out = tmp_path / "bench.json"
    rc = cli(["engine", "bench", "--model", "transformer_net", "--backends", "torch-fp32,ort-cpu", "--sizes",
              "32x32,48x32", "--warmup", "1", "--iters", "4", "--out", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert {(x["backend"], tuple(x["size"])) for x in r["results"]} == {
        (b, s) for b in ("torch-fp32", "ort-cpu") for s in ((32, 32), (48, 32))}
    for x in r["results"]:
        assert 0 < x["p50_ms"] <= x["p95_ms"] <= x["p99_ms"] and x["throughput_img_s"] > 0 and x["iters"] == 4
    assert r["environment"]["torch"] == torch.__version__


def test_fp16_and_fp32_backends_do_not_share_weights():
    """Module.to() is in place: each torch backend must own its copy, or the FP32 reference
    silently turns the FP16 backend back into FP32 (or breaks it)."""
    from segstyle.export.backends import make_backend

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU()).eval()
    half = make_backend("torch-fp16", net=net, device="cpu")
    full = make_backend("torch-fp32", net=net, device="cpu")
    x = torch.rand(1, 3, 8, 8)
    assert next(half.net.parameters()).dtype == torch.float16
    assert next(full.net.parameters()).dtype == torch.float32
    assert (half(x) - full(x)).abs().max() < 1e-2
    assert next(net.parameters()).dtype == torch.float32
