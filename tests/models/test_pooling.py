"""The export-friendly pooling the new segmentation networks rest on, against PyTorch's own ops.

What wrong code these catch: an unpool that ignores the switches (nearest/bilinear upsampling, or
every tied cell filled) differs from ``MaxUnpool2d``; a tie rule other than "first maximum in
row-major order" differs on ReLU zeros; dropping the odd row/column differently shifts the map;
pyramid bins computed once at a fixed size, or with non-overlapping ``size // bins`` windows,
differ from ``F.adaptive_avg_pool2d`` at sizes the bins do not divide; and each graph must keep
those figures under ONNX Runtime at sizes it was not exported at.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segstyle.models.pooling import adaptive_avg_pool2d, max_pool_switches, max_unpool


@pytest.mark.parametrize("size", [(7, 7), (14, 9), (5, 13), (6, 6), (1, 3), (17, 4)])
@pytest.mark.parametrize("bins", [1, 2, 3, 6])
def test_adaptive_pool_is_pytorchs_at_any_size(size, bins):
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(adaptive_avg_pool2d(x, bins), F.adaptive_avg_pool2d(x, bins), atol=1e-6, rtol=1e-6)


def test_overlapping_bins_are_not_floor_windows():
    """7 rows in 2 bins: PyTorch's bins are rows 0-3 and 3-6 (row 3 in both), not 0-2 / 3-5."""
    x = torch.arange(7.0).reshape(1, 1, 7, 1)
    assert adaptive_avg_pool2d(x, 2)[0, 0].tolist() == [[1.5, 1.5], [4.5, 4.5]]  # 1 column: both bins


def _relu_with_ties(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = F.relu(torch.randn(*shape, generator=g))  # about half the cells 0: whole windows tie
    x[:, :, :4, :4] = 0
    x[:, -1] = x[:, -1].round()  # integer values: ties between non-zero maxima too
    return x


@pytest.mark.parametrize("size", [(8, 8), (9, 7), (33, 47), (2, 3)])
def test_unpool_equals_maxpool_indices_and_maxunpool(size):
    x = _relu_with_ties((2, 3, *size))
    pooled, idx = F.max_pool2d(x, 2, 2, return_indices=True)
    values = torch.randn(pooled.shape, generator=torch.Generator().manual_seed(1))
    ours, switches = max_pool_switches(x)
    assert torch.equal(ours, pooled)
    assert torch.equal(switches.sum(2), torch.ones_like(pooled, dtype=torch.int64))  # one cell per window
    assert torch.equal(max_unpool(values, switches, size), F.max_unpool2d(values, idx, 2, 2, output_size=size))


def test_the_wrong_unpools_differ_from_maxunpool():
    """The comparison above can fail: nearest upsampling (no switches) and filling every tied cell
    (the ``x == up(pool(x))`` mask without a tie rule) both differ from ``MaxUnpool2d``."""
    x = _relu_with_ties((1, 2, 8, 8))
    pooled, idx = F.max_pool2d(x, 2, 2, return_indices=True)
    values = torch.randn(pooled.shape, generator=torch.Generator().manual_seed(1))
    ref = F.max_unpool2d(values, idx, 2, 2)
    up = F.interpolate(values, scale_factor=2, mode="nearest")
    assert not torch.equal(up, ref)
    assert not torch.equal(up * (x == F.interpolate(pooled, scale_factor=2, mode="nearest")), ref)
    _, switches = max_pool_switches(x)
    assert torch.equal(max_unpool(values, switches, (8, 8)), ref)


@pytest.mark.slow
def test_pool_graphs_keep_their_figures_at_unseen_sizes(tmp_path):
    """One dynamic-shape ONNX graph of pool -> unpool and of the pyramid, run at sizes and batches it
    was not exported at (bins that do not divide included)."""
    import onnxruntime as ort
    from torch.export import Dim

    class Net(torch.nn.Module):
        def forward(self, x):
            y = F.relu(x)
            p, s = max_pool_switches(y)
            return max_unpool(p * 2, s, y.shape[-2:]), adaptive_avg_pool2d(y, 6), adaptive_avg_pool2d(y, 3)

    net = Net().eval()
    dyn = {"x": {0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC}}
    with torch.no_grad():
        prog = torch.onnx.export(net, (torch.rand(1, 3, 24, 24),), dynamic_shapes=dyn, dynamo=True, verbose=False)
    path = tmp_path / "pool.onnx"
    prog.save(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(3, 3, 20, 17), (2, 3, 9, 8), (1, 3, 13, 31)]:
        x = _relu_with_ties(shape, seed=2) - 0.3
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            want = net(x)
        for g, w in zip(got, want):
            assert g.shape == tuple(w.shape)
            np.testing.assert_allclose(g, w.numpy(), atol=1e-5)


@pytest.mark.slow
def test_the_pytorch_ops_route_is_what_the_rewrite_avoids(tmp_path):
    """Why the rewrite: exported with dynamic H/W, ``F.adaptive_avg_pool2d(x, 6)`` becomes one
    AveragePool with the export size's kernel (silently wrong at 7x7, a wrong shape at 14x9), and
    ``MaxPool2d(return_indices=True)`` carries the ``Indices`` output the TensorRT lint rejects. If
    a torch release exports either correctly, this test fails and the rewrite can be reconsidered."""
    import onnxruntime as ort
    from torch.export import Dim

    from segstyle.export.backend.trt.lint import lint_model

    class Adaptive(torch.nn.Module):
        def forward(self, x):
            return F.adaptive_avg_pool2d(x, 6)

    class Indices(torch.nn.Module):
        def forward(self, x):
            p, i = F.max_pool2d(x, 2, 2, return_indices=True)
            return F.max_unpool2d(p, i, 2, 2, output_size=x.shape[-2:])

    dyn = {"x": {0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC}}
    with torch.no_grad():
        adaptive = torch.onnx.export(Adaptive(), (torch.rand(1, 3, 24, 24),), dynamic_shapes=dyn, dynamo=True,
                                     verbose=False)
        indices = torch.onnx.export(Indices(), (torch.rand(1, 3, 24, 24),), dynamic_shapes=dyn, dynamo=True,
                                    verbose=False)
    adaptive.save(str(tmp_path / "a.onnx"))
    sess = ort.InferenceSession(str(tmp_path / "a.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, 7, 7)
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape != (1, 3, 6, 6) or np.abs(got - F.adaptive_avg_pool2d(x, 6).numpy()).max() > 0.1
    report = lint_model(indices.model_proto, "10.3")
    assert report["errors"] > 0
    assert any(o["op"] == "MaxPool" and o["status"] == "error" for o in report["ops"]), report["ops"]
