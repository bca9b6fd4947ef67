"""The edge bundle: everything a device needs to build *and prove* its own TensorRT engine.

TensorRT engines are specific to the GPU and TensorRT version that built them, and TensorRT cannot
be installed where segstyle trains. So the deliverable is not an engine but a directory (and its
``.tar.gz``) holding:

- ``model.onnx`` (FP32) and ``model_fp16.onnx`` (the pipeline's mixed-precision graph: the
  engine's source, built strongly typed);
- golden data: real validation images at the engine profile's opt size and one other size inside
  the profile, and PyTorch FP32's outputs for them: ``inputs.json`` / ``outputs.json`` in
  Polygraphy's ``--load-inputs`` / ``--load-outputs`` formats (``check.py`` reads them with numpy
  alone, so the golden data exists once);
- ``check.py`` + ``segstyle_compare.py`` (a byte-identical copy of :mod:`segstyle.export.compare`):
  ``python3 check.py --engine F.engine`` on the device, ``python3 check.py --onnxrt`` anywhere,
  applying the same fixed bounds as ``segstyle engine validate`` (``params.yaml`` ``validate``);
  it refuses any file whose sha256 differs from the manifest;
- ``lint.json``, ``manifest.json`` (sha256 of every file, provenance of both moments, bounds) and
  ``README.md`` with the exact ``trtexec`` lines (:func:`segstyle.export.tensorrt.trtexec_commands`),
  the Jetson steps and the Polygraphy command that compares every layer between TensorRT and ONNX
  Runtime to localise a failure.

The check cannot be passed by construction: the bounds are fixed numbers, never derived from the
FP16 graph's own error on the golden data.
"""

from __future__ import annotations

import json
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

from segstyle.export.compare import PARITY
from segstyle.pipelines.errors import SegstyleError
from segstyle.pipelines.options import params_options

FILES = ("model.onnx", "model_fp16.onnx", "inputs.json", "outputs.json", "lint.json", "README.md", "check.py",
         "segstyle_compare.py", "segstyle_layer_precision.py")
RUNNER = "pytorch-fp32"
HERE = Path(__file__).resolve().parent


def _shape(s: Sequence[int]) -> str:
    return "x".join(str(int(v)) for v in s)


def default_sizes(profiles) -> list[tuple[int, int]]:
    """The profile's opt H x W, and a second, non-square size inside the profile (between min and opt)."""
    lo, opt = profiles.min, profiles.opt
    other = (max(lo[1], (lo[1] + opt[1]) // 2), opt[2])
    if other == (opt[1], opt[2]):
        other = (opt[1], max(lo[2], (lo[2] + opt[2]) // 2))
    return [(int(opt[1]), int(opt[2])), (int(other[0]), int(other[1]))]


def _cover_crop(img: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize (aspect kept) to cover ``size``, then centre-crop: a real photo, not a stretched one."""
    import torch.nn.functional as F

    h, w = img.shape[1:]
    th, tw = int(size[0]), int(size[1])
    s = max(th / h, tw / w)
    nh, nw = max(th, round(h * s)), max(tw, round(w * s))
    x = F.interpolate(img[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=s < 1)[0]
    top, left = (nh - th) // 2, (nw - tw) // 2
    return x[:, top:top + th, left:left + tw].contiguous()


def golden_noise(noise_dim: int, batch: int, seed: int) -> tuple[list[torch.Tensor], list[str]]:
    """The golden input of a noise network: ONE fixed N(0, 1) batch (``batch`` x ``noise_dim``), seeded.

    Stored in ``inputs.json`` like images are, so the device feeds exactly the noise PyTorch saw; the
    seed is in the manifest for anyone regenerating it.
    """
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, noise_dim, generator=g)], [f"noise N(0,1) seed {seed} batch {batch}"]


def golden_inputs(dataset: str, params, sizes: Sequence[Sequence[int]]) -> tuple[list[torch.Tensor], list[str]]:
    """One real validation image per size (the first ones of the split), batch 1, 0..1 float32."""
    from segstyle.export.validate import split_inputs

    inputs = split_inputs(dataset, params, limit=len(sizes))
    if len(inputs.samples) < len(sizes):
        raise SegstyleError(f"{inputs.source} holds {len(inputs.samples)} image(s); the bundle needs {len(sizes)}")
    xs = [_cover_crop(s.image, size)[None] for s, size in zip(inputs.samples, sizes)]
    return xs, [f"{dataset}/{s.name}" for s in inputs.samples]


def readme(manifest: dict[str, Any], commands: dict[str, str], jetson: list[str]) -> str:
    """Device instructions with the exact commands (shapes and bounds filled in)."""
    inp, pr = manifest["input"], manifest["profiles"]
    b = manifest["bounds"]
    what = {"segmentation": "class logits N x C x H x W (argmax = label)",
            "generation": "generated RGB N x 3 x H x W in 0..1"}.get(manifest["task"], "stylised RGB in 0..1, same shape")
    feed = ("float32 RGB NCHW in 0..1 (normalisation is inside the graph)" if manifest.get("input_kind") != "noise"
            else f"float32 noise N x {manifest['noise_dim']} from N(0, 1) (golden: one seeded batch)")
    bound = (f"argmax agreement >= {b['min_agreement']}% of pixels" if manifest["task"] == "segmentation"
             else f"PSNR >= {b['min_psnr']} dB")
    prov = manifest["provenance"]
    prov_lines = "\n".join(f"- {k}: `{v}`" for k, v in sorted(prov.items()))
    shapes = " ".join(f"--trt-{k}-shapes {inp}:[{','.join(str(v) for v in pr[k])}]" for k in ("min", "opt", "max"))
    t32 = manifest["tolerances"]["onnxrt_fp32"]
    jet = "\n".join(jetson)
    golden = ", ".join(f"{n} at {_shape(s)}" for n, s in zip(manifest["golden"], manifest["golden_shapes"]))
    if manifest.get("input_kind") != "noise":
        golden += "; real validation images"
    return f"""# segstyle edge bundle: {manifest['network']} ({manifest['model']}, {manifest['task']})

Input `{inp}`: {feed}. Output
`{manifest['output']}`: {what}.
Classes: {', '.join(manifest['classes']) or 'n/a'}.
Kept FP32 in `model_fp16.onnx` (params.yaml export.fp16_keep_fp32): {', '.join(manifest['fp16_kept_fp32'])}.

Provenance (training.* from the checkpoint, export.* from the export run):
{prov_lines}

## 0. Check the bundle (any machine: `pip install numpy onnxruntime`)

```bash
sha256sum -c SHA256SUMS
python3 check.py --onnxrt
```

`check.py` refuses a file whose sha256 differs from `manifest.json`, runs the golden inputs
({golden}) and compares with PyTorch FP32's outputs under the fixed bound
{bound}, the same bound `segstyle engine validate` applies. Exit 0 PASS, 1 FAIL naming the figure.

## 1. Build the engine (TensorRT 10.x and 11.x: strongly typed from the FP16 graph)

```bash
{commands['strong_fp16']}
```

Fallback, TensorRT 10 only (weakly typed from the FP32 graph, the kept ops pinned FP32 by layer name):

```bash
{commands['weak_fp16_trt10']}
```

FP32 reference engine: `{commands['fp32']}`

## 2. Prove the engine on the device (numpy + polygraphy, or tensorrt + cuda-python)

```bash
python3 check.py --engine model_fp16.engine
```

A FAIL means the engine must not be deployed. To find the layer where it goes wrong, compare every
layer's output between TensorRT and ONNX Runtime on the golden inputs (Polygraphy >= 0.53 spells
"all tensors" `'*'`; older releases `mark all`):

```bash
polygraphy run model_fp16.onnx --trt --strongly-typed --onnxrt --trt-outputs '*' --onnx-outputs '*' \\
    --load-inputs inputs.json {shapes} --atol 1e-2 --rtol 1e-2
```

The FP32 graph against PyTorch FP32 (what export's parity guarantees):
`polygraphy run model.onnx --onnxrt --load-inputs inputs.json --load-outputs outputs.json --atol {t32['atol']} --rtol {t32['rtol']} --check-error-stat {t32['statistic']}`

## 3. Jetson (JetPack >= 6.1, TensorRT 10.3; JetPack 7.x, TensorRT 11)

```bash
{jet}
```
"""


def write_bundle(loaded, params, out: Path, *, onnx_path: str | Path | None, onnx_fp16: str | Path | None = None,
                 sizes: Sequence[Sequence[int]] | None = None, dataset: str | None = None,
                 network: str | None = None, tar: bool = True) -> dict:
    """Write the bundle directory (and ``<out>.tar.gz``) atomically; returns the manifest."""
    from polygraphy.comparator import IterationResult, RunResults
    from polygraphy.json import save_json
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.ERROR  # no "[I] Saving inference results" chatter

    from segstyle.export.fp16 import export_fp16, keep_list, kept_nodes
    from segstyle.export.lint import lint_model
    from segstyle.export.netload import export_output, sha256_file
    from segstyle.export.onnx import INPUT_NAME, export_onnx, load_onnx, output_name, read_metadata
    from segstyle.export.netload import engine_shapes
    from segstyle.export.tensorrt import fp32_pins, jetson_commands, trtexec_commands
    from segstyle.pipelines.io import atomic_dir, atomic_path, write_json, write_text

    noise = loaded.noise_dim
    shapes = engine_shapes(loaded.model, noise, params)
    sizes = [] if noise is not None else [tuple(s) for s in (sizes or default_sizes(params.engine.profiles))]
    lo, hi = shapes["min"], shapes["max"]
    for h, w in sizes:
        if not (lo[2] <= h <= hi[2] and lo[3] <= w <= hi[3]):
            raise SegstyleError(f"golden input 1x3x{h}x{w} lies outside the engine profile "
                                f"{_shape(lo)}..{_shape(hi)} (params engine.profiles)")
    if dataset is None:
        dataset = ("voc" if len(loaded.classes) == 21 else "pets") if loaded.task == "segmentation" else "voc"
    for path in (onnx_path, onnx_fp16):
        if path is None:
            continue
        meta = read_metadata(load_onnx(path))
        if meta.get("segstyle.model") != loaded.model:
            raise SegstyleError(f"{path}: ONNX is for model '{meta.get('segstyle.model', 'unknown')}', "
                                f"the checkpoint for '{loaded.model}'")
        sha = meta.get("segstyle.checkpoint_sha256")
        if loaded.checkpoint_sha256 and sha != loaded.checkpoint_sha256:
            raise SegstyleError(f"{path}: exported from another checkpoint than {loaded.checkpoint} "
                                "(checkpoint sha256 differs); re-export or drop --onnx")
    keep = params.export.fp16_keep_fp32
    with atomic_dir(out) as tmp:
        fp32 = tmp / "model.onnx"
        if onnx_path is not None:
            shutil.copyfile(onnx_path, fp32)
        else:
            export_onnx(loaded, params, fp32)
        if onnx_fp16 is not None:
            shutil.copyfile(onnx_fp16, tmp / "model_fp16.onnx")
            m16 = load_onnx(tmp / "model_fp16.onnx")
        else:
            m16 = export_fp16(fp32, tmp / "model_fp16.onnx", keep)
        if noise is not None:  # the profile's opt batch of fixed noise
            xs, names = golden_noise(noise, int(shapes["opt"][0]), params.seed)
        else:
            xs, names = golden_inputs(dataset, params, sizes)
        out_name = output_name(loaded.task)
        with torch.no_grad():
            refs = [export_output(loaded.net, x).float().numpy() for x in xs]
        save_json([{INPUT_NAME: x.numpy()} for x in xs], str(tmp / "inputs.json"))
        results = RunResults()
        results.append((RUNNER, [IterationResult(outputs={out_name: r}, runner_name=RUNNER) for r in refs]))
        results.save(str(tmp / "outputs.json"))
        m32 = load_onnx(fp32, check=False)
        write_json(tmp / "lint.json", {"model.onnx": lint_model(m32), "model_fp16.onnx": lint_model(m16)})
        shutil.copyfile(HERE / "bundle_check.py", tmp / "check.py")
        shutil.copyfile(HERE / "compare.py", tmp / "segstyle_compare.py")
        meta = read_metadata(m32)
        provenance = {k[len("segstyle."):]: v for k, v in sorted(meta.items())
                      if k.startswith(("segstyle.training.", "segstyle.export."))}
        provenance["checkpoint_sha256"] = meta.get("segstyle.checkpoint_sha256", "unknown")
        v = params.validate_
        manifest = {
            "network": network or loaded.model, "model": loaded.model, "task": loaded.task,
            "classes": loaded.classes, "input": INPUT_NAME, "output": out_name, "runner": RUNNER,
            "input_kind": "noise" if noise is not None else "image", "noise_dim": noise, "seed": params.seed,
            "golden": names, "golden_shapes": [list(x.shape) for x in xs],
            "profiles": {k: list(v_) for k, v_ in shapes.items()}, "workspace_mb": params.engine.workspace_mb,
            "fp16_kept_fp32": keep_list(keep),
            "bounds": {"min_agreement": v.min_agreement, "max_delta_miou": v.max_delta_miou, "min_psnr": v.min_psnr},
            "tolerances": {"onnxrt_fp32": PARITY.to_dict()},
            "provenance": provenance, "checkpoint": loaded.checkpoint,
        }
        commands = trtexec_commands(input_name=INPUT_NAME, shapes=shapes, workspace_mb=params.engine.workspace_mb,
                                    pins=fp32_pins(m32, keep))
        manifest["trtexec"] = commands
        # check.py --engine proves these nodes ran FP32 (trtexec layer info), with the same code as segstyle
        manifest["fp16_kept_nodes"] = kept_nodes(m16, keep)
        shutil.copyfile(HERE / "layer_precision.py", tmp / "segstyle_layer_precision.py")
        jetson = jetson_commands(input_name=INPUT_NAME, shapes=shapes, workspace_mb=params.engine.workspace_mb)
        if noise is not None:  # the small-memory lines are an image profile (1x3x768x768 max): not for noise
            jetson = [ln for ln in jetson if "_small" not in ln]
        write_text(tmp / "README.md", readme(manifest, commands, jetson))
        manifest["files"] = {name: sha256_file(tmp / name) for name in FILES}
        write_json(tmp / "manifest.json", manifest)
        sums = "".join(f"{h}  {n}\n" for n, h in sorted(manifest["files"].items()))
        write_text(tmp / "SHA256SUMS", sums)
        tmp.chmod(0o755)  # mkdtemp/mkstemp create private files; the bundle is meant to be shipped
        for f in tmp.iterdir():
            f.chmod(0o755 if f.name == "check.py" else 0o644)
        if tar:
            write_tarball(tmp, Path(str(out) + ".tar.gz"), arcname=out.name)
    return manifest


def _normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


def write_tarball(src: Path, dest: Path, *, arcname: str) -> None:
    """``src`` as a reproducible ``.tar.gz``: sorted members, no times or owners, gzip header time 0.

    Why: the tarball is a cached DVC output, so the same bundle must give the same bytes (and hash)
    on every machine and every rerun.
    """
    import gzip

    from segstyle.pipelines.io import atomic_path

    with atomic_path(dest) as tgz, open(tgz, "wb") as raw, \
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.add(src, arcname=arcname, recursive=False, filter=_normalised)
        for f in sorted(p for p in src.rglob("*")):
            tf.add(f, arcname=f"{arcname}/{f.relative_to(src).as_posix()}", recursive=False, filter=_normalised)


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


def polygraphy_cmd(bundle: Path, model: str = "model.onnx") -> list[str]:
    """``polygraphy run`` of the FP32 graph against PyTorch FP32's golden outputs (export parity)."""
    exe = Path(sys.executable).with_name("polygraphy")
    return [str(exe) if exe.is_file() else "polygraphy", "run", str(bundle / model), "--onnxrt",
            "--load-inputs", str(bundle / "inputs.json"), "--load-outputs", str(bundle / "outputs.json"),
            "--atol", str(PARITY.atol), "--rtol", str(PARITY.rtol), "--check-error-stat", PARITY.statistic]


def run_polygraphy(bundle: Path, model: str = "model.onnx") -> subprocess.CompletedProcess:
    return subprocess.run(polygraphy_cmd(bundle, model), capture_output=True, text=True)


def run_check(bundle: Path, *args: str) -> subprocess.CompletedProcess:
    """The bundle's own ``check.py`` in a fresh interpreter, exactly as a device runs it."""
    return subprocess.run([sys.executable, str(bundle / "check.py"), *args], capture_output=True, text=True,
                          cwd=bundle)


def _sizes(value: str) -> list[tuple[int, int]]:
    from segstyle.export.cli import _size

    return [_size(s) for s in value.split(",") if s.strip()]


@click.command("bundle")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="segstyle checkpoint.")
@click.option("--model", default=None, help="Model name (checked against the checkpoint; alone: fresh weights).")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), default=None,
              help="Reuse this FP32 ONNX (default: export from the checkpoint).")
@click.option("--onnx-fp16", "onnx_fp16", type=click.Path(dir_okay=False), default=None,
              help="Ship this FP16 graph (the pipeline's; default: convert the FP32 graph).")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None, help="Bundle directory to write.")
@click.option("--network", default=None, help="Network name in the manifest and check.py's verdict line.")
@click.option("--dataset", type=click.Choice(["voc", "pets"]), default=None,
              help="Golden images from this validation split (default: from the class count; style: voc).")
@click.option("--sizes", default=None,
              help="Golden input sizes HxW, one real image each (default: the profile's opt size and one other).")
@click.option("--no-tar", is_flag=True, help="Skip the .tar.gz.")
@click.option("--verify", "verify", type=click.Path(file_okay=False), default=None,
              help="Check an existing bundle instead of writing one.")
@click.option("--run", "run_pg", is_flag=True,
              help="With --verify: also run `polygraphy run --onnxrt` on the FP32 graph and `check.py --onnxrt`.")
@params_options
def cli(checkpoint, model, onnx_path, onnx_fp16, out, network, dataset, sizes, no_tar, verify, run_pg,
        params) -> None:
    """Write (or --verify) the edge-device bundle: ONNX FP32/FP16, real golden data, check.py, trtexec README."""
    if verify:
        bundle = Path(verify)
        manifest = verify_bundle(bundle)
        click.echo(f"{bundle}: complete, {len(manifest['files'])} files match manifest.json", err=True)
        if run_pg:
            proc = run_polygraphy(bundle)
            line = shlex.join(polygraphy_cmd(bundle))
            if proc.returncode != 0:
                tail = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "FAIL" in ln or "Error" in ln]
                raise SegstyleError(f"polygraphy rejects model.onnx against the golden outputs "
                                    f"({(tail or ['exit ' + str(proc.returncode)])[-1].strip()[:200]}): {line}")
            click.echo(f"PASSED: {line}", err=True)
            proc = run_check(bundle, "--onnxrt")
            msg = (proc.stdout + proc.stderr).strip().splitlines()
            if proc.returncode != 0:
                raise SegstyleError(f"{bundle}/check.py --onnxrt: {msg[-1] if msg else 'exit ' + str(proc.returncode)}")
            click.echo(msg[-1] if msg else "check.py passed", err=True)
        return
    if out is None:
        raise SegstyleError("give --out DIR (or --verify DIR)")
    from segstyle.export.netload import load_net

    loaded = load_net(model, checkpoint, seed=params.seed)
    manifest = write_bundle(loaded, params, Path(out), onnx_path=onnx_path, onnx_fp16=onnx_fp16,
                            sizes=_sizes(sizes) if sizes else None, dataset=dataset, network=network,
                            tar=not no_tar)
    click.echo(f"wrote {out}/ ({', '.join(sorted(manifest['files']))})"
               + ("" if no_tar else f" and {out}.tar.gz"), err=True)
