"""``segstyle train-gan``: train the DCGAN (``dcgan_generator`` + ``dcgan_discriminator``) on 64x64 crops.

Recipe of Radford et al. 2015 (and pytorch/examples ``dcgan``): images scaled to -1..1, Adam with
lr 2e-4 and beta1 0.5 for both networks, the non-saturating generator loss (the generator
maximises log D(G(z)) rather than minimising log(1 - D(G(z))), which vanishes early on), one
discriminator and one generator step per batch. Hyper-parameters come from params ``gan``
(full: the paper's recipe, widths and batch 128; demo: 74 images, where that recipe stalls, so it
adds one-sided label smoothing ``real_label``, annealed instance noise ``instance_noise``, a
narrower discriminator and a higher lr, about a CPU minute).

Data: the Pet images of ``--dataset pets`` (or VOC's ``--dataset voc``) under ``data.root``, the
short side resized to ``image_size`` then a random ``image_size`` crop and a horizontal flip.

Outputs in ``--out`` (default ``artifacts/gan``):

- ``checkpoint.pt``: generator (the registry ``model`` of the checkpoint, so export, bundle and
  validation load it like any network) plus discriminator, both optimizers, RNG state, history
  and the fixed noise batch; written atomically after each epoch, so ``--resume`` continues.
- ``samples/epoch_NNN.png``: the generator's images for the *same* fixed noise batch after each
  epoch (progress is visible because only the weights change between grids).
- ``metrics.csv`` / ``loss.png``: discriminator and generator loss, D(x) and D(G(z)) per epoch.
- ``record.json`` (``cache: false`` in dvc.yaml, a plain output): the summary, the run time and the
  evaluation of :func:`evaluate_generator` (see there for what it measures and what it does not),
  with its labels (dataset, device, feature space).
- ``metrics.json`` (``cache: false``, the DVC metrics file): that record's figures only
  (:func:`metrics_view`).
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from segstyle.core.errors import SegstyleError
from segstyle.pipelines.options import params_options

COLUMNS = ("epoch", "loss_d", "loss_g", "d_real", "d_fake")
SAMPLE_GRID = 64          # fixed-noise images per sample grid (8 x 8)


@dataclass(frozen=True)
class GanSettings:
    """The ``gan.<profile>`` block of params.yaml (see there for the values and why)."""

    epochs: int
    batch_size: int
    max_images: int            # 0: all training images
    image_size: int            # 64: the architecture's size
    nz: int                    # noise size
    ngf: int                   # generator width (paper: 64)
    ndf: int                   # discriminator width (paper: 64)
    lr: float                  # paper: 2e-4
    beta1: float               # paper: 0.5
    eval_samples: int          # images per side for the KID evaluation; 0 skips it
    real_label: float = 1.0    # discriminator target for real images (paper 1.0; < 1: one-sided label smoothing)
    instance_noise: float = 0.0  # std of Gaussian noise on D's inputs, annealed linearly to 0 (paper: 0)

    @classmethod
    def from_params(cls, params) -> "GanSettings":
        cfg = getattr(params, "gan", None)
        if cfg is None:
            raise SegstyleError("params.yaml has no `gan` section for this profile (see README, DCGAN)")
        return cls(**{k: getattr(cfg, k) for k in cls.__dataclass_fields__})


class Crops(torch.utils.data.Dataset):
    """Random (train) ``size`` x ``size`` crops of image files, as float -1..1 (3, size, size)."""

    def __init__(self, files: list[Path], size: int):
        from torchvision.transforms import v2

        self.files = files
        self.tf = v2.Compose([v2.Resize(size, antialias=True), v2.RandomCrop(size), v2.RandomHorizontalFlip(),
                              v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.5] * 3)])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        from torchvision import tv_tensors

        from segstyle.core.io import read_image

        rgb = read_image(self.files[i])
        return self.tf(tv_tensors.Image(torch.from_numpy(rgb).permute(2, 0, 1)))


def image_files(params, dataset: str, max_images: int) -> list[Path]:
    """The dataset's training-split images (a seeded subset of ``max_images`` when set)."""
    from segstyle.pipelines.data.datasets import build_dataset
    from segstyle.pipelines.style.images import select_content

    ds = build_dataset(dataset, params.data.root, params.data.splits[dataset].train, pets_mode=params.data.pets_mode, voc_mode=params.data.voc_mode)
    files = [ds.image_path(i) for i in range(len(ds))]
    return select_content(files, max_images, params.seed)


def to_pixels(y: torch.Tensor) -> np.ndarray:
    """(3, H, W) in -1..1 -> (H, W, 3) uint8."""
    return ((y.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def save_sample_grid(dest: Path, g: nn.Module, noise: torch.Tensor, title: str) -> None:
    from segstyle.pipelines.visualize import label, save_grid

    was = g.training
    g.eval()
    with torch.inference_mode():
        imgs = [to_pixels(y) for y in g(noise)]
    g.train(was)
    n = int(np.ceil(np.sqrt(len(imgs))))
    rows = [imgs[i:i + n] for i in range(0, len(imgs), n)]
    rows[0][0] = label(rows[0][0], title)
    save_grid(dest, rows, cell=64, pad=1)


def write_history(out: Path, history: list[dict]) -> None:
    from segstyle.core.io import write_text
    from segstyle.pipelines.visualize import plot_curves

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in history:
        w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in COLUMNS})
    write_text(out / "metrics.csv", buf.getvalue())
    plot_curves(out / "loss.png", {k: [r[k] for r in history] for k in ("loss_d", "loss_g", "d_real", "d_fake")},
                xlabel="epoch", title="DCGAN: losses and mean D(x), D(G(z))")


class RandomFeatures(nn.Module):
    """Image -> feature vector for KID without downloaded weights: per-channel mean and std of a
    random multi-scale filter bank (:class:`segstyle.models.random_features.RandomFilterBanks`,
    its own seed). Takes uint8 (N, 3, H, W) like torchmetrics' Inception extractor."""

    def __init__(self):
        super().__init__()
        from segstyle.models.random_features import RandomFilterBanks

        self.bank = RandomFilterBanks(((3, 1), (5, 1), (5, 2), (5, 4)), filters=64, seed=64_2015)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        feats = self.bank(x)
        return torch.cat([torch.cat([f.mean(dim=(2, 3)), f.std(dim=(2, 3))], 1) for f in feats.values()], 1)


@torch.inference_mode()
def evaluate_generator(g: nn.Module, real: torch.utils.data.Dataset, n: int, nz: int, seed: int,
                       device: torch.device) -> dict:
    """KID (Binkowski et al. 2018, torchmetrics) between ``n`` generated and ``n`` real crops, in the
    feature space of :class:`RandomFeatures` - NOT Inception: FID/KID with torch-fidelity's
    Inception weights need a download this machine cannot make, so the number is comparable only
    between runs of this project (lower = closer to the real images). Also the same KID of an
    untrained generator with the same seed, as the reference the trained one should beat."""
    try:
        from torchmetrics.image.kid import KernelInceptionDistance
    except ImportError:  # a dev extra today; the pipeline installs it (see pyproject)
        return {"skipped": "torchmetrics is not installed (pip install torchmetrics)"}

    from segstyle.models import build_model

    n = min(n, len(real))
    gen = torch.Generator().manual_seed(seed + 1)
    reals = torch.stack([real[i] for i in torch.randperm(len(real), generator=gen)[:n].tolist()])
    noise = torch.randn(n, nz, generator=gen)

    def kid_of(net: nn.Module) -> tuple[float, float]:
        kid = KernelInceptionDistance(feature=RandomFeatures(), subset_size=min(50, n), subsets=20)
        kid.update(((reals + 1) * 127.5).round().byte(), real=True)
        net.eval()
        fakes = torch.cat([net(noise[i:i + 64].to(device)).cpu() for i in range(0, n, 64)])
        kid.update(((fakes.clamp(-1, 1) + 1) * 127.5).round().byte(), real=False)
        m, s = kid.compute()
        return float(m), float(s)

    torch.manual_seed(seed)
    untrained = build_model("dcgan_generator", nz=nz, ngf=g.net[0].out_channels // 8).to(device)
    kid, kid_std = kid_of(g)
    kid0, _ = kid_of(untrained)
    g.train()
    return {"kid_random_features": kid, "kid_random_features_std": kid_std, "kid_untrained_generator": kid0,
            "samples": n, "feature_space": "random multi-scale filter bank (seed 642015), not Inception"}


def metrics_view(summary: dict) -> dict:
    """The figures of a training summary that ``dvc metrics show/diff`` tracks: final losses, training
    seconds and the two KIDs. Labels (dataset, device, the feature-space string), counts of the
    configuration and D(x)/D(G(z)) (plotted per epoch in metrics.csv) stay in ``record.json``: one
    metrics table is shared by every stage, so each figure here is a column there. The KID keys keep
    their names, so the column says ``kid_random_features`` (not Inception)."""
    out = {"loss_d": summary["loss_d"], "loss_g": summary["loss_g"], "seconds": summary["seconds_train"]}
    ev = summary.get("evaluation")
    if ev:
        out["evaluation"] = {k: ev[k] for k in ("kid_random_features", "kid_untrained_generator")}
    return out


@dataclass
class GanTraining:
    """What :func:`setup_gan` builds (and :func:`resume_gan` restores): both networks and their optimizers, the
    fixed noise batch of the sample grids, and how far the run is (epoch to start at, the per-epoch history)."""

    g: nn.Module
    d: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    fixed_noise: torch.Tensor
    device: torch.device
    start: int = 0
    history: list[dict] = field(default_factory=list)


def setup_gan(s: GanSettings, *, seed: int, device: str | None) -> GanTraining:
    """Seed, then build generator and discriminator, their Adam optimizers (the paper's lr and beta1) and the
    fixed noise batch (its own generator, seeded from ``seed``)."""
    from segstyle.models import build_model
    from segstyle.core.runtime import pick_device, seed_everything

    seed_everything(seed)
    dev = pick_device(device)
    g = build_model("dcgan_generator", nz=s.nz, ngf=s.ngf).to(dev).train()
    d = build_model("dcgan_discriminator", ndf=s.ndf).to(dev).train()
    opt_g = torch.optim.Adam(g.parameters(), lr=s.lr, betas=(s.beta1, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=s.lr, betas=(s.beta1, 0.999))
    fixed_noise = torch.randn(SAMPLE_GRID, s.nz, generator=torch.Generator().manual_seed(seed))
    return GanTraining(g=g, d=d, opt_g=opt_g, opt_d=opt_d, fixed_noise=fixed_noise, device=dev)


def resume_gan(t: GanTraining, out: Path, *, resume: bool) -> None:
    """On ``resume`` with a checkpoint in ``out``: restore both networks, both optimizers, torch's RNG, the
    epoch, history and fixed noise into ``t``; without one, a note and a fresh start."""
    from segstyle.models.checkpoint import load_checkpoint

    ckpt_path = out / "checkpoint.pt"
    if resume and ckpt_path.is_file():
        ck = load_checkpoint(ckpt_path, model="dcgan_generator")
        t.g.load_state_dict(ck["state_dict"])
        t.d.load_state_dict(ck["discriminator"])
        t.opt_g.load_state_dict(ck["optimizer_g"])
        t.opt_d.load_state_dict(ck["optimizer_d"])
        torch.set_rng_state(ck["rng"])
        t.start, t.history, t.fixed_noise = ck["epoch"], list(ck["history"]), ck["fixed_noise"]
        click.echo(f"resuming from {ckpt_path} at epoch {t.start}", err=True)
    elif resume:
        click.echo(f"no checkpoint in {out}; starting fresh", err=True)


def noise_std(s: "GanSettings", step: int, total: int) -> float:
    """Instance noise (Sonderby et al. 2016, Arjovsky & Bottou 2017): the std of the Gaussian noise added to
    every discriminator input at ``step`` of ``total``, linear from ``s.instance_noise`` to 0. On a few dozen
    images the discriminator otherwise separates real from fake within an epoch or two and the generator's
    gradient vanishes; blurring both distributions keeps them overlapping while the generator catches up."""
    return s.instance_noise * max(0.0, 1.0 - step / max(1, total))


def train_one_epoch(g: nn.Module, d: nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                    criterion: nn.Module, loader, nz: int, device: torch.device, steps: int, bar, *,
                    real_label: float = 1.0, sigma=lambda i: 0.0) -> dict:
    """One discriminator and one generator step per batch; returns the epoch's means (over ``steps`` batches)
    of ``loss_d``, ``loss_g``, ``d_real`` (D(x)) and ``d_fake`` (D(G(z)) at the discriminator step).
    ``real_label`` < 1 is one-sided label smoothing (the real target only; smoothing the fake target
    would reward the generator for staying where it is); ``sigma(i)`` is the instance-noise std at batch i."""
    sums = dict.fromkeys(COLUMNS[1:], 0.0)
    for i, real in enumerate(loader):
        real = real.to(device)
        b = real.shape[0]
        fake = g(torch.randn(b, nz, device=device))
        std = float(sigma(i))
        blur = (lambda x: x + std * torch.randn_like(x)) if std > 0 else (lambda x: x)
        # discriminator: real -> real_label, fake -> 0 (fake detached: this step must not move G)
        out_real, out_fake = d(blur(real)), d(blur(fake.detach()))
        loss_d = (criterion(out_real, torch.full_like(out_real, real_label))
                  + criterion(out_fake, torch.zeros_like(out_fake)))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        # generator: non-saturating loss, D(G(z)) -> 1
        out_gen = d(blur(fake))
        loss_g = criterion(out_gen, torch.ones_like(out_gen))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        for k, v in (("loss_d", loss_d), ("loss_g", loss_g), ("d_real", torch.sigmoid(out_real).mean()),
                     ("d_fake", torch.sigmoid(out_fake).mean())):
            sums[k] += float(v.detach()) / steps
        bar.update(1)
        bar.set_postfix(loss_d=f"{float(loss_d):.3f}", loss_g=f"{float(loss_g):.3f}")
    return sums


def save_gan_epoch(out: Path, t: GanTraining, s: GanSettings, params, *, dataset: str) -> None:
    """After each epoch (the last ``t.history`` row): the fixed-noise sample grid, the atomic ``checkpoint.pt``
    (everything ``--resume`` needs, torch's RNG included), then ``metrics.csv`` and ``loss.png``."""
    from segstyle.models.checkpoint import save_checkpoint
    from segstyle.core.provenance import data_version, git_commit

    epoch = t.history[-1]["epoch"]
    save_sample_grid(out / "samples" / f"epoch_{epoch:03d}.png", t.g, t.fixed_noise.to(t.device), f"epoch {epoch}")
    save_checkpoint(out / "checkpoint.pt", {
        "model": "dcgan_generator", "model_kwargs": {"nz": s.nz, "ngf": s.ngf}, "state_dict": t.g.state_dict(),
        "discriminator": t.d.state_dict(), "discriminator_kwargs": {"ndf": s.ndf},
        "optimizer_g": t.opt_g.state_dict(), "optimizer_d": t.opt_d.state_dict(), "rng": torch.get_rng_state(),
        "epoch": epoch, "history": t.history, "fixed_noise": t.fixed_noise, "dataset": dataset,
        "params": params.to_dict(), "data_version": data_version(), "git_commit": git_commit(),
    })
    write_history(out, t.history)


def finish_gan(out: Path, t: GanTraining, s: GanSettings, data: Crops, *, dataset: str, images: int, seed: int,
               t0: float) -> dict:
    """The summary (returned): last epoch's figures, training time and, with ``gan.eval_samples``, the
    :func:`evaluate_generator` evaluation; written to ``record.json`` and its figures to ``metrics.json``."""
    from segstyle.core.io import write_dvc_metrics, write_json

    summary = {"epochs": s.epochs, "images": images, "dataset": dataset, **{k: t.history[-1][k] for k in COLUMNS[1:]},
               "seconds_train": round(time.perf_counter() - t0, 2), "device": str(t.device)}
    if s.eval_samples:
        t1 = time.perf_counter()
        summary["evaluation"] = evaluate_generator(t.g, data, s.eval_samples, s.nz, seed, t.device)
        summary["seconds_eval"] = round(time.perf_counter() - t1, 2)
    write_json(out / "record.json", summary)
    write_dvc_metrics(out / "metrics.json", metrics_view(summary))
    return summary


def train_gan(params, settings: GanSettings, *, dataset: str, out: Path, resume: bool = False,
              device: str | None = None, progress: bool = True) -> dict:
    """Train (or resume) the DCGAN and write the outputs of the module docstring; returns the summary."""
    s = settings
    if s.image_size != 64:
        raise SegstyleError(f"the DCGAN is built for 64x64 images; gan.image_size is {s.image_size}")
    files = image_files(params, dataset, s.max_images)
    if len(files) < s.batch_size:
        raise SegstyleError(f"{dataset}: {len(files)} training image(s); need at least gan.batch_size={s.batch_size}")
    t = setup_gan(s, seed=params.seed, device=device)
    bce = nn.BCEWithLogitsLoss()
    resume_gan(t, out, resume=resume)

    data = Crops(files, s.image_size)
    t0 = time.perf_counter()
    steps = len(data) // s.batch_size
    bar = tqdm(total=s.epochs * steps, initial=t.start * steps, desc="train-gan", unit="step", disable=not progress,
               dynamic_ncols=True)
    for epoch in range(t.start, s.epochs):
        loader = torch.utils.data.DataLoader(data, batch_size=s.batch_size, shuffle=True, drop_last=True,
                                             generator=torch.Generator().manual_seed(params.seed + epoch))
        sums = train_one_epoch(t.g, t.d, t.opt_g, t.opt_d, bce, loader, s.nz, t.device, steps, bar,
                               real_label=s.real_label, sigma=lambda i, e=epoch: noise_std(s, e * steps + i, s.epochs * steps))
        t.history.append({"epoch": epoch + 1, **sums})
        save_gan_epoch(out, t, s, params, dataset=dataset)
    bar.close()
    if not t.history:
        raise SegstyleError("no training epoch was run (check gan.epochs)")
    return finish_gan(out, t, s, data, dataset=dataset, images=len(files), seed=params.seed, t0=t0)


@click.command("train-gan")
@click.option("--dataset", type=click.Choice(["pets", "voc"]), default="pets", show_default=True,
              help="Whose training images the GAN learns (64x64 crops).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("artifacts/gan"),
              show_default=True,
              help="Output directory (checkpoint.pt, samples/, metrics.csv, loss.png, record.json, metrics.json).")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override gan.epochs.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if available).")
@params_options
def cli(dataset: str, out: Path, resume: bool, epochs: int | None, device: str | None, params) -> None:
    """Train the DCGAN generator/discriminator pair on 64x64 crops of a dataset's images."""
    from dataclasses import replace

    settings = GanSettings.from_params(params)
    if epochs is not None:
        settings = replace(settings, epochs=epochs)
    s = train_gan(params, settings, dataset=dataset, out=out, resume=resume, device=device)
    ev = s.get("evaluation")
    kid = (f"; KID (random features, not Inception) {ev['kid_random_features']:.4f} vs untrained "
           f"{ev['kid_untrained_generator']:.4f}") if ev else ""
    click.echo(f"DCGAN {s['epochs']} epochs on {s['images']} {dataset} images: loss_d {s['loss_d']:.3f}, "
               f"loss_g {s['loss_g']:.3f}{kid}; wrote {out}/checkpoint.pt")
