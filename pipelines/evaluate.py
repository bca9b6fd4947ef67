"""``segstyle evaluate``: one confusion matrix over a whole split, the metrics people compare, overlays.

Writes ``OUT/record.json`` (the whole result: pixel accuracy, mean class accuracy, mIoU,
frequency-weighted IoU, per-class IoU, pet IoU for Pets, foreground IoU, Dice and boundary F-score
(:class:`~segstyle.core.metrics.BoundaryF`) for a two-label task, the majority-class baseline so every number
has a floor to beat, and the provenance: checkpoint, model, split, git commit, data versions),
``OUT/metrics.json`` (the DVC metrics file: the headline figures of that record only, see
:func:`metrics_view`), ``OUT/per_class_iou.csv`` (a DVC bar plot) and ``OUT/overlays/*.png`` (image |
ground truth | prediction in VOC colours). Prediction runs at the training scale (short side = the checkpoint's
``augment.base_size``) and is scored at the original resolution against the untouched masks.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from segstyle.models.classes import label_map
from segstyle.pipelines.config import Params
from segstyle.core.errors import SegstyleError
from segstyle.pipelines.options import params_options


def majority_class(dataset) -> tuple[int, np.ndarray]:
    """The most frequent class over the labelled pixels of ``dataset``'s masks (and all counts)."""
    counts = np.zeros(dataset.num_classes, dtype=np.int64)
    for i in range(len(dataset)):
        m = dataset.map_mask(dataset.read_raw_mask(i)).ravel()
        counts += np.bincount(m[m < dataset.num_classes], minlength=dataset.num_classes)
    return int(counts.argmax()), counts


def _clean(x: Any) -> Any:
    """NaN -> None so record.json is strict JSON (classes absent from GT and prediction)."""
    if isinstance(x, float):
        return None if math.isnan(x) else round(x, 6)
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


RECORD_FILE = "record.json"  # plain output (cache: false): everything, provenance included
METRICS_FILE = "metrics.json"  # DVC metrics: figures only
FIGURES = ("miou", "pixel_acc", "mean_class_acc", "fwiou", "pet_iou", "foreground_iou", "dice", "boundary_f", "samples")
BASELINE_FIGURES = ("miou", "pixel_acc", "pet_iou", "foreground_iou", "dice", "boundary_f")


def metrics_view(result: dict[str, Any]) -> dict[str, Any]:
    """The figures of an evaluation record that ``dvc metrics show/diff`` tracks.

    Why not the record itself: DVC prints one table over every metrics file's keys, so the record's
    strings (model, checkpoint, commit, data version, split, majority class) and its per-class IoU
    (21 columns for VOC; the per-class figures are the ``per_class_iou.csv`` plot already) would each
    become columns. Figures that are undefined (None in the record) are left out.
    """
    out = {k: result[k] for k in FIGURES if result.get(k) is not None}
    base = {k: result["baseline"][k] for k in BASELINE_FIGURES if result["baseline"].get(k) is not None}
    if base:
        out["baseline"] = base
    return out


def check_compatible(ckpt: dict, dataset: str, num_classes: int, path: Path) -> None:
    n = ckpt.get("num_classes", ckpt["model_kwargs"].get("num_classes"))
    if n != num_classes:
        raise SegstyleError(f"{path}: checkpoint predicts {n} classes but {dataset} has {num_classes}")
    if ckpt.get("dataset") not in (None, dataset):
        raise SegstyleError(f"{path}: checkpoint was trained on {ckpt['dataset']}, not {dataset}")


@torch.inference_mode()
def evaluate(params: Params, dataset: str, checkpoint: Path, out: Path, *, split: str | None = None,
             device: str | None = None, data_root: str | None = None) -> dict[str, Any]:
    from tqdm import tqdm

    from segstyle.pipelines.augment import eval_transforms
    from segstyle.pipelines.data.datasets import build_dataset
    from segstyle.pipelines.data.palette import colorize
    from segstyle.core.io import atomic_dir, write_dvc_metrics, write_json, write_text
    from segstyle.core.metrics import (BoundaryF, ConfusionMatrix, binary_dice, binary_iou, majority_matrix,
                                       metrics_from_confusion)
    from segstyle.pipelines.predict import base_size_of, load_for_inference, predict_logits
    from segstyle.core.provenance import data_version, git_commit
    from segstyle.core.runtime import pick_device
    from segstyle.pipelines.visualize import grid, overlay

    root = data_root or params.data.root
    splits = params.data.splits[dataset]
    split = split or splits.val
    ds = build_dataset(dataset, root, split, pets_mode=params.data.pets_mode, voc_mode=params.data.voc_mode, transforms=eval_transforms())
    if len(ds) == 0:
        raise SegstyleError(f"{dataset}: split '{split}' is empty")
    dev = pick_device(device)
    model, ckpt = load_for_inference(checkpoint, dev)
    check_compatible(ckpt, dataset, ds.num_classes, Path(checkpoint))
    base_size = base_size_of(ckpt)

    n_overlays = min(params.evaluate.overlays, len(ds))
    show = set(np.linspace(0, len(ds) - 1, n_overlays).round().astype(int).tolist()) if n_overlays else set()
    cm = ConfusionMatrix(ds.num_classes, dev)
    train_ds = build_dataset(dataset, root, splits.train, pets_mode=params.data.pets_mode, voc_mode=params.data.voc_mode)
    major, _ = majority_class(train_ds)
    binary = ds.num_classes == 2  # a foreground task (pets binary, voc person): label 1 against 0
    bf, bf_base = BoundaryF(1), BoundaryF(1)
    tiles: dict[int, list[np.ndarray]] = {}
    for i in tqdm(range(len(ds)), desc=f"evaluate {dataset}/{split}", unit="img"):
        image, mask = ds[i]
        pred = label_map(predict_logits(model, image[None].to(dev), base_size), 1)[0]
        cm.update(mask.to(dev), pred)
        if binary:
            bf.update(mask, pred)
            bf_base.update(mask, torch.full_like(mask, major))
        if i in show:
            rgb = (image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
            gt, pr = mask.to(torch.uint8).numpy(), pred.to(torch.uint8).cpu().numpy()
            tiles[i] = [rgb, colorize(gt), colorize(pr), overlay(rgb, pr)]

    m = cm.compute()
    base_mat = majority_matrix(cm.mat, major)
    base = metrics_from_confusion(base_mat)
    classes = list(ds.classes)
    result: dict[str, Any] = {
        "dataset": dataset, "split": split, "samples": len(ds), "model": ckpt["model"],
        "checkpoint": str(checkpoint), "checkpoint_epoch": ckpt.get("epoch"),
        "pixel_acc": m["pixel_acc"], "mean_class_acc": m["mean_class_acc"], "miou": m["miou"], "fwiou": m["fwiou"],
        "per_class_iou": dict(zip(classes, m["iou"])),
        "baseline": {"majority_class": classes[major], "pixel_acc": base["pixel_acc"], "miou": base["miou"],
                     "fwiou": base["fwiou"]},
        "data_version": data_version(), "git_commit": git_commit(), "train_data_version": ckpt.get("data_version"),
    }
    if dataset == "pets":
        # Foreground = pet (+ border in trimap mode: the border is the pet's outline).
        fg = [classes.index(c) for c in ("pet", "border") if c in classes]
        result["pet_iou"] = binary_iou(cm.mat, fg)
        result["baseline"]["pet_iou"] = binary_iou(base_mat, fg)
    if binary:
        result["foreground"] = classes[1]
        result["foreground_iou"], result["dice"] = binary_iou(cm.mat, [1]), binary_dice(cm.mat, [1])
        result.update(bf.compute())
        result["boundary_tolerance"] = "ceil(0.008 x image diagonal) px (DAVIS)"
        result["baseline"]["foreground_iou"] = binary_iou(base_mat, [1])
        result["baseline"]["dice"] = binary_dice(base_mat, [1])
        result["baseline"]["boundary_f"] = bf_base.compute()["boundary_f"]
    result = _clean(result)

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["class", "iou", "gt_pixels"])
    gt_pixels = cm.mat.sum(1).tolist()
    for name, iou, px in zip(classes, m["iou"], gt_pixels):
        if not math.isnan(iou):
            w.writerow([name, f"{iou:.6f}", px])
    with atomic_dir(out / "overlays") as tmp:
        from segstyle.core.io import write_image

        for i, row in sorted(tiles.items()):
            write_image(tmp / f"{i:04d}_{ds.ids[i]}.png",
                        grid([row], cell=256, titles=["image", "ground truth", "prediction", "overlay"]))
    write_text(out / "per_class_iou.csv", buf.getvalue())
    write_json(out / RECORD_FILE, result)
    write_dvc_metrics(out / METRICS_FILE, metrics_view(result))
    return result


@click.command()
@click.option("--dataset", type=click.Choice(["voc", "pets"]), required=True)
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="[default: artifacts/train/<dataset>/checkpoint.pt]")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="[default: artifacts/eval/<dataset>]")
@click.option("--split", default=None, help="Split name (default: params data.splits[dataset].val).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if available).")
@click.option("--data-root", default=None, help="Data root (default: params data.root).")
@params_options
def cli(params: Params, dataset: str, checkpoint: Path | None, out: Path | None, split: str | None,
        device: str | None, data_root: str | None) -> None:
    """Evaluate a checkpoint: OUT/record.json, OUT/metrics.json (figures), OUT/per_class_iou.csv, OUT/overlays/*.png."""
    checkpoint = checkpoint or Path("artifacts/train") / dataset / "checkpoint.pt"
    out = out or Path("artifacts/eval") / dataset
    r = evaluate(params, dataset, checkpoint, out, split=split, device=device, data_root=data_root)
    b = r["baseline"]
    click.echo(f"{dataset}/{r['split']}: mIoU {r['miou']:.4f}  pixel acc {r['pixel_acc']:.4f}  "
               f"(majority '{b['majority_class']}': mIoU {b['miou']:.4f}, pixel acc {b['pixel_acc']:.4f}) -> {out}")
    if "foreground_iou" in r:
        click.echo(f"{r['foreground']}: IoU {r['foreground_iou']:.4f}  Dice {r['dice']:.4f}  boundary F "
                   f"{r['boundary_f']:.4f}  (majority: IoU {b['foreground_iou']:.4f}, boundary F {b['boundary_f']:.4f})")
