"""``segstyle inpaint``: remove objects from photos with OpenCV inpainting.

The segmentation network predicts the pixels of the named classes (``--classes person,dog``; names
from the checkpoint), the mask is dilated (``--dilate``, px) to cover the object's outline, and
``cv2.inpaint`` fills the hole from its border:

- ``telea``: Telea 2004, fast marching: each hole pixel is a weighted average of known pixels
  within ``--radius``, filled from the border inward. Smooth, quick.
- ``ns``: Bertalmio et al. 2001, Navier-Stokes: propagates isophotes (lines of equal brightness)
  into the hole, so straight edges tend to continue.

- ``gan``: Yeh et al. 2017, semantic inpainting with the trained DCGAN (``--gan-checkpoint``): a
  latent search for the generated image that best matches the hole's surroundings, Poisson-blended
  in; it can invent what the border does not show (see :mod:`segstyle.pipelines.edit.gan_inpaint`:
  64x64 windows, one per hole; ``--steps``, ``--restarts``, ``--seed``).

``--method both`` writes Telea and NS plus a side-by-side picture (input | mask | Telea |
Navier-Stokes); ``--method all`` adds the DCGAN (input | mask | Telea | Navier-Stokes | DCGAN).
``--mask PNG`` uses a given mask instead of the network (non-zero = remove; same size as every
image); ``--known-hole FRAC`` cuts a centred square instead and scores every fill against the
pixels that were there (:mod:`segstyle.pipelines.edit.known_hole`: ``scores.json`` and
``metrics.json`` in the output folder). Outputs are PNG (lossless, so only the hole changes) with
exactly the input's size: ``<stem>_telea.png``, ``<stem>_ns.png``, ``<stem>_gan.png``,
``<stem>_mask.png`` and ``<stem>_compare.png``.

Inpainting time grows with the number of hole pixels (both methods visit every hole pixel and
its ``radius`` neighbourhood); a large object in a multi-megapixel photo takes seconds, so
batches show a progress bar. Every input is read and its mask computed and checked (missing file,
unknown class, mask size mismatch, empty mask) before the first output is written: bad input ends
in one ``segstyle: error:`` line with nothing written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click
import cv2
import numpy as np
from tqdm.auto import tqdm

from segstyle.core.errors import SegstyleError, UsageError

METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}
TITLES = {"telea": "Telea", "ns": "Navier-Stokes", "gan": "DCGAN", "mean_fill": "mean fill"}
CHOICES = {"telea": ["telea"], "ns": ["ns"], "gan": ["gan"], "both": ["telea", "ns"], "all": ["telea", "ns", "gan"]}


def inpaint(rgb: np.ndarray, mask: np.ndarray, method: str = "telea", radius: float = 3.0) -> np.ndarray:
    """Fill the ``True`` pixels of ``mask`` in ``rgb`` (uint8 H, W, 3); pixels outside stay identical."""
    if method not in METHODS:
        raise UsageError(f"unknown inpainting method '{method}'; choose one of: {', '.join(METHODS)}")
    if mask.shape != rgb.shape[:2]:
        raise SegstyleError(f"mask is {mask.shape[1]}x{mask.shape[0]}, image is {rgb.shape[1]}x{rgb.shape[0]}")
    out = cv2.inpaint(np.ascontiguousarray(rgb), mask.astype(np.uint8) * 255, float(radius), METHODS[method])
    # cv2.inpaint leaves known pixels alone; make that a guarantee rather than an assumption.
    out[~mask] = rgb[~mask]
    return out


def side_by_side(rgb: np.ndarray, mask: np.ndarray, results: dict[str, np.ndarray]) -> np.ndarray:
    """Input | mask (hole in red over the input) | each result, at full size, titled."""
    from segstyle.pipelines.visualize import label

    shown = rgb.copy()
    shown[mask] = (0.4 * shown[mask] + 0.6 * np.array([255, 0, 0])).astype(np.uint8)
    tiles = [label(rgb, "input"), label(shown, "mask"), *(label(r, TITLES[m]) for m, r in results.items())]
    gap = np.full((rgb.shape[0], 4, 3), 255, np.uint8)
    row = [tiles[0]]
    for t in tiles[1:]:
        row += [gap, t]
    return np.concatenate(row, axis=1)


@dataclass
class Job:
    src: Path
    mask: np.ndarray   # dilated hole


def plan(images: list[Path], *, checkpoint: Path | None, classes: str | None, mask_file: Path | None, dilate_px: int,
         device: str | None = None, progress: bool = True, skip_empty: bool = False,
         known: float | None = None) -> list[Job]:
    """Read every image and compute (and check) its hole before anything is written.

    ``skip_empty`` (dataset mode: a validation image may simply not show the class) drops images
    whose mask is empty with a note instead of failing; it still fails when every mask is empty.
    ``known`` (``--known-hole``): a centred square of that fraction of the short side, not dilated.
    """
    from segstyle.pipelines.edit.known_hole import known_hole
    from segstyle.pipelines.edit.masks import checkpoint_classes, dilate, predict_mask, read_mask, resolve_classes
    from segstyle.core.io import read_image

    if sum(x is not None for x in (mask_file, checkpoint, known)) != 1:
        raise UsageError("give one of: --checkpoint SEG.pt with --classes, --mask PNG, or --known-hole FRAC")
    if known is not None:
        if classes:
            raise UsageError("--classes needs --checkpoint; --known-hole cuts its own square")
        return [Job(src, known_hole(read_image(src).shape[:2], known)) for src in images]
    if mask_file is not None and classes:
        raise UsageError("--classes needs --checkpoint; with --mask the mask file decides what is removed")
    model = ids = size = dev = None
    if checkpoint is not None:
        from segstyle.pipelines.predict import base_size_of, load_for_inference
        from segstyle.core.runtime import pick_device

        if not classes:
            raise UsageError("--checkpoint needs --classes (comma-separated class names to remove)")
        from segstyle.models.checkpoint import load_checkpoint

        names = checkpoint_classes(load_checkpoint(checkpoint, task="segmentation"), checkpoint)
        ids = resolve_classes(classes, names)  # unknown class: fail before loading weights / images
        dev = pick_device(device)
        model, ck = load_for_inference(checkpoint, dev)
        size = base_size_of(ck)
    jobs = []
    for src in tqdm(images, desc="masks", unit="img", disable=not progress or len(images) < 2, leave=False):
        rgb = read_image(src)
        if mask_file is not None:
            hole = read_mask(mask_file, rgb.shape[:2])
        else:
            hole = predict_mask(model, rgb, ids, base_size=size, device=dev)
        if not hole.any():
            what = f"mask {mask_file}" if mask_file is not None else f"no pixel of class(es) {classes} found"
            if not skip_empty:
                raise SegstyleError(f"{src}: empty mask ({what}); nothing to remove")
            click.echo(f"{src}: empty mask ({what}); skipped", err=True)
            continue
        jobs.append(Job(src, dilate(hole, dilate_px)))
    if not jobs:
        raise SegstyleError(f"every mask is empty (no pixel of class(es) {classes} in {len(images)} image(s))")
    return jobs


def run(images: list[Path], out_dir: Path, *, checkpoint: Path | None = None, classes: str | None = None,
        mask_file: Path | None = None, method: str = "both", radius: float = 3.0, dilate_px: int = 5,
        device: str | None = None, progress: bool = True, skip_empty: bool = False,
        gan_checkpoint: Path | None = None, search=None, known: float | None = None,
        scores_dir: Path | None = None) -> list[Path]:
    """Inpaint every image; returns the files written (see the module docstring for the names).
    ``search`` is the DCGAN's :class:`~segstyle.pipelines.edit.gan_inpaint.LatentSearch`; with ``known``
    the scores go to ``scores_dir`` (default ``out_dir``)."""
    from segstyle.core.io import read_image, write_image

    if method not in CHOICES:
        raise UsageError(f"unknown inpainting method '{method}'; choose one of: {', '.join(CHOICES)}")
    methods = CHOICES[method]
    if ("gan" in methods) != (gan_checkpoint is not None):
        raise UsageError("--method gan/all needs --gan-checkpoint GAN.pt (a `segstyle train-gan` checkpoint)"
                         if "gan" in methods else "--gan-checkpoint is only used by --method gan or all")
    stems = [p.stem for p in images]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise UsageError(f"several inputs are named '{dupes[0]}': their outputs would overwrite each other")
    gan = None
    if gan_checkpoint is not None:  # a wrong checkpoint fails before any image is read
        from segstyle.core.runtime import pick_device
        from segstyle.pipelines.edit.gan_inpaint import LatentSearch, load_dcgan

        gan, search = load_dcgan(gan_checkpoint, pick_device(device)), search or LatentSearch()
    jobs = plan(images, checkpoint=checkpoint, classes=classes, mask_file=mask_file, dilate_px=dilate_px,
                device=device, progress=progress, skip_empty=skip_empty, known=known)
    written: list[Path] = []
    scores: dict[str, dict] = {}
    for job in tqdm(jobs, desc=f"inpaint ({method})", unit="img", disable=not progress or len(jobs) < 2):
        rgb = read_image(job.src)
        results = {m: fill(rgb, job.mask, m, radius=radius, gan=gan, search=search, progress=progress)
                   for m in methods}
        for m, res in results.items():
            written.append(write_image(out_dir / f"{job.src.stem}_{m}.png", res))
        written.append(write_image(out_dir / f"{job.src.stem}_mask.png", job.mask.astype(np.uint8) * 255))
        if len(methods) > 1:
            written.append(write_image(out_dir / f"{job.src.stem}_compare.png", side_by_side(rgb, job.mask, results)))
        if known is not None:
            from segstyle.pipelines.edit.known_hole import hole_scores, mean_fill

            scores[job.src.name] = {m: hole_scores(rgb, r, job.mask)
                                    for m, r in {"mean_fill": mean_fill(rgb, job.mask), **results}.items()}
    if known is not None:
        written += write_scores(scores_dir or out_dir, scores, known=known, search=search if gan is not None else None)
    return written


def fill(rgb: np.ndarray, hole: np.ndarray, method: str, *, radius: float, gan=None, search=None,
         progress: bool = False) -> np.ndarray:
    """One method's fill of ``hole`` (``gan`` needs the loaded DCGAN and its latent search settings)."""
    if method == "gan":
        from segstyle.pipelines.edit.gan_inpaint import gan_inpaint

        return gan_inpaint(rgb, hole, gan, search, progress=progress)
    return inpaint(rgb, hole, method, radius)


def write_scores(out_dir: Path, scores: dict[str, dict], *, known: float, search) -> list[Path]:
    """``scores.json`` (per image and method, the hole fraction, the latent search) and ``metrics.json``
    (figures only: each method's mean PSNR/SSIM inside the hole); returns both paths."""
    from dataclasses import asdict

    from segstyle.core.io import write_dvc_metrics, write_json

    methods = list(next(iter(scores.values())))
    mean = {m: {k: round(float(np.mean([s[m][k] for s in scores.values()])), 4) for k in ("psnr", "ssim")}
            for m in methods}
    record = {"known_hole": known, "images": len(scores), "mean": mean, "per_image": scores,
              "beats_mean_fill": {m: mean[m]["psnr"] > mean["mean_fill"]["psnr"] for m in methods if m != "mean_fill"},
              "latent_search": asdict(search) if search is not None else None}
    return [write_json(out_dir / "scores.json", record), write_dvc_metrics(out_dir / "metrics.json", {"hole": mean})]


def dataset_images(params, dataset: str, samples: int) -> list[Path]:
    """The first ``samples`` images of the dataset's validation split (``params.data``)."""
    from segstyle.pipelines.data.datasets import build_dataset

    ds = build_dataset(dataset, params.data.root, params.data.splits[dataset].val, pets_mode=params.data.pets_mode, voc_mode=params.data.voc_mode)
    if len(ds) == 0:
        raise SegstyleError(f"{dataset}: validation split is empty")
    return [ds.image_path(i) for i in range(min(samples, len(ds)))]


@click.command("inpaint")
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Segmentation checkpoint that finds the objects to remove (with --classes).")
@click.option("--classes", default=None, help="Comma-separated class names to remove, e.g. person,dog.")
@click.option("--mask", "mask_file", type=click.Path(path_type=Path), default=None,
              help="Mask PNG instead of the network: non-zero pixels are removed (same size as each image).")
@click.option("--known-hole", "known", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True),
              default=None,
              help="Instead of a mask: cut a centred square of FRAC x the short side (not dilated) and score "
                   "every fill against the pixels that were there (scores.json, metrics.json in --out-dir).")
@click.option("--scores", "scores_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --known-hole: where scores.json and metrics.json go (default: --out-dir).")
@click.option("--method", type=click.Choice(list(CHOICES)), default="both", show_default=True,
              help="telea (cv2.INPAINT_TELEA), ns (cv2.INPAINT_NS), gan (the DCGAN, needs --gan-checkpoint), "
                   "both (telea + ns) or all (telea + ns + gan), each with a side-by-side picture.")
@click.option("--gan-checkpoint", type=click.Path(path_type=Path), default=None,
              help="With --method gan/all: a `segstyle train-gan` checkpoint. Each hole is filled in its own "
                   "square window (the hole's box doubled, at least 64 px) searched at the generator's 64x64 "
                   "and resized back, Poisson-blended in; the output keeps the input's exact size.")
@click.option("--steps", type=click.IntRange(min=1), default=100, show_default=True,
              help="DCGAN: Adam steps of the latent search per hole.")
@click.option("--restarts", type=click.IntRange(min=1), default=8, show_default=True,
              help="DCGAN: random starting points searched together; the best match wins.")
@click.option("--seed", type=int, default=0, show_default=True, help="DCGAN: seed of the starting points.")
@click.option("--radius", type=click.FloatRange(min=1), default=3.0, show_default=True,
              help="Neighbourhood (px) each hole pixel is filled from.")
@click.option("--dilate", "dilate_px", type=click.IntRange(min=0), default=5, show_default=True,
              help="Grow the mask by this many px to cover the object's outline.")
@click.option("--dataset", type=click.Choice(["voc", "pets"]), default=None,
              help="Instead of IMAGES: the first --samples validation images of this dataset (params data); "
                   "images without the class are skipped with a note.")
@click.option("--samples", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if available).")
@click.pass_context
def cli(ctx: click.Context, images: tuple[Path, ...], checkpoint: Path | None, classes: str | None,
        mask_file: Path | None, known: float | None, scores_dir: Path | None, method: str, gan_checkpoint: Path | None, steps: int,
        restarts: int, seed: int, radius: float, dilate_px: int, dataset: str | None, samples: int,
        out_dir: Path, device: str | None) -> None:
    """Remove objects from IMAGES by inpainting the segmented (or given) mask."""
    if bool(images) == bool(dataset):
        raise UsageError("give IMAGES or --dataset (validation images), not both or neither")
    if scores_dir is not None and known is None:
        raise UsageError("--scores needs --known-hole (only a known hole can be scored)")
    if dataset:
        from segstyle.pipelines.config import load_params

        paths = dataset_images(load_params(), dataset, samples)
    else:
        paths = list(images)
    from segstyle.pipelines.edit.gan_inpaint import LatentSearch

    written = run(paths, out_dir, checkpoint=checkpoint, classes=classes, mask_file=mask_file, method=method,
                  radius=radius, dilate_px=dilate_px, device=device, skip_empty=bool(dataset),
                  gan_checkpoint=gan_checkpoint, search=LatentSearch(steps=steps, restarts=restarts, seed=seed),
                  known=known, scores_dir=scores_dir)
    click.echo(f"inpainted {len(paths)} image(s) ({method}); wrote {len(written)} files to {out_dir}")
    if known is not None:
        import json

        mean = json.loads(((scores_dir or out_dir) / "scores.json").read_text())["mean"]
        click.echo("inside the hole: " + ", ".join(f"{TITLES[m]} PSNR {v['psnr']:.2f} dB SSIM {v['ssim']:.3f}"
                                                  for m, v in mean.items()))
