"""Bad parameters stop `segstyle run` / `segstyle serve` in one line, before any stage or server starts."""

from __future__ import annotations

import pytest
from flow_repo import make_repo, runs, set_param

from segstyle.pipelines.stages import select_profile

CASES = {
    "wrong type": (("epochs: 8", "epochs: many"), [], "train.demo.epochs"),
    "unknown key": (("seed: 0", "seed: 0\nbogus: 1"), [], "bogus"),
    "unknown profile in file": (("profile: demo", "profile: huge"), [], "profile"),
    "unknown profile flag": (None, ["--profile", "huge"], "unknown profile 'huge'"),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("params") / "repo")
    return repo, (repo / "params.yaml").read_text()


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
@pytest.mark.parametrize("command", ["run", "serve"])
def test_bad_params_one_line_before_any_stage(tiny, cli, capsys, case, command):
    edit, extra, needle = CASES[case]
    repo, good = tiny
    (repo / "params.yaml").write_text(good)
    if edit:
        set_param(repo, *edit)
    before = (repo / "params.yaml").read_text()
    code = cli([command, "--root", str(repo), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("segstyle: error: ") and needle in err[0], err
    assert runs(repo) == [] and not (repo / "dvc.lock").exists() and not (repo / "artifacts").exists()
    assert (repo / "params.yaml").read_text() == before


def test_select_profile_rewrites_only_that_line(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("# top comment\nprofile: demo   # demo or full\nseed: 0\ntrain:\n  profile: x\n")
    assert select_profile(p, "full") is True
    assert p.read_text() == "# top comment\nprofile: full   # demo or full\nseed: 0\ntrain:\n  profile: x\n"
    assert select_profile(p, "full") is False
