"""Class names of the label sets segstyle trains on (Pascal VOC 2012, Oxford-IIIT Pet trimaps).

At the ground, beside the models, because a segmentation head's output channels mean these classes:
checkpoints, ONNX metadata, bundles and the datasets all name them from here.
"""

from __future__ import annotations

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
PETS_TRIMAP_CLASSES = ("pet", "background", "border")   # trimap value - 1
PETS_BINARY_CLASSES = ("background", "pet")              # border -> 255 (ignored)
IGNORE_INDEX = 255


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
