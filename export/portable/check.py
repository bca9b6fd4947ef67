#!/usr/bin/env python3
"""check.py: prove this bundle's engine (or FP16 graph) against PyTorch FP32 on real images.

Shipped in every segstyle edge bundle (from ``segstyle/export/portable/check.py``) beside
``segstyle_compare.py`` and ``segstyle_layer_precision.py``, byte-identical copies of
``segstyle.export.portable.compare`` and ``segstyle.export.portable.layer_precision`` -- the same fixed bounds, the
same figures and the same layer-precision proof as ``segstyle engine validate``, with numpy as the
only requirement.

    python3 check.py --onnxrt                    # the bundled FP16 graph under onnxruntime (CPU, CI, first look)
    python3 check.py --onnxrt --graph model.onnx  # the FP32 graph
    python3 check.py --engine model_fp16.engine  # a TensorRT engine built on this device
    python3 check.py --engine model_fp16.engine --layer-info model_fp16.layers.json
    python3 check.py --onnxrt --public-key PUB.pem  # first: the producer's signature (model-signing)

``--public-key PUB.pem`` verifies ``bundle.sig`` (OpenSSF model signing, via
``segstyle_signature.py``) before anything else is read: a missing signature, another key's, or a
file added, removed or changed after signing is refused (exit 2). It needs ``model-signing``
(``pip install model-signing pyopenssl``) and says so when absent. Without it the verdict line ends
"; signature: not checked".

Steps: every file listed in ``manifest.json`` must match its sha256 (else: refused, exit 2);
the golden inputs (real validation images at the profile's opt size and one other size; read from
Polygraphy's ``inputs.json`` / ``outputs.json`` without needing polygraphy) run
through the backend; its outputs are compared with the golden PyTorch FP32 outputs. Segmentation:
argmax agreement >= the manifest's bound, explained share of disagreeing pixels reported. Style:
PSNR >= the bound. The bounds are those of the graph's precision (``manifest.json`` ``graph_precisions``:
an INT8 graph is judged by the int8 bounds; ``--engine`` by ``--precision``, default the manifest's
``engine_precision``). Exit 0 PASS, 1 FAIL with one line naming the network, backend and figure.

``--engine`` first proves the precisions TensorRT chose, before running anything: it reads the
engine's layer information (``F.layers.json`` beside ``F.engine``, which the README's trtexec lines
write with ``--profilingVerbosity=detailed --exportLayerInfo``; ``F.engine.layers.json`` as
``segstyle engine build`` writes it; ``--layer-info PATH``; or TensorRT's engine inspector when
``tensorrt`` is importable), prints the layers that ran FP32, and fails naming any op of
``manifest.json``'s ``fp16_kept_nodes`` (the recipe ``export.fp16_keep_fp32``) that ran FP16: such
an engine is not the recipe the bounds were set for. Without layer information it prints
"layer precisions: not checked: <why>" and the verdict line says so: not proven, never a silent pass.

``--engine`` needs numpy and TensorRT's Python package plus either polygraphy (``pip install
polygraphy``) or cuda-python (``pip install cuda-python``); imports are lazy so ``--onnxrt`` needs
none of them.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
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


def check_signature(bundle: Path, public_key: Path | None) -> str:
    """The signature clause of the verdict line; refuses (exit 2) a bundle the key's owner did not sign
    exactly as it is. It rides on the one verdict line (and ``--json``) rather than a line of its own, so
    stdout stays the verdict and stderr a single reason."""
    if public_key is None:
        signed = (bundle / "bundle.sig").is_file()
        return "signature: not checked" + (" (bundle.sig present: pass --public-key PUB.pem)" if signed else "")
    sig = _sibling("segstyle_signature")
    try:
        return f"signature: verified, key {sig.verify(bundle, public_key)}"
    except sig.SignatureError as e:
        raise CheckError(f"refused: {e}", 2) from None


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


def _sibling(name: str):
    """Import a module shipped beside this script (``segstyle_*.py``), whatever the working directory."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    return importlib.import_module(name)


def layer_check(engine: Path, manifest: dict, shape, layer_info: Path | None = None) -> tuple[list[str], list[str], dict]:
    """(report lines, violations, record) of the precisions TensorRT chose for ``engine``.

    Source, first found: ``layer_info``; ``F.layers.json`` / ``F.engine.layers.json`` beside the
    engine; TensorRT's engine inspector at ``shape`` when ``tensorrt`` imports. No source, an
    unreadable one or a bundle without ``fp16_kept_nodes`` gives a "not checked: <why>" record (no
    violation: the figures still decide, and the verdict line says the precisions are unproven).
    """
    lp = _sibling("segstyle_layer_precision")
    kept = manifest.get("fp16_kept_nodes")
    if not isinstance(kept, dict):
        why = "manifest.json has no fp16_kept_nodes (bundle made by an older segstyle)"
        return [f"layer precisions: not checked: {why}"], [], {"checked": False, "reason": why}
    try:
        if layer_info is not None:
            source, info = str(layer_info), lp.read_layer_info(layer_info)
        else:
            found = [p for p in lp.layer_info_candidates(engine) if p.is_file()]
            if found:
                source, info = found[0].name, lp.read_layer_info(found[0])
            elif importlib.util.find_spec("tensorrt") is not None:
                import tensorrt as trt

                source = f"TensorRT {trt.__version__} engine inspector"
                info = lp.inspect_engine(trt, engine.read_bytes(), manifest["input"], shape)
            else:
                names = " or ".join(p.name for p in lp.layer_info_candidates(engine))
                raise lp.LayerInfoError(f"no {names} beside the engine and tensorrt is not importable (build "
                                        "with trtexec --profilingVerbosity=detailed --exportLayerInfo=...)")
        report = lp.layer_precision_report(info, kept)
    except lp.LayerInfoError as e:
        return [f"layer precisions: not checked: {e}"], [], {"checked": False, "reason": str(e)}
    lines = [f"layer precisions from {source}:"] + lp.summary_lines(report)
    ran16 = report["kept_ran_fp16"]
    bad = [f"kept op ran FP16: {ran16[0]}" + (f" (+{len(ran16) - 1} more)" if len(ran16) > 1 else "")] if ran16 else []
    record = {"checked": True, "source": source, **{k: v for k, v in report.items() if k != "members"}}
    return lines, bad, record


def run_engine(engine: Path, manifest: dict, inputs):
    if importlib.util.find_spec("tensorrt") is None:  # polygraphy's TrtRunner needs it too
        raise CheckError("--engine needs TensorRT's Python package (tensorrt) plus polygraphy or cuda-python")
    if importlib.util.find_spec("polygraphy") is not None:
        return run_engine_polygraphy(engine, manifest["input"], inputs)
    return run_engine_tensorrt(engine, manifest["input"], manifest["output"], inputs)


def check(outputs, golden, manifest: dict, backend: str, precision: str = "fp16") -> tuple[list[str], dict]:
    """Figures of ``outputs`` against the golden PyTorch FP32 outputs and the violations of the bounds of
    ``precision`` (the graph's or the engine's, from the manifest)."""
    import numpy as np

    sc = _sibling("segstyle_compare")

    try:
        bounds = sc.bounds_table(manifest["bounds"])[precision]
    except (KeyError, ValueError, TypeError) as e:
        raise CheckError(f"manifest.json: no usable {precision} bounds ({e})", 2) from None
    task = manifest["task"]
    figures: dict = {}
    if task == "segmentation":
        counts = sc.AgreementCounts(logit_tolerance=bounds.logit_tolerance)
        for y, (_, ref) in zip(outputs, golden):
            if y.shape != ref.shape:
                raise CheckError(f"{backend}: output shape {y.shape} differs from the golden {ref.shape}")
            for i in range(y.shape[0]):
                counts.add(y[i], ref[i])
        figures = {"agreement_pct": counts.agreement_pct, "explained_pct": counts.explained_pct,
                   "disagreeing_pixels": counts.disagreeing, "max_abs_logit_err": counts.max_abs_logit_err,
                   **counts.alpha_figures()}
    else:
        ps = []
        for y, (_, ref) in zip(outputs, golden):
            if y.shape != ref.shape:
                raise CheckError(f"{backend}: output shape {y.shape} differs from the golden {ref.shape}")
            ps.append(sc.psnr(np.clip(y, 0, 1) if np.isfinite(y).all() else y, np.clip(ref, 0, 1)))
        figures = {"psnr_db_min": min(ps), "max_abs_err": max(float(np.abs(y.astype(np.float64) - r).max())
                                                             for y, (_, r) in zip(outputs, golden))}
    # image-output networks (style, the fused region-style graph, the DCGAN generator) share the PSNR bound
    violations = bounds.violations("segmentation" if task == "segmentation" else "style", figures)
    if not all(np.isfinite(y).all() for y in outputs):
        violations.append("non-finite outputs (NaN/inf)")
    return violations, figures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--onnxrt", action="store_true", help="Run a bundled ONNX graph under onnxruntime (CPU).")
    what.add_argument("--engine", type=Path, help="Run a TensorRT engine built from this bundle.")
    ap.add_argument("--graph", default="model_fp16.onnx", help="With --onnxrt: which bundled graph.")
    ap.add_argument("--precision", choices=("fp32", "fp16", "int8"), default=None,
                    help="With --engine: the engine's precision, whose bounds apply (default: the manifest's).")
    ap.add_argument("--layer-info", type=Path, default=None,
                    help="With --engine: trtexec --exportLayerInfo JSON (default: F.layers.json beside F.engine).")
    ap.add_argument("--bundle", type=Path, default=HERE, help="Bundle directory (default: this script's).")
    ap.add_argument("--json", type=Path, default=None, help="Write the figures and verdict here.")
    ap.add_argument("--public-key", type=Path, default=None,
                    help="Verify the producer's signature (bundle.sig) with this PEM public key before anything else.")
    args = ap.parse_args(argv)
    layers: dict | None = None
    try:
        signature = check_signature(args.bundle, args.public_key)  # before any graph is read
        manifest = load_manifest(args.bundle)
        golden = load_golden(args.bundle, manifest)
        inputs = [x for x, _ in golden]
        if args.onnxrt:
            if args.graph not in manifest["files"]:
                raise CheckError(f"refused: {args.graph} is not a file of this bundle's manifest", 2)
            backend = f"onnxruntime {args.graph}"
            precision = (manifest.get("graph_precisions") or {}).get(args.graph, "fp16")
            outputs = run_onnxrt(args.bundle / args.graph, manifest["input"], inputs)
        else:
            backend = f"tensorrt {args.engine.name}"
            precision = args.precision or manifest.get("engine_precision", "fp16")
            if not args.engine.is_file():
                raise CheckError(f"{args.engine}: no such engine file (build it with the trtexec line in README.md)")
            if precision == "int8":  # the kept-node proof is the FP16 recipe's; an INT8 engine's is not written yet
                why = "an INT8 engine (the layer proof covers the FP16 recipe's kept ops)"
                lines, bad, layers = [f"layer precisions: not checked: {why}"], [], {"checked": False, "reason": why}
            else:
                lines, bad, layers = layer_check(args.engine, manifest, inputs[0].shape, args.layer_info)
            print("\n".join(lines))
            if bad:  # not the recipe the bounds were set for: running it proves nothing more
                figures = {}
                _verdict(args.json, manifest, backend, figures, bad, layers, signature)
                return 1
            outputs = run_engine(args.engine, manifest, inputs)
        violations, figures = check(outputs, golden, manifest, backend, precision)
    except CheckError as e:
        print(f"check.py: {e}", file=sys.stderr)
        return e.code
    return _verdict(args.json, manifest, backend, figures, violations, layers, signature, images=len(golden))


def _verdict(json_path: Path | None, manifest: dict, backend: str, figures: dict, violations: list[str],
             layers: dict | None, signature: str, images: int = 0) -> int:
    """Print the one verdict line (and write ``--json``); returns the exit code."""
    network = manifest.get("network", manifest["model"])
    shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())
    if json_path:
        json_path.write_text(json.dumps({"network": network, "backend": backend, "figures": figures,
                                         "layer_precisions": layers, "signature": signature,
                                         "violations": violations,
                                         "passed": not violations}, indent=2))
    if violations:
        print(f"FAIL {network} {backend}: {'; '.join(violations)}" + (f" ({shown})" if shown else "")
              + f"; {signature}", file=sys.stderr)
        return 1
    unproven = "; layer precisions not checked" if layers is not None and not layers.get("checked") else ""
    print(f"PASS {network} {backend} on {images} golden image(s): {shown}{unproven}; {signature}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
