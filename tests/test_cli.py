"""The console script: --help everywhere, one-line errors, lazy imports."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from segstyle.pipelines.cli import COMMANDS, cli, run_cli


def _walk(group: click.Group, ctx: click.Context, prefix: tuple[str, ...]):
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, f"command {' '.join(prefix + (name,))} does not load"
        yield prefix + (name,)
        if isinstance(cmd, click.Group):
            yield from _walk(cmd, click.Context(cmd, parent=ctx, info_name=name), prefix + (name,))


def test_every_command_has_help(capsys):
    paths = list(_walk(cli, click.Context(cli, info_name="segstyle"), ()))
    assert {p[0] for p in paths} == set(COMMANDS)
    for path in paths:
        assert run_cli([*path, "--help"]) == 0, path
        out = capsys.readouterr().out
        assert "Usage: segstyle " + " ".join(path) in out


def test_top_level_help_does_not_import_torch():
    code = "import sys; from pipelines.cli import run_cli; run_cli(['--help']); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")


def test_unknown_command_is_a_usage_error(capsys):
    assert run_cli(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--params", "missing.yaml", "--dataset", "voc"], "parameters file not found"),
        (["train", "--profile", "huge", "--dataset", "voc"], "unknown profile 'huge'"),
    ],
)
def test_bad_params_fail_in_one_line(tmp_path, monkeypatch, capsys, args, message, repo_root):
    monkeypatch.chdir(repo_root)
    assert run_cli(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("segstyle: error:") and message in err and err.count("\n") == 1


def test_foreign_library_errors_are_one_line_and_bugs_keep_their_traceback(monkeypatch, capsys):
    """A DVC exception escaping any command is one ``segstyle: error:`` line; a plain bug is not hidden."""
    from dvc.exceptions import DvcException

    import segstyle.pipelines.cli as cli_mod

    def boom(**_):
        raise DvcException("Unable to acquire lock\nsecond line")

    monkeypatch.setattr(cli_mod.cli, "main", boom)
    assert run_cli(["data", "--help"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["segstyle: error: dvc: DvcException: Unable to acquire lock"]

    def bug(**_):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli_mod.cli, "main", bug)
    with pytest.raises(ZeroDivisionError):
        run_cli(["data", "--help"])
