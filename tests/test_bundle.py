"""The edge bundle proves itself with the real polygraphy CLI (ONNX Runtime), and rejects tampering."""

from __future__ import annotations

import json
import shutil

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from segstyle.pipelines.cli import run_cli

    d = tmp_path_factory.mktemp("bundle")
    out = d / "tn_bundle"
    assert run_cli(["bundle", "--model", "transformer_net", "--out", str(out), "--sizes", "128x128",
                    "--batches", "1"]) == 0
    return out


def test_bundle_layout_and_tarball(bundle):
    import tarfile

    names = {p.name for p in bundle.iterdir()}
    assert {"model.onnx", "model_fp16.onnx", "inputs.json", "outputs.json", "lint.json", "README.md",
            "manifest.json", "SHA256SUMS"} <= names
    readme = (bundle / "README.md").read_text()
    assert "trtexec --onnx=model.onnx --fp16" in readme and "trtexec --onnx=model_fp16.onnx" in readme
    assert "--minShapes=input:1x3x128x128" in readme
    assert "polygraphy run model_trt10_fp16.engine --model-type engine --trt --load-inputs inputs.json" in readme
    with tarfile.open(str(bundle) + ".tar.gz") as tf:
        assert f"{bundle.name}/outputs.json" in tf.getnames()


def test_polygraphy_onnxrt_passes_on_the_bundle(bundle, cli):
    assert cli(["bundle", "--verify", str(bundle), "--run"]) == 0


def test_perturbed_golden_output_fails_polygraphy(bundle, tmp_path):
    from polygraphy.comparator import RunResults

    from segstyle.export.bundle import run_polygraphy

    bad = tmp_path / "bad"
    shutil.copytree(bundle, bad)
    results = RunResults.load(str(bad / "outputs.json"))
    arr = results[0][1][0]["image"]
    arr.flat[arr.size // 2] += 0.5  # one pixel of one golden output
    results.save(str(bad / "outputs.json"))
    tol = json.loads((bad / "manifest.json").read_text())["tolerances"]["onnxrt"]
    proc = run_polygraphy(bad, "model.onnx", tol)  # the intact bundle passes this same command (test above)
    assert proc.returncode != 0 and "FAILED" in proc.stdout + proc.stderr


def test_bundle_with_missing_file_is_one_line(bundle, tmp_path, cli, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    (broken / "inputs.json").unlink()
    assert cli(["bundle", "--verify", str(broken)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "inputs.json missing" in err[0]


def test_corrupt_onnx_and_wrong_checkpoint_write_nothing(tmp_path, cli, capsys):
    import torch

    from segstyle.models import build_model
    from segstyle.pipelines.checkpoint import save_checkpoint

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage" * 20)
    out = tmp_path / "b"
    assert cli(["bundle", "--model", "transformer_net", "--onnx", str(bad), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.onnx" in err[0]
    ck = tmp_path / "tn.pt"
    save_checkpoint(ck, {"model": "transformer_net", "model_kwargs": {}, "params": {}, "data_version": "x",
                         "state_dict": build_model("transformer_net").state_dict()})
    seg = next(m for m in __import__("models").list_models("segmentation"))
    assert cli(["bundle", "--checkpoint", str(ck), "--model", seg, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "transformer_net" in err[0] and seg in err[0]
    assert not out.exists() and not (tmp_path / "b.tar.gz").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".b")] == []
    del torch
