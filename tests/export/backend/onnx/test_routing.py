"""Routed parity (export/backend/onnx/routing.py): a graph whose argmax switches flip at near-ties
passes, a graph that routes wrongly or computes wrongly fails, whatever its plain error says.

The network is a two-conv miniature of SegNet's pooling/unpooling (exports in seconds); the
"graphs" are exports of deliberately changed copies, compared against the unchanged module."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from segstyle.export.backend.onnx.routing import is_routed, routed_compare, session_with_switches, switch_tensors
from segstyle.models.pooling import max_pool_switches, max_unpool

ATOL = 1e-4


class Mini(nn.Module):
    """conv -> 2x2 max pool with switches -> unpool -> conv; ``delta`` is added before pooling
    (the graph-side arithmetic difference), ``roll`` moves every switch to another cell (a wrong unpool)."""

    def __init__(self, delta: torch.Tensor | None = None, roll: bool = False, scale: float = 1.0):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(4, 2, 3, padding=1)
        with torch.no_grad():
            self.a.weight.copy_(torch.eye(4, 3).view(4, 3, 1, 1))
            self.a.bias.zero_()
            self.b.weight.copy_(torch.randn(self.b.weight.shape, generator=g) * scale)
            self.b.bias.copy_(torch.randn(2, generator=g))
        self.register_buffer("delta", delta if delta is not None else torch.zeros(1, 4, 8, 8))
        self.roll = roll

    def routed(self, x, switches=None):
        pre = self.a(x) + self.delta
        v, s = max_pool_switches(pre)
        if self.roll:
            s = s.roll(2, dims=2)  # the window's winner moves two cells on
        if switches is not None:
            s = switches[0].to(s.dtype)
        return self.b(max_unpool(v, s)), [(pre, s)]

    def forward(self, x):
        return self.routed(x)[0]


def _export(net: nn.Module, path):
    torch.onnx.export(net.eval(), (torch.rand(1, 3, 8, 8),), str(path), dynamo=True, input_names=["input"],
                      output_names=["out"], verbose=False)
    return path


@pytest.fixture(scope="module")
def near_ties():
    """Windows whose two top cells differ by 1e-7 (a near-tie at FP32 parity scale) and one clear winner elsewhere."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 8, 8, generator=g)
    x[..., 1::2, 1::2] = x[..., 0::2, 0::2] + 1e-7  # cell 3 of every window just above cell 0 ...
    x[..., 0::2, 1::2] = x[..., 0::2, 0::2] - 0.5   # ... and the other two clearly below
    x[..., 1::2, 0::2] = x[..., 0::2, 0::2] - 0.5
    return x


def test_only_a_network_with_routed_is_routed():
    from segstyle.models import build_model

    assert is_routed(build_model("segnet")) and is_routed(Mini())
    assert not is_routed(build_model("fcn_resnet18")) and not is_routed(build_model("unet_binary"))


def test_flips_at_near_ties_pass_though_the_plain_error_is_large(tmp_path, near_ties):
    ref = Mini()
    path = _export(Mini(delta=torch.full((1, 4, 8, 8), 0.0).index_fill_(2, torch.tensor([0, 2, 4, 6]), 1e-6)),
                   tmp_path / "g.onnx")  # the graph adds 1e-6 to cell 0's rows: every near-tie flips
    assert len(switch_tensors(__import__("onnx").load(str(path)))) == 1
    r = routed_compare(ref, *session_with_switches(path), near_ties, atol=ATOL, decision_atol=ATOL)
    assert r["flipped_windows"][0] == 3 * 16  # 3 of the 4 channels carry the input (eye(4, 3)); each window flips
    assert r["max_abs_err"] > 100 * ATOL  # the plain check would fail this right graph
    assert r["forced_max_abs_err"] <= ATOL and r["max_flip_margin"] < 2e-6 and r["passed"]


def test_the_same_graph_without_flips_is_plain_parity(tmp_path, near_ties):
    path = _export(Mini(), tmp_path / "g.onnx")
    r = routed_compare(Mini(), *session_with_switches(path), near_ties, atol=ATOL, decision_atol=ATOL)
    assert r["flipped_windows"] == [0] and r["max_abs_err"] == r["forced_max_abs_err"] <= ATOL and r["passed"]


def test_a_graph_that_unpools_to_the_wrong_cells_fails(tmp_path, near_ties):
    path = _export(Mini(roll=True), tmp_path / "g.onnx")
    r = routed_compare(Mini(), *session_with_switches(path), near_ties, atol=ATOL, decision_atol=ATOL)
    assert sum(r["flipped_windows"]) > 0 and r["margin_over_bound"] > 1 and not r["passed"]


def test_a_flip_that_is_no_near_tie_fails(tmp_path, near_ties):
    big = torch.zeros(1, 4, 8, 8).index_fill_(2, torch.tensor([0, 2, 4, 6]), 1.0)  # the graph's activations are wrong
    path = _export(Mini(delta=big), tmp_path / "g.onnx")
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))  # no near-ties: flips are real decisions
    r = routed_compare(Mini(), *session_with_switches(path), x, atol=ATOL, decision_atol=ATOL)
    assert r["flipped_windows"][0] > 0 and r["max_flip_margin"] > 0.1 and not r["passed"]
    # at near-ties the same graph flips only tied windows, and forcing its switches exposes its values
    r = routed_compare(Mini(), *session_with_switches(path), near_ties, atol=ATOL, decision_atol=ATOL)
    assert r["max_flip_margin"] < 2e-6 and r["forced_max_abs_err"] > 0.1 and not r["passed"]


def test_a_graph_with_other_weights_fails_with_its_own_switches(tmp_path, near_ties):
    path = _export(Mini(scale=1.001), tmp_path / "g.onnx")  # same switches, decoder 0.1 % off
    r = routed_compare(Mini(), *session_with_switches(path), near_ties, atol=ATOL, decision_atol=ATOL)
    assert r["flipped_windows"] == [0] and r["forced_max_abs_err"] > ATOL and not r["passed"]


def test_segnet_routed_with_its_own_switches_is_forward_and_other_switches_are_not():
    from segstyle.models import build_model

    torch.manual_seed(0)
    net = build_model("segnet").eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        out, levels = net.routed(x)
        assert torch.equal(out, net(x)["out"])
        own, _ = net.routed(x, switches=[s for _, s in levels])
        rolled, _ = net.routed(x, switches=[s.roll(1, dims=2) for _, s in levels])
    assert torch.equal(own, out) and float((rolled - out).abs().max()) > 100 * ATOL
