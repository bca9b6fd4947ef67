"""A tiny throwaway DVC + git repository with trivial Python stages, for the orchestration tests.

Its ``params.yaml`` is the project's own (so ``segstyle run`` validates it exactly as in the real
repository) and its ``dvc.yaml`` mirrors the real graph's shape in miniature: two ``foreach``
entries, an independent branch, a metrics stage, an export-side chain and a GPU-only stage. Each
stage appends its name to ``runs.log`` (not an output), so tests see exactly which stages ran.
A file ``FAIL_<stage>`` in the repo makes that stage fail with a one-line ``segstyle: error:``.

Here, beside the benchmarks, because ``benchmarks/pipeline_jobs.py`` times a no-change ``segstyle
run`` on it; the tests import it through ``tests/flow_repo.py`` (benchmarks import nothing from
``tests/``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

STEP = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    name, out, *inputs = sys.argv[1:]
    with open("runs.log", "a") as fh:
        fh.write(name + "\\n")
    if Path(f"FAIL_{name}").exists():
        print("working...", flush=True)
        sys.exit(f"segstyle: error: {name} exploded on purpose")
    # a fresh value per run: a rerun stage changes its output, so its dependents rerun too
    text = name + "|" + str(time.time_ns()) + "|" + "|".join(Path(i).read_text() for i in inputs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".json":
        out.write_text(json.dumps({"miou": 0.5, "pixel_acc": 0.75, "run": time.time_ns()}))
    elif out.suffix == "":
        out.mkdir(exist_ok=True)
        (out / "file.txt").write_text(text)
    else:
        out.write_text(text)
    """
)

DVC_YAML = textwrap.dedent(
    """
    stages:
      prep:
        foreach: [voc, pets]
        do:
          cmd: python step.py prep@${item} out/prep_${item}.txt
          deps: [step.py]
          params:
            - seed
            - train.${profile}
          outs:
            - out/prep_${item}.txt
      train_style:
        cmd: python step.py train_style out/style.txt
        deps: [step.py]
        params:
          - style.${profile}
        outs: [out/style.txt]
      evaluate:
        cmd: python step.py evaluate out/metrics.json out/prep_voc.txt out/prep_pets.txt
        deps: [step.py, out/prep_voc.txt, out/prep_pets.txt]
        metrics:
          - out/metrics.json:
              cache: false
      export:
        cmd: python step.py export out/model.onnx out/prep_voc.txt out/style.txt
        deps: [step.py, out/prep_voc.txt, out/style.txt]
        params: [export]
        outs: [out/model.onnx]
      bundle:
        cmd: python step.py bundle out/bundle out/model.onnx
        deps: [step.py, out/model.onnx]
        params: [validate]
        outs: [out/bundle]
      engine:
        cmd: python step.py engine out/engine.txt out/model.onnx
        deps: [step.py, out/model.onnx]
        params: [engine]
        outs: [out/engine.txt]
        meta: {gpu: true}
    """
)

ORDER = ["prep@voc", "prep@pets", "train_style", "evaluate", "export", "bundle", "engine"]


def make_repo(path: Path, *, remote: Path | None = None) -> Path:
    """Create the tiny repository at ``path`` (git + dvc init, data/ present, one commit)."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "params.yaml", path / "params.yaml")
    (path / "step.py").write_text(STEP)
    (path / "dvc.yaml").write_text(DVC_YAML)
    (path / "data").mkdir()
    (path / "data" / "x.txt").write_text("sample")
    (path / ".gitignore").write_text("/data/\n/artifacts/\nruns.log\nFAIL_*\n")
    run = lambda *a: subprocess.run(a, cwd=path, check=True, capture_output=True, text=True)  # noqa: E731
    run("git", "init", "-q")
    run("git", "config", "user.email", "t@example.com")
    run("git", "config", "user.name", "t")
    run(str(BIN / "dvc"), "init", "-q")
    run(str(BIN / "dvc"), "config", "core.analytics", "false")
    if remote is not None:
        run(str(BIN / "dvc"), "remote", "add", "-d", "local", str(remote))
    run("git", "add", "-A")
    run("git", "commit", "-qm", "tiny")
    return path


def runs(path: Path) -> list[str]:
    """Stages that ran since the last call (and reset the log)."""
    log = path / "runs.log"
    if not log.exists():
        return []
    names = log.read_text().split()
    log.unlink()
    return names


def set_param(path: Path, old: str, new: str) -> None:
    p = path / "params.yaml"
    text = p.read_text()
    assert old in text, old
    p.write_text(text.replace(old, new, 1))
