"""The edge bundle for every network the pipeline exports: real golden images, a check.py that can fail.

One bundle per pipeline network (voc: U-Net, pets: FCN, style: TransformerNet), fresh seeded
weights, golden images from the embedded sample data's validation splits (real photo layouts).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from pathlib import Path

from seg_helpers import bundle_params, rehash, run_check

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

NETWORKS = {"voc": "unet_mobilenetv2", "pets": "fcn_resnet18", "style": "transformer_net"}
SIZES = "128x160,144x128"


@pytest.fixture(scope="module")
def params_file(tmp_path_factory):
    return bundle_params(tmp_path_factory)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, params_file):
    from segstyle.pipelines.cli import run_cli

    d = tmp_path_factory.mktemp("bundles")
    out = {}
    for network, model in NETWORKS.items():
        b = d / network
        dataset = ["--dataset", "pets"] if network == "pets" else []
        assert run_cli(["bundle", "--model", model, "--network", network, "--out", str(b), "--sizes", SIZES,
                        *dataset, "--params", str(params_file)]) == 0
        out[network] = b
    return out


def _corrupt_one_initializer(path, network):
    """Negate and scale the weight initializer of the last Conv/ConvTranspose (the output layer)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    conv = [n for n in m.graph.node if n.op_type in ("Conv", "ConvTranspose")][-1]
    inits = {t.name: t for t in m.graph.initializer}
    name = conv.input[1]
    if name not in inits:  # behind a Cast (kept-FP32 op): follow it to the initializer
        src = next(n for n in m.graph.node if name in n.output)
        name = src.input[0]
    arr = numpy_helper.to_array(inits[name])
    inits[name].CopyFrom(numpy_helper.from_array((arr * -3).astype(arr.dtype), name))
    onnx.save(m, str(path))


@pytest.mark.parametrize("network", list(NETWORKS))
def test_bundle_layout_real_golden_images_and_commands(bundles, params_file, network):
    import tarfile

    from segstyle.export.backend.trt.loader import jetson_commands

    b = bundles[network]
    names = {p.name for p in b.iterdir()}
    assert {"model.onnx", "model_fp16.onnx", "inputs.json", "outputs.json", "lint.json", "README.md",
            "check.py", "segstyle_compare.py", "manifest.json", "SHA256SUMS"} <= names
    mf = json.loads((b / "manifest.json").read_text())
    assert mf["network"] == network and mf["model"] == NETWORKS[network]
    dataset = "pets" if network == "pets" else "voc"
    assert all(g.startswith(f"{dataset}/") for g in mf["golden"]) and len(set(mf["golden"])) == 2
    assert mf["golden_shapes"] == [[1, 3, 128, 160], [1, 3, 144, 128]]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert mf["bounds"] == params["validate"]["bounds"] and set(mf["bounds"]) == {"fp32", "fp16", "int8"}
    assert mf["graph_precisions"] == {"model.onnx": "fp32", "model_fp16.onnx": "fp16"}
    # golden inputs are photos, not noise: neighbouring pixels correlate strongly
    from polygraphy.json import load_json

    for feed in load_json(str(b / "inputs.json")):
        x = feed["input"][0]
        dx = np.abs(np.diff(x, axis=2)).mean()
        assert dx < 0.5 * np.abs(x - x.mean()).mean()
    import segstyle.export.portable.compare as sc

    assert (b / "segstyle_compare.py").read_bytes() == open(sc.__file__, "rb").read()
    import segstyle.export.portable.layer_precision as lp
    import onnx

    from segstyle.export.backend.onnx.fp16 import kept_nodes

    # check.py --engine proves layer precisions with this copy, against exactly the graph's kept nodes
    assert (b / "segstyle_layer_precision.py").read_bytes() == open(lp.__file__, "rb").read()
    kept = kept_nodes(onnx.load(str(b / "model_fp16.onnx")), yaml.safe_load(params_file.read_text())["export"]["fp16_keep_fp32"])
    assert mf["fp16_kept_nodes"] == kept
    assert network == "pets" or any(kept.values())  # voc: Resize, style: InstanceNorm + Resize
    readme = (b / "README.md").read_text()
    assert "python3 check.py --onnxrt" in readme and mf["trtexec"]["strong_fp16"] in readme
    assert "--trt-outputs '*' --onnx-outputs '*'" in readme and "polygraphy run model_fp16.onnx --trt" in readme
    for line in jetson_commands(input_name="input", shapes={k: tuple(v) for k, v in mf["profiles"].items()},
                                workspace_mb=mf["workspace_mb"]):
        assert line in readme
    with tarfile.open(str(b) + ".tar.gz") as tf:
        assert f"{b.name}/check.py" in tf.getnames()


@pytest.mark.parametrize("network", list(NETWORKS))
def test_check_onnxrt_passes_on_the_intact_bundle(bundles, network):
    proc = run_check(bundles[network], "--onnxrt")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"PASS {network} onnxruntime model_fp16.onnx on 2 golden image(s)")


def test_verify_run_passes_polygraphy_andrun_check(bundles, cli):
    assert cli(["bundle", "--verify", str(bundles["style"]), "--run"]) == 0


@pytest.mark.parametrize("network", ["voc", "style"])
def test_rehashed_corrupted_graph_fails_on_a_figure(bundles, network, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(bundles[network], bad)
    _corrupt_one_initializer(bad / "model_fp16.onnx", network)
    rehash(bad, "model_fp16.onnx")
    proc = run_check(bad, "--onnxrt", "--json", str(tmp_path / "r.json"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    figure = "argmax agreement" if network == "voc" else "PSNR"
    assert line.startswith(f"FAIL {network} onnxruntime model_fp16.onnx: {figure}")
    assert not json.loads((tmp_path / "r.json").read_text())["passed"]


def test_rehashed_corrupted_graph_fails_validate_naming_the_figure(bundles, params_file, tmp_path, cli, capsys):
    """The same tampered FP16 graph, given to `segstyle engine validate` on the validation split."""
    bad = tmp_path / "bad"
    shutil.copytree(bundles["voc"], bad)
    _corrupt_one_initializer(bad / "model_fp16.onnx", "voc")
    rehash(bad, "model_fp16.onnx")
    rc = cli(["engine", "validate", "--backend", "ort-cpu", "--model", NETWORKS["voc"], "--onnx",
              str(bad / "model_fp16.onnx"), "--network", "voc", "--samples", "2", "--latency-size", "0",
              "--params", str(params_file), "--out", str(tmp_path / "rec.json")])
    assert rc == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("segstyle: error: voc ort-cpu fp16: argmax agreement")


def test_unrehashed_tampering_is_refused_by_sha256(bundles, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(bundles["pets"], bad)
    _corrupt_one_initializer(bad / "model_fp16.onnx", "pets")
    proc = run_check(bad, "--onnxrt")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("check.py: refused: model_fp16.onnx sha256 differs from manifest.json "
                                   "(modified or corrupted)")
    # golden data is covered too: a changed golden output is refused, not compared
    from polygraphy.comparator import RunResults

    bad2 = tmp_path / "bad2"
    shutil.copytree(bundles["pets"], bad2)
    results = RunResults.load(str(bad2 / "outputs.json"))
    results[0][1][0]["logits"].flat[0] += 1.0
    results.save(str(bad2 / "outputs.json"))
    proc = run_check(bad2, "--onnxrt")
    assert proc.returncode == 2 and "outputs.json sha256 differs" in proc.stderr


def test_check_reads_polygraphy_golden_data_like_polygraphy(bundles):
    """check.py's numpy-only reader gives exactly what polygraphy's own loader gives."""
    import importlib.util

    from polygraphy.comparator import RunResults
    from polygraphy.json import load_json

    b = bundles["voc"]
    spec = importlib.util.spec_from_file_location("bundle_check_copy", b / "check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    golden = mod.load_golden(b, json.loads((b / "manifest.json").read_text()))
    feeds = load_json(str(b / "inputs.json"))
    outs = RunResults.load(str(b / "outputs.json"))[0][1]
    assert len(golden) == len(feeds) == len(outs) == 2
    for (x, y), f, o in zip(golden, feeds, outs):
        assert np.array_equal(x, f["input"]) and np.array_equal(y, o["logits"])


def test_check_engine_without_tensorrt_is_one_line(bundles):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT installed: --engine would really run")
    except ImportError:
        pass
    proc = run_check(bundles["style"], "--engine", "model_fp16.engine")
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "no such engine file" in proc.stderr


def test_perturbed_golden_output_fails_polygraphy(bundles, tmp_path):
    from polygraphy.comparator import RunResults

    from segstyle.export.bundle import run_polygraphy

    bad = tmp_path / "bad"
    shutil.copytree(bundles["style"], bad)
    results = RunResults.load(str(bad / "outputs.json"))
    arr = results[0][1][0]["image"]
    arr.flat[arr.size // 2] += 0.5  # one pixel of one golden output
    results.save(str(bad / "outputs.json"))
    proc = run_polygraphy(bad)  # the intact bundle passes this same command (test above)
    assert proc.returncode != 0 and "FAILED" in proc.stdout + proc.stderr


def test_bundle_with_missing_file_is_one_line(bundles, tmp_path, cli, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(bundles["style"], broken)
    (broken / "inputs.json").unlink()
    assert cli(["bundle", "--verify", str(broken)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "inputs.json missing" in err[0]


def test_corrupt_onnx_and_wrong_checkpoint_write_nothing(tmp_path, params_file, cli, capsys):
    from segstyle.models import build_model, list_models
    from segstyle.models.checkpoint import save_checkpoint

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage" * 20)
    out = tmp_path / "b"
    assert cli(["bundle", "--model", "transformer_net", "--onnx", str(bad), "--out", str(out),
                "--params", str(params_file)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.onnx" in err[0]
    ck = tmp_path / "tn.pt"
    save_checkpoint(ck, {"model": "transformer_net", "model_kwargs": {}, "params": {}, "data_version": "x",
                         "state_dict": build_model("transformer_net").state_dict()})
    seg = next(iter(list_models("segmentation")))
    assert cli(["bundle", "--checkpoint", str(ck), "--model", seg, "--out", str(out),
                "--params", str(params_file)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "transformer_net" in err[0] and seg in err[0]
    assert not out.exists() and not (tmp_path / "b.tar.gz").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".b")] == []


def test_tarball_is_byte_reproducible(tmp_path):
    """The bundle tarball is a cached DVC output: same files -> same bytes, whatever the file times."""
    import os
    import time

    from segstyle.export.bundle import write_tarball

    src = tmp_path / "b"
    (src / "sub").mkdir(parents=True)
    for name in ("z.txt", "a.txt", "sub/m.bin"):
        (src / name).write_bytes(name.encode() * 100)
    write_tarball(src, tmp_path / "one.tar.gz", arcname="b")
    for f in src.rglob("*"):
        os.utime(f, (time.time() + 1000, time.time() + 1000))
    time.sleep(1.1)  # a gzip header carrying the wall clock would change
    write_tarball(src, tmp_path / "two.tar.gz", arcname="b")
    assert (tmp_path / "one.tar.gz").read_bytes() == (tmp_path / "two.tar.gz").read_bytes()
    import tarfile

    with tarfile.open(tmp_path / "one.tar.gz") as tf:
        names = tf.getnames()
        assert names == ["b", "b/a.txt", "b/sub", "b/sub/m.bin", "b/z.txt"]
        assert tf.extractfile("b/sub/m.bin").read() == b"sub/m.bin" * 100


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory, params_file):
    """A voc bundle that ships both INT8 graphs of a fresh U-Net (calibrated on the sample train split)."""
    from segstyle.pipelines.cli import run_cli

    d = tmp_path_factory.mktemp("int8b")
    prm = ["--params", str(params_file)]
    m = ["--model", "unet_mobilenetv2"]
    assert run_cli(["export", "onnx", *m, "--out", str(d / "m.onnx"), *prm]) == 0
    for target in ("trt", "cpu"):
        assert run_cli(["export", "int8", str(d / "m.onnx"), *m, "--target", target, "--out", str(d / f"{target}.onnx"),
                        *prm]) == 0
    b = d / "voc"
    assert run_cli(["bundle", *m, "--network", "voc", "--onnx", str(d / "m.onnx"), "--onnx-int8", str(d / "trt.onnx"),
                    "--onnx-int8", str(d / "cpu.onnx"), "--out", str(b), "--sizes", SIZES, "--no-tar", *prm]) == 0
    return d, b


def test_int8_bundle_ships_both_graphs_calibration_lint_and_lines(int8_bundle):
    _, b = int8_bundle
    mf = json.loads((b / "manifest.json").read_text())
    assert mf["int8_files"] == ["model_int8.onnx", "model_int8_cpu.onnx", "calibration.json"]
    assert {mf["graph_precisions"][n] for n in ("model_int8.onnx", "model_int8_cpu.onnx")} == {"int8"}
    assert all(n in mf["files"] for n in mf["int8_files"])
    cal = json.loads((b / "calibration.json").read_text())
    assert cal["model_int8.onnx"]["target"] == "trt" and cal["model_int8_cpu.onnx"]["target"] == "cpu"
    assert cal["model_int8_cpu.onnx"]["ids"] and cal["model_int8_cpu.onnx"]["tensor_ranges"]
    assert "model_int8.onnx" in json.loads((b / "lint.json").read_text())
    readme = (b / "README.md").read_text()
    for key in ("strong_int8", "weak_int8_trt10", "dla_trt10", "dla_trt11"):
        assert mf["trtexec"][key] in readme
    assert "--useDLACore=0" in mf["trtexec"]["dla_trt10"] and "--shapes=input:1x3x512x512" in mf["trtexec"]["dla_trt10"]
    assert "--int8" not in mf["trtexec"]["strong_int8"] and "--int8 --fp16" in mf["trtexec"]["weak_int8_trt10"]


def test_check_applies_the_int8_bounds_to_int8_graphs(int8_bundle, tmp_path):
    """check.py picks the bounds of the graph's precision: the same outputs pass as INT8 (98 %) and fail as
    FP16 (99.5 %); a tampered INT8 graph is refused by its sha256."""
    import importlib.util
    import sys

    _, b = int8_bundle
    proc = run_check(b, "--onnxrt", "--graph", "model_int8_cpu.onnx", "--json", str(tmp_path / "r.json"))
    assert proc.returncode in (0, 1), proc.stderr
    spec = importlib.util.spec_from_file_location("bundle_check_int8", b / "check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    manifest = json.loads((b / "manifest.json").read_text())
    golden = mod.load_golden(b, manifest)
    outs = []
    for _, ref in golden:  # flip 1 % of the pixels to another class: 99 % agreement
        y = ref.copy()
        flat = y.reshape(y.shape[0], y.shape[1], -1)
        n = flat.shape[-1] // 100
        top = flat[:, :, :n].argmax(1)
        flat[:, :, :n] = 0.0
        np.put_along_axis(flat[:, :, :n], ((top + 1) % flat.shape[1])[:, None, :], 50.0, axis=1)
        outs.append(y)
    bad8, f8 = mod.check(outs, golden, manifest, "onnxruntime model_int8_cpu.onnx", "int8")
    bad16, _ = mod.check(outs, golden, manifest, "onnxruntime model_fp16.onnx", "fp16")
    assert 98 < f8["agreement_pct"] < 99.5 and bad8 == [] and any("argmax agreement" in v for v in bad16)
    sys.modules.pop("segstyle_compare", None)
    tampered = tmp_path / "t"
    shutil.copytree(b, tampered)
    with open(tampered / "model_int8_cpu.onnx", "ab") as f:
        f.write(b"\0")
    proc = run_check(tampered, "--onnxrt", "--graph", "model_int8_cpu.onnx")
    assert proc.returncode == 2 and "model_int8_cpu.onnx" in proc.stderr


def test_not_deployable_network_ships_no_int8(int8_bundle, params_file, tmp_path, cli, capsys):
    d, _ = int8_bundle
    raw = yaml.safe_load(params_file.read_text())
    raw["export"]["int8"]["not_deployable"] = {"voc": "measured: fails its bounds"}
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(raw))
    out = tmp_path / "b"
    assert cli(["bundle", "--model", "unet_mobilenetv2", "--network", "voc", "--onnx", str(d / "m.onnx"),
                "--onnx-int8", str(d / "cpu.onnx"), "--out", str(out), "--sizes", SIZES, "--no-tar",
                "--params", str(p)]) == 0
    assert "INT8 graphs not shipped" in capsys.readouterr().err
    mf = json.loads((out / "manifest.json").read_text())
    assert mf["int8_files"] == [] and not (out / "model_int8_cpu.onnx").exists()
