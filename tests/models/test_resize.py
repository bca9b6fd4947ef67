"""One resize rule: the fused graph and the PyTorch path segment a photo at the same size.

:func:`segstyle.models.resize.scaled_size` is the rule; ``predict_logits`` (predict, stylize,
inpaint, evaluation) and :class:`FusedRegionStyle` (the shipped region-style graph) both call it.
Before, ``predict_logits`` used Python's ``round()`` (half to even) and the graph its own
half-up formula: a 257x256 photo was segmented at 128x128 by one and 129x128 by the other.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
import torch

from segstyle.models.resize import scaled_size

PRIMES = [2, 3, 5, 7, 11, 13, 17, 31, 61, 127, 257, 509]
SIDES = sorted({1, 2, 3, 4, 8, 9, 15, 16, 33, 64, 100, 127, 128, 129, 255, 256, 257, 375, 500, 511, *PRIMES})
BASES = (64, 128, 256)
# every pair of sides (tall, wide, square, 1 px wide or tall) at three base sizes: 3 x 33^2 = 3,267 cases
CASES = [(h, w, b) for b in BASES for h, w in itertools.product(SIDES, SIDES)]


def _half_up(n: int, base: int, short: int) -> int:
    """The specification, in exact rationals: n * base / short rounded half up."""
    q = Fraction(n * base, short)
    return int(q + Fraction(1, 2)) if q.denominator != 1 else int(q)


def test_rule_is_exact_rational_rounding_half_up():
    assert len(CASES) >= 500
    for h, w, b in CASES:
        short = min(h, w)
        assert scaled_size(h, w, b) == (_half_up(h, b, short), _half_up(w, b, short)), (h, w, b)
    assert scaled_size(257, 256, 128) == (129, 128)  # the size the two paths used to disagree on
    assert scaled_size(1, 7, 128) == (128, 896)      # 1 px tall: short side -> base, never 0


class _Probe(torch.nn.Module):
    """A segmentation network that records the size it is given (``{"out": logits}`` like torchvision)."""

    def __init__(self, classes: int = 2):
        super().__init__()
        self.seen: list[tuple[int, int]] = []
        self.classes = classes

    def forward(self, x):
        self.seen.append(tuple(x.shape[-2:]))
        return {"out": x[:, :1].expand(-1, self.classes, -1, -1)}


def test_predict_logits_and_the_fused_network_feed_the_same_size():
    """Eager: the size the segmentation network sees in ``predict_logits`` and in the fused module."""
    from segstyle.models import build_model
    from segstyle.pipelines.predict import predict_logits

    fused = build_model("fused_region_style", seg_model="unet_mobilenetv2", style_model="transformer_net",
                        seg_kwargs={"num_classes": 2}, class_ids=[1], base_size=128)
    probe_cli, probe_fused = _Probe(), _Probe()
    fused.seg = probe_fused
    sizes = [(h, w) for h, w in itertools.product(SIDES, SIDES)]
    with torch.no_grad():
        for h, w in sizes:
            x = torch.zeros(1, 3, h, w)
            predict_logits(probe_cli, x, 128)
            fused.seg_logits(x)
    assert len(probe_cli.seen) == len(sizes) >= 500
    assert probe_cli.seen == probe_fused.seen
    assert probe_cli.seen == [scaled_size(h, w, 128) for h, w in sizes]


@pytest.mark.slow
def test_the_exported_fused_graph_segments_at_the_rule_size():
    """The ONNX graph: the fused module's segmentation input, exported once with dynamic H/W and run
    by ONNX Runtime at 1,089 sizes, has the size the rule gives (torch.export keeps it symbolic)."""
    from torch.export import Dim

    from segstyle.export.backend.onnxrt.loader import ort_session
    from segstyle.models import build_model

    fused = build_model("fused_region_style", seg_model="unet_mobilenetv2", style_model="transformer_net",
                        seg_kwargs={"num_classes": 2}, class_ids=[1], base_size=128).eval()

    class SegInput(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.seg_input(x)

    with torch.no_grad():
        program = torch.onnx.export(SegInput(fused).eval(), (torch.rand(1, 3, 40, 56),), input_names=["input"],
                                    dynamic_shapes={"x": {0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC}},
                                    dynamo=True, external_data=False, verbose=False)
    sess = ort_session(program.model_proto.SerializeToString())
    got, want = [], []
    for h, w in itertools.product(SIDES, SIDES):
        out = sess.run(None, {"input": np.zeros((1, 3, h, w), np.float32)})[0]
        got.append(out.shape[-2:])
        want.append(scaled_size(h, w, 128))
    assert len(got) >= 500 and got == want
