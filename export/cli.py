"""``segstyle export {onnx,fp16,program,lint}`` and ``segstyle engine {build,validate,bench,matrix}``.

Thin click wrappers: the work lives in :mod:`segstyle.export.backend.onnx.loader`, :mod:`segstyle.export.backend.onnx.fp16`, :mod:`segstyle.export.backend.trt.lint`,
:mod:`segstyle.export.backend.trt.loader`, :mod:`segstyle.export.backend.aoti.loader`, :mod:`segstyle.export.validate` and
:mod:`segstyle.export.bench`. Every failure a user can
cause is one ``segstyle: error: ...`` line; every file is written atomically.
"""

from __future__ import annotations

import contextlib
import shlex
import tempfile
from pathlib import Path

import click

from segstyle.core.errors import SegstyleError
from segstyle.export.settings import ExportSettings
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
    """Export ONNX (FP32 / mixed FP16) and torch.export programs, fuse region-style checkpoints, lint for TensorRT."""


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
    from segstyle.export.backend.pyt.loader import load_net
    from segstyle.export.backend.onnx.exporter import PARITY_ATOL, export_onnx, parity
    from segstyle.core.io import atomic_path, write_json

    settings = ExportSettings.from_params(params)
    loaded = load_net(model, checkpoint, seed=settings.seed)
    div = get_model_meta(loaded.model).size_divisor
    with atomic_path(out) as tmp:
        export_onnx(loaded, settings, tmp, opset=opset, size=_size(size) if size else None)
        rep = parity(loaded.net, tmp, sizes=settings.parity_sizes, batches=(1, 3), seed=settings.seed,
                     divisor=div, noise_dim=loaded.noise_dim)
        rep.update({"model": loaded.model, "onnx": str(out), "checkpoint": loaded.checkpoint})
        if report:
            write_json(report, rep)
        if not rep["passed"]:
            bad = [r for r in rep["rows"] if not r["ok"]]
            worst = max(bad, key=lambda r: r["max_abs_err"])
            where = f"at input {'x'.join(map(str, worst['input_shape']))}; {out} not written"
            ro = worst.get("routing")
            if ro is not None:
                raise SegstyleError(f"ONNX Runtime disagrees with PyTorch: with the graph's own switches max abs "
                                    f"error {ro['forced_max_abs_err']:.3g} (bound {PARITY_ATOL:g}), largest "
                                    f"flipped-window margin {ro['max_flip_margin']:.3g} (bound "
                                    f"{ro['decision_atol']:g}) {where}")
            raise SegstyleError(f"ONNX Runtime disagrees with PyTorch: max abs error {rep['max_abs_err']:.3g} > "
                                f"{PARITY_ATOL:g} {where}")
    mb = Path(out).stat().st_size / 2**20
    routed = ""
    if "forced_max_abs_err" in rep:
        flips = sum(sum(r["routing"]["flipped_windows"]) for r in rep["rows"])
        routed = (f" ({rep['forced_max_abs_err']:.2e} with the graph's own switches; {flips} flipped window(s), "
                  "each a near-tie)")
    _echo(f"wrote {out} ({mb:.1f} MiB, {loaded.model}); ORT parity max abs error {rep['max_abs_err']:.2e}{routed} "
          f"at {len(rep['rows'])} shape(s) unseen at export")


@export_group.command("fuse")
@click.option("--seg-checkpoint", required=True, type=click.Path(dir_okay=False), help="Segmentation checkpoint.")
@click.option("--style-checkpoint", required=True, type=click.Path(dir_okay=False), help="Style checkpoint.")
@click.option("--region", type=click.Choice(["foreground", "background"]), default="foreground", show_default=True,
              help="Stylise the selected classes (foreground) or everything else (background).")
@click.option("--classes", default=None,
              help="Comma-separated class names of the segmentation checkpoint (default: every non-background class).")
@click.option("--feather", type=float, default=7.0, show_default=True, help="Gaussian feather sigma (px).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Fused checkpoint to write.")
def fuse_cmd(seg_checkpoint, style_checkpoint, region, classes, feather, out) -> None:
    """Fuse segmentation + style + feathered blend into ONE checkpoint (model fused_region_style).

    Every export stage then takes it as its one --checkpoint and exports one graph: one photo in, the
    region-stylised photo out (segstyle stylize --seg-checkpoint, as one TensorRT engine).
    """
    from segstyle.pipelines.edit.fuse import fuse_checkpoints
    from segstyle.models.checkpoint import save_checkpoint

    ck = fuse_checkpoints(seg_checkpoint, style_checkpoint, classes=classes, region=region, feather=feather)
    save_checkpoint(out, ck)
    kw = ck["model_kwargs"]
    _echo(f"wrote {out}: {kw['seg_model']} + {kw['style_model']}, {region} = {', '.join(kw['classes'])}, "
          f"feather {feather:g} px, segmentation at short side {kw['base_size'] or 'native'}")


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

    from segstyle.export.backend.onnx.fp16 import compare_fp16, export_fp16, fp32_islands
    from segstyle.export.backend.onnx.loader import load_onnx, read_metadata
    from segstyle.export.backend.onnxrt.loader import ort_session
    from segstyle.core.io import write_json

    settings = ExportSettings.from_params(params)
    keep = list(settings.fp16_keep_fp32)
    src_model = load_onnx(src)
    src_meta = read_metadata(src_model)
    task = src_meta.get("segstyle.task", "segmentation")
    nz = int(src_meta["segstyle.noise_dim"]) if src_meta.get("segstyle.noise_dim") else None
    m16 = export_fp16(src, out, keep)
    if checkpoint or model:
        from segstyle.export.backend.pyt.loader import export_output, load_net

        loaded = load_net(model, checkpoint, seed=settings.seed)

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
    rep = compare_fp16(reference, out, sizes=settings.parity_sizes, seed=settings.seed, task=task,
                       reference_name=ref_name, noise_dim=nz)
    rep.update({"src": str(src), "fp16": str(out), "fp32_islands": fp32_islands(m16, keep)})
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


@export_group.command("int8")
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="The checkpoint the graph was exported from (checked by sha256; picks the calibration images).")
@click.option("--model", default=None, help="Fresh seeded model of this name instead (testing only).")
@click.option("--target", type=click.Choice(["trt", "cpu"]), required=True,
              help="trt: symmetric Q/DQ placed for TensorRT, FP16 between the INT8 layers; cpu: the graph ONNX "
                   "Runtime CPU runs fastest (U8S8, integer kernels).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Output INT8 .onnx file.")
@click.option("--report", type=click.Path(dir_okay=False), default=None,
              help="Calibration record (JSON; default: <out>.calibration.json).")
@click.option("--network", default=None, help="Network name for export.int8.keep_float (default: the model).")
@click.option("--dataset", type=click.Choice(["voc", "pets"]), default=None,
              help="Training split to calibrate on (segmentation; default: from the class count).")
@params_options
def int8_cmd(src, checkpoint, model, target, out, report, network, dataset, params) -> None:
    """Calibrated INT8 Q/DQ graph (export.int8 recipe) on a seeded draw of training images."""
    from segstyle.core.io import write_json
    from segstyle.export.backend.onnx.int8 import export_int8, make_recipe
    from segstyle.export.backend.onnx.loader import check_onnx_source
    from segstyle.export.backend.pyt.loader import load_net
    from segstyle.pipelines.calibration_inputs import calibration_inputs

    if not (checkpoint or model):
        raise SegstyleError("give --checkpoint (the graph's source; its training images calibrate the graph)")
    settings = ExportSettings.from_params(params)
    loaded = load_net(model, checkpoint, seed=settings.seed)
    check_onnx_source(src, loaded)
    if loaded.task == "segmentation" and dataset is None:
        dataset = "voc" if len(loaded.classes) == 21 else "pets"
    recipe = make_recipe(settings.int8, settings.fp16_keep_fp32, target, network or loaded.model)
    cal = calibration_inputs(loaded.task, params, dataset=dataset, noise_dim=loaded.noise_dim)
    _echo(f"calibrating {loaded.model} ({target}) on {len(cal.arrays)} inputs: {cal.source}")
    rec = export_int8(src, out, cal.arrays, recipe, calibration_ids=cal.ids, calibration_source=cal.source)
    rec.update({"network": network or loaded.model, "model": loaded.model, "checkpoint": loaded.checkpoint})
    report = report or f"{out}.calibration.json"
    write_json(report, rec)
    q = rec["int8_ops"]
    _echo(f"wrote {out} ({rec['size_bytes'] / 1e6:.1f} MB, FP32 {rec['source_size_bytes'] / 1e6:.1f} MB): "
          f"{sum(q.values())} ops read INT8 ({', '.join(f'{k} {v}' for k, v in q.items())}), "
          f"{len(rec['tensor_ranges'])} calibrated tensors, reduce_range {recipe.reduce_range}; record {report}")


@export_group.command("program")
@click.option("--model", default=None, help="Registered model name (fresh seeded weights without --checkpoint).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="segstyle checkpoint.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Output *.ep.pt2 file.")
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="Write the export record (JSON).")
@params_options
def program_cmd(model, checkpoint, out, report, params) -> None:
    """Save the torch.export program (dynamic batch/H/W over the engine profile): the portable source of an
    AOTInductor package, kept only if it matches eager PyTorch at shapes unseen at export."""
    from segstyle.core.io import write_json
    from segstyle.export.backend.aoti.loader import PACKAGE_SUFFIX, PROGRAM_SUFFIX, export_program, Ranges
    from segstyle.export.backend.pyt.loader import load_net

    if not out.endswith(PROGRAM_SUFFIX) or out.endswith(PACKAGE_SUFFIX):
        raise SegstyleError(f"--out {out}: name an exported program *{PROGRAM_SUFFIX} (a compiled package is "
                            f"*{PACKAGE_SUFFIX}; the two are different files)")
    settings = ExportSettings.from_params(params)
    loaded = load_net(model, checkpoint, seed=settings.seed)
    rec = export_program(loaded, settings, out)
    if report:
        write_json(report, {**rec, "program": out})
    _echo(f"wrote {out} ({Path(out).stat().st_size / 2**20:.1f} MiB, {loaded.model}) in {rec['export_seconds']:.1f} s; "
          f"input {Ranges.from_json(rec['ranges']).describe()}; max abs error vs eager {rec['parity_max_abs_err']:.2e}")


@export_group.command("lint")
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Write the report (JSON).")
@click.option("--strict", is_flag=True, help="Treat warnings (unlisted input types) as errors.")
@click.option("--trt", "trt_profile", type=click.Choice(["10.3", "10.x", "11.x"]), default="10.3", show_default=True,
              help="TensorRT release whose onnx-tensorrt operator matrix applies (10.3 = JetPack 6.1+).")
def lint_cmd(src, json_out, strict, trt_profile) -> None:
    """Check every op/attribute of an ONNX graph against one TensorRT release's ONNX operator matrix."""
    from segstyle.export.backend.trt.lint import lint_model, print_report
    from segstyle.export.backend.onnx.loader import load_onnx
    from segstyle.core.io import write_json

    rep = lint_model(load_onnx(src), trt_profile)
    rep["onnx"] = str(src)
    if json_out:
        write_json(json_out, rep)
    print_report(rep, Path(src).name)
    if not rep["ok"] or (strict and rep["warnings"]):
        first = next(i for i in rep["issues"] if i["level"] == "error" or strict)
        raise SegstyleError(f"{src}: {rep['errors']} TensorRT {trt_profile} lint error(s), first: {first['op']} "
                            f"{first['node']}: {first['message']}")


@click.group("engine")
def engine_group() -> None:
    """Build TensorRT engines and AOTInductor packages; validate and benchmark backends against PyTorch FP32."""


def _default_engine(onnx_path: str, precision: str) -> Path:
    return Path("artifacts/engines") / f"{Path(onnx_path).stem}_{precision}.engine"


@engine_group.command("build")
@click.option("--backend", type=click.Choice(["tensorrt", "aoti"]), default="tensorrt", show_default=True,
              help="tensorrt: an engine from --onnx; aoti: an AOTInductor package from --program.")
@click.option("--onnx", "onnx_path", default=None, type=click.Path(dir_okay=False),
              help="FP32 or FP16 ONNX (tensorrt).")
@click.option("--program", "program", default=None, type=click.Path(dir_okay=False),
              help="Exported program (aoti): `segstyle export program` writes it.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="aoti: compile CPU C++ (for this CPU) or CUDA kernels (for this GPU).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="aoti fp16: the checkpoint the program was exported from (an FP16 package is exported again from "
                   "it in half precision; the program records its dtypes).")
@click.option("--out", "out", default=None, type=click.Path(dir_okay=False),
              help="Engine file (default artifacts/engines/<onnx>_<precision>.engine; aoti: "
                   "artifacts/engines/<program>_<device>_<precision>.aoti.pt2).")
@click.option("--precision", type=click.Choice(["fp16", "fp32"]), default=None,
              help="Default: fp16 (tensorrt, aoti on cuda), fp32 (aoti on cpu).")
@click.option("--force", is_flag=True, help="Rebuild even when the sidecar matches.")
@click.option("--threads", type=int, default=None,
              help="aoti cpu: the OpenMP thread count compiled into the package (default: torch's, one per core).")
@click.option("--typing", type=click.Choice(["strong", "weak"]), default="strong", show_default=True,
              help="tensorrt. strong: from the FP16 graph (TensorRT 10.x/11.x); weak: TensorRT 10 fallback, FP32 "
                   "graph + BuilderFlag.FP16 with export.fp16_keep_fp32 pinned FP32 by layer name.")
@params_options
def build_cmd(backend, onnx_path, program, device, checkpoint, out, precision, force, threads, typing,
              params) -> None:
    """Build (or reuse, when its sidecar's rebuild key matches this machine) a TensorRT engine or an AOTInductor
    package.

    TensorRT: the engine's layer precisions are reported; exit 1 when a kept-FP32 op ran in FP16 according to
    the engine inspector.
    """
    if backend == "aoti":
        if threads:
            import torch

            torch.set_num_threads(threads)
        _build_aoti(program, device, out, precision or ("fp16" if device == "cuda" else "fp32"), force, threads,
                    checkpoint)
        return
    if onnx_path is None:
        raise SegstyleError("--backend tensorrt builds from --onnx GRAPH (an AOTInductor package: --backend aoti "
                            "--program FILE)")
    precision = precision or "fp16"
    from segstyle.export.backend.trt.loader import require_tensorrt

    trt = require_tensorrt()
    out = out or _default_engine(onnx_path, precision)
    side, reasons = _ensure_engine(onnx_path, out, ExportSettings.from_params(params), precision, force=force,
                                   typing=typing)
    what = f"built ({'; '.join(reasons)})" if reasons else "up to date"
    lp = side.get("layer_precisions") or {}
    _echo(f"{out}: {what}; TensorRT {trt.__version__} {side.get('typing')}, {side['gpu_name']} "
          f"sm_{side['compute_capability']}; layers by precision {lp.get('by_precision')}")
    if lp.get("kept_ran_fp16"):
        raise SegstyleError(f"{out}: kept-FP32 op ran FP16: {lp['kept_ran_fp16'][0]} "
                            f"({len(lp['kept_ran_fp16'])} in all; layer info {side.get('layer_info')})")


def _default_package(program: str, device: str, precision: str) -> Path:
    from segstyle.export.backend.aoti.loader import PROGRAM_SUFFIX

    stem = Path(program).name.removesuffix(PROGRAM_SUFFIX).removesuffix(".pt2")
    return Path("artifacts/engines") / f"{stem}_{device}_{precision}.aoti.pt2"


def _build_aoti(program, device: str, out, precision: str, force: bool, threads: int | None, checkpoint) -> None:
    from segstyle.export.backend.aoti.loader import PACKAGE_SUFFIX, PROGRAM_SUFFIX, ensure_package

    if program is None:
        raise SegstyleError("--backend aoti compiles --program FILE (write one with `segstyle export program`)")
    out = Path(out) if out else _default_package(program, device, precision)
    if out.name.endswith(PROGRAM_SUFFIX) or not out.name.endswith(PACKAGE_SUFFIX):
        raise SegstyleError(f"--out {out}: name a package *{PACKAGE_SUFFIX} (an exported program is *{PROGRAM_SUFFIX}; "
                            "the two are different files)")
    side, reasons = ensure_package(program, out, device=device, precision=precision, force=force, threads=threads,
                                   checkpoint=checkpoint)
    what = (f"compiled in {side['compile_seconds']:.1f} s ({'; '.join(reasons)})" if reasons
            else f"up to date (compiled in {side['compile_seconds']:.1f} s)")
    where = (f"{side['cpu_isa']} {side['cpu_model']}, {side.get('threads')} thread(s)" if device == "cpu"
             else f"{side['gpu_name']} sm_{side['compute_capability']}")
    _echo(f"{out}: {what}; torch {side['torch_version']} {device} {precision}, {where}; "
          f"{side['size_bytes'] / 2**20:.1f} MiB; input {side['input']}")


def _engine_profiles(graph, settings: ExportSettings):
    """The engine's optimisation profile: params ``engine.profiles`` ([batch, H, W]) for image networks;
    a noise network's own batch-only profile from the registry as full (batch, nz) shapes."""
    from segstyle.export.backend.onnx.loader import read_metadata
    from segstyle.export.backend.trt.loader import engine_shapes

    meta = read_metadata(graph)
    if not meta.get("segstyle.noise_dim"):
        return settings.engine_profiles
    return engine_shapes(meta["segstyle.model"], int(meta["segstyle.noise_dim"]), settings.engine_profiles)


def _ensure_engine(onnx_path, engine_path, settings: ExportSettings, precision: str, **kw):
    """Build or reuse the engine of ``onnx_path`` with the settings' profile, workspace and FP16 recipe."""
    from segstyle.export.backend.onnx.loader import load_onnx
    from segstyle.export.backend.trt.loader import ensure_engine

    return ensure_engine(onnx_path, engine_path, profiles=_engine_profiles(load_onnx(onnx_path), settings),
                         workspace_mb=settings.workspace_mb, timing_cache=settings.timing_cache,
                         precision=precision, keep_fp32=list(settings.fp16_keep_fp32), **kw)


def _net_and_onnx(stack, model, checkpoint, onnx_path, settings: ExportSettings, need_onnx: bool):
    from segstyle.export.backend.onnx.loader import check_onnx_source
    from segstyle.export.backend.onnx.exporter import export_onnx
    from segstyle.export.backend.pyt.loader import load_net

    loaded = load_net(model, checkpoint, seed=settings.seed)
    if onnx_path:
        check_onnx_source(onnx_path, loaded)
    elif need_onnx:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="segstyle-onnx-")))
        onnx_path = str(tmp / f"{loaded.model}.onnx")
        _echo(f"exporting {loaded.model} to a temporary ONNX file (give --onnx to reuse one)")
        export_onnx(loaded, settings, onnx_path)
    return loaded, onnx_path


def _backend(spec, loaded, onnx_path, engine, settings: ExportSettings, precision="fp16", threads=None,
             packages=()):
    from segstyle.export.backend.registry import make_backend, parse_backend

    name, _ = parse_backend(spec)
    if name.startswith("aoti"):
        from segstyle.export.validate import plan_backends

        plan = plan_backends([name], net=None, onnx_fp32=None, onnx_fp16=None, engine=None, packages=packages)[0]
        if plan.make is None:
            raise SegstyleError(f"{name}: {plan.reason}")
        backend = plan.make()
        if threads and backend.sidecar.get("threads") not in (None, threads):
            raise SegstyleError(f"{plan.artifact} runs {backend.sidecar['threads']} thread(s) (compiled so), the other "
                                f"backends {threads}: rebuild it with `segstyle engine build --backend aoti --threads "
                                f"{threads} --force` or bench with --threads {backend.sidecar['threads']}")
        return backend
    engine_path = None
    if name == "tensorrt":
        from segstyle.export.backend.trt.loader import require_tensorrt

        require_tensorrt()
        engine_path = engine or _default_engine(onnx_path, precision)
        _, reasons = _ensure_engine(onnx_path, engine_path, settings, precision)
        if reasons:
            _echo(f"{engine_path}: rebuilt before running ({'; '.join(reasons)})")
    return make_backend(spec, net=loaded.net, onnx_path=onnx_path, engine_path=engine_path, threads=threads,
                        noise_dim=loaded.noise_dim)


@engine_group.command("validate")
@click.option("--backend", "backend_specs", multiple=True, default=("all",), show_default=True,
              help="Repeatable: ort-cpu | ort-cuda | torch-fp16 | tensorrt, or all (every backend; the ones "
                   "this machine lacks become 'not run: <reason>' rows).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="segstyle checkpoint: PyTorch FP32, the reference.")
@click.option("--model", default=None, help="Fresh seeded model instead of a checkpoint (testing only).")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), default=None,
              help="ONNX graph for ort-* (FP32 or FP16: its precision is read from the file). With --backend all "
                   "and no --onnx, the FP32 graph is exported on the fly.")
@click.option("--onnx-fp16", "onnx_fp16", type=click.Path(dir_okay=False), default=None,
              help="The FP16 graph (with --backend all; default: converted from the FP32 graph on the fly).")
@click.option("--onnx-int8", "onnx_int8", multiple=True, type=click.Path(dir_okay=False),
              help="Repeatable: an INT8 graph (segstyle export int8), an ort-cpu row each, judged by the int8 bounds.")
@click.option("--engine", type=click.Path(dir_okay=False), default=None, help="TensorRT engine (tensorrt).")
@click.option("--precision", type=click.Choice(["fp16", "fp32"]), default="fp16", show_default=True,
              help="Engine precision (tensorrt).")
@click.option("--package", "packages", multiple=True, type=click.Path(dir_okay=False),
              help="Repeatable: an AOTInductor package (aoti-cpu / aoti-cuda, by its sidecar's device); rebuilt from "
                   "its exported program first when built for another machine.")
@click.option("--network", default=None, help="Name in the record and in violation lines (default: the model).")
@click.option("--dataset", type=click.Choice(["voc", "pets"]), default=None,
              help="Validation split (default: from the class count; style: voc).")
@click.option("--images", "images", type=click.Path(file_okay=False), default=None,
              help="Any folder of photos instead of the split (labels where it is a VOC/Pet layout).")
@click.option("--samples", type=int, default=None,
              help="Use the first N images; 0 = all (default params validate.samples).")
@click.option("--latency-size", default=None, help="HxW for the p50 latency column (default 256x256; 0 = skip).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Record (JSON): every row, reason and per-image figure.")
@click.option("--metrics", "metrics_out", type=click.Path(dir_okay=False), default=None,
              help="Also write the figures-only view (JSON) that DVC tracks as metrics.")
@params_options
def validate_cmd(backend_specs, checkpoint, model, onnx_path, onnx_fp16, onnx_int8, engine, precision, packages,
                 network, dataset, images, samples, latency_size, out, metrics_out, params) -> None:
    """Compare every backend with PyTorch FP32 on real images; exit 1 when a params.validate bound is broken."""
    from segstyle.core.io import write_dvc_metrics, write_json
    from segstyle.export.backend.onnx.loader import check_onnx_source, onnx_precision
    from segstyle.export.backend.pyt.loader import load_net
    from segstyle.export.validate import metrics_view, plan_backends, validate_network, violation_lines

    settings = ExportSettings.from_params(params)
    specs = [s.strip() for spec in backend_specs for s in spec.split(",") if s.strip()]
    every = specs == ["all"]
    limit = settings.samples if samples is None else samples
    lat = (256, 256) if latency_size is None else (None if latency_size.strip() == "0" else _size(latency_size))
    loaded = load_net(model, checkpoint, seed=settings.seed)
    network = network or loaded.model
    if loaded.noise_dim is not None and (images is not None or dataset is not None):
        raise SegstyleError(f"{loaded.model} takes noise, not images: drop --images/--dataset")
    for path in (onnx_path, onnx_fp16, *onnx_int8):
        if path:
            check_onnx_source(path, loaded)
    bad_int8 = [p for p in onnx_int8 if onnx_precision(p) != "int8"]
    if bad_int8:
        raise SegstyleError(f"{bad_int8[0]}: --onnx-int8 takes an INT8 graph, this one is {onnx_precision(bad_int8[0])}")
    with contextlib.ExitStack() as stack:
        needs_onnx = every or any(s.split("+")[0] in ("ort-cpu", "ort-cuda") for s in specs)
        fp32, onnx_fp16 = _validation_graphs(stack, loaded, settings, onnx_path, onnx_fp16, needs_onnx=needs_onnx,
                                             every=every)
        plans = plan_backends(specs, net=loaded.net, onnx_fp32=fp32, onnx_fp16=onnx_fp16 if every else None,
                              engine=engine, engine_precision=precision, packages=packages, onnx_int8=onnx_int8)
        if not every:  # a backend asked for by name must run: say why it cannot, in one line
            missing = [p for p in plans if p.make is None]
            if missing:
                raise SegstyleError(f"{missing[0].backend}: not run: {missing[0].reason}")
        inputs, num_classes = _validation_inputs(loaded, params, images=images, dataset=dataset, limit=limit)
        prof = settings.engine_profiles
        record = validate_network(network, loaded, inputs, plans, bounds=settings.bounds,
                                  not_deployable=settings.int8.get("not_deployable") or {}, num_classes=num_classes,
                                  profile=None if loaded.noise_dim is not None else (prof.min[1:], prof.max[1:]),
                                  latency_size=lat)
        record["params_digest"] = settings.params_digest
        write_json(out, record)
        if metrics_out:
            write_dvc_metrics(metrics_out, metrics_view(record))
    _print_validation(network, loaded.task, record)
    _echo(f"record {out}" + (f", metrics {metrics_out}" if metrics_out else ""))
    unrun = [r for r in record["rows"] if not r["ran"]]
    if not every and unrun:  # asked for by name, it could not start (e.g. a package that cannot load)
        raise SegstyleError(f"{unrun[0]['backend']}: not run: {unrun[0]['reason']} (record {out})")
    bad = violation_lines(record)
    if bad:
        raise SegstyleError(" | ".join(bad) + f" (record {out})")


def _validation_graphs(stack, loaded, settings: ExportSettings, onnx_path, onnx_fp16, *, needs_onnx: bool,
                       every: bool):
    """(FP32 graph, FP16 graph) to validate: the given ones, else exported into a temporary folder on the
    fly (``--backend all`` compares both precisions; an FP16 graph given as ``--onnx`` counts as the FP16 one)."""
    fp32 = onnx_path
    if not needs_onnx or (fp32 is not None and not (every and onnx_fp16 is None)):
        return fp32, onnx_fp16
    from segstyle.export.backend.onnx.fp16 import export_fp16
    from segstyle.export.backend.onnx.exporter import export_onnx
    from segstyle.export.backend.onnx.loader import onnx_precision

    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="segstyle-validate-")))
    if fp32 is not None and every and onnx_precision(fp32) == "fp16":
        onnx_fp16, fp32 = fp32, None
    if fp32 is None:
        _echo(f"exporting {loaded.model} to a temporary FP32 ONNX file (give --onnx to reuse one)")
        fp32 = str(tmp / "model.onnx")
        export_onnx(loaded, settings, fp32)
    if every and onnx_fp16 is None:
        onnx_fp16 = str(tmp / "model_fp16.onnx")
        export_fp16(fp32, onnx_fp16, list(settings.fp16_keep_fp32))
    return fp32, onnx_fp16


def _validation_inputs(loaded, params, *, images, dataset, limit: int):
    """(inputs, class count) a network is validated on: a fixed noise batch for a generator, a folder of
    photos (``--images``), or the dataset's validation split; a label set that cannot fit the network's
    classes is refused in one line."""
    from segstyle.pipelines.validation_inputs import folder_inputs, split_inputs

    if loaded.noise_dim is not None:  # a generator: a fixed noise batch, not photos
        from segstyle.export.inputs import noise_inputs
        from segstyle.models import get_model_meta

        count = limit if limit > 0 else int((get_model_meta(loaded.model).engine_profile or {"opt": (16,)})["opt"][0])
        return noise_inputs(loaded.noise_dim, count, params.seed), None
    num_classes = len(loaded.classes) if loaded.task == "segmentation" else None
    pets_mode = params.data.pets_mode
    if images is not None:
        inputs = folder_inputs(images, pets_mode=pets_mode, voc_mode=params.data.voc_mode, limit=limit)
        if inputs.labels and num_classes is not None:
            top = max(int(s.mask[s.mask != 255].max()) if (s.mask != 255).any() else 0 for s in inputs.samples)
            if top >= num_classes:
                raise SegstyleError(f"{images}: labels reach class {top}, but {loaded.model} predicts "
                                    f"{num_classes} classes (a {'VOC' if top > 2 else 'Pets'} folder?)")
        return inputs, num_classes
    if num_classes is not None:
        from segstyle.models.classes import VOC_CLASSES, VOC_PERSON_CLASSES, dataset_classes

        # the graph's class names say which dataset it was trained on (VOC person and Pets binary both have 2)
        dataset = dataset or ("voc" if tuple(loaded.classes) in (VOC_CLASSES, VOC_PERSON_CLASSES) else "pets")
        mode = pets_mode if dataset == "pets" else params.data.voc_mode
        expected = dataset_classes(dataset, pets_mode, params.data.voc_mode)
        if tuple(loaded.classes) != expected:
            raise SegstyleError(f"{loaded.model} predicts {', '.join(loaded.classes)}; {dataset} ({mode}) "
                                f"has {', '.join(expected)} (data.{dataset}_mode)")
    return split_inputs(dataset or "voc", params, limit), num_classes


def _print_validation(network: str, task: str, record: dict) -> None:
    """One line per backend row: its figures and verdict, or why it did not run."""
    for row in record["rows"]:
        what = f"{network} {row['backend']} {row['precision']}" + (f" ({row['graph']} graph)" if row.get("graph") else "")
        if not row["ran"]:
            _echo(f"{what}: not run: {row['reason']}")
            continue
        f = row["figures"]
        if task == "segmentation":
            miou = (f", mIoU {f['miou_backend']:.2f} vs {f['miou_reference']:.2f} (delta {f['delta_miou_pts']:+.3f} pt)"
                    if "delta_miou_pts" in f else " (no labels: agreement only)")
            summary = (f"agreement {f['agreement_pct']:.3f}%, explained {f['explained_pct']:.1f}% of "
                       f"{f['disagreeing_pixels']} disagreeing px{miou}, max abs logit err {f['max_abs_logit_err']:.3g}")
        else:
            summary = (f"PSNR min {f['psnr_db_min']:.2f} dB, SSIM min {f['ssim_min']:.4f}, "
                       f"max abs err {f['max_abs_err']:.3g}" if f["psnr_db_min"] is not None
                       else "non-finite output")
        lat_s = f", p50 {f['p50_ms']:.1f} ms" if "p50_ms" in f else ""
        verdict = "PASS" if row["passed"] else "FAIL"
        if "not_deployable" in row and not row["passed"]:
            verdict = f"FAIL, not deployable (params export.int8.not_deployable: {row['not_deployable']})"
        _echo(f"{what}: {summary}{lat_s} on {f['images']} image(s): {verdict}")


@engine_group.command("matrix")
@click.option("--records", "records", multiple=True, default=("artifacts/validate",), show_default=True,
              type=click.Path(), help="Repeatable: a folder of validation records (searched recursively) or one "
                                      "record file; records made on another machine (GPU, Jetson) join the table.")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Markdown table to write (a .json sibling holds the rows).")
def matrix_cmd(records, out) -> None:
    """The deployment matrix: network x backend x precision -> figures, p50, verdict (from validation records)."""
    from segstyle.export.matrix import build_matrix, print_matrix

    doc = build_matrix(records, out)
    print_matrix(doc["rows"])
    ran = [r for r in doc["rows"] if r["ran"]]
    failed = [r for r in ran if not r["passed"]]
    _echo(f"{len(doc['rows'])} row(s) from {len(doc['records'])} record(s): {len(ran) - len(failed)} pass, "
          f"{len(failed)} fail, {len(doc['rows']) - len(ran)} not run" + (f"; wrote {out}" if out else ""))


@engine_group.command("bench")
@click.option("--backends", "backend_specs", default="torch-fp32,ort-cpu", show_default=True,
              help="Comma-separated backends, e.g. torch-fp16+channels_last+cuda_graph,tensorrt.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="segstyle checkpoint.")
@click.option("--model", default=None, help="Fresh seeded model (latency does not depend on weights).")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), default=None, help="ONNX for ort-*/tensorrt.")
@click.option("--onnx-extra", "onnx_extra", multiple=True, type=click.Path(dir_okay=False),
              help="Repeatable: another graph (FP16, INT8) timed under ONNX Runtime CPU beside the others, as "
                   "ort-cpu-<precision>[-trt].")
@click.option("--engine", type=click.Path(dir_okay=False), default=None, help="TensorRT engine.")
@click.option("--package", "packages", multiple=True, type=click.Path(dir_okay=False),
              help="Repeatable: AOTInductor package for aoti-cpu / aoti-cuda (by its sidecar's device).")
@click.option("--sizes", default="128x128", show_default=True, help="Comma-separated HxW sizes.")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--warmup", type=int, default=5, show_default=True)
@click.option("--iters", type=int, default=30, show_default=True)
@click.option("--threads", type=int, default=None,
              help="CPU threads for torch, ORT and AOTInductor alike (default: torch's, one per core).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="JSON file (e.g. benchmarks/cpu/<model>.json).")
@params_options
def bench_cmd(backend_specs, checkpoint, model, onnx_path, onnx_extra, engine, packages, sizes, batch, warmup, iters,
              threads, out, params) -> None:
    """p50/p95/p99 latency and throughput of several backends side by side, one process, same inputs."""
    import torch

    from segstyle.export.backend.registry import parse_backend
    from segstyle.export.bench import environment, print_table, run_bench
    from segstyle.core.io import write_json

    onnx_given = onnx_path
    specs = [s for s in backend_specs.split(",") if s.strip()]
    names = [parse_backend(s)[0] for s in specs]
    size_list = [_size(s) for s in sizes.split(",") if s.strip()]
    if batch < 1 or iters < 1 or warmup < 0:
        raise SegstyleError("--batch and --iters must be >= 1, --warmup >= 0")
    if threads:
        torch.set_num_threads(threads)
    threads = threads or torch.get_num_threads()  # one count for every CPU backend (ORT's default differs)
    settings = ExportSettings.from_params(params)
    with contextlib.ExitStack() as stack:
        loaded, onnx_path = _net_and_onnx(stack, model, checkpoint, onnx_path, settings,
                                          need_onnx=any(n in ("ort-cpu", "ort-cuda", "tensorrt") for n in names))
        backends = {}
        for spec in specs:
            b = _backend(spec, loaded, onnx_path, engine, settings, threads=threads, packages=packages)
            backends[b.name] = b
        graphs = {}
        for path in onnx_extra:
            from segstyle.export.backend.onnx.loader import check_onnx_source, graph_precision, int8_target, load_onnx
            from segstyle.export.backend.registry import make_backend
            from segstyle.export.validate import row_key

            check_onnx_source(path, loaded)
            graph = load_onnx(path, check=False)
            key = row_key("ort-cpu", graph_precision(graph), int8_target(graph))
            if key in backends:
                raise SegstyleError(f"{path}: a second {key} graph (give one graph per precision and target)")
            backends[key] = make_backend("ort-cpu", onnx_path=path, threads=threads)
            graphs[key] = str(path)
        rows = run_bench(backends, size_list, batch, warmup=warmup, iters=iters, seed=settings.seed,
                         noise_dim=loaded.noise_dim)
        record = {"model": loaded.model, "checkpoint": loaded.checkpoint,
                  "onnx": onnx_given or (onnx_path and "exported on the fly"), "graphs": graphs, "batch": batch,
                  "warmup": warmup,
                  "iters": iters, "threads": threads,
                  "packages": {b.name: {k: b.sidecar.get(k) for k in ("package", "threads", "cpu_isa", "gpu_name",
                                                                      "precision", "compile_seconds")}
                               for b in backends.values() if hasattr(b, "sidecar")},
                  "timer": "cuda events" if torch.cuda.is_available() else "time.perf_counter",
                  "environment": environment(), "results": rows}
        write_json(out, record)
    print_table(rows, f"{loaded.model}, batch {batch}")
    _echo(f"wrote {out}")


def _sizes(value: str) -> list[tuple[int, int]]:
    return [_size(s) for s in value.split(",") if s.strip()]


def _verify_bundle(bundle: Path, public_key: str | None, run_pg: bool) -> None:
    """Verify an existing bundle: files against manifest.json, the signature first when a key is given."""
    from segstyle.export.bundle import polygraphy_cmd, run_check, run_polygraphy, verify_bundle

    manifest = verify_bundle(bundle, public_key)
    signed = (f"signature: verified, key {(manifest.get('signature') or {}).get('fingerprint', '?')}"
              if public_key else "signature: not checked")
    click.echo(f"{bundle}: complete, {len(manifest['files'])} files match manifest.json; {signed}", err=True)
    if run_pg:
        proc = run_polygraphy(bundle)
        line = shlex.join(polygraphy_cmd(bundle))
        if proc.returncode != 0:
            tail = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "FAIL" in ln or "Error" in ln]
            raise SegstyleError(f"polygraphy rejects model.onnx against the golden outputs "
                                f"({(tail or ['exit ' + str(proc.returncode)])[-1].strip()[:200]}): {line}")
        click.echo(f"PASSED: {line}", err=True)
        proc = run_check(bundle, "--onnxrt", *(["--public-key", str(Path(public_key).resolve())] if public_key else []))
        msg = (proc.stdout + proc.stderr).strip().splitlines()
        if proc.returncode != 0:
            raise SegstyleError(f"{bundle}/check.py --onnxrt: {msg[-1] if msg else 'exit ' + str(proc.returncode)}")
        click.echo(msg[-1] if msg else "check.py passed", err=True)


_RUN_HELP = "Also run `polygraphy run --onnxrt` on the FP32 graph and `check.py --onnxrt`."
_PUBLIC_KEY_HELP = ("Refuse the bundle unless this public key's owner signed it exactly as it is (checked before "
                    "anything else is read; a refusal exits 2, like check.py).")


@click.group("bundle", invoke_without_command=True, subcommand_metavar="[verify DIR]")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="segstyle checkpoint.")
@click.option("--model", default=None, help="Model name (checked against the checkpoint; alone: fresh weights).")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), default=None,
              help="Reuse this FP32 ONNX (default: export from the checkpoint).")
@click.option("--onnx-fp16", "onnx_fp16", type=click.Path(dir_okay=False), default=None,
              help="Ship this FP16 graph (the pipeline's; default: convert the FP32 graph).")
@click.option("--onnx-int8", "onnx_int8", multiple=True, type=click.Path(dir_okay=False),
              help="Repeatable: an INT8 graph to ship (one per target: trt, cpu); dropped for a network that "
                   "params export.int8.not_deployable lists.")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None, help="Bundle directory to write.")
@click.option("--network", default=None, help="Network name in the manifest and check.py's verdict line.")
@click.option("--dataset", type=click.Choice(["voc", "pets"]), default=None,
              help="Golden images from this validation split (default: from the class count; style: voc).")
@click.option("--images", "images", type=click.Path(file_okay=False), default=None,
              help="Golden images from this folder of photos instead of the validation split (e.g. outside a "
                   "checkout, where there is no dataset).")
@click.option("--sizes", default=None,
              help="Golden input sizes HxW, one real image each (default: the profile's opt size and one other).")
@click.option("--no-tar", is_flag=True, help="Skip the .tar.gz.")
@click.option("--verify", "verify", type=click.Path(file_okay=False), default=None,
              help="Same as `segstyle bundle verify DIR`.")
@click.option("--run", "run_pg", is_flag=True, help="With --verify: " + _RUN_HELP)
@click.option("--sign-key", "sign_key", type=click.Path(dir_okay=False), default=None,
              help="Sign the finished bundle with this P-256 private key (PEM; its public half is KEY.pub.pem "
                   "beside it). Default: unsigned, and the bundle's README says so.")
@click.option("--create-key", is_flag=True,
              help="With --sign-key: generate the key pair there first if it does not exist (a demo key; "
                   "keep a fleet's key off the pipeline host).")
@click.option("--public-key", "public_key", type=click.Path(dir_okay=False), default=None,
              help="With --verify: " + _PUBLIC_KEY_HELP)
@params_options
@click.pass_context
def bundle_cmd(ctx, checkpoint, model, onnx_path, onnx_fp16, onnx_int8, out, network, dataset, images, sizes, no_tar,
               verify, run_pg, sign_key, create_key, public_key, params) -> None:
    """Write the edge-device bundle (ONNX FP32/FP16, real golden data, check.py, trtexec README), or
    `verify DIR` an existing one."""
    if ctx.invoked_subcommand is not None:
        return
    if verify:
        _verify_bundle(Path(verify), public_key, run_pg)
        return
    if out is None:
        raise SegstyleError("give --out DIR (or `segstyle bundle verify DIR`)")
    if public_key is not None:
        raise SegstyleError("--public-key verifies a bundle: use `segstyle bundle verify DIR --public-key PUB` (to sign, give --sign-key)")
    if sign_key is not None and create_key:
        from segstyle.export.portable.signature import ensure_key, fingerprint

        pub = ensure_key(sign_key)
        click.echo(f"signing key {sign_key} (public: {pub}, {fingerprint(pub)})", err=True)
    from segstyle.export.backend.pyt.loader import load_net

    from segstyle.export.bundle import default_dataset, default_sizes, write_bundle
    from segstyle.pipelines.validation_inputs import folder_inputs, split_inputs

    settings = ExportSettings.from_params(params)
    loaded = load_net(model, checkpoint, seed=settings.seed)
    sizes_ = _sizes(sizes) if sizes else None
    golden = None
    if loaded.noise_dim is None:  # an image network: the split's (or the folder's) first images, one per size
        count = len(sizes_ or default_sizes(settings.engine_profiles))
        if images is not None:
            golden = folder_inputs(images, pets_mode=params.data.pets_mode, voc_mode=params.data.voc_mode, limit=count)
            dataset = dataset or Path(images).name
        else:
            dataset = dataset or default_dataset(loaded)
            golden = split_inputs(dataset, params, limit=count)
    why_not = (settings.int8.get("not_deployable") or {}).get(network or loaded.model)
    if onnx_int8 and why_not:
        click.echo(f"{network or loaded.model}: INT8 graphs not shipped (params export.int8.not_deployable: {why_not})",
                   err=True)
        onnx_int8 = ()
    manifest = write_bundle(loaded, settings, Path(out), golden=golden, onnx_path=onnx_path, onnx_fp16=onnx_fp16,
                            onnx_int8=onnx_int8, sizes=sizes_, dataset=dataset, network=network, tar=not no_tar,
                            sign_key=sign_key)
    click.echo(f"wrote {out}/ ({', '.join(sorted(manifest['files']))})"
               + ("" if no_tar else f" and {out}.tar.gz"), err=True)


@bundle_cmd.command("verify")
@click.argument("bundle", type=click.Path(file_okay=False))
@click.option("--public-key", "public_key", type=click.Path(dir_okay=False), default=None, help=_PUBLIC_KEY_HELP)
@click.option("--run", "run_pg", is_flag=True, help=_RUN_HELP)
def bundle_verify_cmd(bundle, public_key, run_pg) -> None:
    """Check an existing bundle: every file against manifest.json, the signature first with --public-key."""
    _verify_bundle(Path(bundle), public_key, run_pg)