"""segstyle train: outputs, kill-and-resume equivalence, DDP on CPU (gloo), bad input, real-data overfit."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from metrics_helpers import assert_figures_only
from seg_helpers import REPO, tiny_data, write_params

TINY_AUG = {"base_size": 64, "crop_size": 48, "scale": [0.75, 1.25]}
TINY_TRAIN = {"epochs": 2, "batch_size": 2, "workers": 0, "lr": 0.003, "optimizer": "adamw",
              "models": {"voc": "fcn_resnet18", "pets": "unet_mobilenetv2"}}


@pytest.fixture
def setup(tmp_path, tmp_path_factory):
    root = tiny_data(tmp_path_factory)
    params = write_params(tmp_path / "params.yaml", augment=TINY_AUG, train=TINY_TRAIN)
    return root, params


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _train(cli, root, params, out, *extra) -> int:
    return cli(["train", "--params", str(params), "--dataset", "voc", "--data-root", str(root),
                "--out", str(out), "--no-pretrained", *extra])


def test_train_writes_checkpoint_metrics_and_curves(setup, tmp_path, cli, capsys):
    root, params = setup
    out = tmp_path / "run"
    assert _train(cli, root, params, out, "--epochs", "1") == 0, capsys.readouterr().err
    rows = _rows(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1"]
    assert {"train_loss", "lr", "val_pixel_acc", "val_miou", "val_mean_class_acc", "val_fwiou"} <= set(rows[0])
    assert (out / "loss.png").stat().st_size > 0 and (out / "val.png").stat().st_size > 0
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    for key in ("model", "model_kwargs", "state_dict", "params", "data_version", "git_commit", "epoch",
                "num_classes", "dataset", "classes", "optimizer", "scheduler", "scaler"):
        assert key in ckpt, key
    assert ckpt["model"] == "fcn_resnet18" and ckpt["num_classes"] == 21 and ckpt["classes"][0] == "background"
    assert ckpt["params"]["train"]["lr"] == 0.003 and ckpt["epoch"] == 1
    # provenance from one moment: the overrides are in the stored params, in the digest and listed
    from segstyle.pipelines.config import Params

    assert ckpt["params"]["train"]["epochs"] == 1 and ckpt["params"]["data"]["root"] == str(root)
    assert ckpt["overrides"] == {"train.epochs": 1, "data.root": str(root), "train.pretrained": False}
    assert ckpt["params_digest"] == Params.model_validate(ckpt["params"]).digest()
    assert ckpt["data_version"] == f"untracked: {root}"
    assert not list(out.glob(".*")), "temporary files left behind"


def test_val_every_validates_on_schedule_and_after_the_last_epoch(tmp_path, tmp_path_factory, cli, capsys,
                                                                   monkeypatch):
    """``train.val_every: 2`` over 3 epochs: validation after epochs 2 and 3 (the last), none after 1;
    the checkpoint is still written every epoch, and val.png plots the validated epochs."""
    import segstyle.pipelines.train as train_mod

    root = tiny_data(tmp_path_factory)
    params = write_params(tmp_path / "params.yaml", augment=TINY_AUG, train={**TINY_TRAIN, "val_every": 2})
    out = tmp_path / "run"
    seen = []  # (epoch being validated, epoch of the checkpoint on disk at that moment)
    real = train_mod.validate

    def spy(*a, **k):
        done = len(_rows(out / "metrics.csv")) if (out / "metrics.csv").exists() else 0
        ckpt = torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] if done else 0
        seen.append((done + 1, ckpt))
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "validate", spy)
    assert _train(cli, root, params, out, "--epochs", "3") == 0, capsys.readouterr().err
    # epoch 1 (not validated) still wrote its checkpoint before epoch 2's validation
    assert seen == [(2, 1), (3, 2)]
    rows = _rows(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert [bool(r["val_miou"]) for r in rows] == [False, True, True] and all(r["train_loss"] for r in rows)
    err = capsys.readouterr().err
    assert "epoch 1/3: loss" in err and "val mIoU" not in err.split("epoch 1/3: loss")[1].split("\n")[0]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 3 and (out / "val.png").is_file()


def test_two_runs_give_identical_output_hashes(setup, tmp_path, cli, capsys):
    """Same data, params and code: byte-identical cached outputs (DVC hashes), wall times only in timing.json."""
    import hashlib
    import json

    root, params = setup
    digests = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert _train(cli, root, params, out, "--epochs", "1") == 0, capsys.readouterr().err
        digests.append({f: hashlib.sha256((out / f).read_bytes()).hexdigest()
                        for f in ("checkpoint.pt", "metrics.csv", "loss.png", "val.png")})
        rows = json.loads((out / "epoch_times.json").read_text())["epochs"]
        assert [e["epoch"] for e in rows] == [1] and rows[0]["seconds"] > 0
        # the DVC metrics file: figures only, the total of the rows
        assert assert_figures_only(out / "timing.json") == {"seconds": rows[0]["seconds"], "epochs": 1}
        ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
        assert all("time" not in k for row in ckpt["history"] for k in row)
    assert digests[0] == digests[1]


def test_kill_mid_epoch_then_resume_matches_uninterrupted_run(setup, tmp_path, cli, capsys, monkeypatch):
    """Interrupt in the middle of epoch 2 (after 6 of 8 steps), resume: same metrics and weights.

    Tolerance: metrics equal to 1e-6 and weights to 1e-6 (in practice bit-identical on one machine,
    since every epoch reseeds its random streams from (seed, epoch)).
    """
    import segstyle.pipelines.train as train_mod

    root, params = setup
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert _train(cli, root, params, full) == 0, capsys.readouterr().err

    real_step, calls = train_mod.train_step, {"n": 0}

    def dying_step(*a, **k):
        calls["n"] += 1
        if calls["n"] > 6:  # 8 images / batch 2 = 4 steps per epoch: die inside epoch 2
            raise KeyboardInterrupt
        return real_step(*a, **k)

    monkeypatch.setattr(train_mod, "train_step", dying_step)
    assert _train(cli, root, params, cut) == 130
    capsys.readouterr()  # click turns the KeyboardInterrupt into "segstyle: aborted", exit 130
    assert torch.load(cut / "checkpoint.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(train_mod, "train_step", real_step)
    assert _train(cli, root, params, cut, "--resume") == 0, capsys.readouterr().err
    assert "resuming fcn_resnet18 from epoch 1/2" in capsys.readouterr().err
    # wall times: epoch 1 from the first run, epoch 2 from the resumed one; the metrics file is their sum
    import json

    rows = json.loads((cut / "epoch_times.json").read_text())["epochs"]
    assert [r["epoch"] for r in rows] == [1, 2]
    timing = assert_figures_only(cut / "timing.json")
    assert timing == {"epochs": 2, "seconds": pytest.approx(sum(r["seconds"] for r in rows), abs=0.011)}

    a, b = _rows(full / "metrics.csv"), _rows(cut / "metrics.csv")
    assert len(a) == len(b) == 2
    for ra, rb in zip(a, b):
        for k in ("train_loss", "lr", "val_pixel_acc", "val_miou", "val_mean_class_acc", "val_fwiou"):
            assert float(ra[k]) == pytest.approx(float(rb[k]), abs=1e-6), k
    sa = torch.load(full / "checkpoint.pt", weights_only=True)["state_dict"]
    sb = torch.load(cut / "checkpoint.pt", weights_only=True)["state_dict"]
    for k in sa:
        assert torch.allclose(sa[k].float(), sb[k].float(), atol=1e-6), k


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(setup, tmp_path, cli, capsys):
    """A real ``kill -9`` of the training process during epoch 2, then ``--resume``.

    The checkpoint on disk is always a whole one (atomic rename), so the resumed run ends with the
    uninterrupted run's metrics (tolerance 1e-6).
    """
    import signal
    import time

    root, params = setup
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert _train(cli, root, params, full) == 0, capsys.readouterr().err
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "segstyle.pipelines.cli", "train", "--params", str(params), "--dataset", "voc",
           "--data-root", str(root), "--out", str(cut), "--no-pretrained"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (cut / "checkpoint.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    ckpt = torch.load(cut / "checkpoint.pt", weights_only=True)
    if ckpt["epoch"] == 2:
        pytest.skip("training finished before the kill landed (machine too fast for this tiny run)")
    assert ckpt["epoch"] == 1 and proc.returncode == -signal.SIGKILL
    assert _train(cli, root, params, cut, "--resume") == 0, capsys.readouterr().err
    a, b = _rows(full / "metrics.csv"), _rows(cut / "metrics.csv")
    assert len(a) == len(b) == 2
    for ra, rb in zip(a, b):
        for k in ("train_loss", "val_pixel_acc", "val_miou"):
            assert float(ra[k]) == pytest.approx(float(rb[k]), abs=1e-6), k


def test_resume_refuses_another_model_or_schedule(setup, tmp_path, cli, capsys):
    root, params = setup
    out = tmp_path / "run"
    assert _train(cli, root, params, out, "--epochs", "1") == 0
    capsys.readouterr()
    assert _train(cli, root, params, out, "--resume", "--epochs", "1", "--model", "unet_mobilenetv2") != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is for model 'fcn_resnet18', not 'unet_mobilenetv2'" in err
    assert _train(cli, root, params, out, "--resume", "--epochs", "3") != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--epochs 1" in err


def test_pretrained_offline_is_one_line_from_the_cli(setup, tmp_path, cli, capsys, monkeypatch):
    import urllib.error

    import torchvision.models._api as tv_api

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", offline)
    root, params = setup
    code = cli(["train", "--params", str(params), "--dataset", "voc", "--data-root", str(root),
                "--out", str(tmp_path / "x"), "--pretrained"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.count("\n") == 0 and "--no-pretrained" in err
    assert not (tmp_path / "x" / "checkpoint.pt").exists()


@pytest.mark.slow
def test_ddp_two_gloo_processes_on_cpu(setup, tmp_path):
    """``segstyle train --nproc 2`` relaunches through torchrun: DDP over gloo, DistributedSampler, one epoch."""
    root, params = setup
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "segstyle.pipelines.cli", "train", "--nproc", "2", "--params", str(params), "--dataset", "pets",
           "--data-root", str(root), "--out", str(out), "--epochs", "1", "--no-pretrained", "--device", "cpu"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "DDP: 2 processes (gloo), 2 steps/epoch each" in r.stderr  # 8 images / (2 ranks x batch 2)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["model"] == "unet_mobilenetv2" and ckpt["num_classes"] == 3
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])  # saved unwrapped
    assert len(_rows(out / "metrics.csv")) == 1


@pytest.mark.slow
def test_overfits_the_eight_real_voc_train_images(realdata, tmp_path, cli, capsys):
    """Train on the 8 real VOC train fixtures and score the same 8 images: mIoU >= 0.8.

    No augmentation beyond a random crop, so the check is about the model/loss/optimiser/metric
    plumbing being right, not about generalisation.
    """
    params = write_params(
        tmp_path / "params.yaml",
        augment={"base_size": 96, "crop_size": 96, "scale": [1.0, 1.0], "hflip_prob": 0.0, "color_jitter": 0.0},
        train={"epochs": 100, "batch_size": 8, "lr": 0.006, "optimizer": "adamw", "weight_decay": 0.0,
               "grad_clip": 1.0, "val_every": 25},  # validation at natural size cost half of each epoch
        splits={"voc": {"train": "train", "val": "train"}},
    )
    out = tmp_path / "overfit"
    code = cli(["train", "--params", str(params), "--dataset", "voc", "--data-root", str(realdata),
                "--model", "unet_mobilenetv2", "--out", str(out), "--no-pretrained"])
    assert code == 0, capsys.readouterr().err
    code = cli(["evaluate", "--params", str(params), "--dataset", "voc", "--data-root", str(realdata),
                "--checkpoint", str(out / "checkpoint.pt"), "--split", "train", "--out", str(tmp_path / "eval")])
    assert code == 0
    import json

    m = json.loads((tmp_path / "eval" / "record.json").read_text())
    assert m["samples"] == 8
    assert m["miou"] >= 0.8, m["per_class_iou"]
    assert m["miou"] > m["baseline"]["miou"] + 0.5
