"""Every benchmarks/**/*.md names the commit that produced it and its JSON, and its tables match that JSON.

Where a script renders the .md from its JSON (a writer function), the .md is re-rendered here and
compared as text: a table edited by hand, or a JSON rerun without its .md, fails. Hand-written
pages (no writer) must have every figure of their tables in their JSON (same rounding).

A page whose owner has not regenerated it yet is listed in PENDING with the reason; remove the
entry when it is regenerated (test_pending_pages_still_fail fails once a listed page passes).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"

PENDING: dict[str, str] = {}


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _render_seg_demo(tmp: Path) -> str:
    return _script("seg_demo").render_markdown(json.loads((BENCH / "seg_demo.json").read_text()))


def _render_style_stylize(tmp: Path) -> str:
    return _script("style_stylize").render_markdown(json.loads((BENCH / "style_stylize.json").read_text()))


def _render_export_speed(tmp: Path) -> str:
    out = tmp / "export_speed.md"
    _script("export_speed").write_md(json.loads((BENCH / "export_speed.json").read_text()), out)
    return out.read_text()


def _render_pipeline_jobs(tmp: Path) -> str:
    out = tmp / "pipeline_jobs.md"
    _script("pipeline_jobs").write_md(out, json.loads((BENCH / "pipeline_jobs.json").read_text()))
    return out.read_text()


def _render_style_quality(tmp: Path) -> str:
    return _script("style_quality").render_markdown(json.loads((BENCH / "style_quality.json").read_text()))


def _render_inpaint_gan(tmp: Path) -> str:
    return _script("inpaint_gan").render_markdown(json.loads((BENCH / "inpaint_gan.json").read_text()))


def _render_cpu(tmp: Path) -> str:
    return _script("summarize").render(BENCH / "cpu")


def _render_gpu(tmp: Path) -> str:
    return _script("summarize").render(BENCH / "gpu")


def _render_matrix(tmp: Path, name: str = "cpu_demo") -> str:
    from segstyle.export.matrix import to_markdown

    doc = json.loads((BENCH / "matrix" / f"{name}.json").read_text())
    return to_markdown(doc["rows"], doc["records"])


# page -> its writer (re-render from the committed JSON); pages not listed are hand-written
WRITERS = {
    "seg_demo.md": _render_seg_demo,
    "export_speed.md": _render_export_speed,
    "style_stylize.md": _render_style_stylize,
    "style_quality.md": _render_style_quality,
    "inpaint_gan.md": _render_inpaint_gan,
    "pipeline_jobs.md": _render_pipeline_jobs,
    "cpu/README.md": _render_cpu,
    "matrix/cpu_demo.md": _render_matrix,
    "gpu/README.md": _render_gpu,
    "matrix/gpu_demo.md": lambda tmp: _render_matrix(tmp, "gpu_demo"),
}

PAGES = sorted(p.relative_to(BENCH).as_posix() for p in BENCH.rglob("*.md"))
HEX = re.compile(r"(?<![0-9a-zA-Z])[0-9a-f]{7,40}(?![0-9a-zA-Z])")
JSON_NAME = re.compile(r"[\w./<>-]*\.json")


def _git(*args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    except OSError:
        return None


def _is_commit(sha: str) -> bool:
    """A real commit of this repository (any hex string passes only where history is not available)."""
    shallow = _git("rev-parse", "--is-shallow-repository")
    if shallow is None or shallow.returncode != 0 or shallow.stdout.strip() == "true":
        return True
    r = _git("cat-file", "-e", f"{sha}^{{commit}}")
    return r is not None and r.returncode == 0


def _context(page: str) -> str:
    """The page's text, plus its folder's README.md for a page in a sub-folder (which describes it)."""
    path = BENCH / page
    text = path.read_text()
    readme = path.parent / "README.md"
    if path.parent != BENCH and readme != path and readme.is_file():
        text += "\n" + readme.read_text()
    return text


def _json_named(page: str, text: str) -> list[Path]:
    folder = (BENCH / page).parent
    found = []
    for name in JSON_NAME.findall(text):
        for base in (folder, BENCH, REPO):
            p = base / name
            if "<" not in name and p.is_file():
                found.append(p)
                break
    return found


def _table_numbers(text: str) -> list[str]:
    cells = [c.strip().strip("*`") for line in text.splitlines() if line.startswith("|") and "---" not in line
             for c in line.strip().strip("|").split("|")]
    return [c for c in cells if re.fullmatch(r"[+-]?\d+(\.\d+)?", c)]


def _json_numbers(obj) -> list[float]:
    if isinstance(obj, bool):
        return []
    if isinstance(obj, (int, float)):
        return [float(obj)]
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _json_numbers(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _json_numbers(v)]
    return []


def problems(page: str, tmp: Path) -> list[str]:
    """Why ``page`` does not meet the rule (empty: it does)."""
    text = _context(page)
    out = []
    # all-digit strings included: a short hash can be all digits (4328626 was), and a number that is not
    # a commit fails _is_commit anyway
    if not any(_is_commit(s) for s in HEX.findall(text)):
        out.append(f"{page}: names no commit of this repository")
    named = _json_named(page, text)
    if not named:
        out.append(f"{page}: names no committed JSON")
    if page in WRITERS:
        try:
            want = WRITERS[page](tmp)
        except (KeyError, TypeError, ValueError, OSError, SystemExit) as e:
            out.append(f"{page}: cannot be re-rendered from its JSON ({type(e).__name__}: {e})")
        else:
            if want != (BENCH / page).read_text():
                out.append(f"{page}: differs from what its writer renders from its JSON")
    elif named:
        values = [x for p in named for x in _json_numbers(json.loads(p.read_text()))]
        for cell in _table_numbers((BENCH / page).read_text()):
            places = len(cell.split(".")[1]) if "." in cell else 0
            if not any(abs(round(v, places) - float(cell)) < 10 ** -places / 2 for v in values):
                out.append(f"{page}: table figure {cell} is in none of {', '.join(p.name for p in named)}")
    return out


@pytest.mark.parametrize("page", PAGES)
def test_page_names_commit_and_json_and_matches_it(page, tmp_path):
    if page in PENDING:
        pytest.skip(f"pending: {PENDING[page]}")
    assert problems(page, tmp_path) == []


@pytest.mark.parametrize("page", sorted(PENDING))
def test_pending_pages_still_fail(page, tmp_path):
    """A listed page that now passes must leave PENDING (else the list hides a regression later)."""
    if not (BENCH / page).is_file():
        pytest.fail(f"{page} is gone: remove it from PENDING")
    assert problems(page, tmp_path), f"{page} passes now: remove it from PENDING"


def test_the_rule_catches_a_stale_table_and_an_unnamed_commit(tmp_path, monkeypatch):
    """What wrong pages would still pass: a figure changed by hand, a page without commit or JSON."""
    page = "seg_demo.md"
    fake = tmp_path / "benchmarks"
    fake.mkdir()
    for p in BENCH.glob("*.py"):
        (fake / p.name).write_bytes(p.read_bytes())
    head = _git("rev-parse", "--short", "HEAD")
    if head is None or head.returncode != 0:
        pytest.skip("not a git checkout")
    results = json.loads((BENCH / "seg_demo.json").read_text())["results"]
    doc = {"meta": {"command": "python benchmarks/seg_demo.py", "commit": head.stdout.strip(), "uncommitted": [],
                    "date": "2026-11-30 07:00 UTC", "machine": "x86_64, 2 CPUs"}, "results": results}
    (fake / "seg_demo.json").write_text(json.dumps(doc))
    good = _script("seg_demo").render_markdown(doc)
    monkeypatch.setitem(globals(), "BENCH", fake)
    (fake / page).write_text(good)
    assert problems(page, tmp_path) == []
    first_row = next(line for line in good.splitlines() if line.startswith("| voc"))
    cells = first_row.split(" | ")
    cells[5] = "0.999"  # val mIoU edited by hand
    (fake / page).write_text(good.replace(first_row, " | ".join(cells)))
    assert any("differs from what its writer renders" in p for p in problems(page, tmp_path))
    (fake / page).write_text(re.sub(r"[0-9a-f]{7,40}", "-", good).replace(".json", ""))
    found = problems(page, tmp_path)
    assert any("names no commit" in p for p in found) and any("names no committed JSON" in p for p in found)
    hand = fake / "hand.md"
    (fake / "hand.json").write_text(json.dumps({"wall_s": 635.43, "commit": "x"}))
    (fake / "hand.md").write_text("Raw: `hand.json`\n\n| run | s |\n|---|---:|\n| a | 635.4 |\n| b | 452.2 |\n")
    assert problems("hand.md", tmp_path)[-1] == "hand.md: table figure 452.2 is in none of hand.json"
    hand.unlink()


def test_readme_segmentation_table_is_seg_demo_json():
    """The README's demo segmentation figures are seg_demo.json's, and the paragraph names its commit."""
    if "seg_demo.md" in PENDING:
        pytest.skip(f"pending: {PENDING['seg_demo.md']}")
    text = (REPO / "README.md").read_text()
    start = text.index("`benchmarks/seg_demo.md`")
    para = text[text.rindex("\n\n", 0, start):start + 200]
    doc = json.loads((BENCH / "seg_demo.json").read_text())
    assert f"commit `{doc['meta']['commit']}`" in para
    table = text[start:text.index("\n\n", text.index("| dataset", start))]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| dataset")]
    readme = {(r[0], r[1].split(" ")[0]): r[2:] for r in rows}
    label = _script("seg_demo").dataset_label  # "pets (binary)": the foreground task's rows
    want = {(label(r), r["model"]): [f"{r['train_cpu_s']:.0f}", f"{r['miou']:.3f}", f"{r['baseline_miou']:.3f}"]
            for r in doc["results"]}
    assert readme == want
