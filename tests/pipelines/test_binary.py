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
    assert {"foreground_iou", "dice"} <= set(metrics) and {"foreground_iou", "dice"} <= set(metrics["baseline"])
