"""The images an INT8 graph is calibrated on: a seeded draw from the network's *training* images.

Read here, in the pipeline (the export layer never reads a dataset), and handed to
:func:`segstyle.export.backend.onnx.int8.export_int8` as arrays with their ids, which the
calibration record keeps. Training images, never the validation split: the graph is then judged on
images its ranges were not fitted to. The data root is DVC-tracked (``data.dvc``), so the ids plus
the data version say exactly which pixels set the ranges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from segstyle.core.errors import SegstyleError


@dataclass
class Calibration:
    arrays: list[np.ndarray]   # (1, C, H, W) float32 0..1, or (1, nz) noise
    ids: list[str]
    source: str


def fit_crop(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) float -> (3, *size): resize the short side onto the crop (antialiased), centre crop."""
    h, w = image.shape[-2:]
    th, tw = size
    s = max(th / h, tw / w)
    nh, nw = max(th, round(h * s)), max(tw, round(w * s))
    img = F.interpolate(image[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=s < 1)[0]
    top, left = (nh - th) // 2, (nw - tw) // 2
    return img[:, top:top + th, left:left + tw].clamp(0, 1)


def _draw(n: int, count: int, seed: int) -> list[int]:
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:count]
    return sorted(idx.tolist())


def calibration_inputs(task: str, params, *, dataset: str | None, noise_dim: int | None = None) -> Calibration:
    """``params.export.int8.calibration.count`` training inputs of a network (seeded by ``params.seed``).

    Segmentation: the train split of ``dataset``; style and the fused region-style graph: the style
    network's content images (VOC + Pet photos under the data root); a noise network: seeded N(0, 1).
    """
    cal = params.export.int8.calibration
    count, size, seed = int(cal.count), tuple(int(v) for v in cal.size), int(params.seed)
    if noise_dim is not None:
        from segstyle.export.backend.pyt.loader import noise_batch

        z = noise_batch(noise_dim, count, seed + 1).numpy()  # not the validation batch (seed)
        return Calibration([z[i:i + 1] for i in range(count)], [f"z{i:03d}" for i in range(count)],
                           f"N(0, 1) noise, seed {seed + 1}")
    if task == "segmentation":
        from segstyle.pipelines.data.datasets import build_dataset

        ds_name = dataset or "voc"
        split = params.data.splits[ds_name].train
        ds = build_dataset(ds_name, params.data.root, split, pets_mode=params.data.pets_mode, voc_mode=params.data.voc_mode)
        if len(ds) == 0:
            raise SegstyleError(f"{ds_name} split '{split}' under {params.data.root} is empty: nothing to calibrate on")
        picks = _draw(len(ds), count, seed)
        arrays, ids = [], []
        for i in picks:
            image, _ = ds[i]
            img = torch.as_tensor(image)
            img = img.float() / 255.0 if img.dtype == torch.uint8 else img.float()
            arrays.append(fit_crop(img, size)[None].numpy().astype(np.float32))
            ids.append(ds.ids[i])
        return Calibration(arrays, ids, f"{ds_name} '{split}' split ({params.data.root}), {size[0]}x{size[1]} "
                                        f"centre crops, seed {seed}")
    from segstyle.pipelines.style.images import find_content_images, read_rgb, to_tensor

    files = find_content_images(params.data.root)
    picks = _draw(len(files), count, seed)
    arrays = [fit_crop(to_tensor(read_rgb(files[i]))[0], size)[None].numpy().astype(np.float32) for i in picks]
    return Calibration(arrays, [files[i].stem for i in picks],
                       f"style content images ({params.data.root}), {size[0]}x{size[1]} centre crops, seed {seed}")
