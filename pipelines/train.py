"""``segstyle train``: the torchvision segmentation reference recipe as a resumable, seeded stage.

- loss: cross-entropy ignoring 255, plus ``aux_weight`` x the auxiliary head's loss where the model has one
- optimiser: SGD (momentum, weight decay) or AdamW; LR decays per iteration as ``(1 - it/total)^0.9``
  (torchvision's "poly" schedule)
- CUDA only: AMP (float16 autocast + GradScaler) and channels_last; optional gradient-norm clipping
- per epoch: a row in ``metrics.csv`` (DVC plots it) and an atomic ``checkpoint.pt``; every
  ``train.val_every`` epochs and always after the last: validation on the whole val split (one
  confusion matrix, the row's ``val_*`` columns, empty otherwise) and ``loss.png`` / ``val.png``
- reproducible outputs: the same data, params and code give byte-identical ``checkpoint.pt``,
  ``metrics.csv`` and pictures where the computation is deterministic (CPU), so DVC's hashes (and its
  run cache) agree across machines and reruns. Wall-clock values would break that; epoch times go
  to ``epoch_times.json`` (one row per epoch, a ``cache: false`` plain output) and their total to
  ``timing.json`` (``seconds``, ``epochs``: the ``cache: false`` DVC metrics file, figures only).
- ``--resume`` restores model, optimiser, scheduler, scaler and epoch from ``checkpoint.pt``. The
  random streams need no saving: every epoch reseeds torch (and the loader's generator / the
  DistributedSampler) from ``(seed, epoch, rank)``, so epoch ``e`` draws the same crops and order
  whether or not the run was interrupted before it.
- multi-GPU: ``torchrun --nproc-per-node N -m segstyle.pipelines.cli train ...`` (env:// init; NCCL on CUDA, gloo on CPU),
  DistributedSampler for training, validation split across ranks and the confusion matrices summed.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from segstyle.pipelines.config import Params
from segstyle.models.classes import IGNORE_INDEX, label_map
from segstyle.core.errors import SegstyleError
from segstyle.pipelines.options import params_options

CSV_FIELDS = ("epoch", "train_loss", "lr", "val_pixel_acc", "val_mean_class_acc", "val_miou", "val_fwiou")
TIMING_FILE = "timing.json"  # DVC metrics: total wall seconds; never inside a cached output (module docstring)
EPOCH_TIMES_FILE = "epoch_times.json"  # plain output beside it: the per-epoch rows the total is summed from


def write_timing(path: Path, epoch: int, seconds: float) -> None:
    """Record epoch ``epoch``'s wall time, keeping earlier epochs (a resumed run adds to them).

    The rows go to ``epoch_times.json`` beside ``path`` (a list: not a figure DVC can tabulate), and
    ``path`` (``timing.json``, a DVC metrics file) gets the figures only: total ``seconds`` and the
    number of ``epochs`` timed. A resume re-reads the rows, drops epoch ``epoch`` and later (an
    interrupted epoch is run again) and sums afresh, so the total never counts an epoch twice.
    """
    import json

    from segstyle.core.io import write_dvc_metrics, write_json

    rows_path = path.with_name(EPOCH_TIMES_FILE)
    try:
        rows = [r for r in json.loads(rows_path.read_text()).get("epochs", []) if r.get("epoch", 0) < epoch]
    except (FileNotFoundError, ValueError, AttributeError):
        rows = []
    rows.append({"epoch": epoch, "seconds": round(seconds, 2)})
    write_json(rows_path, {"epochs": rows})
    write_dvc_metrics(path, {"seconds": round(sum(r["seconds"] for r in rows), 2), "epochs": len(rows)})


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1 (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=dist.get_rank(), world=dist.get_world_size())


def binary_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A one-logit foreground head: BCE over the labelled pixels (255 ignored) + soft Dice
    (segmentation_models_pytorch's ``DiceLoss``, binary mode, the same pixels). BCE alone lets a small
    foreground drown in background pixels; Dice scores the overlap itself."""
    from segmentation_models_pytorch.losses import DiceLoss

    x = logits[:, 0]
    valid = target != IGNORE_INDEX
    bce = F.binary_cross_entropy_with_logits(x[valid], target[valid].to(x.dtype)) if bool(valid.any()) \
        else x.sum() * 0.0
    dice = DiceLoss("binary", from_logits=True, ignore_index=IGNORE_INDEX)(logits, target.unsqueeze(1))
    return bce + dice


def head_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + Dice for a one-logit head (a two-label task, ``models.classes.output_channels``), else
    cross-entropy (255 ignored)."""
    if logits.shape[1] == 1:
        return binary_loss(logits, target)
    return F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)


def seg_loss(outputs: dict[str, torch.Tensor], target: torch.Tensor, aux_weight: float) -> torch.Tensor:
    """:func:`head_loss` on ``out`` plus ``aux_weight`` x the same on ``aux`` when present."""
    loss = head_loss(outputs["out"], target)
    if "aux" in outputs:
        loss = loss + aux_weight * head_loss(outputs["aux"], target)
    return loss


def train_step(model, images, targets, optimizer, scheduler, scaler, cfg, use_amp: bool) -> float:
    """One optimisation step; returns the loss. (Tests wrap this to interrupt training mid-epoch.)"""
    with torch.autocast(device_type=images.device.type, dtype=torch.float16, enabled=use_amp):
        loss = seg_loss(model(images), targets, cfg.aux_weight)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if cfg.grad_clip > 0:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return loss.item()


@torch.inference_mode()
def validate(model, dataset, num_classes: int, device, base_size: int | None, d: Dist, channels_last: bool):
    """Confusion matrix over the whole ``dataset`` (this rank's share, summed over ranks)."""
    from segstyle.core.metrics import ConfusionMatrix
    from segstyle.pipelines.predict import predict_logits

    model.eval()
    cm = ConfusionMatrix(num_classes, device)
    for i in range(d.rank, len(dataset), d.world):  # exact split: no padded duplicates
        image, mask = dataset[i]
        x = image[None].to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        cm.update(mask.to(device), label_map(predict_logits(model, x, base_size), 1)[0])
    cm.reduce_from_all_processes()
    return cm


def make_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def poly_scheduler(optimizer, total_iters: int) -> torch.optim.lr_scheduler.LambdaLR:
    total = max(1, total_iters)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: max(0.0, 1 - it / total) ** 0.9)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    return (seed * 1_000_003 + epoch * 1009 + rank) % 2**63


def write_metrics_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    from segstyle.core.io import write_text

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in CSV_FIELDS})  # val_* empty on epochs not validated
    write_text(path, buf.getvalue())


def plot_history(out: Path, rows: list[dict[str, Any]]) -> None:
    from segstyle.pipelines.visualize import plot_curves

    plot_curves(out / "loss.png", {"train loss": [r["train_loss"] for r in rows]}, title="training loss")
    val = [r for r in rows if "val_miou" in r]  # the validated epochs (train.val_every)
    plot_curves(out / "val.png", {"val mIoU": [r["val_miou"] for r in val],
                                  "val pixel acc": [r["val_pixel_acc"] for r in val]},
                x=[r["epoch"] for r in val], title="validation")


@dataclass
class Training:
    """What :func:`setup_training` builds (and restores on ``--resume``): the model, its optimiser
    state, the training loader with its seedable generator / sampler, and where the run starts."""

    model_name: str
    model_kwargs: dict[str, Any]
    model: nn.Module                # the bare model: validated and saved (never the DDP wrapper)
    net: nn.Module                  # what trains: ``model`` or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    loader: torch.utils.data.DataLoader
    loader_gen: torch.Generator     # reseeded every epoch (:func:`seed_epoch`)
    sampler: torch.utils.data.DistributedSampler | None
    val_ds: Any
    num_classes: int
    classes: list[str]
    device: torch.device
    d: Dist
    use_amp: bool
    channels_last: bool
    start_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def load_datasets(params: Params, dataset: str):
    """The train split (augmented) and the val split (eval transforms) of ``dataset``; the train split must not
    be empty."""
    from segstyle.pipelines.augment import eval_transforms, train_transforms
    from segstyle.pipelines.data.datasets import build_dataset

    root = params.data.root
    splits = params.data.splits[dataset]
    train_ds = build_dataset(dataset, root, splits.train, pets_mode=params.data.pets_mode, voc_mode=params.data.voc_mode,
                             transforms=train_transforms(params.augment))
    val_ds = build_dataset(dataset, root, splits.val, pets_mode=params.data.pets_mode, voc_mode=params.data.voc_mode, transforms=eval_transforms())
    if len(train_ds) == 0:
        raise SegstyleError(f"{dataset}: train split '{splits.train}' is empty")
    return train_ds, val_ds


def read_resume_checkpoint(ckpt_path: Path, model_name: str, dataset: str, num_classes: int,
                           d: Dist) -> dict[str, Any] | None:
    """``--resume``: the checkpoint at ``ckpt_path`` (refused when it is for another model, dataset or class
    count), or None, with a note, when there is none yet."""
    from segstyle.models.checkpoint import load_checkpoint

    if ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path, task="segmentation", model=model_name)
        if ckpt.get("dataset") != dataset or ckpt.get("num_classes") != num_classes:
            raise SegstyleError(
                f"{ckpt_path}: checkpoint is for {ckpt.get('dataset')} with {ckpt.get('num_classes')} classes, "
                f"cannot resume on {dataset} with {num_classes} classes")
        return ckpt
    if d.main:
        click.echo(f"no checkpoint at {ckpt_path}; starting from scratch", err=True)
    return None


def make_train_loader(train_ds, cfg, *, seed: int, d: Dist, pin_memory: bool, dataset: str):
    """The training DataLoader (full batches only; a DistributedSampler under DDP), its generator and sampler.

    The generator and sampler are returned so every epoch can reseed them (:func:`seed_epoch`)."""
    from segstyle.core.runtime import seed_worker

    world = d.world
    per_rank = len(train_ds) // world if world > 1 else len(train_ds)
    if per_rank < 1:
        raise SegstyleError(f"{dataset}: {len(train_ds)} training samples cannot feed {world} processes")
    batch_size = min(cfg.batch_size, per_rank)  # full batches only: BatchNorm needs > 1 sample
    loader_gen = torch.Generator()
    sampler = None
    if world > 1:
        sampler = torch.utils.data.DistributedSampler(train_ds, num_replicas=world, rank=d.rank, shuffle=True,
                                                      seed=seed, drop_last=True)
    loader = torch.utils.data.DataLoader(
        train_ds, batch_size=batch_size, shuffle=sampler is None, sampler=sampler, drop_last=True,
        num_workers=cfg.workers, worker_init_fn=seed_worker, generator=loader_gen,
        pin_memory=pin_memory, persistent_workers=False)
    return loader, loader_gen, sampler, batch_size


def restore_training(t: Training, ckpt: dict[str, Any], ckpt_path: Path, epochs: int) -> None:
    """Load model, optimiser, scheduler, scaler, epoch and history from a ``--resume`` checkpoint into ``t``;
    refuse a checkpoint trained for another number of epochs (the poly schedule depends on it)."""
    t.model.load_state_dict(ckpt["state_dict"])
    t.optimizer.load_state_dict(ckpt["optimizer"])
    t.scheduler.load_state_dict(ckpt["scheduler"])
    t.scaler.load_state_dict(ckpt["scaler"])
    t.start_epoch = int(ckpt["epoch"])  # (older checkpoints kept epoch times in their history: dropped)
    t.history = [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in ckpt.get("history", [])]
    if ckpt.get("total_epochs") != epochs:
        raise SegstyleError(f"{ckpt_path}: was trained for a {ckpt.get('total_epochs')}-epoch schedule; "
                            f"resume with --epochs {ckpt.get('total_epochs')} or start afresh without --resume")
    if t.d.main:
        click.echo(f"resuming {t.model_name} from epoch {t.start_epoch}/{epochs}", err=True)


def setup_training(params: Params, dataset: str, ckpt_path: Path, *, model_name: str, resume: bool,
                   device: torch.device, d: Dist) -> Training:
    """Seed, build the datasets, model (pretrained only on a fresh start), loader, optimiser, poly scheduler and
    AMP scaler; restore them from ``ckpt_path`` on ``resume``; wrap the model in DDP when distributed."""
    from segstyle.models import build_model
    from segstyle.models.classes import output_channels
    from segstyle.core.runtime import seed_everything

    cfg = params.train
    on_cuda = device.type == "cuda"
    use_amp = cfg.amp and on_cuda
    channels_last = cfg.channels_last and on_cuda

    seed_everything(params.seed)
    train_ds, val_ds = load_datasets(params, dataset)
    num_classes, classes = train_ds.num_classes, list(train_ds.classes)
    ckpt = read_resume_checkpoint(ckpt_path, model_name, dataset, num_classes, d) if resume else None

    model_kwargs = {"num_classes": output_channels(num_classes), "aux_loss": cfg.aux_loss}
    # Pretrained weights are only needed for a fresh start; a resumed run overwrites them anyway.
    model = build_model(model_name, **model_kwargs, pretrained=cfg.pretrained and ckpt is None).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    loader, loader_gen, sampler, batch_size = make_train_loader(train_ds, cfg, seed=params.seed, d=d,
                                                                 pin_memory=on_cuda, dataset=dataset)
    optimizer = make_optimizer(model, cfg)
    scheduler = poly_scheduler(optimizer, len(loader) * cfg.epochs)
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    t = Training(model_name=model_name, model_kwargs=model_kwargs, model=model, net=model, optimizer=optimizer,
                 scheduler=scheduler, scaler=scaler, loader=loader, loader_gen=loader_gen, sampler=sampler,
                 val_ds=val_ds, num_classes=num_classes, classes=classes, device=device, d=d, use_amp=use_amp,
                 channels_last=channels_last)
    if ckpt is not None:
        restore_training(t, ckpt, ckpt_path, cfg.epochs)

    if d.world > 1:
        t.net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if on_cuda else None)
        if d.main:
            click.echo(f"DDP: {d.world} processes ({dist.get_backend()}), {len(loader)} steps/epoch each, "
                       f"batch {batch_size} per process", err=True)
    return t


def seed_epoch(seed: int, epoch: int, t: Training) -> None:
    """Reseed torch (per rank), the loader's generator and the DistributedSampler from ``(seed, epoch)``: epoch
    ``epoch`` draws the same crops and order whether or not the run was interrupted before it."""
    torch.manual_seed(epoch_seed(seed, epoch, t.d.rank))
    t.loader_gen.manual_seed(epoch_seed(seed, epoch))
    if t.sampler is not None:
        t.sampler.set_epoch(epoch)


def train_one_epoch(net: nn.Module, optimizer, scheduler, scaler, loader, device: torch.device, epoch: int,
                    epochs: int, cfg, *, use_amp: bool, channels_last: bool, d: Dist) -> dict[str, Any]:
    """One pass over ``loader`` (``train_step`` per batch); returns the epoch's row: ``epoch`` (1-based), the
    mean ``train_loss`` over all ranks' steps and the ``lr`` after the last step."""
    from tqdm import tqdm

    net.train()
    total, steps = 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", disable=not d.main, leave=False)
    for images, targets in bar:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        loss = train_step(net, images, targets, optimizer, scheduler, scaler, cfg, use_amp)
        if not torch.isfinite(torch.tensor(loss)):
            raise SegstyleError(f"training diverged at epoch {epoch + 1} (loss {loss}); lower train.lr")
        total += loss
        steps += 1
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
    mean_loss = torch.tensor([total, float(steps)], dtype=torch.float64)
    if d.world > 1:
        dist.all_reduce(mean_loss)
    return {"epoch": epoch + 1, "train_loss": round(float(mean_loss[0] / max(1.0, float(mean_loss[1]))), 6),
            "lr": optimizer.param_groups[0]["lr"]}


def validate_epoch(model: nn.Module, val_ds, num_classes: int, device, base_size: int | None, d: Dist,
                   channels_last: bool) -> dict[str, float]:
    """The metrics row's ``val_*`` columns: :func:`validate` over the whole val split, rounded to 6 places."""
    m = validate(model, val_ds, num_classes, device, base_size, d, channels_last).compute()
    return {"val_pixel_acc": round(m["pixel_acc"], 6), "val_mean_class_acc": round(m["mean_class_acc"], 6),
            "val_miou": round(m["miou"], 6), "val_fwiou": round(m["fwiou"], 6)}


def save_epoch(out: Path, ckpt_path: Path, t: Training, *, dataset: str, cfg, provenance: dict[str, Any],
               validated: bool, epoch_s: float) -> None:
    """The main rank's per-epoch outputs, in this order: the atomic ``checkpoint.pt`` (everything ``--resume``
    needs), ``metrics.csv``, the curves when the epoch was validated, the epoch's wall time, and a log line."""
    from segstyle.models.checkpoint import save_checkpoint

    history = t.history
    row = history[-1]
    epoch, epochs = row["epoch"], cfg.epochs
    save_checkpoint(ckpt_path, {
        "model": t.model_name, "model_kwargs": t.model_kwargs, "state_dict": t.model.state_dict(),
        **provenance, "epoch": epoch, "total_epochs": epochs,
        "num_classes": t.num_classes, "classes": t.classes, "dataset": dataset, "pretrained": cfg.pretrained,
        "optimizer": t.optimizer.state_dict(), "scheduler": t.scheduler.state_dict(),
        "scaler": t.scaler.state_dict(), "history": history,
    })
    write_metrics_csv(out / "metrics.csv", history)
    if validated:  # matplotlib costs ~1 s a figure on the 2-core machine: only when there is news
        plot_history(out, history)
    write_timing(out / TIMING_FILE, epoch, epoch_s)
    val = f"  val mIoU {row['val_miou']:.4f}  pixel acc {row['val_pixel_acc']:.4f}" if validated else ""
    click.echo(f"epoch {epoch}/{epochs}: loss {row['train_loss']:.4f}{val}  ({epoch_s:.1f} s)", err=True)


def train(params: Params, dataset: str, out: Path, *, model_name: str | None = None, resume: bool = False,
          pretrained: bool | None = None, epochs: int | None = None, device: str | None = None,
          data_root: str | None = None) -> dict[str, Any]:
    """Train (or resume) and return the last epoch's metrics row. Outputs go to ``out``."""
    from segstyle.models import get_model_meta
    from segstyle.pipelines.config import apply_overrides
    from segstyle.core.provenance import training_record
    from segstyle.core.runtime import pick_device

    # CLI overrides applied once: this params object is what trains, is stored in the checkpoint and hashed
    params, overrides = apply_overrides(params, epochs=epochs, data_root=data_root, pretrained=pretrained,
                                        **({f"train.models.{dataset}": model_name} if model_name else {}))
    cfg = params.train
    model_name = cfg.models[dataset]
    meta = get_model_meta(model_name)
    if meta.task != "segmentation":
        raise SegstyleError(f"model '{model_name}' is a {meta.task} model, not a segmentation model")
    epochs = cfg.epochs
    dev = pick_device(device)
    d = init_distributed(dev)
    ckpt_path = out / "checkpoint.pt"
    t = setup_training(params, dataset, ckpt_path, model_name=model_name, resume=resume, device=dev, d=d)
    history = t.history

    provenance = training_record(params, overrides)  # params, params_digest, overrides, data_version, git_commit
    for epoch in range(t.start_epoch, epochs):
        t0 = time.perf_counter()
        seed_epoch(params.seed, epoch, t)
        row = train_one_epoch(t.net, t.optimizer, t.scheduler, t.scaler, t.loader, dev, epoch, epochs, cfg,
                              use_amp=t.use_amp, channels_last=t.channels_last, d=d)
        validated = (epoch + 1) % cfg.val_every == 0 or epoch + 1 == epochs
        if validated:
            row.update(validate_epoch(t.model, t.val_ds, t.num_classes, dev, params.augment.base_size, d,
                                      t.channels_last))
        history.append(row)
        epoch_s = time.perf_counter() - t0
        if d.main:
            save_epoch(out, ckpt_path, t, dataset=dataset, cfg=cfg, provenance=provenance, validated=validated,
                       epoch_s=epoch_s)
        if d.world > 1:
            dist.barrier()
    if d.main and history and t.start_epoch >= epochs:
        write_metrics_csv(out / "metrics.csv", history)
        plot_history(out, history)
        click.echo(f"{ckpt_path} already holds all {epochs} epochs", err=True)
    if d.world > 1:
        dist.destroy_process_group()
    return history[-1] if history else {}


@click.command()
@click.option("--dataset", type=click.Choice(["voc", "pets"]), required=True)
@click.option("--model", "model_name", default=None, help="Registry name (default: params train.models[dataset]).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory [default: artifacts/train/<dataset>].")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt.")
@click.option("--pretrained/--no-pretrained", default=None,
              help="ImageNet/torchvision weights (default: params train.pretrained); offline, use --no-pretrained.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override params train.epochs.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if available).")
@click.option("--data-root", default=None, help="Data root (default: params data.root).")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True, envvar="SEGSTYLE_NPROC",
              help="DDP processes on this node: relaunches itself through torchrun (env SEGSTYLE_NPROC).")
@params_options
def cli(params: Params, dataset: str, model_name: str | None, out: Path | None, resume: bool,
        pretrained: bool | None, epochs: int | None, device: str | None, data_root: str | None, nproc: int) -> None:
    """Train a segmentation model; writes OUT/{checkpoint.pt, metrics.csv, loss.png, val.png}."""
    if nproc > 1 and "LOCAL_RANK" not in os.environ:
        _relaunch_with_torchrun(click.get_current_context(), nproc)
        return
    out = out or Path("artifacts/train") / dataset
    row = train(params, dataset, out, model_name=model_name, resume=resume, pretrained=pretrained, epochs=epochs,
                device=device, data_root=data_root)
    if row and int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"final: val mIoU {row['val_miou']:.4f}, pixel acc {row['val_pixel_acc']:.4f} -> {out}")


def _relaunch_with_torchrun(ctx: click.Context, nproc: int) -> None:
    """Run this same command as ``nproc`` DDP workers (``torch.distributed.run --standalone``).

    The workers see ``LOCAL_RANK`` and train; the arguments are rebuilt from the parsed options so
    the relaunch is exactly the command the user typed, minus ``--nproc``.
    """
    argv: list[str] = []
    for opt in ctx.command.params:
        value = ctx.params.get(opt.name)
        if not isinstance(opt, click.Option) or opt.name == "nproc" or value is None:
            continue
        if opt.is_flag:
            if opt.secondary_opts:
                argv.append(opt.opts[0] if value else opt.secondary_opts[0])
            elif value:
                argv.append(opt.opts[0])
        else:
            argv += [opt.opts[0], str(value)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "segstyle.pipelines.cli", "train", *argv]
    env = {k: v for k, v in os.environ.items() if k != "SEGSTYLE_NPROC"}
    code = subprocess.run(cmd, env=env).returncode
    if code:
        raise SegstyleError(f"DDP training with {nproc} processes failed (exit code {code}); see the log above")
