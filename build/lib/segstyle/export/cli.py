"""``segstyle export {onnx,fp16,lint}`` and ``segstyle engine {build,validate,bench}``.

Thin click wrappers: the work lives in :mod:`segstyle.export.onnx`, :mod:`segstyle.export.fp16`, :mod:`segstyle.export.lint`,
:mod:`segstyle.export.tensorrt`, :mod:`segstyle.export.validate` and :mod:`segstyle.export.bench`. Every failure a user can
cause is one ``segstyle: error: ...`` line; every file is written atomically.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import click

from segstyle.pipelines.errors import SegstyleError
from segstyle.pipelines.options import params_options


def _size(value: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in value.lower().split("x"))
        if h <= 0 or w <= 0:
            raise ValueError
    except ValueError:
        raise SegstyleError(f"bad size '{value}'; write HxW, e.g. 512x512") from None
    return h, w


def _echo(msg: str) -> None:
    click.echo(msg, err=True)


@click.group("export")
def export_group() -> None:
    """Export ONNX (FP32 / mixed FP16) and lint graphs for TensorRT."""


@export_group.command("onnx")
@click.option("--model", default=None, help="Registered model name (fresh seeded weights without --checkpoint).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="segstyle checkpoint.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Output .onnx file.")
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="Write the parity report (JSON).")
@click.option("--size", default=None, help="Dummy input HxW at export (default params export.size).")
@click.option("--opset", type=int, default=None, help="ONNX opset (default params export.opset).")
@params_options
def onnx_cmd(model, checkpoint, out, report, size, opset, params) -> None:
    """Export a registered model to ONE ONNX file with dynamic batch/H/W and check parity with ORT.

    The file is moved into place only after ONNX Runtime matches PyTorch (max abs error <= 1e-4)
    at params export.parity_sizes, batch 1 and 3.
    """
    from segstyle.models import get_model_meta
    from segstyle.export.netload import load_net
    from segstyle.export.onnx import PARITY_ATOL, export_onnx, parity
    from segstyle.pipelines.io import atomic_path, write_json

    loaded = load_net(model, checkpoint, seed=params.seed)
    div = get_model_meta(loaded.model).size_divisor
    with atomic_path(out) as tmp:
        export_onnx(loaded, params, tmp, opset=opset, size=_size(size) if size else None)
        rep = parity(loaded.net, tmp, sizes=params.export.parity_sizes, batches=(1, 3), seed=params.seed,
                     divisor=div)
        rep.update({"model": loaded.model, "onnx": str(out), "checkpoint": loaded.checkpoint})
        if report:
            write_json(report, rep)
        if not rep["passed"]:
            worst = max(rep["rows"], key=lambda r: r["max_abs_err"])
            raise SegstyleError(f"ONNX Runtime disagrees with PyTorch: max abs error {rep['max_abs_err']:.3g} > "
                                f"{PARITY_ATOL:g} at {worst['size'][0]}x{worst['size'][1]} batch {worst['batch']}; "
                                f"{out} not written")
    mb = Path(out).stat().st_size / 2**20
    _echo(f"wrote {out} ({mb:.1f} MiB, {loaded.model}); ORT parity max abs error {rep['max_abs_err']:.2e} "
          f"at {len(rep['rows'])} shape(s) unseen at export")


@export_group.command("fp16")
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Output FP16 .onnx file.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Compare with this PyTorch model (else with the FP32 graph under ORT).")
@click.option("--model", default=None, help="Compare with a fresh seeded model of this name.")
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="Write the comparison (JSON).")
@params_options
def fp16_cmd(src, out, checkpoint, model, report, params) -> None:
    """Mixed-precision FP16 graph, FP32 I/O, InstanceNorm + export.fp16_keep_fp32 ops kept FP32."""
    import numpy as np

    from segstyle.export.fp16 import compare_fp16, export_fp16, fp32_islands
    from segstyle.export.onnx import load_onnx, ort_session, read_metadata
    from segstyle.pipelines.io import write_json

    src_model = load_onnx(src)
    task = read_metadata(src_model).get("segstyle.task", "segmentation")
    m16 = export_fp16(src, out, params.export.fp16_keep_fp32)
    if checkpoint or model:
        from segstyle.export.netload import export_output, load_net

        loaded = load_net(model, checkpoint, seed=params.seed)

        def reference(x):
            import torch

            with torch.no_grad():
                return export_output(loaded.net, x).float().numpy()

        ref_name = "pytorch-fp32"
    else:
        sess = ort_session(src)
        name = sess.get_inputs()[0].name

        def reference(x):
            return sess.run(None, {name: x.numpy()})[0]

        ref_name = "onnx-fp32 (onnxruntime cpu)"
    rep = compare_fp16(reference, out, sizes=params.export.parity_sizes, seed=params.seed, task=task,
                       reference_name=ref_name)
    rep.update({"src": str(src), "fp16": str(out), "fp32_islands": fp32_islands(m16, params.export.fp16_keep_fp32)})
    if report:
        write_json(report, rep)
    if rep["ran"]:
        agree = [r.get("argmax_agreement_pct") for r in rep["rows"] if "argmax_agreement_pct" in r]
        extra = f", argmax agreement {min(agree):.2f}%" if agree else ""
        _echo(f"wrote {out}; vs {ref_name}: max abs error {rep['max_abs_err']:.3g}{extra}; "
              f"kept FP32: {rep['fp32_islands'] or 'none found'}")
        if not all(r["finite"] for r in rep["rows"]) or not np.isfinite(rep["max_abs_err"]):
            raise SegstyleError(f"{out}: the FP16 graph produced non-finite outputs")
    else:
        _echo(f"wrote {out}; ONNX Runtime CPU cannot run it here ({rep['reason']}); validate on the GPU")


@export_group.command("lint")
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Write the report (JSON).")
@click.option("--strict", is_flag=True, help="Treat warnings (unlisted input types) as errors.")
def lint_cmd(src, json_out, strict) -> None:
    """Check every op/attribute of an ONNX graph against TensorRT's ONNX operator matrix."""
    from segstyle.export.lint import lint_model, print_report
    from segstyle.export.onnx import load_onnx
    from segstyle.pipelines.io import write_json

    rep = lint_model(load_onnx(src))
    rep["onnx"] = str(src)
    if json_out:
        write_json(json_out, rep)
    print_report(rep, Path(src).name)
    if not rep["ok"] or (strict and rep["warnings"]):
        first = next(i for i in rep["issues"] if i["level"] == "error" or strict)
        raise SegstyleError(f"{src}: {rep['errors']} TensorRT lint error(s), first: {first['op']} "
                            f"{first['node']}: {first['message']}")


@click.group("engine")
def engine_group() -> None:
    """Build TensorRT engines; validate and benchmark backends against PyTorch FP32."""


def _default_engine(onnx_path: str, precision: str) -> Path:
    return Path("artifacts/engines") / f"{Path(onnx_path).stem}_{precision}.engine"


@engine_group.command("build")
@click.option("--onnx", "onnx_path", required=True, type=click.Path(dir_okay=False), help="FP32 or FP16 ONNX.")
@click.option("--out", "out", default=None, type=click.Path(dir_okay=False),
              help="Engine file (default artifacts/engines/<onnx>_<precision>.engine).")
@click.option("--precision", type=click.Choice(["fp16", "fp32"]), default="fp16", show_default=True)
@click.option("--force", is_flag=True, help="Rebuild even when the sidecar matches.")
@params_options
def build_cmd(onnx_path, out, precision, force, params) -> None:
    """Build (or reuse, when its sidecar matches this GPU/TensorRT/ONNX/profile) a TensorRT engine."""
    from segstyle.export.onnx import load_onnx
    from segstyle.export.tensorrt import ensure_engine, require_tensorrt, trt_major

    trt = require_tensorrt()
    load_onnx(onnx_path)
    out = out or _default_engine(onnx_path, precision)
    side, reasons = ensure_engine(onnx_path, out, profiles=params.engine.profiles,
                                  workspace_mb=params.engine.workspace_mb, timing_cache=params.engine.timing_cache,
                                  precision=precision, keep_fp32=params.export.fp16_keep_fp32, force=force)
    what = f"built ({'; '.join(reasons)})" if reasons else "up to date"
    _echo(f"{out}: {what}; TensorRT {trt.__version__} (path: TRT {trt_major(trt.__version__)}, "
          f"{side.get('build_path')}), {side['gpu_name']} sm_{side['compute_capability']}")


def _net_and_onnx(stack, model, checkpoint, onnx_path, params, need_onnx: bool):
    from segstyle.export.netload import load_net
    from segstyle.export.onnx import export_onnx, load_onnx

    from segstyle.export.onnx import read_metadata

    loaded = load_net(model, checkpoint, seed=params.seed)
    if onnx_path:
        other = read_metadata(load_onnx(onnx_path)).get("segstyle.model")
        if other != loaded.model:
            raise SegstyleError(f"{onnx_path}: ONNX is for model '{other or 'unknown'}', not '{loaded.model}'")
    elif need_onnx:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="segstyle-onnx-")))
        onnx_path = str(tmp / f"{loaded.model}.onnx")
        _echo(f"exporting {loaded.model} to a temporary ONNX file (give --onnx to reuse one)")
        export_onnx(loaded, params, onnx_path)
    return loaded, onnx_path


def _backend(spec, loaded, onnx_path, engine, params, precision="fp16", threads=None):
    from segstyle.export.backends import make_backend, parse_backend

    name, _ = parse_backend(spec)
    engine_path = None
    if name == "tensorrt":
        from segstyle.export.tensorrt import ensure_engine, require_tensorrt

        require_tensorrt()
        engine_path = engine or _default_engine(onnx_path, precision)
        _, reasons = ensure_engine(onnx_path, engine_path, profiles=params.engine.profiles,
                                   workspace_mb=params.engine.workspace_mb, timing_cache=params.engine.timing_cache,
                                   precision=precision, keep_fp32=params.export.fp16_keep_fp32)
        if reasons:
            _echo(f"{engine_path}: rebuilt before running ({'; '.join(reasons)})")
    return make_backend(spec, net=loaded.net, onnx_path=onnx_path, engine_path=engine_path, threads=threads)


@engine_group.command("validate")
@click.option("--backend", "backend_spec", required=True,
              help="torch-fp32 | torch-fp16 | ort-cpu | ort-cuda | tensorrt (torch: +channels_last).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="segstyle checkpoint.")
@click.option("--model", default=None, help="Fresh seeded model instead of a checkpoint (testing only).")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), default=None,
              help="ONNX for ort-*/tensorrt (FP32 or FP16; default: exported on the fly).")
@click.option("--engine", type=click.Path(dir_okay=False), default=None, help="TensorRT engine (tensorrt).")
@click.option("--precision", type=click.Choice(["fp16", "fp32"]), default="fp16", show_default=True,
              help="Engine precision (tensorrt).")
@click.option("--dataset", type=click.Choice(["voc", "pets"]), default=None,
              help="Segmentation validation set (default: from the class count).")
@click.option("--content", type=click.Path(file_okay=False), default=None,
              help="Style: folder of content images (default: the dataset's validation images).")
@click.option("--size", default=None, help="Resize every image to HxW (default params export.size).")
@click.option("--samples", type=int, default=None, help="Images to use (default params validate.samples).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="JSON record.")
@params_options
def validate_cmd(backend_spec, checkpoint, model, onnx_path, engine, precision, dataset, content, size, samples,
                 out, params) -> None:
    """Compare a backend with PyTorch FP32 on validation images; exit 1 when params.validate is violated."""
    from segstyle.export.backends import TorchBackend, parse_backend
    from segstyle.export.validate import (check_thresholds, content_images, seg_samples, validate_segmentation,
                                 validate_style)
    from segstyle.pipelines.io import write_json

    name, _ = parse_backend(backend_spec)
    onnx_given = onnx_path
    size_hw = _size(size) if size else tuple(params.export.size)
    n = samples or params.validate_.samples
    with contextlib.ExitStack() as stack:
        loaded, onnx_path = _net_and_onnx(stack, model, checkpoint, onnx_path, params,
                                          need_onnx=name in ("ort-cpu", "ort-cuda", "tensorrt"))
        backend = _backend(backend_spec, loaded, onnx_path, engine, params, precision)
        ref = TorchBackend(loaded.net, fp16=False, options=set(), device="cpu")
        if loaded.task == "segmentation":
            if dataset is None:
                dataset = "voc" if len(loaded.classes) == 21 else "pets"
            expected = 21 if dataset == "voc" else (3 if params.data.pets_mode == "trimap" else 2)
            if len(loaded.classes) != expected:
                raise SegstyleError(f"{loaded.model} predicts {len(loaded.classes)} classes; {dataset} "
                                    f"({params.data.pets_mode if dataset == 'pets' else 'VOC'}) has {expected}")
            metrics = validate_segmentation(ref, backend, seg_samples(dataset, params, size_hw, n), expected)
        else:
            if content:
                images = content_images(content, size_hw, n)
            else:
                images = (x for x, _ in seg_samples(dataset or "voc", params, size_hw, n))
            metrics = validate_style(ref, backend, images)
        th = params.validate_
        violations = check_thresholds(loaded.task, metrics, th)
        record = {"backend": backend.name, "reference": "torch-fp32 (cpu)", "model": loaded.model,
                  "task": loaded.task, "checkpoint": loaded.checkpoint,
                  "onnx": onnx_given or (onnx_path and "exported on the fly"),
                  "dataset": dataset if loaded.task == "segmentation" else (content or dataset or "voc"),
                  "size": list(size_hw), "metrics": metrics, "thresholds": th.model_dump(),
                  "violations": violations, "passed": not violations, "params_digest": params.digest()}
        write_json(out, record)
    if loaded.task == "segmentation":
        summary = (f"agreement {metrics['pixel_agreement_pct']:.3f}%, mIoU {metrics['miou_backend']:.2f} vs "
                   f"{metrics['miou_reference']:.2f} (delta {metrics['delta_miou_pts']:+.3f} pt), "
                   f"max abs logit err {metrics['max_abs_logit_err']:.3g}")
    else:
        summary = (f"PSNR min {metrics['psnr_db_min']:.2f} dB, SSIM min {metrics['ssim_min']:.4f}, "
                   f"max abs err {metrics['max_abs_err']:.3g}")
    _echo(f"{backend.name} vs torch-fp32 on {metrics['images']} image(s): {summary}; record {out}")
    if violations:
        raise SegstyleError(f"{backend.name} fails validation: {'; '.join(violations)} (record {out})")


@engine_group.command("bench")
@click.option("--backends", "backend_specs", default="torch-fp32,ort-cpu", show_default=True,
              help="Comma-separated backends, e.g. torch-fp16+channels_last+cuda_graph,tensorrt.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="segstyle checkpoint.")
@click.option("--model", default=None, help="Fresh seeded model (latency does not depend on weights).")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), default=None, help="ONNX for ort-*/tensorrt.")
@click.option("--engine", type=click.Path(dir_okay=False), default=None, help="TensorRT engine.")
@click.option("--sizes", default="128x128", show_default=True, help="Comma-separated HxW sizes.")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--warmup", type=int, default=5, show_default=True)
@click.option("--iters", type=int, default=30, show_default=True)
@click.option("--threads", type=int, default=None, help="CPU threads for torch and ORT (default: library default).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="JSON file (e.g. benchmarks/cpu/<model>.json).")
@params_options
def bench_cmd(backend_specs, checkpoint, model, onnx_path, engine, sizes, batch, warmup, iters, threads, out,
              params) -> None:
    """p50/p95/p99 latency and throughput of several backends side by side, one process, same inputs."""
    import torch

    from segstyle.export.backends import parse_backend
    from segstyle.export.bench import environment, print_table, run_bench
    from segstyle.pipelines.io import write_json

    onnx_given = onnx_path
    specs = [s for s in backend_specs.split(",") if s.strip()]
    names = [parse_backend(s)[0] for s in specs]
    size_list = [_size(s) for s in sizes.split(",") if s.strip()]
    if batch < 1 or iters < 1 or warmup < 0:
        raise SegstyleError("--batch and --iters must be >= 1, --warmup >= 0")
    if threads:
        torch.set_num_threads(threads)
    with contextlib.ExitStack() as stack:
        loaded, onnx_path = _net_and_onnx(stack, model, checkpoint, onnx_path, params,
                                          need_onnx=any(n in ("ort-cpu", "ort-cuda", "tensorrt") for n in names))
        backends = {}
        for spec in specs:
            b = _backend(spec, loaded, onnx_path, engine, params, threads=threads)
            backends[b.name] = b
        rows = run_bench(backends, size_list, batch, warmup=warmup, iters=iters, seed=params.seed)
        record = {"model": loaded.model, "checkpoint": loaded.checkpoint,
                  "onnx": onnx_given or (onnx_path and "exported on the fly"), "batch": batch, "warmup": warmup,
                  "iters": iters,
                  "timer": "cuda events" if torch.cuda.is_available() else "time.perf_counter",
                  "environment": environment(), "results": rows}
        write_json(out, record)
    print_table(rows, f"{loaded.model}, batch {batch}")
    _echo(f"wrote {out}")
