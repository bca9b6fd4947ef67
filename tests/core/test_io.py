"""Atomic writes and image decoding: the guarantees every stage relies on."""

from __future__ import annotations

import numpy as np
import pytest

from segstyle.core.errors import SegstyleError
from segstyle.core.io import atomic_dir, atomic_path, read_image, write_image, write_json


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    dest = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_old_file_until_success(tmp_path):
    dest = tmp_path / "out.txt"
    dest.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(dest) as tmp:
            tmp.write_text("new")
            raise KeyboardInterrupt
    assert dest.read_text() == "old"
    with atomic_path(dest) as tmp:
        tmp.write_text("new")
    assert dest.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_dir_swaps_complete_tree(tmp_path):
    dest = tmp_path / "tree"
    (dest).mkdir()
    (dest / "stale").write_text("x")
    with pytest.raises(ValueError):
        with atomic_dir(dest) as tmp:
            (tmp / "half").write_text("y")
            raise ValueError
    assert sorted(p.name for p in dest.iterdir()) == ["stale"]
    with atomic_dir(dest) as tmp:
        (tmp / "fresh").write_text("z")
    assert sorted(p.name for p in dest.iterdir()) == ["fresh"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"]


def test_write_json_is_stable(tmp_path):
    p = write_json(tmp_path / "m.json", {"b": np.float32(0.5), "a": np.int64(3)})
    assert p.read_text() == '{\n  "a": 3,\n  "b": 0.5\n}\n'


def test_image_round_trip_and_rgb_order(tmp_path):
    rgb = np.zeros((5, 7, 3), np.uint8)
    rgb[..., 0] = 200  # pure red
    write_image(tmp_path / "a.png", rgb)
    back = read_image(tmp_path / "a.png")
    assert back.shape == (5, 7, 3) and np.array_equal(back, rgb)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\xff\xd8\xff\xe0" + b"\x00" * 10])
def test_read_image_rejects_garbage_with_file_name(tmp_path, content):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(content)
    with pytest.raises(SegstyleError, match="bad.jpg"):
        read_image(bad)


def test_read_image_missing(tmp_path):
    with pytest.raises(SegstyleError, match="no such image"):
        read_image(tmp_path / "nope.png")


def test_atomic_outputs_get_umask_permissions(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
        with atomic_dir(tmp_path / "d") as d:
            (d / "a").write_text("y")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_grid_rows_fit_their_tiles():
    from segstyle.pipelines.visualize import grid

    wide = np.zeros((50, 100, 3), np.uint8)
    tall = np.zeros((100, 50, 3), np.uint8)
    g = grid([[wide, wide], [tall]], cell=40, pad=2, titles=["a", "b"])
    assert g.shape == (2 + 20 + 2 + 40 + 2, 2 + 2 * 42, 3)


def test_write_dvc_metrics_writes_figures_and_refuses_anything_else(tmp_path):
    """The one writer of DVC metrics files: numbers (nested dicts allowed), bool -> 0/1; a string,
    list, None or NaN leaf is refused with one line naming the key, and nothing is written."""
    import json

    from metrics_helpers import assert_figures_only

    from segstyle.core.io import write_dvc_metrics

    dest = tmp_path / "m.json"
    write_dvc_metrics(dest, {"miou": np.float32(0.5), "n": np.int64(3), "passed": True,
                             "baseline": {"miou": 0.25, "ok": np.bool_(False)}})
    assert json.loads(dest.read_text()) == {"miou": 0.5, "n": 3, "passed": 1, "baseline": {"miou": 0.25, "ok": 0}}
    assert_figures_only(dest)
    for bad, key in (({"model": "unet"}, "model"), ({"a": {"rows": [1, 2]}}, "a.rows"),
                     ({"x": None}, "x"), ({"x": float("nan")}, "x"), ({"x": float("inf")}, "x"),
                     ({"p": tmp_path}, "p")):
        other = tmp_path / "bad.json"
        with pytest.raises(SegstyleError, match=f"'{key}'") as e:
            write_dvc_metrics(other, bad)
        assert "\n" not in str(e.value) and str(other) in str(e.value)
        assert not other.exists()
    with pytest.raises(SegstyleError, match="mapping"):
        write_dvc_metrics(tmp_path / "list.json", [1, 2])


def test_assert_figures_only_catches_what_the_writer_refuses(tmp_path):
    """The shared test assertion fails on a string, list, bool or null leaf (it must be able to fail)."""
    import json

    from metrics_helpers import assert_figures_only

    for doc in ({"a": "x"}, {"a": [1]}, {"a": {"b": True}}, {"a": None}, {}):
        p = tmp_path / "m.json"
        p.write_text(json.dumps(doc))
        with pytest.raises(AssertionError):
            assert_figures_only(p)
