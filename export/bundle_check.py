#!/usr/bin/env python3
"""check.py: prove this bundle's engine (or FP16 graph) against PyTorch FP32 on real images.

Shipped in every segstyle edge bundle (from ``segstyle/export/bundle_check.py``) beside
``segstyle_compare.py``, a byte-identical copy of ``segstyle.export.compare`` -- the same fixed
bounds and the same figures as ``segstyle engine validate``, with numpy as the only requirement.

    python3 check.py --onnxrt                    # the bundled FP16 graph under onnxruntime (CPU, CI, first look)
    python3 check.py --onnxrt --graph model.onnx  # the FP32 graph
    python3 check.py --engine model_fp16.engine  # a TensorRT engine built on this device

Steps: every file listed in ``manifest.json`` must match its sha256 (else: refused, exit 2);
the golden inputs (real validation images at the profile's opt size and one other size; read from
Polygraphy's ``inputs.json`` / ``outputs.json`` without needing polygraphy) run
through the backend; its outputs are compared with the golden PyTorch FP32 outputs. Segmentation:
argmax agreement >= the manifest's bound, explained share of disagreeing pixels reported. Style:
PSNR >= the bound. Exit 0 PASS, 1 FAIL with one line naming the network, backend and figure.

``--engine`` needs numpy plus either polygraphy (``pip install polygraphy``) or tensorrt plus
cuda-python (``pip install cuda-python``); imports are lazy so ``--onnxrt`` needs neither.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


class CheckError(Exception):
    """One line for the user; exit code in ``code``."""

    def __init__(self, msg: str, code: int = 1):
        super().__init__(msg)
        self.code = code


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def load_manifest(bundle: Path) -> dict:
    try:
        manifest = json.loads((bundle / "manifest.json").read_text())
        files = manifest["files"]
    except FileNotFoundError:
        raise CheckError(f"refused: {bundle}/manifest.json missing", 2) from None
    except (ValueError, KeyError, TypeError):
        raise CheckError(f"refused: {bundle}/manifest.json is not a segstyle bundle manifest", 2) from None
    for name, digest in files.items():
        p = bundle / name
        if not p.is_file():
            raise CheckError(f"refused: {name} missing from the bundle", 2)
        if sha256(p) != digest:
            raise CheckError(f"refused: {name} sha256 differs from manifest.json (modified or corrupted)", 2)
    return manifest


def _ndarray(obj):
    """A numpy array from Polygraphy's JSON encoding (``{"array": base64 of np.save bytes, ...}``)."""
    import base64
    import io

    import numpy as np

    if isinstance(obj, dict) and obj.get("polygraphy_class") == "ndarray" and "array" in obj:
        return np.load(io.BytesIO(base64.b64decode(obj["array"])), allow_pickle=False)
    if isinstance(obj, dict) and "values" in obj:  # LazyArray wraps an ndarray
        return _ndarray(obj["values"])
    raise CheckError("golden data is not in Polygraphy's JSON array format")


def load_golden(bundle: Path, manifest: dict):
    """(input, PyTorch FP32 output) pairs from ``inputs.json`` / ``outputs.json``, read without polygraphy.

    The files are Polygraphy's ``--load-inputs`` / ``--load-outputs`` formats, so the same golden
    data serves ``polygraphy run`` and this script, and exists once in the bundle.
    """
    try:
        feeds = json.loads((bundle / "inputs.json").read_text())
        results = json.loads((bundle / "outputs.json").read_text())
        iterations = results["lst"][0][1]
        inputs = [_ndarray(f[manifest["input"]]) for f in feeds]
        outputs = [_ndarray(it["outputs"][manifest["output"]]) for it in iterations]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        raise CheckError(f"golden data unreadable ({type(e).__name__})") from None
    if len(inputs) != len(outputs):
        raise CheckError(f"golden data: {len(inputs)} inputs but {len(outputs)} outputs")
    return list(zip(inputs, outputs))


def run_onnxrt(graph: Path, input_name: str, inputs):
    try:
        import onnxruntime as ort
    except ImportError:
        raise CheckError("--onnxrt needs onnxruntime: pip install onnxruntime") from None
    so = ort.SessionOptions()
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(graph), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as e:  # a corrupted graph fails here or below: one line
        raise CheckError(f"onnxruntime cannot load {graph.name}: {str(e).strip().splitlines()[0][:200]}") from None
    return [sess.run(None, {input_name: x})[0] for x in inputs]


def run_engine_polygraphy(engine: Path, input_name: str, inputs):
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    outs = []
    with TrtRunner(EngineFromBytes(BytesFromPath(str(engine)))) as runner:
        for x in inputs:
            res = runner.infer(feed_dict={input_name: x})
            outs.append(next(iter(res.values())).copy())
    return outs


def _cuda_check(ret):
    err, *rest = ret if isinstance(ret, tuple) else (ret,)
    if int(err) != 0:
        raise CheckError(f"CUDA runtime error {err}")
    return rest[0] if len(rest) == 1 else rest


def run_engine_tensorrt(engine: Path, input_name: str, output_name: str, inputs):
    """TensorRT 10.x / 11.x runtime API with cuda-python's runtime bindings (no polygraphy)."""
    import numpy as np
    import tensorrt as trt

    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart  # cuda-python < 12.6

    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    eng = runtime.deserialize_cuda_engine(engine.read_bytes())
    if eng is None:
        raise CheckError(f"{engine.name}: TensorRT cannot deserialize it (built by another TensorRT version or GPU?)")
    ctx = eng.create_execution_context()
    stream = _cuda_check(cudart.cudaStreamCreate())
    outs = []
    try:
        for x in inputs:
            x = np.ascontiguousarray(x, dtype=np.float32)
            ctx.set_input_shape(input_name, tuple(x.shape))
            shape = tuple(ctx.get_tensor_shape(output_name))
            y = np.empty(shape, dtype=np.float32)
            d_in = _cuda_check(cudart.cudaMalloc(x.nbytes))
            d_out = _cuda_check(cudart.cudaMalloc(y.nbytes))
            try:
                _cuda_check(cudart.cudaMemcpyAsync(d_in, x.ctypes.data, x.nbytes,
                                                   cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))
                ctx.set_tensor_address(input_name, int(d_in))
                ctx.set_tensor_address(output_name, int(d_out))
                if not ctx.execute_async_v3(int(stream)):
                    raise CheckError(f"{engine.name}: execute_async_v3 failed for input {x.shape}")
                _cuda_check(cudart.cudaMemcpyAsync(y.ctypes.data, d_out, y.nbytes,
                                                   cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))
                _cuda_check(cudart.cudaStreamSynchronize(stream))
            finally:
                cudart.cudaFree(d_in)
                cudart.cudaFree(d_out)
            outs.append(y)
    finally:
        cudart.cudaStreamDestroy(stream)
    return outs


def run_engine(engine: Path, manifest: dict, inputs):
    if not engine.is_file():
        raise CheckError(f"{engine}: no such engine file (build it with the trtexec line in README.md)")
    try:
        import polygraphy  # noqa: F401
        return run_engine_polygraphy(engine, manifest["input"], inputs)
    except ImportError:
        pass
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        raise CheckError("--engine needs polygraphy (pip install polygraphy) or tensorrt + cuda-python") from None
    return run_engine_tensorrt(engine, manifest["input"], manifest["output"], inputs)


def check(outputs, golden, manifest: dict, backend: str) -> tuple[list[str], dict]:
    """Figures of ``outputs`` against the golden PyTorch FP32 outputs and the bound violations."""
    import numpy as np

    sys.path.insert(0, str(HERE))
    import segstyle_compare as sc

    b = manifest["bounds"]
    bounds = sc.Bounds(min_agreement=b["min_agreement"], max_delta_miou=b["max_delta_miou"], min_psnr=b["min_psnr"])
    task = manifest["task"]
    figures: dict = {}
    if task == "segmentation":
        counts = sc.AgreementCounts()
        for y, (_, ref) in zip(outputs, golden):
            if y.shape != ref.shape:
                raise CheckError(f"{backend}: output shape {y.shape} differs from the golden {ref.shape}")
            for i in range(y.shape[0]):
                counts.add(y[i], ref[i])
        figures = {"agreement_pct": counts.agreement_pct, "explained_pct": counts.explained_pct,
                   "disagreeing_pixels": counts.disagreeing, "max_abs_logit_err": counts.max_abs_logit_err}
    else:
        ps = []
        for y, (_, ref) in zip(outputs, golden):
            if y.shape != ref.shape:
                raise CheckError(f"{backend}: output shape {y.shape} differs from the golden {ref.shape}")
            ps.append(sc.psnr(np.clip(y, 0, 1) if np.isfinite(y).all() else y, np.clip(ref, 0, 1)))
        figures = {"psnr_db_min": min(ps), "max_abs_err": max(float(np.abs(y.astype(np.float64) - r).max())
                                                             for y, (_, r) in zip(outputs, golden))}
    violations = bounds.violations(task, figures)
    if not all(np.isfinite(y).all() for y in outputs):
        violations.append("non-finite outputs (NaN/inf)")
    return violations, figures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--onnxrt", action="store_true", help="Run a bundled ONNX graph under onnxruntime (CPU).")
    what.add_argument("--engine", type=Path, help="Run a TensorRT engine built from this bundle.")
    ap.add_argument("--graph", default="model_fp16.onnx", help="With --onnxrt: which bundled graph.")
    ap.add_argument("--bundle", type=Path, default=HERE, help="Bundle directory (default: this script's).")
    ap.add_argument("--json", type=Path, default=None, help="Write the figures and verdict here.")
    args = ap.parse_args(argv)
    try:
        manifest = load_manifest(args.bundle)
        golden = load_golden(args.bundle, manifest)
        inputs = [x for x, _ in golden]
        if args.onnxrt:
            if args.graph not in manifest["files"]:
                raise CheckError(f"refused: {args.graph} is not a file of this bundle's manifest", 2)
            backend = f"onnxruntime {args.graph}"
            outputs = run_onnxrt(args.bundle / args.graph, manifest["input"], inputs)
        else:
            backend = f"tensorrt {args.engine.name}"
            outputs = run_engine(args.engine, manifest, inputs)
        violations, figures = check(outputs, golden, manifest, backend)
    except CheckError as e:
        print(f"check.py: {e}", file=sys.stderr)
        return e.code
    network = manifest.get("network", manifest["model"])
    shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())
    if args.json:
        args.json.write_text(json.dumps({"network": network, "backend": backend, "figures": figures,
                                         "violations": violations, "passed": not violations}, indent=2))
    if violations:
        print(f"FAIL {network} {backend}: {'; '.join(violations)} ({shown})", file=sys.stderr)
        return 1
    print(f"PASS {network} {backend} on {len(golden)} golden image(s): {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
