"""Editing photos with segmentation masks: object removal by inpainting (:mod:`.inpaint`) and
region-aware stylisation (:mod:`.region`). Both take the mask from a segmentation checkpoint (or a
given mask file) and change only the pixels the mask selects."""
