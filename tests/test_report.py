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
