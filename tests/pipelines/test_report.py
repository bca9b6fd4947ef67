"""The pipeline report shows every picture of the plan inline, with paths relative to the report file,
and includes a stage's own markdown page (the deployment matrix)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from PIL import Image

from segstyle.pipelines.report import MAX_LINKS, REPORT_PATH, PipelineReport, StageOutcome, build_markdown
from segstyle.pipelines.stages import StageInfo


def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (200, 10, 10)).save(path)
    return path


def test_pictures_inline_relative_and_matrix_included(tmp_path):
    root = tmp_path / "repo"
    loss = _png(root / "artifacts/train/voc/loss.png")                       # an image output file
    overlays = [_png(root / f"artifacts/eval/voc/overlays/{i:02d} x@1.png") for i in range(MAX_LINKS + 2)]
    samples = [_png(root / "artifacts/style/samples/step_000010.png")]       # style samples (a folder out)
    plot = _png(root / "artifacts/new_stage/curve.png")                      # a new stage's image plot
    (root / "artifacts/matrix.md").write_text("# Deployment matrix\n\n| net | fp16 |\n|---|---|\n| voc | PASS |\n")
    plan = [
        StageInfo(name="train@voc", cmd="segstyle train", outs=("artifacts/train/voc/loss.png",
                                                                "artifacts/train/voc/checkpoint.pt")),
        StageInfo(name="evaluate@voc", cmd="segstyle evaluate", outs=("artifacts/eval/voc/overlays",)),
        StageInfo(name="train_style", cmd="segstyle train-style", outs=("artifacts/style/samples",)),
        StageInfo(name="new_stage", cmd="x", plots=("artifacts/new_stage/curve.png",)),
        StageInfo(name="matrix", cmd="segstyle export matrix", outs=("artifacts/matrix.md",)),
        StageInfo(name="engine_build@voc", cmd="segstyle engine build", outs=("artifacts/engines/voc.engine",),
                  gpu=True),  # skipped: no outputs on disk
    ]
    report = PipelineReport(profile="demo", seconds=1.0,
                            stages=[StageOutcome(name=s.name, status="ran") for s in plan])
    md = build_markdown(report, plan, root)

    assert "file://" not in md and str(tmp_path) not in md
    images = re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", md)
    report_dir = (root / REPORT_PATH).parent
    shown = {(report_dir / unquote(target)).resolve() for _, target in images}
    for _, target in images:
        assert not target.startswith("/") and (report_dir / unquote(target)).is_file(), target
    expected = {loss, *overlays[:MAX_LINKS], *samples, plot}
    assert shown == {p.resolve() for p in expected}
    assert f"(+2 more in `artifacts/eval/voc/overlays`)" in md
    # the deployment matrix is part of the report, its headings nested under the stage's section
    assert "## `matrix`: matrix.md" in md and "## Deployment matrix" in md and "| voc | PASS |" in md

    # relative to wherever the report is written
    md2 = build_markdown(report, plan, root, report_dir=root)
    assert "](artifacts/train/voc/loss.png)" in md2


def test_verdicts_from_records_figures_from_metrics_files(tmp_path):
    """Metrics files hold figures only; the verdict (and its reasons) lives in the plain record beside
    them. The report still shows both: PASS/FAIL from the record, figures from the metrics file; a gate
    stage with only a record (verify, export parity) shows its verdict and its own top figures; a stage
    without any verdict shows its metrics file as figures. Provenance strings are never figures."""
    import json

    from segstyle.core.io import write_dvc_metrics, write_json

    root = tmp_path / "repo"
    a = root / "artifacts"
    write_dvc_metrics(a / "eval/voc/metrics.json", {"miou": 0.8125, "samples": 4, "baseline": {"miou": 0.25}})
    write_json(a / "eval/voc/record.json", {"miou": 0.8125, "model": "unet", "git_commit": "abc", "checkpoint": "c.pt",
                                           "per_class_iou": {c: 0.5 for c in "abcdefgh"}})
    write_dvc_metrics(a / "validate/voc/metrics.json", {"passed": 0, "ort-cpu-fp16": {"agreement_pct": 97.5,
                                                                                       "passed": False}})
    write_json(a / "validate/voc/record.json", {"passed": False, "bounds": {"min_agreement_pct": 99.5}, "rows": [
        {"backend": "ort-cpu", "precision": "fp32", "ran": True, "violations": []},
        {"backend": "ort-cpu", "precision": "fp16", "ran": True, "violations": ["agreement 97.5 % < 99.5 %"]}]})
    write_json(a / "data/verify_voc.json", {"ok": True, "images": 128, "root": "data", "problems": [],
                                           "histogram": {str(i): i for i in range(22)}})
    write_json(a / "export/voc/fp16.json", {"max_abs_err": 0.0125, "src": "m.onnx", "rows": [{"x": 1}]})
    plan = [
        StageInfo(name="verify@voc", cmd="segstyle data verify", outs=("artifacts/data/verify_voc.json",)),
        StageInfo(name="evaluate@voc", cmd="segstyle evaluate", metrics=("artifacts/eval/voc/metrics.json",),
                  outs=("artifacts/eval/voc/record.json",)),
        StageInfo(name="export_fp16@voc", cmd="segstyle export fp16", outs=("artifacts/export/voc/fp16.json",)),
        StageInfo(name="validate@voc", cmd="segstyle engine validate", outs=("artifacts/validate/voc/record.json",),
                  metrics=("artifacts/validate/voc/metrics.json",)),
    ]
    report = PipelineReport(profile="demo", seconds=1.0, stages=[StageOutcome(name=s.name, status="ran") for s in plan])
    md = build_markdown(report, plan, root)
    assert "| `evaluate@voc` | `metrics.json` | baseline.miou 0.25, miou 0.8125, samples 4 |" in md
    assert "| `verify@voc` | `verify_voc.json` | PASS | images 128 |" in md
    assert ("| `validate@voc` | `record.json` | FAIL (ort-cpu fp16: agreement 97.5 % < 99.5 %) | "
            "ort-cpu-fp16.agreement_pct 97.5, ort-cpu-fp16.passed 0, passed 0 |") in md
    assert "| `export_fp16@voc` | `fp16.json` | max_abs_err 0.0125 |" in md
    assert "unet" not in md and "abc" not in md and "histogram" not in md and "bounds" not in md


def test_bundles_name_the_signing_key_or_say_unsigned(tmp_path):
    import json

    root = tmp_path / "repo"
    for key, sig in (("voc", {"file": "bundle.sig", "fingerprint": "SHA256:abc123", "scheme": "model-signing ecdsa"}),
                     ("pets", None)):
        (root / f"artifacts/bundle/{key}").mkdir(parents=True)
        (root / f"artifacts/bundle/{key}/manifest.json").write_text(json.dumps({"files": {}, "signature": sig}))
    (root / "artifacts/export/voc").mkdir(parents=True)
    (root / "artifacts/export/voc/manifest.json").write_text(json.dumps({"files": {}}))  # not a bundle: no row
    plan = [StageInfo(name=f"bundle@{k}", cmd="segstyle bundle", outs=(f"artifacts/bundle/{k}",)) for k in ("voc", "pets")]
    plan.append(StageInfo(name="export_onnx@voc", cmd="x", outs=("artifacts/export/voc",)))
    report = PipelineReport(profile="demo", seconds=1.0, stages=[StageOutcome(name=s.name, status="ran") for s in plan])
    md = build_markdown(report, plan, root)
    assert "| `bundle@voc` | `artifacts/bundle/voc` | signed, key `SHA256:abc123` (model-signing ecdsa) |" in md
    assert "| `bundle@pets` | `artifacts/bundle/pets` | **unsigned** |" in md
    assert "export_onnx@voc` | `artifacts/export/voc`" not in md


def test_aoti_packages_show_their_compile_seconds_and_machine(tmp_path):
    import json

    root = tmp_path / "repo"
    (root / "artifacts/engines").mkdir(parents=True)
    side = {"device": "cpu", "precision": "fp32", "compile_seconds": 18.91, "size_bytes": 3 * 2**20,
            "cpu_isa": "avx512 avx512_vnni", "cpu_model": "AMD EPYC", "threads": 2, "torch_version": "2.14.1",
            "input": "(N, 3, H, W) contiguous 0..1 RGB, H and W multiples of 32"}
    (root / "artifacts/engines/pets_cpu_fp32.aoti.pt2.json").write_text(json.dumps(side))
    plan = [StageInfo(name="aoti_build@pets", cmd="segstyle engine build --backend aoti",
                      outs=("artifacts/engines/pets_cpu_fp32.aoti.pt2", "artifacts/engines/pets_cpu_fp32.aoti.pt2.json"))]
    report = PipelineReport(profile="demo", seconds=1.0, stages=[StageOutcome(name=s.name, status="ran") for s in plan])
    md = build_markdown(report, plan, root)
    assert ("| `aoti_build@pets` | cpu | fp32 | 18.91 | 3 | avx512 avx512_vnni, AMD EPYC, 2 thread(s), torch 2.14.1 "
            "| (N, 3, H, W) contiguous 0..1 RGB, H and W multiples of 32 |") in md
    assert md.index("## AOTInductor packages") < md.index("| `aoti_build@pets` | cpu |")
