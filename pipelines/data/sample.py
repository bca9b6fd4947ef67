"""The embedded sample data: small deterministic datasets in the exact on-disk formats of the real ones.

Real VOC / Pets cannot be downloaded on the project's machines, yet every stage (training,
evaluation, export, DVC) must run end to end. ``segstyle data sample --root data`` therefore writes

- ``voc/VOCdevkit/VOC2012/``: JPEG scenes with 2-4 objects of the 20 VOC classes on varied
  backgrounds; palette-PNG masks (VOC colour map, indices 0..20) with a 255 "void" band along every
  object outline, as the real annotations have; ``ImageSets/Segmentation/{train,val,trainval}.txt``.
- ``pets/oxford-iiit-pet/``: one cat or dog per JPEG, named like the real breeds (cats capitalised,
  dogs lower case); grey (mode L) trimaps 1 pet / 2 background / 3 border band;
  ``annotations/{trainval,test}.txt`` with the real ``name class_id species breed_id`` lines.
- ``style/styles/*.png``: procedural style textures; ``style/content/*.jpg``: content images.

Each VOC class has its own hue *and* surface texture (solid for classes 1-10, a dark pattern for
11-20) *and* shape, so a small network trained from scratch separates them within minutes; colour
alone already separates the ten hues, texture splits each hue in two.

Everything is drawn from one seeded numpy generator, with OpenCV drawing without anti-aliasing
and fixed encoder settings (Pillow, no timestamps), so two runs produce byte-identical files and the
committed ``data.dvc`` stays valid. The tree is built in a temporary directory and swapped into
place, so an interrupted run never leaves half a dataset behind.
"""

from __future__ import annotations

import colorsys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from segstyle.pipelines.data.layout import PETS_SUBDIR, VOC_SUBDIR
from segstyle.models.classes import IGNORE_INDEX
from segstyle.pipelines.data.palette import voc_colormap
from segstyle.core.errors import SegstyleError
from segstyle.core.io import atomic_dir

SEED = 2012
MARKER = "README.md"
MARKER_TITLE = "# segstyle embedded sample data"
JPEG_QUALITY = 90

VOC_SIZE = (160, 120)     # (W, H), landscape like most VOC photos
VOC_TRAIN, VOC_VAL = 96, 32
PETS_SIZE = (160, 128)
PETS_PER_BREED = 3          # 2 trainval + 1 test: every breed in both splits, as in the real lists
STYLE_SIZE = 256
CONTENT_SIZE = (256, 192)
CONTENT_COUNT = 8

# The 37 Oxford-IIIT Pet breeds, as spelled in the real file names (cats capitalised).
CAT_BREEDS = ("Abyssinian", "Bengal", "Birman", "Bombay", "British_Shorthair", "Egyptian_Mau",
              "Maine_Coon", "Persian", "Ragdoll", "Russian_Blue", "Siamese", "Sphynx")
DOG_BREEDS = ("american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle", "boxer",
              "chihuahua", "english_cocker_spaniel", "english_setter", "german_shorthaired",
              "great_pyrenees", "havanese", "japanese_chin", "keeshond", "leonberger",
              "miniature_pinscher", "newfoundland", "pomeranian", "pug", "saint_bernard", "samoyed",
              "scottish_terrier", "shiba_inu", "staffordshire_bull_terrier", "wheaten_terrier",
              "yorkshire_terrier")


@dataclass(frozen=True)
class Breed:
    name: str
    class_id: int    # 1..37, breeds in case-insensitive alphabetical order (as list.txt)
    species: int     # 1 cat, 2 dog
    breed_id: int    # 1..12 cats, 1..25 dogs


def pet_breeds() -> list[Breed]:
    """The real class/species/breed numbering of the Pets ``list.txt``."""
    ordered = sorted(CAT_BREEDS + DOG_BREEDS, key=str.lower)
    return [
        Breed(n, i + 1, 1 if n in CAT_BREEDS else 2,
              (CAT_BREEDS if n in CAT_BREEDS else DOG_BREEDS).index(n) + 1)
        for i, n in enumerate(ordered)
    ]


# ----------------------------------------------------------------------------------------- drawing

def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32) * 255


def _class_style(c: int) -> tuple[np.ndarray, str, str]:
    """Colour, texture and shape of VOC class ``c`` (1..20): unique per class."""
    hue_idx = (c - 1) % 10
    colour = _hsv(hue_idx / 10, 0.9, 0.95 if c <= 10 else 0.85)
    texture = "solid" if c <= 10 else ("stripes", "checker", "dots")[c % 3]
    shape = ("ellipse", "rect", "triangle", "diamond", "star", "cross", "hexagon")[(c * 3) % 7]
    return colour, texture, shape


def _shape_mask(h: int, w: int, shape: str, cx: float, cy: float, size: float, angle: float,
                aspect: float) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    rx, ry = size * aspect, size / aspect
    if shape == "ellipse":
        cv2.ellipse(m, (round(cx), round(cy)), (max(2, round(rx)), max(2, round(ry))),
                    angle * 180 / np.pi, 0, 360, 1, -1)
        return m.astype(bool)
    if shape == "rect":
        pts = np.array([[-rx, -ry], [rx, -ry], [rx, ry], [-rx, ry]])
    elif shape == "cross":
        a, b = rx, ry * 0.35
        pts = np.array([[-a, -b], [-b, -b], [-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b],
                        [b, a], [-b, a], [-b, b], [-a, b]])
    else:
        n, inner = {"triangle": (3, None), "diamond": (4, None), "hexagon": (6, None), "star": (5, 0.45)}[shape]
        k = n * 2 if inner else n
        t = np.arange(k) * 2 * np.pi / k
        r = np.where(np.arange(k) % 2 == 1, inner, 1.0) if inner else np.ones(k)
        pts = np.stack([np.cos(t) * r * rx, np.sin(t) * r * ry], 1)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pts = np.round(pts @ rot.T + [cx, cy]).astype(np.int32)
    cv2.fillPoly(m, [pts], 1)
    return m.astype(bool)


def _texture(h: int, w: int, kind: str, phase: int) -> np.ndarray:
    """Per-pixel brightness factor of a surface texture (float32, H x W)."""
    y, x = np.mgrid[0:h, 0:w]
    if kind == "stripes":
        return np.where(((x + y + phase) // 4) % 2 == 0, 1.0, 0.35).astype(np.float32)
    if kind == "checker":
        return np.where(((x + phase) // 5 + (y + phase) // 5) % 2 == 0, 1.0, 0.35).astype(np.float32)
    if kind == "dots":
        d = ((x + phase) % 8 - 3.5) ** 2 + ((y + phase) % 8 - 3.5) ** 2
        return np.where(d < 6, 0.3, 1.0).astype(np.float32)
    return (0.85 + 0.15 * (y / max(1, h - 1))).astype(np.float32)


def _background(rng: np.random.Generator, h: int, w: int, *, hue_range=(0.0, 1.0), sat=(0.05, 0.25),
                val=(0.3, 0.75)) -> np.ndarray:
    """A desaturated background (gradient, horizon or blotches) that no object class resembles."""
    kind = rng.integers(3)
    c1 = _hsv(rng.uniform(*hue_range), rng.uniform(*sat), rng.uniform(*val))
    c2 = _hsv(rng.uniform(*hue_range), rng.uniform(*sat), rng.uniform(*val))
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    if kind == 0:
        img = c1 * (1 - y) + c2 * y
        img = np.broadcast_to(img, (h, w, 3)).copy()
    elif kind == 1:
        horizon = rng.uniform(0.3, 0.7)
        t = np.clip((y - horizon) * 12 + 0.5, 0, 1)
        img = np.broadcast_to(c1 * (1 - t) + c2 * t, (h, w, 3)).copy()
    else:
        t = _upsample(rng.uniform(0, 1, (4, 5)), h, w)[..., None]
        img = c1 * (1 - t) + c2 * t
    return np.ascontiguousarray(img, dtype=np.float32)


def _upsample(low: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear upsampling in plain numpy: element-wise IEEE arithmetic gives the same bits on every
    CPU, unlike library resizers whose SIMD paths (FMA or not) may round differently."""
    ys, xs = np.linspace(0, low.shape[0] - 1, h), np.linspace(0, low.shape[1] - 1, w)
    y0, x0 = np.minimum(ys.astype(int), low.shape[0] - 2), np.minimum(xs.astype(int), low.shape[1] - 2)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    a, b = low[y0][:, x0], low[y0][:, x0 + 1]
    c, d = low[y0 + 1][:, x0], low[y0 + 1][:, x0 + 1]
    return ((a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy).astype(np.float32)


def _finish(rng: np.random.Generator, img: np.ndarray, noise: int = 4) -> np.ndarray:
    """Soften the hard drawn edges a little and add sensor-like noise, as a camera would.

    Both steps run on integers (OpenCV's 8-bit Gaussian blur is bit-exact fixed point; the noise
    is a sum of integer draws), so the bytes do not depend on the CPU's floating-point paths and
    ``data.dvc`` stays valid on other machines.
    """
    img = cv2.GaussianBlur(np.clip(np.round(img), 0, 255).astype(np.uint8), (3, 3), 0.7)
    grain = rng.integers(-noise, noise + 1, img.shape, dtype=np.int16) + rng.integers(-noise, noise + 1, img.shape,
                                                                                     dtype=np.int16)
    return np.clip(img.astype(np.int16) + grain // 2, 0, 255).astype(np.uint8)


def _band(labels: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` // 2 of a label change: VOC's void outline / the Pets trimap border."""
    k = np.ones((3, 3), np.uint8)
    edge = cv2.dilate(labels, k) != cv2.erode(labels, k)
    if width > 2:
        edge = cv2.dilate(edge.astype(np.uint8), k, iterations=(width - 2) // 2) > 0
    return edge


# ----------------------------------------------------------------------------------------- VOC

def voc_scene(rng: np.random.Generator, classes: list[int], size=VOC_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """One RGB scene with the given object classes and its label map (0 background, 255 outline)."""
    w, h = size
    img = _background(rng, h, w)
    labels = np.zeros((h, w), np.uint8)
    for c in classes:
        colour, texture, shape = _class_style(c)
        s = rng.uniform(0.13, 0.24) * min(w, h) * 1.3
        m = _shape_mask(h, w, shape, rng.uniform(0.15, 0.85) * w, rng.uniform(0.18, 0.82) * h, s,
                        rng.uniform(0, np.pi), rng.uniform(0.8, 1.25))
        jitter = rng.uniform(0.88, 1.0)
        surface = colour[None, None] * (_texture(h, w, texture, int(rng.integers(8))) * jitter)[..., None]
        img[m] = surface[m]
        labels[m] = c
    mask = labels.copy()
    mask[_band(labels, 4)] = IGNORE_INDEX
    return _finish(rng, img), mask


def _voc_class_lists(rng: np.random.Generator, n_images: int) -> list[list[int]]:
    """2-4 classes per image, drawn by cycling shuffled rounds of all 20 so every class is frequent."""
    pool: list[int] = []
    out = []
    for _ in range(n_images):
        k = int(rng.integers(2, 5))
        picked: list[int] = []
        while len(picked) < k:
            if not pool:
                pool = list(rng.permutation(np.arange(1, 21)))
            c = int(pool.pop())
            if c not in picked:
                picked.append(c)
            else:
                pool.insert(0, c)
        out.append(picked)
    return out


def write_voc(root: Path, rng: np.random.Generator, bar: tqdm) -> dict[str, int]:
    base = root / "voc" / VOC_SUBDIR
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / d).mkdir(parents=True)
    palette = voc_colormap().reshape(-1).tolist()
    n = VOC_TRAIN + VOC_VAL
    ids = [f"2012_{i + 1:06d}" for i in range(n)]
    val = set(ids[i] for i in rng.permutation(n)[:VOC_VAL])
    for id_, classes in zip(ids, _voc_class_lists(rng, n)):
        img, mask = voc_scene(rng, classes)
        _save_jpeg(base / "JPEGImages" / f"{id_}.jpg", img)
        m = Image.fromarray(mask, mode="P")
        m.putpalette(palette)
        _save_png(base / "SegmentationClass" / f"{id_}.png", m)
        bar.update()
    splits = {"train": [i for i in ids if i not in val], "val": [i for i in ids if i in val], "trainval": ids}
    for name, lst in splits.items():
        (base / "ImageSets" / "Segmentation" / f"{name}.txt").write_text("".join(f"{i}\n" for i in lst))
    return {k: len(v) for k, v in splits.items()}


# ----------------------------------------------------------------------------------------- Pets

def _fur(breed: Breed) -> tuple[np.ndarray, str]:
    """Base fur colour and pattern of a breed (warm/neutral tones; backgrounds are cool)."""
    h = ((breed.class_id * 7) % 37) / 37
    colour = _hsv(0.02 + 0.1 * h, 0.35 + 0.5 * ((breed.class_id * 5) % 11) / 10,
                  0.3 + 0.65 * ((breed.class_id * 3) % 13) / 12)
    pattern = ("solid", "stripes", "dots")[breed.class_id % 3]
    return colour, pattern


def pet_scene(rng: np.random.Generator, breed: Breed, size=PETS_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """A cat or dog (body, head, ears, legs, tail) on a cool-toned background, and its trimap."""
    w, h = size
    img = _background(rng, h, w, hue_range=(0.3, 0.75), sat=(0.15, 0.45), val=(0.35, 0.8))
    m = np.zeros((h, w), np.uint8)
    cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.45, 0.65) * h
    bw, bh = rng.uniform(0.2, 0.3) * w, rng.uniform(0.12, 0.18) * h
    face = 1 if rng.uniform() < 0.5 else -1
    cv2.ellipse(m, (round(cx), round(cy)), (round(bw), round(bh)), 0, 0, 360, 1, -1)
    for dx in (-0.7, -0.35, 0.35, 0.7):                                   # legs
        x = round(cx + dx * bw)
        cv2.line(m, (x, round(cy)), (x, round(cy + bh + 0.12 * h)), 1, max(3, round(0.035 * w)))
    tail_end = (round(cx - face * (bw + 0.12 * w)), round(cy - bh - rng.uniform(0, 0.15) * h))
    cv2.line(m, (round(cx - face * bw * 0.9), round(cy)), tail_end, 1, max(3, round(0.03 * w)))
    hx, hy, hr = cx + face * bw * 0.95, cy - bh * 1.1, rng.uniform(0.6, 0.8) * bh * 1.4
    cv2.circle(m, (round(hx), round(hy)), round(hr), 1, -1)
    if breed.species == 1:    # cats: pointed upright ears
        for s in (-1, 1):
            pts = np.round([[hx + s * hr * 0.2, hy - hr * 0.6], [hx + s * hr * 0.95, hy - hr * 0.4],
                            [hx + s * hr * 0.75, hy - hr * 1.5]]).astype(np.int32)
            cv2.fillPoly(m, [pts], 1)
    else:                     # dogs: floppy ears and a snout
        for s in (-1, 1):
            cv2.ellipse(m, (round(hx + s * hr * 0.9), round(hy + hr * 0.2)),
                        (max(2, round(hr * 0.3)), max(3, round(hr * 0.7))), s * 15, 0, 360, 1, -1)
        cv2.ellipse(m, (round(hx + face * hr * 0.9), round(hy + hr * 0.35)),
                    (max(2, round(hr * 0.55)), max(2, round(hr * 0.35))), 0, 0, 360, 1, -1)
    pet = m.astype(bool)
    colour, pattern = _fur(breed)
    shade = _texture(h, w, pattern, int(rng.integers(8)))
    if pattern != "solid":   # a softer coat pattern (tabby stripes, spots) than the VOC textures
        shade = np.where(shade < 1, 0.6, 1.0)
    shade = shade * rng.uniform(0.9, 1.05)
    img[pet] = (colour[None, None] * shade[..., None])[pet]
    eye = (round(hx + face * hr * 0.35), round(hy - hr * 0.15))
    cv2.circle(img, eye, max(1, round(hr * 0.12)), (20.0, 20.0, 20.0), -1)
    trimap = np.where(pet, 1, 2).astype(np.uint8)
    trimap[_band(m, 4)] = 3
    return _finish(rng, img), trimap


def write_pets(root: Path, rng: np.random.Generator, bar: tqdm) -> dict[str, int]:
    base = root / "pets" / PETS_SUBDIR
    (base / "images").mkdir(parents=True)
    (base / "annotations" / "trimaps").mkdir(parents=True)
    breeds = pet_breeds()
    items = [(b, k + 1) for k in range(PETS_PER_BREED) for b in breeds]
    test_number = {b.name: int(rng.integers(1, PETS_PER_BREED + 1)) for b in breeds}
    lines: dict[str, list[tuple[int, str, str]]] = {"trainval": [], "test": []}
    for breed, number in items:
        name = f"{breed.name}_{number}"
        img, trimap = pet_scene(rng, breed)
        _save_jpeg(base / "images" / f"{name}.jpg", img)
        _save_png(base / "annotations" / "trimaps" / f"{name}.png", Image.fromarray(trimap, mode="L"))
        line = f"{name} {breed.class_id} {breed.species} {breed.breed_id}\n"
        lines["test" if number == test_number[breed.name] else "trainval"].append((breed.class_id, name, line))
        bar.update()
    for split, rows in lines.items():   # the real files are ordered by class, then by name
        (base / "annotations" / f"{split}.txt").write_text("".join(r[2] for r in sorted(rows)))
    return {k: len(v) for k, v in lines.items()}


# ----------------------------------------------------------------------------------------- style

def style_textures(rng: np.random.Generator, size: int = STYLE_SIZE) -> dict[str, np.ndarray]:
    """Four procedural "paintings" with strong colour and texture statistics (Gram-friendly)."""
    out = {}
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    # mosaic: Voronoi tiles in saturated colours with dark grout
    seeds = rng.uniform(0, size, (70, 2)).astype(np.float32)
    d = (xx[..., None] - seeds[:, 0]) ** 2 + (yy[..., None] - seeds[:, 1]) ** 2
    cell = d.argmin(-1).astype(np.uint8)
    cols = np.stack([_hsv(rng.uniform(), rng.uniform(0.5, 1), rng.uniform(0.5, 1)) for _ in range(70)])
    img = cols[cell]
    img[_band(cell, 3)] = 25
    out["mosaic"] = img
    # waves: swirling blue/yellow bands
    t = np.sin(xx / 11 + 2.5 * np.sin(yy / 23) + 1.5 * np.cos((xx + yy) / 37))
    t = np.round(t * 64) / 64      # quantised: last-bit differences between libm/SIMD sin() cannot show
    a, b = _hsv(0.62, 0.8, 0.55), _hsv(0.14, 0.85, 0.95)
    out["waves"] = a * (1 - (t[..., None] + 1) / 2) + b * ((t[..., None] + 1) / 2)
    # strokes: overlapping thick brush strokes from a warm palette
    img = np.full((size, size, 3), 235, np.float32)
    pal = [_hsv(h, 0.75, 0.9) for h in (0.0, 0.05, 0.1, 0.55, 0.9)]
    for _ in range(260):
        p = rng.uniform(0, size, 2)
        ang, ln = rng.uniform(0, np.pi), rng.uniform(10, 40)
        q = p + ln * np.array([np.cos(ang), np.sin(ang)])
        cv2.line(img, tuple(int(v) for v in np.round(p)), tuple(int(v) for v in np.round(q)),
                 tuple(float(v) for v in pal[int(rng.integers(len(pal)))]), int(rng.integers(4, 11)))
    out["strokes"] = img
    # dots: pointillist dots on a dark ground
    img = np.full((size, size, 3), 30, np.float32)
    for _ in range(900):
        c = tuple(float(v) for v in _hsv(rng.uniform(0.2, 0.6), 0.7, rng.uniform(0.6, 1)))
        cv2.circle(img, tuple(int(v) for v in rng.integers(0, size, 2)), int(rng.integers(2, 6)), c, -1)
    out["dots"] = img
    return {k: _finish(rng, v, noise=2) for k, v in out.items()}


def write_style(root: Path, rng: np.random.Generator, bar: tqdm) -> dict[str, int]:
    styles, content = root / "style" / "styles", root / "style" / "content"
    styles.mkdir(parents=True)
    content.mkdir(parents=True)
    tex = style_textures(rng)
    for name, img in tex.items():
        _save_png(styles / f"{name}.png", Image.fromarray(img))
        bar.update()
    lists = _voc_class_lists(rng, CONTENT_COUNT)
    for i, classes in enumerate(lists):
        img, _ = voc_scene(rng, classes, CONTENT_SIZE)
        _save_jpeg(content / f"content_{i:02d}.jpg", img)
        bar.update()
    return {"styles": len(tex), "content": CONTENT_COUNT}


# ----------------------------------------------------------------------------------------- output

def _save_jpeg(path: Path, rgb: np.ndarray) -> None:
    # Baseline 4:2:0 JPEG like the real photos; fixed settings keep the bytes stable.
    Image.fromarray(rgb).save(path, format="JPEG", quality=JPEG_QUALITY, subsampling=2, optimize=False)


def _save_png(path: Path, im: Image.Image) -> None:
    im.save(path, format="PNG", optimize=False, compress_level=9)


def is_sample(root: Path) -> bool:
    """Whether ``root`` holds (an older copy of) the embedded sample, which may be replaced freely."""
    marker = root / MARKER
    return marker.is_file() and marker.read_text().startswith(MARKER_TITLE)


README_TEXT = f"""{MARKER_TITLE}

Written by `segstyle data sample` (seed {SEED}); byte-identical on every run and tracked by
`data.dvc`. Synthetic images in the exact layouts of the real datasets:

- voc/VOCdevkit/VOC2012: {VOC_TRAIN} train + {VOC_VAL} val scenes ({VOC_SIZE[0]}x{VOC_SIZE[1]}), palette PNG
  masks with classes 0..20 and a 255 void band on object outlines.
- pets/oxford-iiit-pet: {37 * (PETS_PER_BREED - 1)} trainval + 37 test pets ({PETS_SIZE[0]}x{PETS_SIZE[1]}),
  trimaps 1 pet / 2 background / 3 border.
- style/styles: procedural style textures; style/content: content images.

Replace with the real datasets: `segstyle data fetch voc --root data --force` (and `pets`).
"""


def generate(root: str | Path, *, force: bool = False, progress: bool = True) -> dict:
    """Write the sample tree to ``root`` atomically; return counts and the time taken.

    An existing ``root`` is replaced only if it is empty or an earlier sample (``force`` overrides),
    so real data fetched there is never deleted by accident.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise SegstyleError(f"{root}: exists and is not a directory")
    if root.is_dir() and any(root.iterdir()) and not is_sample(root) and not force:
        raise SegstyleError(f"{root}: holds other data (not the embedded sample); pass --force to replace it")
    t0, c0 = time.perf_counter(), time.process_time()
    rng = np.random.default_rng(SEED)
    total = VOC_TRAIN + VOC_VAL + 37 * PETS_PER_BREED + 4 + CONTENT_COUNT
    with tqdm(total=total, desc="sample data", unit="img", disable=None if progress else True, leave=False) as bar:
        with atomic_dir(root) as tmp:
            counts = {
                "voc": write_voc(tmp, rng, bar),
                "pets": write_pets(tmp, rng, bar),
                "style": write_style(tmp, rng, bar),
            }
            (tmp / MARKER).write_text(README_TEXT)
            tmp.chmod(0o755)   # mkdtemp makes 0700; a data dir should look like any other
    nbytes = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return {"root": str(root), "counts": counts, "bytes": nbytes, "seconds": round(time.perf_counter() - t0, 2),
            "cpu_seconds": round(time.process_time() - c0, 2)}
