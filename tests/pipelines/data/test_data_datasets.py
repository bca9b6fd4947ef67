"""Datasets: torchvision reads the sample as real data; our masks equal the stored PNG indices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segstyle.pipelines.data.datasets import OxfordPetSegmentation, VOCSegmentation, build_dataset
from segstyle.pipelines.data.layout import Layout
from segstyle.pipelines.data.sample import generate
from segstyle.pipelines.data.verify import verify
from segstyle.core.errors import SegstyleError


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sample") / "data"
    generate(root, progress=False)
    return root


@pytest.mark.parametrize("split", ["train", "val", "trainval"])
def test_torchvision_voc_reads_every_sample_item(sample_root, split):
    from torchvision.datasets import VOCSegmentation as TVVOC

    tv = TVVOC(root=str(sample_root / "voc"), year="2012", image_set=split)
    ours = VOCSegmentation(sample_root / "voc", split)
    assert len(tv) == len(ours) > 0
    for i in range(len(tv)):
        img, target = tv[i]
        assert img.mode == "RGB" and target.mode == "P" and img.size == target.size
        image, mask = ours[i]
        assert image.shape == (3, img.size[1], img.size[0]) and image.dtype == torch.uint8
        assert np.array_equal(mask.numpy(), np.array(target))


@pytest.mark.parametrize("split", ["trainval", "test"])
def test_torchvision_pets_reads_every_sample_item(sample_root, split):
    from torchvision.datasets import OxfordIIITPet

    tv = OxfordIIITPet(root=str(sample_root / "pets"), split=split, target_types="segmentation")
    ours = OxfordPetSegmentation(sample_root / "pets", split)
    assert len(tv) == len(ours) > 0
    assert len(tv.classes) == 37 and tv.classes[0] == "Abyssinian" and tv.classes[-1] == "Yorkshire Terrier"
    for i in range(len(tv)):
        img, trimap = tv[i]
        assert img.size == trimap.size
        raw = np.array(trimap)
        assert np.array_equal(ours.read_raw_mask(i), raw)
        assert np.array_equal(ours[i][1].numpy(), raw - 1)   # trimap mode: class = value - 1


def test_pets_binary_mode_ignores_border(sample_root):
    ds = build_dataset("pets", sample_root, "test", pets_mode="binary")
    raw, mask = ds.read_raw_mask(0), ds[0][1].numpy()
    assert ds.num_classes == 2
    assert (mask[raw == 1] == 1).all() and (mask[raw == 2] == 0).all() and (mask[raw == 3] == 255).all()


def test_build_dataset_errors(sample_root):
    with pytest.raises(SegstyleError, match="unknown dataset 'coco'"):
        build_dataset("coco", sample_root, "train")
    with pytest.raises(SegstyleError, match="test.txt: split file not found"):
        build_dataset("voc", sample_root, "test")
    with pytest.raises(SegstyleError, match="unknown Pets mode"):
        build_dataset("pets", sample_root, "test", pets_mode="quad")


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["voc", "pets"])
def test_realdata_verifies_clean(realdata, name):
    report = verify(realdata, name, progress=False)
    assert report.ok, report.problems
    assert report.images == {"voc": 12, "pets": 22}[name]


@pytest.mark.realdata
def test_realdata_voc_masks_are_the_palette_indices(realdata):
    for split in ("train", "val"):
        ds = build_dataset("voc", realdata, split)
        for i in range(len(ds)):
            with Image.open(ds.mask_path(i)) as im:
                assert im.mode == "P"
                indices = np.frombuffer(im.tobytes(), np.uint8).reshape(im.size[1], im.size[0])
            image, mask = ds[i]
            assert np.array_equal(mask.numpy(), indices)
            assert image.shape[1:] == mask.shape
            assert set(np.unique(indices).tolist()) - set(range(21)) <= {255}


@pytest.mark.realdata
def test_realdata_pet_trimaps_are_the_stored_values(realdata):
    seen_large = False
    for split in ("trainval", "test"):
        ds = build_dataset("pets", realdata, split)
        for i in range(len(ds)):
            with Image.open(ds.mask_path(i)) as im:
                assert im.mode == "L"
                stored = np.frombuffer(im.tobytes(), np.uint8).reshape(im.size[1], im.size[0])
            assert np.array_equal(ds.read_raw_mask(i), stored)
            image, mask = ds[i]
            assert np.array_equal(mask.numpy(), stored.astype(np.int16) - 1)
            assert image.shape[1:] == mask.shape
            if ds.ids[i] == "Abyssinian_37":
                seen_large = True
                assert stored.shape == (1200, 1600)
    assert seen_large


@pytest.mark.realdata
def test_torchvision_reads_realdata_like_ours(realdata):
    from torchvision.datasets import OxfordIIITPet, VOCSegmentation as TVVOC

    tv = TVVOC(root=str(realdata / "voc"), image_set="train")
    assert [Path(p).stem for p in tv.images] == Layout.of("voc", realdata).ids("train")
    pets = OxfordIIITPet(root=str(realdata / "pets"), split="trainval", target_types="segmentation")
    assert len(pets) == len(build_dataset("pets", realdata, "trainval"))
