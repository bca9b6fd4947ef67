"""``segstyle data ...``: fetch, sample, verify and show datasets.

Only click and the small data modules are imported here (no torch), so these commands start fast;
every failure is a :class:`~segstyle.core.errors.SegstyleError` naming the file, which ``segstyle``
prints as one line.
"""

from __future__ import annotations

import json

import click

from segstyle.pipelines.data.layout import DATASETS

ROOT = click.option("--root", default="data", show_default=True, type=click.Path(file_okay=False),
                    help="Data root (holds voc/, pets/, style/); verify/show/fetch also take a dataset folder "
                         "as torchvision does (data/voc holding VOCdevkit/, data/pets holding oxford-iiit-pet/).")
DATASET = click.option("--dataset", required=True, type=click.Choice(DATASETS), help="Which dataset.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def data() -> None:
    """Fetch the real datasets, write the embedded sample, verify and preview datasets."""


@data.command()
@click.argument("dataset", type=click.Choice(DATASETS))
@ROOT
@click.option("--mirror", envvar="SEGSTYLE_DATA_MIRROR", default=None, metavar="URL",
              help="Base URL that replaces the official download directory [env SEGSTYLE_DATA_MIRROR].")
@click.option("--downloads", envvar="SEGSTYLE_DOWNLOADS", default=None, type=click.Path(file_okay=False),
              help="Where archives (and resumable .part files) go [env SEGSTYLE_DOWNLOADS; "
                   "default ~/.cache/segstyle/downloads].")
@click.option("--force", is_flag=True, help="Replace an existing ROOT/voc or ROOT/pets.")
@click.option("--keep-archives", is_flag=True, help="Keep the downloaded archives after extraction.")
def fetch(dataset: str, root: str, mirror: str | None, downloads: str | None, force: bool,
          keep_archives: bool) -> None:
    """Download DATASET (voc | pets) from the official source, check its MD5 and install it under ROOT.

    VOC 2012 trainval (2.0 GB) becomes ROOT/voc/VOCdevkit/VOC2012; Pets images + annotations
    (0.8 GB) become ROOT/pets/oxford-iiit-pet. Interrupted downloads resume when rerun.
    """
    from segstyle.pipelines.data.fetch import fetch as run

    dest = run(dataset, root, mirror=mirror, downloads=downloads, force=force, keep_archives=keep_archives)
    click.echo(f"installed {dataset} in {dest}")


@data.command()
@ROOT
@click.option("--force", is_flag=True, help="Replace ROOT even if it holds data other than the sample.")
def sample(root: str, force: bool) -> None:
    """Write the embedded sample datasets (VOC, Pets, style images) to ROOT, byte-identical every run."""
    from segstyle.pipelines.data.sample import generate

    r = generate(root, force=force)
    c = r["counts"]
    click.echo(f"wrote {root}: VOC {c['voc']['train']} train / {c['voc']['val']} val, "
               f"Pets {c['pets']['trainval']} trainval / {c['pets']['test']} test, "
               f"{c['style']['styles']} style + {c['style']['content']} content images; "
               f"{r['bytes'] / 1e6:.1f} MB in {r['seconds']:.1f} s")


@data.command()
@ROOT
@DATASET
@click.option("--split", "splits", multiple=True, help="Split(s) to check (default: every split file present).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (per-split counts, mask histogram).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the JSON report here.")
def verify(root: str, dataset: str, splits: tuple[str, ...], as_json: bool, out: str | None) -> None:
    """Check every listed image/mask pair; print every problem with its file; exit 1 if any."""
    from segstyle.pipelines.data.verify import verify as run
    from segstyle.core.errors import SegstyleError
    from segstyle.core.io import write_json

    report = run(root, dataset, list(splits) or None)
    if out:
        write_json(out, report.to_json())
    if as_json:
        click.echo(json.dumps(report.to_json(), sort_keys=True))
    else:
        for s, c in report.splits.items():
            click.echo(f"{dataset} {s}: {c['ids']} pairs, {c['bad']} with problems")
    for p in report.problems:
        click.echo(p, err=True)
    for n in report.notes:
        click.echo(f"note: {n}", err=True)
    if not report.ok:
        raise SegstyleError(f"{dataset} under {root}: {len(report.problems)} problem(s) found")
    if not as_json:
        click.echo(f"{dataset}: all {report.images} pairs OK")


@data.command()
@ROOT
@DATASET
@click.option("--split", default=None, help="Split to draw from (default: voc train, pets trainval).")
@click.option("-n", "n", default=6, show_default=True, type=int, help="Number of rows (ids spread over the split).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
def show(root: str, dataset: str, split: str | None, n: int, out: str) -> None:
    """Write a PNG grid: image | colour mask | overlay for N pairs."""
    from segstyle.pipelines.data.show import show as run

    click.echo(f"wrote {run(root, dataset, out, split=split, n=n)}")
