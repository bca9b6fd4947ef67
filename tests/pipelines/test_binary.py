"""The foreground (binary) task: two-label data modes, a one-logit head trained with BCE + Dice, and
evaluation that reads one logit as ``logit > 0`` (an argmax over one channel is 0 everywhere)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from seg_helpers import tiny_data, write_params

TINY_AUG = {"base_size": 64, "crop_size": 48, "scale": [0.75, 1.25]}


def test_two_labels_are_one_logit():
    from segstyle.models.classes import output_channels

    assert output_channels(2) == 1 and output_channels(3) == 3 and output_channels(21) == 21


def test_voc_person_is_person_against_every_other_class_with_void_kept(tmp_path_factory):
    from segstyle.models.classes import VOC_CLASSES
    from segstyle.pipelines.data.datasets import build_dataset, voc_lut

    lut = voc_lut("person")
    raw = np.array([0, 1, VOC_CLASSES.index("person"), 20, 255], dtype=np.uint8)
    assert lut[raw].tolist() == [0, 0, 1, 0, 255]
    assert (voc_lut("classes")[np.arange(256, dtype=np.uint8)] == np.arange(256)).all()
    root = tiny_data(tmp_path_factory)
    ds = build_dataset("voc", root, "train", voc_mode="person")
    assert ds.classes == ("background", "person") and ds.num_classes == 2
    raws = [ds.read_raw_mask(i) for i in range(len(ds))]
    for i, r in enumerate(raws):
        m = np.asarray(ds[i][1])
        assert set(np.unique(m)) <= {0, 1, 255}
        assert ((m == 1) == (r == VOC_CLASSES.index("person"))).all() and ((m == 255) == (r == 255)).all()
    from segstyle.core.errors import SegstyleError

    with pytest.raises(SegstyleError, match="unknown VOC mode"):
        build_dataset("voc", root, "train", voc_mode="people")


def test_binary_loss_is_bce_plus_dice_over_labelled_pixels():
    from segstyle.pipelines.train import binary_loss, head_loss

    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 2, (2, 8, 8), generator=g)
    target[:, :2] = 255
    logits = torch.randn(2, 1, 8, 8, generator=g)
    valid = target != 255
    p, t = torch.sigmoid(logits[:, 0])[valid], target[valid].float()
    by_hand = F.binary_cross_entropy(p, t) + 1 - 2 * (p * t).sum() / (p.sum() + t.sum())
    assert torch.allclose(binary_loss(logits, target), by_hand, atol=1e-5)
    assert torch.equal(head_loss(logits, target), binary_loss(logits, target))
    other = logits.clone()
    other[:, :, :2] = 50.0  # void pixels: nothing they predict counts
    assert torch.allclose(binary_loss(other, target), binary_loss(logits, target))
    right = (target.float() * 2 - 1).unsqueeze(1) * 10
    assert float(binary_loss(right, target)) < 0.01 < 1.5 < float(binary_loss(-right, target))
    three = torch.randn(2, 3, 8, 8, generator=g)  # several channels: cross-entropy, as before
    assert torch.equal(head_loss(three, target), F.cross_entropy(three, target, ignore_index=255))


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    """unet_binary trained 2 epochs on the tiny Pet split in ``binary`` mode (pet vs background)."""
    from segstyle.pipelines.cli import run_cli

    root = tiny_data(tmp_path_factory)
    d = tmp_path_factory.mktemp("binary")
    params = write_params(d / "params.yaml", augment=TINY_AUG,
                          train={"epochs": 2, "batch_size": 4, "workers": 0, "lr": 0.003})
    raw = yaml.safe_load(params.read_text())
    raw["data"]["pets_mode"] = "binary"
    params.write_text(yaml.safe_dump(raw))
    out = d / "train"
    assert run_cli(["train", "--params", str(params), "--dataset", "pets", "--data-root", str(root),
                    "--model", "unet_binary", "--out", str(out), "--no-pretrained"]) == 0
    return root, params, out / "checkpoint.pt"


def test_a_binary_dataset_trains_a_one_logit_head(binary_run):
    _, _, ckpt_path = binary_run
    ck = torch.load(ckpt_path, weights_only=True)
    assert ck["num_classes"] == 2 and ck["classes"] == ["background", "pet"]
    assert ck["model_kwargs"]["num_classes"] == 1
    from segstyle.models.checkpoint import model_from_checkpoint

    out = model_from_checkpoint(ck).eval()(torch.rand(1, 3, 64, 64))["out"]
    assert out.shape == (1, 1, 64, 64)


def test_evaluation_reads_one_logit_as_logit_above_zero(binary_run, tmp_path, monkeypatch):
    """A head that says "foreground" everywhere scores foreground IoU = the foreground share of the
    labelled pixels; an argmax over its one channel would have scored 0."""
    from segstyle.pipelines import evaluate as ev
    from segstyle.pipelines import predict as pr
    from segstyle.pipelines.config import load_params
    from segstyle.pipelines.data.datasets import build_dataset

    root, params, ckpt = binary_run
    monkeypatch.setattr(pr, "predict_logits", lambda model, x, size: torch.ones(1, 1, *x.shape[-2:]))
    p = load_params(params)
    rec = ev.evaluate(p, "pets", ckpt, tmp_path / "eval", data_root=str(root))
    ds = build_dataset("pets", root, p.data.splits["pets"].val, pets_mode="binary")
    masks = np.concatenate([ds.map_mask(ds.read_raw_mask(i)).ravel() for i in range(len(ds))])
    share = float((masks == 1).sum() / (masks != 255).sum())
    assert rec["foreground"] == "pet" and abs(rec["foreground_iou"] - share) < 1e-6 and share > 0.1
    assert abs(rec["dice"] - 2 * share / (1 + share)) < 1e-6
    major, _ = ev.majority_class(build_dataset("pets", root, p.data.splits["pets"].train, pets_mode="binary"))
    assert rec["baseline"]["foreground_iou"] == (share if major == 1 else 0.0)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert {"foreground_iou", "dice", "boundary_f"} <= set(metrics)
    assert {"foreground_iou", "dice", "boundary_f"} <= set(metrics["baseline"])
    # no contour drawn (foreground everywhere; the image edge is no contour): boundary F 0, like the baseline's
    assert rec["boundary_f"] == 0.0 and rec["boundary_recall"] == 0.0 and rec["baseline"]["boundary_f"] == 0.0
    # seg_demo's row reads these figures from the record, and its table shows them
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_seg_demo", Path(__file__).parents[2] / "benchmarks/seg_demo.py")
    seg_demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seg_demo)
    row = seg_demo.eval_row(tmp_path / "eval")
    assert (row["foreground_iou"], row["baseline_foreground_iou"], row["dice"], row["boundary_f"]) == \
        (rec["foreground_iou"], rec["baseline"]["foreground_iou"], rec["dice"], rec["boundary_f"])
    assert seg_demo.parse_dataset("pets:binary") == ("pets", "binary") and seg_demo.parse_dataset("pets") == ("pets", None)
    row.update(dataset="pets", mode="binary", model="unet_binary", epochs=2, train_wall_s=1, train_cpu_s=1)
    md = seg_demo.render_markdown({"meta": {"command": "c", "commit": "abc1234", "date": "d", "machine": "m"},
                                   "results": [row]})
    line = next(x for x in md.splitlines() if x.startswith("| pets (binary) | unet_binary"))
    assert f"| {rec['foreground_iou']:.3f} ({rec['baseline']['foreground_iou']:.3f}) | 0.000 (0.000) |" in line


def test_evaluation_scores_the_contour_with_boundary_f(binary_run, tmp_path, monkeypatch):
    """A prediction equal to the void-filled ground truth scores boundary F 1 while its IoU does
    not move; one a few pixels off loses boundary F far faster than IoU."""
    from segstyle.core.metrics import BoundaryF
    from segstyle.pipelines import evaluate as ev
    from segstyle.pipelines import predict as pr
    from segstyle.pipelines.config import load_params
    from segstyle.pipelines.data.datasets import build_dataset

    root, params, ckpt = binary_run
    p = load_params(params)
    ds = build_dataset("pets", root, p.data.splits["pets"].val, pets_mode="binary")
    truth = {i: torch.from_numpy(BoundaryF().fill_void(np.asarray(ds[i][1]).astype(np.int64))) for i in range(len(ds))}
    calls = iter(range(len(ds)))

    def as_logits(shift):
        def fake(model, x, size):
            t = truth[next(calls)].roll(shift, dims=1)
            return (t.float() * 2 - 1)[None, None]
        return fake

    monkeypatch.setattr(pr, "predict_logits", as_logits(0))
    exact = ev.evaluate(p, "pets", ckpt, tmp_path / "a", data_root=str(root))
    calls = iter(range(len(ds)))
    monkeypatch.setattr(pr, "predict_logits", as_logits(6))
    off = ev.evaluate(p, "pets", ckpt, tmp_path / "b", data_root=str(root))
    assert exact["boundary_f"] == 1.0 and exact["foreground_iou"] == 1.0
    assert off["boundary_f"] < 0.6 * exact["boundary_f"] and off["foreground_iou"] > 0.6


def test_predict_writes_the_soft_alpha_matte_and_an_rgba_cutout(binary_run, tmp_path, cli):
    """The matte is round(255 sigmoid(logit)) of the one inference path, the cut-out is the photo
    with exactly that alpha, and the mask is alpha > 0.5: a constant, thresholded or stale alpha fails."""
    from segstyle.core.io import read_image, write_image
    from segstyle.pipelines.predict import base_size_of, load_for_inference, predict_logits
    from segstyle.pipelines.data.datasets import build_dataset
    import cv2

    from segstyle.pipelines.config import load_params

    root, params, ckpt = binary_run
    ds = build_dataset("pets", root, load_params(params).data.splits["pets"].val, pets_mode="binary")
    rgb = read_image(ds.image_path(0))
    img = write_image(tmp_path / "photo.png", rgb)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    # two epochs say "pet" everywhere at nearly one logit: spread and centre the head so the matte
    # spans 0..255 and the mask holds both labels (a constant or all-foreground output then fails)
    from segstyle.models.checkpoint import save_checkpoint

    model, ck = load_for_inference(ckpt, torch.device("cpu"))
    with torch.inference_mode():
        raw = predict_logits(model, x, base_size_of(ck))
    lo, mid, hi = (float(q) for q in raw.quantile(torch.tensor([0.02, 0.5, 0.98])))
    k = 4.0 / max(min(mid - lo, hi - mid), 1e-6)  # both tails reach |logit| >= 4 (alpha 5 / 250)
    ck["state_dict"]["head.weight"] = ck["state_dict"]["head.weight"] * k
    ck["state_dict"]["head.bias"] = (ck["state_dict"]["head.bias"] - mid) * k
    ckpt = save_checkpoint(tmp_path / "spread.pt", ck)
    out = tmp_path / "pred"
    assert cli(["predict", str(img), "--checkpoint", str(ckpt), "--out-dir", str(out)]) == 0
    model, ck = load_for_inference(ckpt, torch.device("cpu"))
    with torch.inference_mode():
        logits = predict_logits(model, x, base_size_of(ck))
    want = (torch.sigmoid(logits[0, 0]) * 255).round().to(torch.uint8).numpy()
    alpha = cv2.imread(str(out / "photo_alpha.png"), cv2.IMREAD_UNCHANGED)
    assert alpha.shape == rgb.shape[:2] and alpha.dtype == np.uint8
    assert np.abs(alpha.astype(int) - want.astype(int)).max() <= 1  # float summation order only
    assert len(np.unique(alpha)) > 100 and alpha.min() < 30 and alpha.max() > 225  # soft, not a 0/255 mask
    bgra = cv2.imread(str(out / "photo_cutout.png"), cv2.IMREAD_UNCHANGED)
    assert bgra.shape == (*rgb.shape[:2], 4)
    assert np.array_equal(bgra[..., 3], alpha) and np.array_equal(bgra[..., 2::-1], rgb)
    mask = read_image(out / "photo_mask.png")
    fg = (mask != 0).any(2)
    assert np.array_equal(fg, (logits[0, 0] > 0).numpy()) and 0.3 < fg.mean() < 0.7


def test_the_region_of_a_one_logit_network_is_its_alpha():
    """Region stylisation reads a foreground network's sigmoid as the region mask (background: one
    minus it); a softmax over its one channel is 1 everywhere and would stylise the whole photo."""
    from segstyle.models.fused_region_style import FusedRegionStyle
    from segstyle.models.region import class_mask, feather_alpha

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 1, 6, 7, generator=g) * 3
    s = torch.sigmoid(logits)
    assert torch.allclose(class_mask(logits, [1], "foreground"), s)
    assert torch.allclose(class_mask(logits, [1], "background"), 1 - s)
    assert torch.allclose(class_mask(logits, [0], "foreground"), 1 - s)
    assert torch.allclose(class_mask(logits, [0, 1]), torch.ones_like(s))
    torch.manual_seed(0)
    fused = FusedRegionStyle("unet_binary", "transformer_net", [1], feather=1.0, seg_kwargs={"num_classes": 1, "init_features": 4},
                             style_kwargs={"base_channels": 8, "num_residual": 1}).eval()
    x = torch.rand(1, 3, 32, 32, generator=g)
    with torch.no_grad():
        a = feather_alpha(torch.sigmoid(fused.seg_logits(x)), 1.0)
        want = a * fused.style(x) + (1 - a) * x
        assert 0.05 < float(a.mean()) < 0.95
        assert torch.allclose(fused(x), want, atol=1e-6)


@pytest.mark.slow
def test_a_one_logit_graph_validates_its_mask_and_its_alpha(binary_run, tmp_path, cli, capsys):
    """Export, FP16 and `engine validate` of a one-logit checkpoint: the shape check reads one
    channel as two labels (it refused every one-logit graph), the dataset comes from the graph's
    class names, and each row reports the soft alpha's PSNR beside the mask agreement."""
    root, params, ckpt = binary_run
    raw = yaml.safe_load(params.read_text())
    raw["data"]["root"] = str(root)
    params.write_text(yaml.safe_dump(raw))
    fp32, fp16, rec = tmp_path / "m.onnx", tmp_path / "m16.onnx", tmp_path / "rec.json"
    prm = ["--params", str(params)]
    assert cli(["export", "onnx", "--checkpoint", str(ckpt), "--out", str(fp32), *prm]) == 0
    assert cli(["export", "fp16", str(fp32), "--checkpoint", str(ckpt), "--out", str(fp16), *prm]) == 0
    rc = cli(["engine", "validate", "--backend", "all", "--checkpoint", str(ckpt), "--onnx", str(fp32),
              "--onnx-fp16", str(fp16), "--samples", "0", "--latency-size", "0", "--out", str(rec), *prm])
    assert rc == 0, capsys.readouterr().err
    rows = {(x["backend"], x["precision"]): x for x in json.loads(rec.read_text())["rows"]}
    f32, f16 = rows[("ort-cpu", "fp32")], rows[("ort-cpu", "fp16")]
    assert f32["ran"] and f16["ran"] and f32["passed"] and f16["passed"]
    assert f32["figures"]["alpha_psnr_db_min"] > f16["figures"]["alpha_psnr_db_min"] > 35
    assert "delta_miou_pts" in f16["figures"]  # the labelled Pets split in binary mode (2 labels)
    raw["data"]["pets_mode"] = "trimap"  # the same graph against 3-label data: one line naming both
    params.write_text(yaml.safe_dump(raw))
    capsys.readouterr()
    assert cli(["engine", "validate", "--backend", "ort-cpu", "--checkpoint", str(ckpt), "--onnx", str(fp32),
                "--dataset", "pets", "--samples", "1", "--latency-size", "0", "--out", str(tmp_path / "r2.json"),
                *prm]) != 0
    err = capsys.readouterr().err
    assert "background, pet;" in err and "has pet, background, border" in err
