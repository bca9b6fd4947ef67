"""The transforms.v2 presets keep image and mask aligned, pad with 0/255, and are seed-reproducible."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors

from segstyle.pipelines.augment import eval_transforms, train_transforms
from segstyle.pipelines.config import AugmentConfig


def _pair(h=60, w=90):
    """Image whose red channel encodes the label (label * 40): alignment is checkable after any warp."""
    mask = torch.zeros(h, w, dtype=torch.uint8)
    mask[10:40, 20:70] = 1
    mask[35:55, 5:30] = 2
    mask[0:3, :] = 255
    img = torch.zeros(3, h, w, dtype=torch.uint8)
    img[0] = torch.where(mask == 255, 0, mask.int() * 40 + 30).to(torch.uint8)
    img[1] = 128
    return tv_tensors.Image(img), tv_tensors.Mask(mask)


def _cfg(**kw):
    base = dict(base_size=60, crop_size=48, scale=(0.75, 1.5), hflip_prob=0.5, color_jitter=0.0)
    return AugmentConfig(**{**base, **kw})


def test_train_preset_types_shapes_and_alignment():
    tf = train_transforms(_cfg())
    torch.manual_seed(0)
    for _ in range(20):
        img, mask = tf(*_pair())
        assert type(img) is torch.Tensor and type(mask) is torch.Tensor  # pure tensors for collate
        assert img.dtype == torch.float32 and mask.dtype == torch.int64
        assert img.shape == (3, 48, 48) and mask.shape == (48, 48)
        assert 0 <= img.min() and img.max() <= 1
        assert set(mask.unique().tolist()) <= {0, 1, 2, 255}  # NEAREST: no blended labels
        # label decoded from the image agrees with the mask away from edges (bilinear blurs edges)
        decoded = ((img[0] * 255 - 30) / 40).round().clamp(0, 2).long()
        labelled = mask != 255
        agree = (decoded[labelled] == mask[labelled]).float().mean()
        assert agree > 0.9, agree


def test_crop_pads_image_with_0_and_mask_with_255():
    tf = train_transforms(_cfg(base_size=20, crop_size=64, scale=(1.0, 1.0), hflip_prob=0.0))
    img, mask = tf(*_pair())
    assert img.shape == (3, 64, 64)
    padded = img.sum(0) == 0  # the content is never black (green channel is 128 everywhere)
    assert padded.sum() >= 64 * 64 - 20 * 30
    assert torch.all(mask[padded] == 255)
    assert torch.all(img[1][~padded] > 0.3)


def test_colour_jitter_touches_the_image_only():
    tf = train_transforms(_cfg(color_jitter=0.8, scale=(1.0, 1.0), hflip_prob=0.0, crop_size=60))
    torch.manual_seed(3)
    img, mask = tf(*_pair(60, 60))
    ref_img, ref_mask = eval_transforms()(*_pair(60, 60))
    assert torch.equal(mask, ref_mask)
    assert not torch.allclose(img, ref_img, atol=0.02)


def test_seed_reproducible_and_varied():
    tf = train_transforms(_cfg())
    torch.manual_seed(1)
    a = [tf(*_pair()) for _ in range(3)]
    torch.manual_seed(1)
    b = [tf(*_pair()) for _ in range(3)]
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))
    assert not torch.equal(a[0][1], a[1][1]) or not torch.equal(a[1][1], a[2][1])


def test_eval_preset_keeps_the_mask_exact():
    image, mask = _pair(37, 53)
    img, m = eval_transforms()(image, mask)
    assert img.shape == (3, 37, 53) and torch.equal(m, mask.long())
    assert torch.allclose(img, image.float() / 255)


def test_dataloader_workers_are_seeded(tmp_path):
    """Two loaders with the same generator seed draw identical augmented batches (2 workers)."""
    from segstyle.core.runtime import seed_worker

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return train_transforms(_cfg())(*_pair())

    def batches():
        g = torch.Generator().manual_seed(42)
        dl = torch.utils.data.DataLoader(DS(), batch_size=3, num_workers=2, worker_init_fn=seed_worker,
                                         generator=g, shuffle=True)
        return [b for b in dl]

    a, b = batches(), batches()
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))


@pytest.mark.parametrize("dataset", ["voc", "pets"])
def test_preview_cli_writes_a_grid(dataset, tmp_path, tmp_path_factory, cli, capsys):
    import cv2

    from seg_helpers import tiny_data

    root = tiny_data(tmp_path_factory)
    out = tmp_path / "grid.png"
    code = cli(["augment", "preview", "--dataset", dataset, "--index", "1", "-n", "3", "--out", str(out),
                "--data-root", str(root)])
    assert code == 0, capsys.readouterr().err
    grid = cv2.imread(str(out))
    assert grid is not None and grid.shape[0] > grid.shape[1]  # 4 rows x 3 columns
    assert cli(["augment", "preview", "--dataset", dataset, "--index", "999", "--out", str(out),
                "--data-root", str(root)]) != 0
    assert "out of range" in capsys.readouterr().err
