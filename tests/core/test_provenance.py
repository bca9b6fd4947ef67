"""Provenance from one moment: overrides applied once, stored in the checkpoint, carried into ONNX metadata.

Every check compares values (digests, versions, override maps), never mere presence.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from segstyle.export.settings import ExportSettings
from segstyle.pipelines.config import Params, load_params

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def params():
    return load_params(REPO / "params.yaml")


def test_overrides_are_applied_once_and_change_the_digest(params):
    from segstyle.pipelines.config import apply_overrides

    p2, applied = apply_overrides(params, epochs=params.train.epochs + 2, data_root="elsewhere", pretrained=None)
    assert applied == {"train.epochs": params.train.epochs + 2, "data.root": "elsewhere"}
    assert p2.train.epochs == params.train.epochs + 2 and p2.data.root == "elsewhere"
    want = params.to_dict()
    want["train"]["epochs"] += 2
    want["data"]["root"] = "elsewhere"
    assert p2.digest() == Params.model_validate(want).digest() != params.digest()
    assert params.train.epochs == load_params(REPO / "params.yaml").train.epochs  # the original is untouched


def test_an_override_naming_no_parameter_is_a_usage_error(params):
    from segstyle.core.errors import UsageError
    from segstyle.pipelines.config import apply_overrides

    with pytest.raises(UsageError, match="train.epochz"):
        apply_overrides(params, **{"train.epochz": 3})
    with pytest.raises(UsageError, match="invalid"):
        apply_overrides(params, epochs="many")


def test_data_version_is_claimed_only_for_the_tracked_root(params, monkeypatch):
    from segstyle.core.provenance import data_version, training_record

    monkeypatch.chdir(REPO)
    md5 = yaml.safe_load((REPO / "data.dvc").read_text())["outs"][0]["md5"]
    assert data_version(root="data") == md5
    assert data_version(root="/somewhere/else") == "untracked: /somewhere/else"
    from segstyle.pipelines.config import apply_overrides

    p2, applied = apply_overrides(params, data_root="/somewhere/else")
    rec = training_record(p2, applied)
    assert rec["data_version"] == "untracked: /somewhere/else"
    assert rec["params_digest"] == p2.digest() and rec["params"] == p2.to_dict() and rec["overrides"] == applied


def test_onnx_metadata_labels_training_and_export_moments(params, tmp_path, monkeypatch):
    """A checkpoint trained with --epochs/--data-root overrides; exported later with today's params."""
    from segstyle.export.backend.pyt.loader import load_net
    from segstyle.export.backend.onnx.exporter import build_metadata
    from segstyle.models import build_model
    from segstyle.models.checkpoint import save_checkpoint
    from segstyle.pipelines.config import apply_overrides
    from segstyle.core.provenance import git_commit, training_record

    monkeypatch.chdir(REPO)
    trained, applied = apply_overrides(params, epochs=params.train.epochs + 1, data_root="data")
    rec = training_record(trained, applied)
    rec["git_commit"] = "0123abc"  # the commit of the training moment, not of the export
    ck = tmp_path / "c.pt"
    save_checkpoint(ck, {"model": "transformer_net", "model_kwargs": {},
                         "state_dict": build_model("transformer_net").state_dict(), **rec})
    loaded = load_net(None, ck)
    meta = build_metadata(loaded, ExportSettings.from_params(params), opset=params.export.opset, size=(64, 64))
    assert meta["segstyle.training.params_digest"] == trained.digest() != params.digest()
    assert meta["segstyle.training.git_commit"] == "0123abc"
    assert meta["segstyle.training.data_version"] == rec["data_version"]
    assert json.loads(meta["segstyle.training.overrides"]) == applied
    assert meta["segstyle.export.params_digest"] == params.digest()
    assert meta["segstyle.export.git_commit"] == git_commit()
    # unlabelled keys (older readers) carry the training moment, never today's params.yaml
    assert meta["segstyle.params_digest"] == trained.digest()
    assert meta["segstyle.git_commit"] == "0123abc"


def test_old_checkpoint_digest_is_recomputed_and_labelled(params, tmp_path):
    from segstyle.core.provenance import checkpoint_provenance, params_digest

    old = {"params": params.to_dict(), "data_version": "abc.dir", "git_commit": "feed"}
    got = checkpoint_provenance(old)
    assert got["params_digest"] == params.digest() == params_digest(params.to_dict())
    assert got["params_digest_source"] == "recomputed from the checkpoint's params"
    assert checkpoint_provenance({**old, "params_digest": "x1"})["params_digest"] == "x1"


def test_fresh_weights_say_so(params):
    from segstyle.export.backend.pyt.loader import load_net
    from segstyle.export.backend.onnx.exporter import build_metadata

    meta = build_metadata(load_net("transformer_net", None), ExportSettings.from_params(params), opset=20, size=(64, 64))
    assert meta["segstyle.training.params_digest"] == "none (fresh seeded weights)"
    assert meta["segstyle.export.params_digest"] == params.digest()
