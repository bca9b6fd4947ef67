"""ConvTranspose -> Conv + DepthToSpace (sub-pixel convolution): an exact rewrite for ONNX Runtime CPU.

ONNX Runtime's CPU provider has no integer ConvTranspose kernel, and its float one is slow: in the
demo U-Net (MobileNetV2 encoder, four 3x3 stride-2 transposed convs and a transposed-conv head) the
five ConvTranspose nodes took 82 of 115 ms at 512x512 (profiled, 2 threads), so quantising the rest
of the graph could not make it much faster. A stride-``s`` transposed convolution is ``s*s``
ordinary convolutions over the *input*, one per output phase, interleaved (Shi et al. 2016,
"sub-pixel convolution"): output ``y[s*q + r] = sum_k x[q + (r + p - k) / s] * w[k]`` over the taps
``k`` with ``(r + p - k) % s == 0``. So the node becomes one Conv whose ``s*s*C_out`` output
channels are the phases (zero where a phase has no tap), then ``DepthToSpace(CRD)``, then a Slice
where the transposed conv's output is shorter than ``s`` times its input. Padding is static for
any input size, so the dynamic batch/H/W of the graph survive, and the Conv quantises to an integer
QLinearConv like every other conv.

Rewritten: 2-D, ``group`` 1, ``dilations`` 1, explicit ``pads`` (``auto_pad`` NOTSET), no
``output_shape``; any other ConvTranspose is left as it is and listed with its reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _attrs(node) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def phase_taps(k: int, s: int, p: int) -> tuple[int, int, dict[tuple[int, int], int]]:
    """For one axis: (lowest input offset, kernel size K of the rewritten conv, {(phase, tap): kernel index})."""
    taps = {}
    for r in range(s):
        for kk in range(k):
            if (r + p - kk) % s == 0:
                taps[(r, (r + p - kk) // s)] = kk
    offsets = [d for _, d in taps]
    lo, hi = min(offsets), max(offsets)
    return lo, hi - lo + 1, {(r, d - lo): kk for (r, d), kk in taps.items()}


def subpixel_weights(w: np.ndarray, bias: np.ndarray | None, s: tuple[int, int], p: tuple[int, int]):
    """ConvTranspose weight (C_in, C_out, kh, kw) -> Conv weight (C_out*sh*sw, C_in, Kh, Kw) and bias."""
    cin, cout, kh, kw = w.shape
    loh, Kh, th = phase_taps(kh, s[0], p[0])
    low, Kw, tw = phase_taps(kw, s[1], p[1])
    out = np.zeros((cout, s[0], s[1], cin, Kh, Kw), dtype=w.dtype)
    for (rh, ih), kh_ in th.items():
        for (rw, iw), kw_ in tw.items():
            out[:, rh, rw, :, ih, iw] = w[:, :, kh_, kw_].T
    b = None if bias is None else np.repeat(bias, s[0] * s[1]).astype(bias.dtype)
    return out.reshape(cout * s[0] * s[1], cin, Kh, Kw), b, (loh, low), (Kh, Kw)


def convtranspose_to_conv(model) -> tuple[Any, list[str], list[tuple[str, str]]]:
    """A copy of ``model`` with every supported ConvTranspose rewritten; (model, rewritten, skipped with reason)."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    readers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in g.output}
    absorbed: set[int] = set()   # ReLUs moved in front of the DepthToSpace
    done, skipped, new_nodes = [], [], []
    for node in g.node:
        if id(node) in absorbed:
            continue
        if node.op_type != "ConvTranspose":
            new_nodes.append(node)
            continue
        a = _attrs(node)
        k = list(a.get("kernel_shape") or [])
        why = None
        if node.input[1] not in inits:
            why = "weight is not an initializer"
        elif numpy_helper.to_array(inits[node.input[1]]).ndim != 4:
            why = "not 2-D"
        elif int(a.get("group", 1)) != 1:
            why = f"group {a.get('group')}"
        elif any(d != 1 for d in a.get("dilations", [1, 1])):
            why = "dilated"
        elif a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            why = f"auto_pad {a.get('auto_pad')}"
        elif "output_shape" in a:
            why = "output_shape given"
        elif len(set(a.get("strides", [1, 1]))) != 1:
            why = "unequal strides"
        elif len(node.input) > 2 and node.input[2] and node.input[2] not in inits:
            why = "bias is not an initializer"
        if why:
            skipped.append((node.name, why))
            new_nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        k = k or list(w.shape[2:])
        s = list(a.get("strides", [1, 1]))
        pads = list(a.get("pads", [0, 0, 0, 0]))
        op = list(a.get("output_padding", [0, 0]))
        if pads[0] != pads[2] or pads[1] != pads[3]:
            skipped.append((node.name, "asymmetric pads"))
            new_nodes.append(node)
            continue
        bias = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] else None
        wc, bc, lo, K = subpixel_weights(w, bias, (s[0], s[1]), (pads[0], pads[1]))
        # per axis: output n_out = (n-1)*s - 2p + k + op = s*n + c; conv output length Q = n + ceil(c/s)
        cs = [k[i] + op[i] - 2 * pads[i] - s[i] for i in range(2)]
        extra = [-(-cs[i] // s[i]) for i in range(2)]
        p0 = [-lo[i] for i in range(2)]
        p1 = [extra[i] + K[i] - 1 - p0[i] for i in range(2)]
        crop = [s[i] * extra[i] - cs[i] for i in range(2)]
        if min(p0 + p1) < 0:  # a tap beyond the output on this side: crop by a negative pad instead
            skipped.append((node.name, "negative padding"))
            new_nodes.append(node)
            continue
        base = node.name or node.output[0]
        wname, bname = f"{base}_subpixel_w", f"{base}_subpixel_b"
        g.initializer.append(numpy_helper.from_array(wc, wname))
        conv_in = [node.input[0], wname]
        if bc is not None:
            g.initializer.append(numpy_helper.from_array(bc, bname))
            conv_in.append(bname)
        out_name = node.output[0]
        after = readers.get(out_name, [])
        relu = after[0] if (len(after) == 1 and after[0].op_type == "Relu" and out_name not in graph_outputs
                            and crop == [0, 0] and s[0] > 1) else None
        if relu is not None:  # ReLU commutes with the interleave: let the conv absorb it (QLinearConv + ReLU)
            absorbed.add(id(relu))
            out_name = relu.output[0]
        full = out_name if crop == [0, 0] else f"{base}_subpixel_full"
        phases = f"{base}_subpixel_phases" if s[0] > 1 else full
        new_nodes.append(helper.make_node("Conv", conv_in, [phases], name=f"{base}_subpixel_conv",
                                          kernel_shape=list(K), pads=[p0[0], p0[1], p1[0], p1[1]],
                                          strides=[1, 1], dilations=[1, 1], group=1))
        if relu is not None:
            new_nodes.append(helper.make_node("Relu", [phases], [phases + "_relu"], name=f"{base}_subpixel_relu"))
            phases += "_relu"
        if s[0] > 1:
            new_nodes.append(helper.make_node("DepthToSpace", [phases], [full], name=f"{base}_subpixel_d2s",
                                              blocksize=int(s[0]), mode="CRD"))
        if crop != [0, 0]:
            names = [f"{base}_subpixel_{x}" for x in ("starts", "ends", "axes")]
            g.initializer.extend([numpy_helper.from_array(np.array([0, 0], np.int64), names[0]),
                                  numpy_helper.from_array(np.array([-crop[0] or np.iinfo(np.int64).max,
                                                                    -crop[1] or np.iinfo(np.int64).max], np.int64),
                                                          names[1]),
                                  numpy_helper.from_array(np.array([2, 3], np.int64), names[2])])
            new_nodes.append(helper.make_node("Slice", [full, *names], [node.output[0]],
                                              name=f"{base}_subpixel_crop"))
        done.append(node.name)
    del g.node[:]
    g.node.extend(new_nodes)
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used or t.name in {o.name for o in g.output}]
    del g.initializer[:]
    g.initializer.extend(keep)
    return m, done, skipped
