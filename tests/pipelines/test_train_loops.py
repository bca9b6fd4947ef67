"""The training loops' named pieces (seg ``train_one_epoch``, style ``train_style_step``, GAN ``train_one_epoch``)
on tiny in-memory batches: what each returns and how many optimiser/scheduler steps it takes. The end-to-end
behaviour (outputs, resume) is in test_train.py, test_style_train.py and test_dcgan.py."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parents[2]


class _TinySeg(nn.Module):
    """A 1x1 convolution with the segmentation models' output contract (a dict with ``out``)."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.conv(x)}


def test_seg_train_one_epoch_returns_the_row_and_steps_once_per_batch():
    from segstyle.pipelines.train import Dist, poly_scheduler, train_one_epoch

    torch.manual_seed(0)
    model = _TinySeg()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = poly_scheduler(opt, total_iters=4)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    batches = [(torch.rand(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))) for _ in range(2)]
    cfg = SimpleNamespace(aux_weight=0.5, grad_clip=1.0)
    row = train_one_epoch(model, opt, sched, scaler, batches, torch.device("cpu"), 1, 2, cfg, use_amp=False,
                          channels_last=False, d=Dist(rank=1, world=1))  # rank 1: no progress bar
    assert list(row) == ["epoch", "train_loss", "lr"] and row["epoch"] == 2
    assert row["train_loss"] > 0 and row["train_loss"] == round(row["train_loss"], 6)
    assert sched.last_epoch == 2 and row["lr"] == opt.param_groups[0]["lr"] == 0.1 * (1 - 2 / 4) ** 0.9


def test_style_train_step_counts_steps_and_warms_up_the_lr():
    from segstyle.pipelines.config import load_params
    from segstyle.pipelines.style.train import setup_style_training, train_style_step

    cfg = load_params(REPO / "params.yaml", profile="demo").style
    t = setup_style_training(cfg, torch.rand(1, 3, 32, 32), seed=0, device="cpu", pretrained=False, loss_net=None)
    assert t.loss_net == "random" and t.step == 0 and t.warmup == int(cfg.warmup_steps) > 1
    for n in (1, 2):
        terms = train_style_step(t, torch.rand(2, 3, 32, 32), cfg.lr)
        assert t.step == n and math.isfinite(float(terms.total.detach()))
        assert t.opt.param_groups[0]["lr"] == cfg.lr * min(1.0, n / t.warmup)


def test_gan_train_one_epoch_returns_epoch_means_and_is_seeded():
    from tqdm.auto import tqdm

    from segstyle.pipelines.train_gan import COLUMNS, GanSettings, setup_gan, train_one_epoch

    s = GanSettings(epochs=1, batch_size=2, max_images=0, image_size=64, nz=8, ngf=4, ndf=4, lr=2e-4, beta1=0.5,
                    eval_samples=0)
    runs = []
    for _ in range(2):
        t = setup_gan(s, seed=3, device="cpu")
        batches = [torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(i)) * 2 - 1 for i in range(3)]
        with tqdm(total=3, disable=True) as bar:
            sums = train_one_epoch(t.g, t.d, t.opt_g, t.opt_d, nn.BCEWithLogitsLoss(), batches, s.nz, t.device,
                                   3, bar)
        runs.append(sums)
        for opt in (t.opt_d, t.opt_g):
            assert all(int(st["step"]) == 3 for st in opt.state.values())
    assert list(runs[0]) == list(COLUMNS[1:])
    assert 0 < runs[0]["d_real"] < 1 and 0 < runs[0]["d_fake"] < 1 and runs[0]["loss_d"] > 0
    assert runs[0] == runs[1]  # same seed, same batches: the same figures
