"""``segstyle data fetch voc|pets``: download the official archives and install them safely.

- **Sources**: the archive URLs and MD5s torchvision uses (``torchvision.datasets.voc.DATASET_YEAR_DICT
  ["2012"]`` and ``OxfordIIITPet._RESOURCES``), served by the Oxford VGG host. ``--mirror`` (or
  ``SEGSTYLE_DATA_MIRROR``) replaces the directory part of every URL, for a local mirror, a proxy
  cache, or the tests' own HTTP server.
- **Resumable**: bytes go to ``<archive>.part`` in the downloads folder; a rerun asks the server for
  the rest with an HTTP ``Range`` request (a server that ignores it sends the whole file again).
  A finished archive whose MD5 matches is reused without touching the network.
- **Verified**: the MD5 is checked before anything is extracted; a mismatch deletes the download
  and names the file.
- **Safe extraction**: every tar member is checked before it is written: absolute paths, ``..``
  components, links pointing outside the target and device/FIFO files are refused (and Python's
  ``tarfile`` "data" filter runs as a second line of defence).
- **Atomic**: archives are extracted into a temporary directory beside the destination, which is
  renamed into place only when everything succeeded. A failure leaves the previous dataset (or
  nothing) in place, never half an extraction.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import posixpath
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from segstyle.pipelines.data.layout import PETS_SUBDIR, VOC_SUBDIR
from segstyle.pipelines.data.sample import MARKER, is_sample
from segstyle.core.errors import SegstyleError
from segstyle.core.io import atomic_dir

MIRROR_ENV = "SEGSTYLE_DATA_MIRROR"
DOWNLOADS_ENV = "SEGSTYLE_DOWNLOADS"
CHUNK = 1 << 20
USER_AGENT = "segstyle-data-fetch (python urllib)"


@dataclass(frozen=True)
class Archive:
    filename: str
    md5: str
    base_url: str

    def url(self, mirror: str | None = None) -> str:
        return f"{(mirror or self.base_url).rstrip('/')}/{self.filename}"


@dataclass(frozen=True)
class Source:
    dest: str                    # directory under the data root that the archives become
    extract_into: str            # sub-directory of ``dest`` the archive members are relative to
    archives: tuple[Archive, ...]
    expect: tuple[str, ...]      # paths (relative to ``dest``) a correct extraction must contain


SOURCES: dict[str, Source] = {
    "voc": Source(
        dest="voc",
        extract_into=".",        # members are VOCdevkit/VOC2012/...
        archives=(Archive("VOCtrainval_11-May-2012.tar", "6cd6e144f989b92b3379bac3b3de84fd",
                          "https://thor.robots.ox.ac.uk/pascal/VOC/voc2012"),),
        expect=(f"{VOC_SUBDIR}/JPEGImages", f"{VOC_SUBDIR}/SegmentationClass",
                f"{VOC_SUBDIR}/ImageSets/Segmentation/train.txt"),
    ),
    "pets": Source(
        dest="pets",
        extract_into=str(PETS_SUBDIR),   # members are images/... and annotations/...
        archives=(
            Archive("images.tar.gz", "5c4f3ee8e5d25df40f4fd59a7f44e54c", "https://thor.robots.ox.ac.uk/datasets/pets"),
            Archive("annotations.tar.gz", "95a8c909bbe2e81eed6a22bccdf3f68f",
                    "https://thor.robots.ox.ac.uk/datasets/pets"),
        ),
        expect=(f"{PETS_SUBDIR}/images", f"{PETS_SUBDIR}/annotations/trimaps",
                f"{PETS_SUBDIR}/annotations/trainval.txt"),
    ),
}


def default_downloads() -> Path:
    """Archives live outside ``data/`` so DVC never tracks them: ``$XDG_CACHE_HOME/segstyle/downloads``."""
    env = os.environ.get(DOWNLOADS_ENV)
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "segstyle" / "downloads"


# ----------------------------------------------------------------------------------------- download

def md5sum(path: Path, *, progress: bool = True) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, leave=False,
                                     desc=f"md5 {path.name}", disable=None if progress else True) as bar:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            bar.update(len(chunk))
    return h.hexdigest()


def download(url: str, dest: Path, md5: str, *, progress: bool = True, timeout: float = 60) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), check its MD5, return ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        if md5sum(dest, progress=progress) == md5:
            return dest
        dest.unlink()    # stale or damaged copy: fetch again
    part = dest.with_name(dest.name + ".part")
    pos = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": USER_AGENT}
    if pos:
        headers["Range"] = f"bytes={pos}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and pos:   # nothing left to send: the .part is complete (checked below)
            resp = None
        else:
            raise SegstyleError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise SegstyleError(f"{url}: cannot download ({reason})") from None
    if resp is not None:
        with resp:
            if pos and resp.status == 206 and resp.headers.get("Content-Range", "").startswith(f"bytes {pos}-"):
                mode = "ab"
            else:
                pos, mode = 0, "wb"     # server ignored the Range request: start over
            length = resp.headers.get("Content-Length")
            total = pos + int(length) if length and length.isdigit() else None
            try:
                with open(part, mode) as f, tqdm(total=total, initial=pos, unit="B", unit_scale=True,
                                                 desc=dest.name, disable=None if progress else True) as bar:
                    while chunk := resp.read(CHUNK):
                        f.write(chunk)
                        bar.update(len(chunk))
            except (http.client.HTTPException, OSError) as e:
                got = part.stat().st_size if part.exists() else 0
                raise SegstyleError(f"{dest.name}: download interrupted after {got} bytes ({e.__class__.__name__}); "
                                    "rerun the same command to resume") from None
            if total is not None and part.stat().st_size < total:
                raise SegstyleError(f"{dest.name}: download incomplete ({part.stat().st_size} of {total} bytes); "
                                    "rerun the same command to resume")
    got = md5sum(part, progress=progress)
    if got != md5:
        part.unlink(missing_ok=True)
        raise SegstyleError(f"{dest.name}: checksum mismatch (md5 {got}, expected {md5}); "
                            "the download was deleted")
    os.replace(part, dest)
    return dest


# ----------------------------------------------------------------------------------------- extract

def _inside(base: str, target: str) -> bool:
    base = os.path.normpath(base)
    return os.path.commonpath([base, os.path.normpath(target)]) == base


def unsafe_reason(member: tarfile.TarInfo, dest: Path) -> str | None:
    """Why extracting ``member`` under ``dest`` would be unsafe, or None if it is fine."""
    name = member.name
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in posixpath.normpath(name).split("/") or ".." in name.replace("\\", "/").split("/"):
        return "'..' in path"
    if member.ischr() or member.isblk() or member.isfifo():
        return "device or FIFO file"
    if member.issym():
        link = member.linkname
        if link.startswith("/") or not _inside(str(dest), os.path.join(dest, posixpath.dirname(name), link)):
            return f"symlink to '{link}' points outside the target"
    elif member.islnk():
        link = member.linkname
        if link.startswith("/") or not _inside(str(dest), os.path.join(dest, link)):
            return f"hard link to '{link}' points outside the target"
    elif not (member.isfile() or member.isdir()):
        return "unsupported member type"
    return None


def safe_extract(archive: Path, dest: Path, *, progress: bool = True) -> int:
    """Extract every member of ``archive`` below ``dest`` after checking it; return the member count."""
    dest.mkdir(parents=True, exist_ok=True)
    n = 0
    try:
        with tarfile.open(archive, "r:*") as tar, tqdm(desc=f"extract {archive.name}", unit=" files",
                                                       disable=None if progress else True, leave=False) as bar:
            for member in tar:
                why = unsafe_reason(member, dest)
                if why:
                    raise SegstyleError(f"{archive.name}: refusing unsafe member '{member.name}' ({why}); "
                                        "nothing was extracted")
                tar.extract(member, dest, filter="data")
                n += 1
                bar.update()
    except tarfile.FilterError as e:
        raise SegstyleError(f"{archive.name}: refusing unsafe member ({e}); nothing was extracted") from None
    except (tarfile.TarError, EOFError, OSError) as e:
        raise SegstyleError(f"{archive.name}: cannot extract ({e})") from None
    return n


# ----------------------------------------------------------------------------------------- fetch

def fetch(dataset: str, root: str | Path, *, mirror: str | None = None, downloads: str | Path | None = None,
          force: bool = False, keep_archives: bool = False, progress: bool = True) -> Path:
    """Download, verify and install ``dataset`` under ``root``; return the installed directory."""
    if dataset not in SOURCES:
        raise SegstyleError(f"unknown dataset '{dataset}'; choose {' or '.join(SOURCES)}")
    src = SOURCES[dataset]
    root = Path(root)
    # `--root data/voc` (torchvision's habit: the dataset folder) installs there, not in data/voc/voc
    if root.name == src.dest and not (root / src.dest).exists():
        root = root.parent
    dest = root / src.dest
    if dest.exists() and not force and (not dest.is_dir() or any(dest.iterdir())):
        raise SegstyleError(f"{dest}: already exists; pass --force to replace it")
    mirror = mirror or os.environ.get(MIRROR_ENV) or None
    dl_dir = Path(downloads) if downloads else default_downloads()
    paths = [download(a.url(mirror), dl_dir / a.filename, a.md5, progress=progress) for a in src.archives]
    with atomic_dir(dest) as tmp:
        for p in paths:
            safe_extract(p, tmp / src.extract_into, progress=progress)
        missing = [e for e in src.expect if not (tmp / e).exists()]
        if missing:
            raise SegstyleError(f"{', '.join(a.filename for a in src.archives)}: unexpected layout, "
                                f"missing {', '.join(missing)}")
        tmp.chmod(0o755)
    if is_sample(root):
        # data/ now mixes real and sample data: drop the marker so `data sample` will not overwrite it.
        (root / MARKER).unlink()
    if not keep_archives:
        for p in paths:
            p.unlink(missing_ok=True)
    return dest
