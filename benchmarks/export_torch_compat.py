"""Does every deployable model still export to ONNX under another torch release?

``pyproject.toml`` allows ``torch>=2.4``, our machines run 2.14 and the lent GPU machine's image runs
2.11, whose ``torch.export`` once refused SegNet (an unbacked size in ``models.pooling.window_cells``).
This runs ``segstyle export onnx --model NAME`` (fresh seeded weights, the export's own ORT parity at
unseen sizes) for each deployable model with the interpreter ``--python`` (a venv holding that torch and
segstyle's other requirements; segstyle itself comes from this checkout through ``PYTHONPATH``) and
records, per model, whether it exported and the parity's max abs error:

    python benchmarks/export_torch_compat.py --python /tmp/v211/bin/python   # writes export_torch_compat.json

A venv for a PyPI torch: ``python -m venv V; V/bin/pip install torch==X torchvision==Y`` plus the
versions of ``.venv``'s other packages (``pip freeze``). The JSON keeps one entry per torch version.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import git_commit  # noqa: E402

OUT = REPO / "benchmarks" / "export_torch_compat.json"
PARITY = re.compile(r"ORT parity max abs error ([0-9.e+-]+)")


def export_one(python: str, pkg: Path, model: str, out: Path) -> dict:
    """One ``export onnx --model`` under ``python``: ok, parity max abs error, or the error line."""
    env = dict(os.environ, PYTHONPATH=str(pkg))
    code = "import sys; sys.argv[0] = 'segstyle'; from segstyle.pipelines.cli import main; main()"
    t0 = time.perf_counter()
    r = subprocess.run([python, "-c", code, "export", "onnx", "--model", model, "--out", str(out / f"{model}.onnx")],
                       cwd=REPO, env=env, capture_output=True, text=True)
    row = {"model": model, "ok": r.returncode == 0, "seconds": round(time.perf_counter() - t0, 1)}
    m = PARITY.search(r.stdout + r.stderr)
    if m:
        row["parity_max_abs_err"] = float(m.group(1))
    if r.returncode:
        err = [x for x in (r.stdout + r.stderr).splitlines() if x.startswith("segstyle: error")]
        row["error"] = (err[-1] if err else (r.stderr.strip().splitlines() or ["?"])[-1])[:300]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", required=True, help="interpreter of a venv with the torch to check")
    ap.add_argument("--models", default=None, help="comma-separated (default: every deployable model)")
    args = ap.parse_args()
    from segstyle.core.io import write_json
    from segstyle.models import list_models

    probe = subprocess.run([args.python, "-c", "import torch, onnxruntime; print(torch.__version__, onnxruntime.__version__)"],
                           capture_output=True, text=True)
    if probe.returncode:
        raise SystemExit(f"{args.python}: cannot import torch and onnxruntime ({probe.stderr.strip().splitlines()[-1:]})")
    torch_version, ort_version = probe.stdout.split()
    models = args.models.split(",") if args.models else list_models(deployable=True)
    commit, uncommitted = git_commit()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pkg = Path(tmp) / "pkg"
        pkg.mkdir()
        (pkg / "segstyle").symlink_to(REPO)  # this checkout as the segstyle namespace
        for m in models:
            rows.append(export_one(args.python, pkg, m, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    doc = json.loads(OUT.read_text()) if OUT.is_file() else {"runs": {}}
    doc["runs"][torch_version] = {
        "command": "python benchmarks/export_torch_compat.py" + "".join(f" {a}" for a in sys.argv[1:]),
        "commit": commit, "uncommitted": uncommitted, "onnxruntime": ort_version,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "results": rows,
        "all_exported": all(r["ok"] for r in rows)}
    write_json(OUT, doc)
    print(f"{torch_version}: {sum(r['ok'] for r in rows)}/{len(rows)} exported -> {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
