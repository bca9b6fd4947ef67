"""The one rule for the size a segmentation network sees: short side scaled to ``base_size``.

Used by :func:`segstyle.pipelines.predict.predict_logits` (predict, stylize, inpaint, evaluation,
training's validation) and by the fused region-style graph
(:class:`segstyle.models.fused_region_style.FusedRegionStyle`), so the engine that ships segments
at exactly the size the PyTorch path does. Why integers, half up: the rule must also run inside
``torch.export`` on symbolic sizes, where Python's ``round()`` (floats, half to even) does not
exist; ``(n * base + short // 2) // short`` is the exact rational rounding of ``n * base / short``
with ties upwards, the same in eager Python and in the exported graph. Before the two paths
shared this helper, ``round()`` and the graph's formula disagreed on 256 of 2,691 sizes (a
257x256 photo: 128x128 against 129x128).
"""

from __future__ import annotations


def scaled_size(h, w, base_size: int) -> tuple:
    """(H', W') with the short side ``base_size`` and the aspect ratio kept, each side rounded half up.

    ``h``/``w`` may be Python ints or torch's symbolic sizes (``x.shape[-2:]`` under export); only
    integer ``+``, ``*``, ``//`` and ``min`` are used, so the result stays symbolic in a graph. The
    short side maps to ``base_size`` exactly; the long side is at least that, so no side is 0.
    """
    short = min(h, w)
    half = short // 2
    return (h * base_size + half) // short, (w * base_size + half) // short
