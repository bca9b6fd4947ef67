"""Compare the artifacts of two ``make run``s: is the behaviour unchanged?

    python benchmarks/compare_runs.py BEFORE/artifacts AFTER/artifacts [--json OUT]

For a refactor's acceptance ("after make run, the weights, every metrics figure and the deployment
matrix, latency aside, equal those of the commit before"): every checkpoint's ``state_dict`` (and
optimizer / scheduler / discriminator state) with ``torch.equal``; every figure of every
``metrics.json`` and every matrix row, with wall-clock and latency keys left out; every ONNX graph's
initializers, nodes and node names (metadata aside: it records commits); and which pictures and other
files differ in bytes. Exits 1 when weights, figures, matrix or graphs differ.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

TIME = re.compile(r"(second|_s$|time|p50|p95|p99|latency|_ms|throughput|wall|duration|load_average)", re.I)


def _flat(o, pre=""):
    if isinstance(o, dict):
        for k, v in o.items():
            yield from _flat(v, f"{pre}.{k}" if pre else k)
    elif isinstance(o, list):
        for i, v in enumerate(o):
            yield from _flat(v, f"{pre}[{i}]")
    else:
        yield pre, o


def _untimed(o):
    if isinstance(o, dict):
        return {k: _untimed(v) for k, v in o.items() if not TIME.search(k)}
    if isinstance(o, list):
        return [_untimed(v) for v in o]
    return o


def weights(a: Path, b: Path) -> dict:
    import torch

    out = {}
    for ck in sorted(a.rglob("*.pt")):
        x = torch.load(ck, map_location="cpu", weights_only=True)
        y = torch.load(b / ck.relative_to(a), map_location="cpu", weights_only=True)
        row = {}
        for key in ("state_dict", "optimizer", "scheduler", "discriminator"):
            if key in x:
                fx, fy = dict(_flat(x[key])), dict(_flat(y.get(key, {})))
                row[key] = fx.keys() == fy.keys() and all(
                    torch.equal(fx[k], fy[k]) if torch.is_tensor(fx[k]) else fx[k] == fy[k] for k in fx)
        row["other_keys_differing"] = sorted(k for k in set(x) | set(y) if k not in row and str(x.get(k)) != str(y.get(k)))
        out[str(ck.relative_to(a))] = row
    return out


def figures(a: Path, b: Path) -> dict:
    out = {}
    for m in sorted(a.rglob("metrics.json")):
        fa = {k: v for k, v in _flat(json.loads(m.read_text())) if not TIME.search(k)}
        fb = {k: v for k, v in _flat(json.loads((b / m.relative_to(a)).read_text())) if not TIME.search(k)}
        out[str(m.relative_to(a))] = {"figures": len(fa), "differ": {k: [fa.get(k), fb.get(k)] for k in set(fa) | set(fb)
                                                                      if fa.get(k) != fb.get(k)}}
    return out


def graphs(a: Path, b: Path) -> dict:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    out = {}
    for g in sorted(a.rglob("export/*/*.onnx")):
        x, y = onnx.load(str(g)), onnx.load(str(b / g.relative_to(a)))
        ix = {i.name: numpy_helper.to_array(i) for i in x.graph.initializer}
        iy = {i.name: numpy_helper.to_array(i) for i in y.graph.initializer}
        nodes = lambda m: [(n.name, n.op_type, list(n.input), list(n.output)) for n in m.graph.node]  # noqa: E731
        out[str(g.relative_to(a))] = ix.keys() == iy.keys() and all(np.array_equal(ix[k], iy[k]) for k in ix) \
            and nodes(x) == nodes(y)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--json", type=Path, default=None, help="Write the full report here.")
    a = ap.parse_args(argv)
    ma, mb = (json.loads((d / "matrix.json").read_text())["rows"] for d in (a.before, a.after))
    sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    files = {p.relative_to(a.before) for p in a.before.rglob("*") if p.is_file()}
    report = {"weights": weights(a.before, a.after), "metrics": figures(a.before, a.after),
              "matrix": {"rows": len(ma), "equal_latency_aside": _untimed(ma) == _untimed(mb)},
              "graphs_equal": graphs(a.before, a.after),
              "bytes_differ": sorted(str(p) for p in files if not (a.after / p).is_file()
                                     or sha(a.before / p) != sha(a.after / p))}
    if a.json:
        a.json.write_text(json.dumps(report, indent=1, sort_keys=True, default=str) + "\n")
    ok_w = all(all(v for k, v in r.items() if k != "other_keys_differing") for r in report["weights"].values())
    ok_f = all(not r["differ"] for r in report["metrics"].values())
    n_fig = sum(r["figures"] for r in report["metrics"].values())
    pics = [p for p in report["bytes_differ"] if p.endswith((".png", ".jpg"))]
    print(f"checkpoints {len(report['weights'])}: weights equal {ok_w}; metrics files {len(report['metrics'])}, "
          f"{n_fig} figures: equal {ok_f}; matrix {len(ma)} rows equal (latency aside) "
          f"{report['matrix']['equal_latency_aside']}; graphs {len(report['graphs_equal'])} equal "
          f"{all(report['graphs_equal'].values())}; pictures differing {len(pics)}; files differing in bytes "
          f"{len(report['bytes_differ'])}")
    return 0 if ok_w and ok_f and report["matrix"]["equal_latency_aside"] and all(report["graphs_equal"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
