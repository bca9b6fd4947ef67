"""segstyle evaluate / predict: metrics over a split, baseline, overlays, any image size, bad input."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from segstyle.models import build_model
from segstyle.models.checkpoint import save_checkpoint
from segstyle.pipelines.config import load_params
from segstyle.core.provenance import data_version
from metrics_helpers import assert_figures_only
from seg_helpers import REPO, tiny_data, write_params


def _checkpoint(path: Path, params_path: Path, *, model="fcn_resnet18", num_classes=21, dataset="voc") -> Path:
    torch.manual_seed(0)
    net = build_model(model, num_classes=num_classes)
    params = load_params(params_path)
    save_checkpoint(path, {"model": model, "model_kwargs": {"num_classes": num_classes, "aux_loss": False},
                           "state_dict": net.state_dict(), "params": params.to_dict(), "data_version": "test",
                           "num_classes": num_classes, "dataset": dataset, "epoch": 1})
    return path


@pytest.fixture
def setup(tmp_path, tmp_path_factory):
    root = tiny_data(tmp_path_factory)
    params = write_params(tmp_path / "params.yaml", augment={"base_size": 48}, evaluate={"overlays": 3})
    return root, params


def _bench(name: str):
    """A benchmarks/ script as a module (they are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _eval(cli, root, params, ckpt, out, dataset="voc", *extra):
    return cli(["evaluate", "--params", str(params), "--dataset", dataset, "--data-root", str(root),
                "--checkpoint", str(ckpt), "--out", str(out), *extra])


def test_evaluate_matches_a_direct_computation(setup, tmp_path, cli, capsys):
    from segstyle.pipelines.data.datasets import build_dataset

    root, params = setup
    ckpt = _checkpoint(tmp_path / "c.pt", params)
    out = tmp_path / "eval"
    assert _eval(cli, root, params, ckpt, out) == 0, capsys.readouterr().err
    m = json.loads((out / "record.json").read_text())
    # the DVC metrics file: the record's figures and nothing else (no model, checkpoint, per-class family)
    figs = assert_figures_only(out / "metrics.json")
    assert figs == {k: m[k] for k in ("miou", "pixel_acc", "mean_class_acc", "fwiou", "samples")} | {
        "baseline": {k: m["baseline"][k] for k in ("miou", "pixel_acc")}}
    # what moved out of it stays in the plain record: provenance people and benchmarks read
    assert m["checkpoint"] == str(ckpt) and m["model"] == "fcn_resnet18" and m["split"] == "val"
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", m["git_commit"]) and m["data_version"] == data_version()

    # independent: plain loops, numpy counting, the model called directly
    net = build_model("fcn_resnet18", num_classes=21)
    net.load_state_dict(torch.load(ckpt, weights_only=True)["state_dict"])
    net.eval()
    ds = build_dataset("voc", root, "val")
    correct = total = 0
    inter, union = np.zeros(21), np.zeros(21)
    for i in range(len(ds)):
        img, mask = ds[i]
        h, w = mask.shape
        s = 48 / min(h, w)
        x = F.interpolate(img[None].float() / 255, size=(round(h * s), round(w * s)), mode="bilinear",
                          antialias=True)
        with torch.no_grad():
            pred = F.interpolate(net(x)["out"], size=(h, w), mode="bilinear").argmax(1)[0].numpy()
        gt = mask.numpy()
        keep = gt != 255
        correct += (pred[keep] == gt[keep]).sum()
        total += keep.sum()
        for c in range(21):
            inter[c] += ((pred == c) & (gt == c) & keep).sum()
            union[c] += (((pred == c) | (gt == c)) & keep).sum()
    assert m["samples"] == 4
    assert m["pixel_acc"] == pytest.approx(correct / total, abs=1e-6)
    assert m["miou"] == pytest.approx(np.mean(inter[union > 0] / union[union > 0]), abs=1e-6)

    # majority-class baseline: most frequent class over the train masks, scored on val
    counts = np.zeros(256, np.int64)
    for i in range(len(build_dataset("voc", root, "train"))):
        counts += np.bincount(np.array(Image.open(root / f"voc/VOCdevkit/VOC2012/SegmentationClass/"
                                                        f"{build_dataset('voc', root, 'train').ids[i]}.png")).ravel(),
                              minlength=256)
    major = int(counts[:21].argmax())
    gt_all = np.concatenate([np.array(ds[i][1]).ravel() for i in range(len(ds))])
    gt_all = gt_all[gt_all != 255]
    assert m["baseline"]["pixel_acc"] == pytest.approx(np.mean(gt_all == major), abs=1e-6)
    assert m["baseline"]["majority_class"] == ds.classes[major]

    rows = list(csv.DictReader(open(out / "per_class_iou.csv")))
    assert {r["class"] for r in rows} == {n for n, v in m["per_class_iou"].items() if v is not None}
    overlays = sorted((out / "overlays").glob("*.png"))
    assert len(overlays) == 3
    assert json.loads(json.dumps(m)) == m  # strict JSON (absent classes are null, not NaN)


def test_evaluate_pets_reports_pet_iou(setup, tmp_path, cli, capsys):
    root, params = setup
    ckpt = _checkpoint(tmp_path / "p.pt", params, model="unet_mobilenetv2", num_classes=3, dataset="pets")
    ev = tmp_path / "repo" / "artifacts" / "eval" / "pets"  # the pipeline's layout, for the benchmark readers
    assert _eval(cli, root, params, ckpt, ev, "pets") == 0, capsys.readouterr().err
    m = json.loads((ev / "record.json").read_text())
    assert 0 <= m["pet_iou"] <= 1 and 0 <= m["baseline"]["pet_iou"] <= 1
    assert set(m["per_class_iou"]) == {"pet", "background", "border"}
    figs = assert_figures_only(ev / "metrics.json")
    assert figs["pet_iou"] == m["pet_iou"] and figs["baseline"]["pet_iou"] == m["baseline"]["pet_iou"]
    # the benchmarks read what evaluate writes: seg_demo's row from the record, pipeline_jobs' figures
    row = _bench("seg_demo").eval_row(ev)
    assert row["majority_class"] == m["baseline"]["majority_class"] and row["pet_iou"] == m["pet_iou"]
    got = _bench("pipeline_jobs").eval_metrics(tmp_path / "repo")
    assert got["pets.miou"] == m["miou"] and got["pets.pet_iou"] == m["pet_iou"] and got["pets.samples"] == 4


def test_class_count_mismatch_is_one_line(setup, tmp_path, cli, capsys):
    root, params = setup
    ckpt = _checkpoint(tmp_path / "c.pt", params)  # 21 classes
    assert _eval(cli, root, params, ckpt, tmp_path / "ev", "pets") != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "predicts 21 classes but pets has 3" in err
    assert not (tmp_path / "ev").exists()


def test_style_or_foreign_checkpoint_is_one_line(setup, tmp_path, cli, capsys):
    from segstyle.models import list_models

    root, params = setup
    style = list_models(task="style")
    if style:
        bad = tmp_path / "style.pt"
        save_checkpoint(bad, {"model": style[0], "model_kwargs": {}, "state_dict": {}, "params": {},
                              "data_version": "x"})
        assert _eval(cli, root, params, bad, tmp_path / "ev") != 0
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "expected a segmentation model" in err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert _eval(cli, root, params, junk, tmp_path / "ev") != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a readable checkpoint" in err
    # the right model name with weights of another shape
    wrong = tmp_path / "wrong.pt"
    net = build_model("unet_mobilenetv2", num_classes=3)
    save_checkpoint(wrong, {"model": "fcn_resnet18", "model_kwargs": {"num_classes": 21}, "params": {},
                            "state_dict": net.state_dict(), "data_version": "x"})
    assert _eval(cli, root, params, wrong, tmp_path / "ev") != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "do not fit model 'fcn_resnet18'" in err


def test_predict_any_size_and_unreadable_image(setup, tmp_path, cli, capsys):
    import cv2

    root, params = setup
    ckpt = _checkpoint(tmp_path / "c.pt", params)
    imgs = []
    for i, (h, w) in enumerate([(37, 91), (120, 64), (17, 17)]):
        p = tmp_path / f"in{i}.jpg"
        cv2.imwrite(str(p), np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8))
        imgs.append((p, h, w))
    out = tmp_path / "pred"
    code = cli(["predict", *[str(p) for p, _, _ in imgs], "--checkpoint", str(ckpt), "--out-dir", str(out)])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    for p, h, w in imgs:
        assert cv2.imread(str(out / f"{p.stem}_mask.png")).shape == (h, w, 3)
        assert cv2.imread(str(out / f"{p.stem}_overlay.png")).shape == (h, 2 * w, 3)

    bad = tmp_path / "broken.jpg"
    bad.write_bytes((tmp_path / "in0.jpg").read_bytes()[:40])
    code = cli(["predict", str(bad), "--checkpoint", str(ckpt), "--out-dir", str(tmp_path / "p2")])
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert code != 0 and err.startswith("segstyle: error: ") and "broken.jpg" in err and "cannot decode" in err
    assert not (tmp_path / "p2").exists() or not list((tmp_path / "p2").glob("*broken*"))
    code = cli(["predict", str(tmp_path / "missing.png"), "--checkpoint", str(ckpt)])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "missing.png: no such image file" in err
