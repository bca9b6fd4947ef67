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
- ``check.py`` + ``segstyle_compare.py`` (a byte-identical copy of :mod:`segstyle.export.portable.compare`):
  ``python3 check.py --engine F.engine`` on the device, ``python3 check.py --onnxrt`` anywhere,
  applying the same fixed bounds as ``segstyle engine validate`` (``params.yaml`` ``validate``);
  it refuses any file whose sha256 differs from the manifest;
- ``lint.json``, ``manifest.json`` (sha256 of every file, provenance of both moments, bounds) and
  ``README.md`` with the exact ``trtexec`` lines (:func:`segstyle.export.backend.trt.loader.trtexec_commands`),
  the Jetson steps and the Polygraphy command that compares every layer between TensorRT and ONNX
  Runtime to localise a failure.

The check cannot be passed by construction: the bounds are fixed numbers, never derived from the
FP16 graph's own error on the golden data.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any, Sequence

import torch

from segstyle.export.portable.compare import PARITY
from segstyle.core.errors import RefusedError, SegstyleError

FILES = ("model.onnx", "model_fp16.onnx", "inputs.json", "outputs.json", "lint.json", "README.md", "check.py",
         "segstyle_compare.py", "segstyle_layer_precision.py", "segstyle_signature.py")
RUNNER = "pytorch-fp32"
PORTABLE = Path(__file__).resolve().parent / "portable"  # the files a bundle ships, copied byte for byte
#: source in PORTABLE -> name in the bundle
SHIPPED = {"check.py": "check.py", "compare.py": "segstyle_compare.py", "layer_precision.py": "segstyle_layer_precision.py",
           "signature.py": "segstyle_signature.py"}


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
    from segstyle.export.backend.pyt.loader import noise_batch

    return [noise_batch(noise_dim, batch, seed)], [f"noise N(0,1) seed {seed} batch {batch}"]


def default_dataset(loaded) -> str:
    """The validation split a network's golden images come from: its own dataset (by class count); style: voc."""
    if loaded.task == "segmentation":
        return "voc" if len(loaded.classes) == 21 else "pets"
    return "voc"


def golden_images(inputs, sizes: Sequence[Sequence[int]], dataset: str) -> tuple[list[torch.Tensor], list[str]]:
    """One real image per size from ``inputs`` (a validation split's first images, read by the caller),
    cover-cropped to the size, batch 1, 0..1 float32."""
    if len(inputs.samples) < len(sizes):
        raise SegstyleError(f"{inputs.source} holds {len(inputs.samples)} image(s); the bundle needs {len(sizes)}")
    xs = [_cover_crop(s.image, size)[None] for s, size in zip(inputs.samples, sizes)]
    return xs, [f"{dataset}/{s.name}" for s in inputs.samples]


def _int8_section(manifest: dict[str, Any], commands: dict[str, str]) -> str:
    """The README's INT8 part: what the INT8 graphs are, their checks and (TensorRT graph) engine lines."""
    files = [n for n in manifest.get("int8_files", []) if n.endswith(".onnx")]
    if not files:
        return ""
    b = manifest["bounds"]["int8"]
    bound = (f"argmax agreement >= {b['min_agreement']}% (|delta mIoU| <= {b['max_delta_miou']} pt needs labels: "
             "`segstyle engine validate` checks it)" if manifest["task"] == "segmentation"
             else f"PSNR >= {b['min_psnr']} dB")
    parts = ["", "## 4. INT8 (calibrated Q/DQ graphs; images, method and every tensor range in `calibration.json`)", ""]
    if "model_int8_cpu.onnx" in files:
        parts += ["`model_int8_cpu.onnx` is the graph ONNX Runtime CPU runs fastest (U8S8 integer kernels):", "",
                  "```bash", "python3 check.py --onnxrt --graph model_int8_cpu.onnx", "```", ""]
    if "model_int8.onnx" in files:
        parts += ["`model_int8.onnx` is for TensorRT (symmetric INT8 on the inputs of the ops it fuses, FP16 "
                  "between them). Under ONNX Runtime it is an accuracy check only (`python3 check.py --onnxrt "
                  "--graph model_int8.onnx`); on the device build and check the engine. TensorRT 10.x and 11.x, "
                  "strongly typed:", "", "```bash", commands["strong_int8"], "python3 check.py --engine "
                  "model_int8.engine --precision int8", "```", "",
                  "TensorRT 10 fallback, weakly typed:", "", "```bash", commands["weak_int8_trt10"], "```", "",
                  "DLA (one fixed shape: DLA takes no dynamic dimensions; GPU fallback for the layers it lacks). "
                  "Jetson Orin on JetPack 6.x, TensorRT 10.3 (10.7 was the last 10.x release with DLA):", "",
                  "```bash", commands["dla_trt10"], "```", "",
                  "Jetson AGX Orin on JetPack 7.2.2 or later, TensorRT 11.4.1 (no DLA in TensorRT 11.0-11.3; "
                  "11.4.0 only on Windows on ARM; Jetson Thor has none):", "",
                  "```bash", commands["dla_trt11"], "```", ""]
    parts += [f"`check.py` judges every INT8 graph and engine by the int8 bounds: {bound}. None of these "
              "INT8 lines has been run on a TensorRT device by segstyle (not measured).", ""]
    return "\n".join(parts)


def _signature_section(manifest: dict[str, Any]) -> str:
    sig = manifest.get("signature")
    if not sig:
        return ("**Unsigned bundle.** Nothing here says who produced it: `manifest.json` and `SHA256SUMS` catch a\n"
                "corrupted transfer, not a changed graph with re-hashed manifests. Sign bundles with\n"
                "`segstyle bundle ... --sign-key KEY.pem`.")
    return f"""**Signed** with the key `{sig['fingerprint']}` (OpenSSF model signing, `{sig['file']}`: every
file's sha256, this README and `manifest.json` with its provenance included). Verify with the public
key you were given by the producer, never one shipped beside the bundle, before anything else:

```bash
python3 check.py --onnxrt --public-key PUB.pem      # or: segstyle bundle verify . --public-key PUB.pem
model_signing verify key . --signature {sig['file']} --public_key PUB.pem --no-ignore-git-paths --ignore-paths {sig['file']}
```

A missing signature, another key's signature, or any file added, removed or changed after
signing is refused (exit 2) before any graph is read."""


def readme(manifest: dict[str, Any], commands: dict[str, str], jetson: list[str]) -> str:
    """Device instructions with the exact commands (shapes and bounds filled in)."""
    inp, pr = manifest["input"], manifest["profiles"]
    b = manifest["bounds"]["fp16"]
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

## 0. Check the bundle (any machine: `pip install numpy onnxruntime`; signatures: `pip install model-signing pyopenssl`)

{_signature_section(manifest)}

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
{_int8_section(manifest, commands)}"""


def write_bundle(loaded, settings, out: Path, *, golden=None, onnx_path: str | Path | None,
                 onnx_fp16: str | Path | None = None, onnx_int8: Sequence[str | Path] = (),
                 sizes: Sequence[Sequence[int]] | None = None,
                 dataset: str | None = None, network: str | None = None, tar: bool = True,
                 sign_key: str | Path | None = None) -> dict:
    """Write the bundle directory (and ``<out>.tar.gz``) atomically; returns the manifest.

    ``settings``: :class:`segstyle.export.settings.ExportSettings` (FP16 recipe, engine profile,
    workspace, bounds, seed).

    ``golden``: the validation images (:class:`segstyle.export.inputs.Inputs`, at least one per
    size) that become the golden inputs of an image network, read by the caller from ``dataset``'s
    split (:func:`segstyle.pipelines.validation_inputs.split_inputs`): the writer reads no dataset.
    A noise network takes a seeded noise batch instead and needs none.

    ``onnx_int8``: INT8 graphs (``segstyle export int8``), shipped as ``model_int8.onnx`` (TensorRT
    target) / ``model_int8_cpu.onnx`` (ONNX Runtime CPU target) with ``calibration.json`` (each graph's
    images, method, recipe and tensor ranges, read from the graph), linted, and judged by ``check.py``
    under the int8 bounds. (``segstyle bundle`` passes none for a network that
    ``export.int8.not_deployable`` lists.)

    ``sign_key``: a P-256 private key (PEM); the finished directory is signed with it
    (:mod:`segstyle.export.portable.signature`) before the tarball is made, so the tarball holds the
    signature. ``None``: an unsigned bundle, and its README says so.
    """
    from segstyle.export.portable import signature
    from segstyle.core.io import atomic_dir, write_json, write_text
    from segstyle.export.backend.onnx.fp16 import kept_nodes
    from segstyle.export.backend.onnx.loader import INPUT_NAME, check_onnx_source, output_name
    from segstyle.export.backend.trt.lint import lint_model
    from segstyle.export.backend.trt.loader import (engine_shapes, fp32_pins, int8_commands, jetson_commands,
                                                    trtexec_commands)

    noise = loaded.noise_dim
    shapes = engine_shapes(loaded.model, noise, settings.engine_profiles)
    sizes = [] if noise is not None else _golden_sizes(sizes or default_sizes(settings.engine_profiles), shapes)
    dataset = dataset or default_dataset(loaded)
    if noise is None and golden is None:
        raise SegstyleError("an image network's bundle needs golden images (a validation split's)")
    for path in (onnx_path, onnx_fp16, *onnx_int8):
        if path is not None:
            check_onnx_source(path, loaded)
    int8_files = _int8_names(onnx_int8)
    keep = list(settings.fp16_keep_fp32)
    signed = None
    if sign_key is not None:
        if not Path(sign_key).is_file():
            raise SegstyleError(f"{sign_key}: no such signing key")
        pub = signature.public_key_path(sign_key)
        if not pub.is_file():
            raise SegstyleError(f"{pub}: the public key of {sign_key} is missing (segstyle bundle --sign-key KEY --create-key makes both)")
        signed = {"file": signature.SIGNATURE, "fingerprint": signature.fingerprint(pub), "scheme": "model-signing ecdsa-p256"}
    with atomic_dir(out) as tmp:
        m32, m16 = _write_graphs(tmp, loaded, settings, onnx_path, onnx_fp16)
        if noise is not None:  # the profile's opt batch of fixed noise
            xs, names = golden_noise(noise, int(shapes["opt"][0]), settings.seed)
        else:
            xs, names = golden_images(golden, sizes, dataset)
        _write_golden(tmp, loaded.net, xs, output_name(loaded.task))
        lints = {"model.onnx": lint_model(m32), "model_fp16.onnx": lint_model(m16)}
        calibration = {}
        for name, src in int8_files.items():
            from segstyle.export.backend.onnx.int8 import calibration_record
            from segstyle.export.backend.onnx.loader import load_onnx

            shutil.copyfile(src, tmp / name)
            m8 = load_onnx(tmp / name)
            calibration[name] = calibration_record(m8)
            if name == "model_int8.onnx":
                lints[name] = lint_model(m8)
        if calibration:
            write_json(tmp / "calibration.json", calibration)
        write_json(tmp / "lint.json", lints)
        for src, dest in SHIPPED.items():  # byte-identical copies of segstyle/export/portable/
            shutil.copyfile(PORTABLE / src, tmp / dest)
        manifest = _manifest(loaded, settings, m32, shapes=shapes, xs=xs, names=names, network=network)
        commands = trtexec_commands(input_name=INPUT_NAME, shapes=shapes, workspace_mb=settings.workspace_mb,
                                    pins=fp32_pins(m32, keep))
        if "model_int8.onnx" in int8_files:
            commands.update(int8_commands(input_name=INPUT_NAME, shapes=shapes, workspace_mb=settings.workspace_mb))
        manifest["trtexec"] = commands
        manifest["graph_precisions"].update({n: "int8" for n in int8_files})
        manifest["int8_files"] = sorted(int8_files) + (["calibration.json"] if calibration else [])
        manifest["signature"] = signed
        # check.py --engine proves these nodes ran FP32 (trtexec layer info), with the same code as segstyle
        manifest["fp16_kept_nodes"] = kept_nodes(m16, keep)
        jetson = jetson_commands(input_name=INPUT_NAME, shapes=shapes, workspace_mb=settings.workspace_mb)
        if noise is not None:  # the small-memory lines are an image profile (1x3x768x768 max): not for noise
            jetson = [ln for ln in jetson if "_small" not in ln]
        write_text(tmp / "README.md", readme(manifest, commands, jetson))
        _seal(tmp, manifest)
        if sign_key is not None:
            try:
                signature.sign(tmp, sign_key)
            except signature.SignatureError as e:
                raise SegstyleError(str(e)) from None
        if tar:
            write_tarball(tmp, Path(str(out) + ".tar.gz"), arcname=out.name)
    return manifest


def _int8_names(graphs: Sequence[str | Path]) -> dict[str, Path]:
    """Bundle name -> source for the INT8 graphs, by the target each records (one of each at most)."""
    from segstyle.export.backend.onnx.loader import int8_target, load_onnx

    out: dict[str, Path] = {}
    for g in graphs:
        target = int8_target(load_onnx(g, check=False))
        if target is None:
            raise SegstyleError(f"{g}: not an INT8 graph (--onnx-int8 takes segstyle export int8 output)")
        name = "model_int8.onnx" if target == "trt" else "model_int8_cpu.onnx"
        if name in out:
            raise SegstyleError(f"{g}: a second INT8 graph for target {target} (the first: {out[name]})")
        out[name] = Path(g)
    return out


def _golden_sizes(sizes: Sequence[Sequence[int]], shapes: dict) -> list[tuple[int, ...]]:
    """``sizes`` as tuples, each checked to lie inside the engine profile (a golden input the engine
    cannot take would fail on the device, not here)."""
    lo, hi = shapes["min"], shapes["max"]
    for h, w in sizes:
        if not (lo[2] <= h <= hi[2] and lo[3] <= w <= hi[3]):
            raise SegstyleError(f"golden input 1x3x{h}x{w} lies outside the engine profile "
                                f"{_shape(lo)}..{_shape(hi)} (params engine.profiles)")
    return [tuple(s) for s in sizes]


def _write_graphs(tmp: Path, loaded, settings, onnx_path, onnx_fp16):
    """``model.onnx`` and ``model_fp16.onnx`` in ``tmp`` (the pipeline's graphs when given, else exported
    and converted here); returns their ``ModelProto``s (FP32 read back unchecked, FP16 checked)."""
    from segstyle.export.backend.onnx.fp16 import export_fp16
    from segstyle.export.backend.onnx.exporter import export_onnx
    from segstyle.export.backend.onnx.loader import load_onnx

    fp32 = tmp / "model.onnx"
    if onnx_path is not None:
        shutil.copyfile(onnx_path, fp32)
    else:
        export_onnx(loaded, settings, fp32)
    if onnx_fp16 is not None:
        shutil.copyfile(onnx_fp16, tmp / "model_fp16.onnx")
        m16 = load_onnx(tmp / "model_fp16.onnx")
    else:
        m16 = export_fp16(fp32, tmp / "model_fp16.onnx", list(settings.fp16_keep_fp32))
    return load_onnx(fp32, check=False), m16


def _write_golden(tmp: Path, net, xs: Sequence[torch.Tensor], out_name: str) -> None:
    """``inputs.json`` and PyTorch FP32's ``outputs.json`` in Polygraphy's formats."""
    from polygraphy.comparator import IterationResult, RunResults
    from polygraphy.json import save_json
    from polygraphy.logger import G_LOGGER

    from segstyle.export.backend.onnx.loader import INPUT_NAME
    from segstyle.export.backend.pyt.loader import export_output

    G_LOGGER.module_severity = G_LOGGER.ERROR  # no "[I] Saving inference results" chatter
    with torch.no_grad():
        refs = [export_output(net, x).float().numpy() for x in xs]
    save_json([{INPUT_NAME: x.numpy()} for x in xs], str(tmp / "inputs.json"))
    results = RunResults()
    results.append((RUNNER, [IterationResult(outputs={out_name: r}, runner_name=RUNNER) for r in refs]))
    results.save(str(tmp / "outputs.json"))


def _manifest(loaded, settings, m32, *, shapes: dict, xs, names: list[str], network: str | None) -> dict[str, Any]:
    """What ``check.py`` and a reader of the bundle need: the network, its I/O, golden data, profile,
    FP16 recipe, bounds, tolerances and the graph's provenance (from its metadata)."""
    from segstyle.export.backend.onnx.fp16 import keep_list
    from segstyle.export.backend.onnx.loader import INPUT_NAME, output_name, read_metadata

    meta = read_metadata(m32)
    provenance = {k[len("segstyle."):]: v for k, v in sorted(meta.items())
                  if k.startswith(("segstyle.training.", "segstyle.export."))}
    provenance["checkpoint_sha256"] = meta.get("segstyle.checkpoint_sha256", "unknown")
    noise, v = loaded.noise_dim, settings.bounds
    return {
        "network": network or loaded.model, "model": loaded.model, "task": loaded.task,
        "classes": loaded.classes, "input": INPUT_NAME, "output": output_name(loaded.task), "runner": RUNNER,
        "input_kind": "noise" if noise is not None else "image", "noise_dim": noise, "seed": settings.seed,
        "golden": names, "golden_shapes": [list(x.shape) for x in xs],
        "profiles": {k: list(v_) for k, v_ in shapes.items()}, "workspace_mb": settings.workspace_mb,
        "fp16_kept_fp32": keep_list(list(settings.fp16_keep_fp32)),
        "bounds": {p: b.to_dict() for p, b in v.items()},   # per precision; check.py applies the graph's own
        "graph_precisions": {"model.onnx": "fp32", "model_fp16.onnx": "fp16"}, "engine_precision": "fp16",
        "tolerances": {"onnxrt_fp32": PARITY.to_dict()},
        "provenance": provenance, "checkpoint": loaded.checkpoint,
    }


def _seal(tmp: Path, manifest: dict) -> None:
    """Hash every shipped file into the manifest, write ``manifest.json`` and ``SHA256SUMS``, and give the
    files shippable modes (mkdtemp/mkstemp create private ones; ``check.py`` is executable)."""
    from segstyle.core.hashing import sha256_file
    from segstyle.core.io import write_json, write_text

    manifest["files"] = {name: sha256_file(tmp / name) for name in (*FILES, *manifest.get("int8_files", []))}
    write_json(tmp / "manifest.json", manifest)
    write_text(tmp / "SHA256SUMS", "".join(f"{h}  {n}\n" for n, h in sorted(manifest["files"].items())))
    tmp.chmod(0o755)
    for f in tmp.iterdir():
        f.chmod(0o755 if f.name == "check.py" else 0o644)


def _normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


def write_tarball(src: Path, dest: Path, *, arcname: str) -> None:
    """``src`` as a reproducible ``.tar.gz``: sorted members, no times or owners, gzip header time 0.

    Why: the tarball is a cached DVC output, so the same bundle must give the same bytes (and hash)
    on every machine and every rerun.
    """
    import gzip

    from segstyle.core.io import atomic_path

    with atomic_path(dest) as tgz, open(tgz, "wb") as raw, \
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.add(src, arcname=arcname, recursive=False, filter=_normalised)
        for f in sorted(p for p in src.rglob("*")):
            tf.add(f, arcname=f"{arcname}/{f.relative_to(src).as_posix()}", recursive=False, filter=_normalised)


def verify_bundle(bundle: str | Path, public_key: str | Path | None = None) -> dict[str, Any]:
    """Check the bundle is complete and unmodified; one :class:`SegstyleError` line otherwise.

    With ``public_key`` the signature is checked first, before the manifest or any graph is read.
    """
    from segstyle.core.hashing import sha256_file
    from segstyle.export.backend.onnx.loader import load_onnx
    from segstyle.export.portable import signature

    bundle = Path(bundle)
    if not bundle.is_dir():
        raise SegstyleError(f"{bundle}: no such bundle directory")
    if public_key is not None:
        try:
            signature.verify(bundle, public_key)
        except signature.SignatureError as e:
            raise RefusedError(str(e)) from None
    mf = bundle / "manifest.json"
    try:
        manifest = json.loads(mf.read_text())
        files = manifest["files"]
    except FileNotFoundError:
        raise SegstyleError(f"{bundle}: incomplete bundle: manifest.json missing") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise SegstyleError(f"{bundle}: manifest.json is not a segstyle bundle manifest") from None
    missing = [n for n in (*FILES, *manifest.get("int8_files", [])) if n not in files or not (bundle / n).is_file()]
    if missing:
        raise SegstyleError(f"{bundle}: incomplete bundle: {', '.join(missing)} missing")
    changed = [n for n, h in files.items() if sha256_file(bundle / n) != h]
    if changed:
        raise RefusedError(f"{bundle}: {', '.join(changed)} changed since the bundle was written (sha256 mismatch)")
    load_onnx(bundle / "model.onnx")
    load_onnx(bundle / "model_fp16.onnx")
    for n in manifest.get("int8_files", []):
        if n.endswith(".onnx"):
            load_onnx(bundle / n)
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
