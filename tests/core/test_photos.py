"""Photos as users have them (issue 22): EXIF orientation, oversized and 16-bit images, CMYK and
palette files, and dataset pairs that must stay aligned.

The photo is a real VOC JPEG from ``../shared/realdata`` when present (re-saved the way phones and
raw converters save files), else a synthetic asymmetric picture, so the checks run everywhere.
"""

from __future__ import annotations


import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from segstyle.core.errors import SegstyleError
from segstyle.core.io import DEFAULT_MAX_PIXELS, read_image

from photo_helpers import header_only_png, landscape_photo, save_with_orientation


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return landscape_photo()


@pytest.mark.parametrize("tag", [3, 6, 8])
def test_exif_orientation_is_applied(photo, tag, tmp_path):
    path = save_with_orientation(photo, tag, tmp_path / f"o{tag}.jpg")
    with Image.open(path) as im:
        stored = np.asarray(im.convert("RGB"))
        shown = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert shown.shape == photo.shape  # the test's own premise: a viewer shows the photo upright
    got = read_image(path)
    assert got.shape == photo.shape, f"orientation {tag} ignored: {got.shape} vs displayed {photo.shape}"
    assert np.abs(got.astype(int) - shown.astype(int)).mean() < 2.0  # JPEG decoders differ by rounding only
    if tag == 3:  # same shape either way: the content must be turned too
        assert np.abs(got.astype(int) - stored.astype(int)).mean() > 10
    # a dataset reader keeps the stored pixels (its mask has no EXIF)
    assert read_image(path, as_displayed=False).shape == stored.shape


def test_sixteen_bit_png_is_scaled_over_the_full_range(tmp_path):
    vals = np.array([0, 257, 30000, 32896, 65535], np.uint16)  # max 65535 would hide "scale by own max"
    img = np.repeat(np.repeat(vals[None, :, None], 3, 2), 4, 0)
    img[..., 0] = 30000  # the red channel never reaches the maximum: a per-image stretch would brighten it
    path = tmp_path / "deep.png"
    assert cv2.imwrite(str(path), img[..., ::-1].copy())  # BGR on disk
    got = read_image(path)
    want = np.round(img.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert got.dtype == np.uint8 and np.array_equal(got, want)
    grey = tmp_path / "grey16.png"
    assert cv2.imwrite(str(grey), np.full((3, 5), 30000, np.uint16))
    assert np.all(read_image(grey) == 117)  # round(30000 * 255 / 65535), not 255


def test_cmyk_jpeg_and_palette_png_decode_to_their_colours(photo, tmp_path):
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(photo).convert("CMYK").save(cmyk, quality=95)
    with Image.open(cmyk) as im:
        want = np.asarray(im.convert("RGB")).astype(int)
    got = read_image(cmyk)
    assert got.shape == photo.shape and np.abs(got.astype(int) - want).mean() < 3.0
    pal = tmp_path / "pal.png"
    Image.fromarray(photo).convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(pal)
    with Image.open(pal) as im:
        assert im.mode == "P"
        want = np.asarray(im.convert("RGB"))
    assert np.array_equal(read_image(pal), want)


def test_an_oversized_image_is_refused_from_its_header(tmp_path):
    path = header_only_png(tmp_path / "bomb.png", 40000, 40000)
    assert path.stat().st_size < 200
    with pytest.raises(SegstyleError) as e:
        read_image(path)
    msg = str(e.value)
    # a reader that decoded first would fail on the truncated pixel data instead ("cannot decode")
    assert "40000x40000" in msg and "1600 MP" in msg and f"{DEFAULT_MAX_PIXELS / 1e6:.0f} MP" in msg
    assert "SEGSTYLE_MAX_PIXELS" in msg and "\n" not in msg


def test_the_limit_is_settable(photo, tmp_path, monkeypatch):
    path = tmp_path / "p.png"
    Image.fromarray(photo).save(path)
    monkeypatch.setenv("SEGSTYLE_MAX_PIXELS", str(photo.shape[0] * photo.shape[1] - 1))
    with pytest.raises(SegstyleError, match="exceeds the limit"):
        read_image(path)
    monkeypatch.setenv("SEGSTYLE_MAX_PIXELS", str(photo.shape[0] * photo.shape[1]))
    assert read_image(path).shape == photo.shape
    monkeypatch.setenv("SEGSTYLE_MAX_PIXELS", "lots")
    with pytest.raises(SegstyleError, match="SEGSTYLE_MAX_PIXELS='lots'"):
        read_image(path)


def test_heic_says_how_to_convert(tmp_path):
    path = tmp_path / "phone.heic"
    path.write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64)
    with pytest.raises(SegstyleError, match="HEIC image; convert it to JPEG or PNG"):
        read_image(path)


def test_predict_on_an_oversized_file_is_one_line_and_writes_nothing(tmp_path, cli, capsys):
    from segstyle.models import build_model
    from segstyle.models.checkpoint import save_checkpoint

    net = build_model("unet_mobilenetv2", num_classes=21, pretrained=False)
    ck = save_checkpoint(tmp_path / "seg.pt", {"model": "unet_mobilenetv2", "model_kwargs": {"num_classes": 21},
                                                "state_dict": net.state_dict(), "params": {}, "data_version": "t"})
    bomb = header_only_png(tmp_path / "bomb.png", 40000, 40000)
    out = tmp_path / "out"
    rc = cli(["predict", str(bomb), "--checkpoint", str(ck), "--out-dir", str(out)])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("segstyle: error:")]
    assert rc != 0 and len(lines) == 1 and "exceeds the limit" in lines[0] and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


def test_predict_masks_lie_on_the_photo_as_displayed(photo, tmp_path, cli):
    from segstyle.models import build_model
    from segstyle.models.checkpoint import save_checkpoint

    net = build_model("unet_mobilenetv2", num_classes=21, pretrained=False)
    ck = save_checkpoint(tmp_path / "seg.pt", {"model": "unet_mobilenetv2", "model_kwargs": {"num_classes": 21},
                                                "state_dict": net.state_dict(), "params": {}, "data_version": "t"})
    src = save_with_orientation(photo, 6, tmp_path / "portrait.jpg")
    assert cli(["predict", str(src), "--checkpoint", str(ck), "--out-dir", str(tmp_path / "out")]) == 0
    with Image.open(tmp_path / "out" / "portrait_mask.png") as im:
        assert (im.height, im.width) == photo.shape[:2]
    with Image.open(tmp_path / "out" / "portrait_overlay.png") as im:  # photo | overlay, side by side
        assert im.height == photo.shape[0] and im.width % photo.shape[1] == 0


def test_data_verify_notes_a_dataset_jpeg_whose_tag_would_turn_it(tmp_path_factory, tmp_path, cli, capsys):
    """The pair stays aligned (read as stored) and verify says so, without failing the gate."""
    import shutil

    from seg_helpers import tiny_data

    root = tmp_path / "data"
    shutil.copytree(tiny_data(tmp_path_factory), root)
    split = root / "voc/VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt"
    first = split.read_text().split()[0]
    jpg = root / f"voc/VOCdevkit/VOC2012/JPEGImages/{first}.jpg"
    with Image.open(jpg) as im:
        stored = im.convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(jpg, quality=95, exif=exif.tobytes())
    out = tmp_path / "v.json"
    assert cli(["data", "verify", "--root", str(root), "--dataset", "voc", "--json", "--out", str(out)]) == 0
    import json

    doc = json.loads(out.read_text())
    assert doc["ok"] and len(doc["notes"]) == 1 and "EXIF orientation 6" in doc["notes"][0]
    assert f"{first}.jpg" in doc["notes"][0]
    assert read_image(jpg, as_displayed=False).shape[:2] == (stored.height, stored.width)


def test_an_srgb_tagged_photo_keeps_its_pixels(photo, tmp_path):
    """Most camera and phone JPEGs embed an sRGB profile: the conversion step must leave them alone.
    (Converting a Display P3 or Adobe RGB file is not tested here: no such profile is available offline.)"""
    from PIL import ImageCms

    path = tmp_path / "srgb.png"
    Image.fromarray(photo).save(path, icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    with Image.open(path) as im:
        assert im.info.get("icc_profile")
    assert np.array_equal(read_image(path), photo)
