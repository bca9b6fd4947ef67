"""Class names of the label sets segstyle trains on (Pascal VOC 2012, Oxford-IIIT Pet trimaps).

At the ground, beside the models, because a segmentation head's output channels mean these classes:
checkpoints, ONNX metadata, bundles and the datasets all name them from here.
"""

from __future__ import annotations

from typing import Any

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
PETS_TRIMAP_CLASSES = ("pet", "background", "border")   # trimap value - 1
PETS_BINARY_CLASSES = ("background", "pet")              # border -> 255 (ignored)
VOC_PERSON_CLASSES = ("background", "person")            # VOC "person" against every other class; void stays 255
VOC_PERSON_INDEX = VOC_CLASSES.index("person")
IGNORE_INDEX = 255


def dataset_classes(dataset: str, pets_mode: str = "trimap", voc_mode: str = "classes") -> tuple[str, ...]:
    """The label set of ``dataset`` in its mode (``params.yaml`` ``data.pets_mode`` / ``data.voc_mode``)."""
    if dataset == "voc":
        return VOC_CLASSES if voc_mode == "classes" else VOC_PERSON_CLASSES
    if dataset == "pets":
        return PETS_TRIMAP_CLASSES if pets_mode == "trimap" else PETS_BINARY_CLASSES
    raise ValueError(f"unknown dataset {dataset!r}")


def output_channels(num_classes: int) -> int:
    """Channels a segmentation head needs for ``num_classes`` labels: a foreground/background task
    (two labels) is one logit, read through a sigmoid and thresholded at 0.5 (logit 0), trained with
    BCE + Dice; every other task is one logit per class (softmax, cross-entropy)."""
    return 1 if num_classes == 2 else num_classes


def class_names(num_classes: int, explicit: list[str] | None = None) -> list[str]:
    """Class names for a segmentation head with ``num_classes`` outputs.

    Checkpoints may carry their own ``classes``; otherwise the count identifies the dataset
    (21 = VOC, 3 = Pets trimap, 2 = Pets binary), the only label sets segstyle trains on.
    """
    if explicit:
        return list(explicit)
    known = {len(VOC_CLASSES): VOC_CLASSES, len(PETS_TRIMAP_CLASSES): PETS_TRIMAP_CLASSES,
             len(PETS_BINARY_CLASSES): PETS_BINARY_CLASSES}
    return list(known.get(num_classes, [f"class_{i}" for i in range(num_classes)]))


def label_map(logits: Any, axis: int = 1) -> Any:
    """The label map a network's logits mean: argmax over the class ``axis``, or, for a one-channel
    (binary foreground) output, ``logit > 0`` (sigmoid > 0.5): an argmax over one channel is 0
    everywhere and would agree with anything. Works on numpy arrays and torch tensors alike (both
    give integer labels); the one rule every comparison, metric and prediction uses."""
    if logits.shape[axis] == 1:
        return (logits > 0).sum(axis)
    return logits.argmax(axis)
