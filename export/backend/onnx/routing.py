"""Parity for networks that route values by argmax decisions (SegNet's max-pooling switches).

A switch is an argmax over a 2x2 window. Where two cells are nearly tied, arithmetic that differs in
the last bits (ONNX Runtime's kernels against PyTorch's, FP16 against FP32) picks the other cell
and the decoder puts that value one pixel away: a handful of logits then differ by far more than
any rounding, although the graph is right. A plain "max abs error" check cannot tell that from a
wrong graph (measured on SegNet: FP16 with its own switches 5.4e-3 of a 0.13 output, the same FP16
arithmetic with FP32's switches 7e-5; the trained Pet SegNet's FP32 graph 0.019 against 1e-4).

So a routed network is compared in two parts, each with a fixed bound:

1. **decisions**: the graph's own switches are read back (its ``Cast`` of each boolean switch mask
   to float, marked as extra outputs of an in-memory copy, as Polygraphy marks layers), and every
   window where they differ from PyTorch's must be a near-tie in PyTorch's own activations: the
   cell PyTorch chose is at most a fixed bound above the cell the graph chose (FP32: the parity
   tolerance; FP16: 1 % of the level's largest activation, FP16's own error bound);
2. **everything else**: PyTorch run with the graph's switches must match the graph's output at the
   usual tolerance.

A graph that ignored its switches, swapped weights or baked in a shape fails 2; one whose
switches came from wrong activations fails 1. The model's side is ``routed(x, switches=None)``
(:meth:`segstyle.models.segnet.SegNet.routed`): the logits and each level's (pooled activations,
switches).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segstyle.core.errors import SegstyleError


def is_routed(net) -> bool:
    """Does ``net`` route values by argmax switches (has ``routed(x, switches=None)``)?"""
    return callable(getattr(net, "routed", None))


def switch_tensors(model) -> list[str]:
    """Names of the float switch masks in an ONNX graph: outputs of ``Cast`` nodes whose input is BOOL
    and whose output is 5-D (N, C, 4, H/2, W/2), in graph order."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {vi.name: vi.type.tensor_type for vi in list(g.value_info) + list(g.input) + list(g.output)}
    names = []
    for node in g.node:
        if node.op_type != "Cast" or not node.input:
            continue
        src, dst = types.get(node.input[0]), types.get(node.output[0])
        if src is None or dst is None or src.elem_type != onnx.TensorProto.BOOL:
            continue
        if len(dst.shape.dim) == 5:
            names.append(node.output[0])
    return names


def session_with_switches(onnx_path):
    """An ORT session over a copy of the graph whose switch masks are extra outputs, and their names."""
    import onnx

    from segstyle.export.backend.onnxrt.loader import ort_session

    model = onnx.load(str(onnx_path))
    names = switch_tensors(model)
    if not names:
        raise SegstyleError(f"{onnx_path}: no switch masks (Cast from BOOL, 5-D) found in a routed network's graph")
    for n in names:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    return ort_session(model.SerializeToString()), names


def _window_values(pre, switches):
    """The activation each window's switch picks: (N, C, H/2, W/2), from the cells the pooling itself
    compares (:func:`segstyle.models.pooling.window_cells`)."""
    import torch

    from segstyle.models.pooling import window_cells

    return (torch.stack(window_cells(pre), dim=2) * switches.to(pre.dtype)).sum(2)


def routed_compare(net, sess, names, x, *, atol: float, decision_atol: float = 0.0,
                   decision_rtol: float = 0.0, outputs: list | None = None) -> dict[str, Any]:
    """Compare one batch ``x`` (a torch tensor) through a routed network; see the module docstring.

    ``sess``/``names``: :func:`session_with_switches`; ``outputs``: that session's outputs for ``x``
    when the caller already ran it (else it is run here).

    A flipped window's margin is bounded by ``max(decision_atol, decision_rtol x`` the level's largest
    activation``)`` (FP16 rounds relative to magnitude, FP32 reordering is judged absolutely).
    Returns the plain max abs error, the error with the graph's switches forced
    (``forced_max_abs_err``), flipped windows per level, the largest margin of a flipped window and
    its ratio to its bound (``margin_over_bound``), and ``passed``.
    """
    import torch

    outs = outputs if outputs is not None else sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    got, graph_sw = outs[0], outs[1:]
    with torch.no_grad():
        ref, levels = net.routed(x)
        by_shape: dict[tuple, list[np.ndarray]] = {}
        for s in graph_sw:
            by_shape.setdefault(tuple(s.shape), []).append(s)
        forced, flips, margin, ratio = [], [], 0.0, 0.0
        for pre, s in levels:
            cand = by_shape.get(tuple(s.shape), [])
            if len(cand) != 1:
                raise SegstyleError(f"routed parity: {len(cand)} graph switch masks of shape {tuple(s.shape)} "
                                    f"(graph outputs {names}); expected one per level")
            gs = torch.from_numpy(np.ascontiguousarray(cand[0])) > 0.5
            if not bool((gs.sum(2) <= 1).all()):
                raise SegstyleError("routed parity: a graph switch mask picks more than one cell of a window")
            flipped = (gs != s.bool()).any(2)
            flips.append(int(flipped.sum()))
            if flips[-1]:
                gap = float((_window_values(pre, s) - _window_values(pre, gs))[flipped].abs().max())
                bound = max(decision_atol, decision_rtol * float(pre.abs().max()))
                margin, ratio = max(margin, gap), max(ratio, gap / bound if bound > 0 else float("inf"))
            forced.append(gs)
        ref_forced, _ = net.routed(x, switches=forced)
    ref, ref_forced = ref.float().numpy(), ref_forced.float().numpy()
    plain = float(np.abs(got.astype(np.float64) - ref).max())
    forced_err = float(np.abs(got.astype(np.float64) - ref_forced).max())
    return {"max_abs_err": plain, "forced_max_abs_err": forced_err, "flipped_windows": flips,
            "windows": [int(np.prod(s.shape) // 4) for _, s in levels],
            "max_flip_margin": margin, "margin_over_bound": ratio, "decision_atol": decision_atol,
            "decision_rtol": decision_rtol, "atol": atol,
            "passed": bool(np.isfinite(got).all()) and forced_err <= atol and ratio <= 1.0}
