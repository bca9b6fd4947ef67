"""The edge bundle: everything a device needs to build *and prove* its own TensorRT engine.

TensorRT engines are specific to the GPU and TensorRT version that built them, and TensorRT cannot
be installed where segstyle trains. So the deliverable is not an engine but a directory (and its
``.tar.gz``) holding:

- ``model.onnx`` (FP32) and ``model_fp16.onnx`` (mixed precision, FP32 I/O, InstanceNorm FP32);
- ``inputs.json``: golden inputs, a list of feed dicts in Polygraphy's JSON format
  (``polygraphy run --load-inputs``);
- ``outputs.json``: PyTorch FP32's outputs for them as a Polygraphy ``RunResults``
  (``polygraphy run --load-outputs``);
- ``lint.json`` (TensorRT operator lint of both graphs), ``manifest.json`` (sha256 of every file,
  provenance, tolerances) and ``README.md`` with the exact ``trtexec`` lines for TensorRT 10
  (weakly typed ``--fp16`` + FP32 InstanceNorm constraints) and TensorRT 11 (strongly typed from
  the FP16 graph), and the ``polygraphy run`` lines whose pass proves the engine on the device.

``segstyle bundle --verify DIR`` checks a bundle is complete and unmodified; ``--run`` also runs
the real ``polygraphy run model.onnx --onnxrt`` comparison, which is what CI does.
"""

from __future__ import annotations

import json
import math
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any, Sequence

import click
import numpy as np
import torch

from segstyle.pipelines.errors import SegstyleError
from segstyle.pipelines.options import params_options

FILES = ("model.onnx", "model_fp16.onnx", "inputs.json", "outputs.json", "lint.json", "README.md")
RUNNER = "pytorch-fp32"
ONNXRT_TOL = {"atol": 1e-4, "rtol": 1e-4}   # FP32 ORT vs PyTorch: what export's parity guarantees
TRT_FP32_TOL = {"atol": 1e-2, "rtol": 1e-2}  # TensorRT FP32 uses TF32 kernels by default on Ampere+


def _fmt(x: float) -> str:
    """Round a tolerance *up* to one significant digit (``0.0123`` -> ``0.02``)."""
    if x <= 0:
        return "0"
    e = math.floor(math.log10(x))
    return f"{math.ceil(x / 10**e) * 10**e:.{max(0, -e)}f}"


def golden_inputs(sizes: Sequence[Sequence[int]], batches: Sequence[int], seed: int) -> list[torch.Tensor]:
    """Seeded 0..1 inputs; smooth noise (upsampled) so they resemble images more than white noise."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    out = []
    for (h, w), b in zip(sizes, batches):
        coarse = torch.rand(b, 3, max(2, h // 8), max(2, w // 8), generator=gen)
        fine = torch.rand(b, 3, h, w, generator=gen)
        x = 0.8 * F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False) + 0.2 * fine
        out.append(x.clamp(0, 1).contiguous())
    return out


def _shape(s: Sequence[int]) -> str:
    return "x".join(str(int(v)) for v in s)


def instance_norm_nodes(model) -> list[str]:
    return [n.name for n in model.graph.node if n.op_type == "InstanceNormalization"]


def readme(manifest: dict[str, Any], in_nodes: list[str]) -> str:
    """Device instructions with the exact commands (shapes and tolerances filled in)."""
    inp, pr = manifest["input"], manifest["profiles"]
    shapes = (f"--minShapes={inp}:{_shape(pr['min'])} --optShapes={inp}:{_shape(pr['opt'])} "
              f"--maxShapes={inp}:{_shape(pr['max'])}")
    ws = f"--memPoolSize=workspace:{manifest['workspace_mb']}M"
    constraints = ""
    if in_nodes:
        spec = ",".join(f"{n}:fp32" for n in in_nodes)
        constraints = f" \\\n    --precisionConstraints=obey --layerPrecisions={spec} --layerOutputTypes={spec}"
    tol = manifest["tolerances"]
    t16, t32, tc = tol["trt_fp16"], tol["trt_fp32"], tol["onnxrt"]
    pg = "--load-inputs inputs.json --load-outputs outputs.json"
    what = ("class logits N x C x H x W (argmax = label)" if manifest["task"] == "segmentation"
            else "stylised RGB in 0..1, same shape")
    p = manifest["provenance"]
    return f"""# segstyle edge bundle: {manifest['model']} ({manifest['task']})

Provenance: data version `{p['data_version']}`, git commit `{p['git_commit']}`, params digest
`{p['params_digest']}`, checkpoint sha256 `{p['checkpoint_sha256']}`.
Input `{inp}`: float32 RGB NCHW in 0..1 (normalisation is inside the graph). Output
`{manifest['output']}`: {what}.
Classes: {', '.join(manifest['classes']) or 'n/a'}.

## 0. Check the bundle (any machine with `pip install polygraphy onnxruntime`)

```bash
sha256sum -c SHA256SUMS
polygraphy run model.onnx --onnxrt {pg} --atol {tc['atol']} --rtol {tc['rtol']}
```

## 1a. TensorRT 10.x (JetPack 6): weakly typed FP16 from the FP32 graph

`--fp16` lets the builder choose FP16 kernels; InstanceNorm layers (if any) are pinned to FP32
because their sum of squares overflows FP16.

```bash
trtexec --onnx=model.onnx --fp16{constraints} \\
    {shapes} \\
    {ws} --timingCacheFile=timing.cache --saveEngine=model_trt10_fp16.engine
```

## 1b. TensorRT 11.x: strongly typed from the mixed-precision graph

TensorRT 11 removed `--fp16` (weak typing); precision comes from `model_fp16.onnx`, whose
{', '.join(manifest['fp16_kept_fp32'])} nodes are already FP32. (TensorRT 10.x can build the same
graph with `--stronglyTyped` added to this line.)

```bash
trtexec --onnx=model_fp16.onnx \\
    {shapes} \\
    {ws} --timingCacheFile=timing.cache --saveEngine=model_trt11_fp16.engine
```

## 2. Prove the engine on the device

The engine must reproduce PyTorch FP32's outputs on the golden inputs within the tolerances below
(FP16: the FP16 graph's measured error under ONNX Runtime x4, rounded up; FP32: TF32 kernels).
A failure means the engine must not be deployed.

```bash
polygraphy run model_trt10_fp16.engine --model-type engine --trt {pg} --atol {t16['atol']} --rtol {t16['rtol']}
polygraphy run model_trt11_fp16.engine --model-type engine --trt {pg} --atol {t16['atol']} --rtol {t16['rtol']}
# FP32 reference engine (TensorRT 10 or 11), for comparison:
trtexec --onnx=model.onnx {shapes} --saveEngine=model_fp32.engine
polygraphy run model_fp32.engine --model-type engine --trt {pg} --atol {t32['atol']} --rtol {t32['rtol']}
```

Golden inputs: {', '.join(_shape(s) for s in manifest['golden_shapes'])} (inside the optimisation
profile). segstyle's own runner does the same from Python: `segstyle engine build --onnx model.onnx`
then `segstyle engine validate --backend tensorrt ...`.
"""


def load_golden(bundle: Path, name: str):
    from polygraphy.json import load_json

    return load_json(str(bundle / name))


def write_bundle(loaded, params, out: Path, *, onnx_path: str | Path | None, sizes, batches, tar: bool = True) -> dict:
    """Write the bundle directory (and ``<out>.tar.gz``) atomically; returns the manifest."""
    from polygraphy.comparator import IterationResult, RunResults
    from polygraphy.json import save_json
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.ERROR  # no "[I] Saving inference results" chatter

    from segstyle.export.fp16 import export_fp16
    from segstyle.export.lint import lint_model
    from segstyle.export.netload import export_output, sha256_file
    from segstyle.export.onnx import INPUT_NAME, export_onnx, load_onnx, ort_session, output_name, read_metadata
    from segstyle.export.tensorrt import profile_shapes
    from segstyle.pipelines.io import atomic_dir, atomic_path, write_json, write_text

    shapes = profile_shapes(params.engine.profiles)
    for (h, w), b in zip(sizes, batches):
        lo, hi = shapes["min"], shapes["max"]
        if not (lo[0] <= b <= hi[0] and lo[2] <= h <= hi[2] and lo[3] <= w <= hi[3]):
            raise SegstyleError(f"golden input {b}x3x{h}x{w} lies outside the engine profile "
                                f"{_shape(lo)}..{_shape(hi)} (params engine.profiles)")
    with atomic_dir(out) as tmp:
        fp32 = tmp / "model.onnx"
        if onnx_path is not None:
            model = load_onnx(onnx_path)
            meta = read_metadata(model)
            if meta.get("segstyle.model") != loaded.model:
                raise SegstyleError(f"{onnx_path}: ONNX is for model '{meta.get('segstyle.model', 'unknown')}', "
                                    f"the checkpoint for '{loaded.model}'")
            sha = meta.get("segstyle.checkpoint_sha256")
            if loaded.checkpoint_sha256 and sha != loaded.checkpoint_sha256:
                raise SegstyleError(f"{onnx_path}: exported from another checkpoint than {loaded.checkpoint} "
                                    "(checkpoint sha256 differs); re-export or drop --onnx")
            shutil.copyfile(onnx_path, fp32)
        else:
            export_onnx(loaded, params, fp32)
        m16 = export_fp16(fp32, tmp / "model_fp16.onnx", params.export.fp16_keep_fp32)
        xs = golden_inputs(sizes, batches, params.seed)
        out_name = output_name(loaded.task)
        feeds = [{INPUT_NAME: x.numpy()} for x in xs]
        with torch.no_grad():
            refs = [export_output(loaded.net, x).float().numpy() for x in xs]
        save_json(feeds, str(tmp / "inputs.json"))
        results = RunResults()
        results.append((RUNNER, [IterationResult(outputs={out_name: r}, runner_name=RUNNER) for r in refs]))
        results.save(str(tmp / "outputs.json"))
        # tolerance for FP16 engines: the FP16 graph's own error on these inputs, x4, rounded up
        sess = ort_session(tmp / "model_fp16.onnx")
        err16 = max(float(np.abs(sess.run(None, f)[0].astype(np.float64) - r).max()) for f, r in zip(feeds, refs))
        scale = max(float(np.abs(r).max()) for r in refs)
        t16 = {"atol": _fmt(max(4 * err16, 1e-3)), "rtol": _fmt(max(1e-2, 4 * err16 / max(scale, 1e-6)))}
        write_json(tmp / "lint.json", {"model.onnx": lint_model(load_onnx(fp32)), "model_fp16.onnx": lint_model(m16)})
        provenance = {k: read_metadata(load_onnx(fp32, check=False)).get(f"segstyle.{k}", "unknown")
                      for k in ("data_version", "git_commit", "params_digest", "checkpoint_sha256")}
        manifest = {
            "model": loaded.model, "task": loaded.task, "classes": loaded.classes, "input": INPUT_NAME,
            "output": out_name, "golden_shapes": [list(x.shape) for x in xs], "runner": RUNNER,
            "profiles": {k: list(v) for k, v in shapes.items()}, "workspace_mb": params.engine.workspace_mb,
            "fp16_kept_fp32": sorted(set(params.export.fp16_keep_fp32) | {"InstanceNormalization"}),
            "fp16_onnxrt_max_abs_err": err16,
            "tolerances": {"onnxrt": {k: _fmt(v) for k, v in ONNXRT_TOL.items()},
                           "trt_fp32": {k: _fmt(v) for k, v in TRT_FP32_TOL.items()}, "trt_fp16": t16},
            "provenance": provenance, "checkpoint": loaded.checkpoint,
        }
        write_text(tmp / "README.md", readme(manifest, instance_norm_nodes(load_onnx(fp32, check=False))))
        manifest["files"] = {name: sha256_file(tmp / name) for name in FILES}
        write_json(tmp / "manifest.json", manifest)
        sums = "".join(f"{h}  {n}\n" for n, h in sorted(manifest["files"].items()))
        write_text(tmp / "SHA256SUMS", sums)
        tmp.chmod(0o755)  # mkdtemp/mkstemp create private files; the bundle is meant to be shipped
        for f in tmp.iterdir():
            f.chmod(0o644)
        if tar:
            with atomic_path(Path(str(out) + ".tar.gz")) as tgz:
                with tarfile.open(tgz, "w:gz") as tf:
                    tf.add(tmp, arcname=out.name)
    return manifest


def verify_bundle(bundle: str | Path) -> dict[str, Any]:
    """Check the bundle is complete and unmodified; one :class:`SegstyleError` line otherwise."""
    from segstyle.export.netload import sha256_file
    from segstyle.export.onnx import load_onnx

    bundle = Path(bundle)
    if not bundle.is_dir():
        raise SegstyleError(f"{bundle}: no such bundle directory")
    mf = bundle / "manifest.json"
    try:
        manifest = json.loads(mf.read_text())
        files = manifest["files"]
    except FileNotFoundError:
        raise SegstyleError(f"{bundle}: incomplete bundle: manifest.json missing") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise SegstyleError(f"{bundle}: manifest.json is not a segstyle bundle manifest") from None
    missing = [n for n in FILES if n not in files or not (bundle / n).is_file()]
    if missing:
        raise SegstyleError(f"{bundle}: incomplete bundle: {', '.join(missing)} missing")
    changed = [n for n, h in files.items() if sha256_file(bundle / n) != h]
    if changed:
        raise SegstyleError(f"{bundle}: {', '.join(changed)} changed since the bundle was written (sha256 mismatch)")
    load_onnx(bundle / "model.onnx")
    load_onnx(bundle / "model_fp16.onnx")
    return manifest


def polygraphy_cmd(bundle: Path, model: str, tol: dict[str, str]) -> list[str]:
    exe = Path(sys.executable).with_name("polygraphy")
    return [str(exe) if exe.is_file() else "polygraphy", "run", str(bundle / model), "--onnxrt",
            "--load-inputs", str(bundle / "inputs.json"), "--load-outputs", str(bundle / "outputs.json"),
            "--atol", tol["atol"], "--rtol", tol["rtol"]]


def run_polygraphy(bundle: Path, model: str, tol: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(polygraphy_cmd(bundle, model, tol), capture_output=True, text=True)


def _sizes(value: str) -> list[tuple[int, int]]:
    from segstyle.export.cli import _size

    return [_size(s) for s in value.split(",") if s.strip()]


@click.command("bundle")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="segstyle checkpoint.")
@click.option("--model", default=None, help="Model name (checked against the checkpoint; alone: fresh weights).")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), default=None,
              help="Reuse this FP32 ONNX (default: export from the checkpoint).")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None, help="Bundle directory to write.")
@click.option("--sizes", default="128x128,160x192", show_default=True, help="Golden input sizes HxW.")
@click.option("--batches", default="1,2", show_default=True, help="Golden batch size per size.")
@click.option("--no-tar", is_flag=True, help="Skip the .tar.gz.")
@click.option("--verify", "verify", type=click.Path(file_okay=False), default=None,
              help="Check an existing bundle instead of writing one.")
@click.option("--run", "run_pg", is_flag=True, help="With --verify: also run `polygraphy run --onnxrt` on it.")
@params_options
def cli(checkpoint, model, onnx_path, out, sizes, batches, no_tar, verify, run_pg, params) -> None:
    """Write (or --verify) the edge-device bundle: ONNX FP32/FP16, golden data, trtexec/polygraphy README."""
    if verify:
        bundle = Path(verify)
        manifest = verify_bundle(bundle)
        click.echo(f"{bundle}: complete, {len(manifest['files'])} files match manifest.json", err=True)
        if run_pg:
            for model_file, tol in (("model.onnx", manifest["tolerances"]["onnxrt"]),
                                    ("model_fp16.onnx", manifest["tolerances"]["trt_fp16"])):
                proc = run_polygraphy(bundle, model_file, tol)
                line = shlex.join(polygraphy_cmd(bundle, model_file, tol))
                if proc.returncode != 0:
                    tail = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "FAIL" in ln or "Error" in ln]
                    raise SegstyleError(f"polygraphy rejects {model_file} against the golden outputs "
                                        f"({(tail or ['exit ' + str(proc.returncode)])[-1].strip()[:200]}): {line}")
                click.echo(f"PASSED: {line}", err=True)
        return
    if out is None:
        raise SegstyleError("give --out DIR (or --verify DIR)")
    from segstyle.export.netload import load_net

    size_list = _sizes(sizes)
    try:
        batch_list = [int(b) for b in batches.split(",")]
    except ValueError:
        raise SegstyleError(f"bad --batches '{batches}'; write e.g. 1,2") from None
    if len(batch_list) != len(size_list):
        raise SegstyleError("--batches needs one batch size per --sizes entry")
    loaded = load_net(model, checkpoint, seed=params.seed)
    manifest = write_bundle(loaded, params, Path(out), onnx_path=onnx_path, sizes=size_list, batches=batch_list,
                            tar=not no_tar)
    click.echo(f"wrote {out}/ ({', '.join(sorted(manifest['files']))})"
               + ("" if no_tar else f" and {out}.tar.gz"), err=True)
