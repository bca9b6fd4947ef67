"""Signed bundles (issue 25): the device refuses a bundle its producer did not sign, before any graph is read.

One signed style bundle (fresh seeded TransformerNet weights, golden images from the sample split);
each test tampers with a copy the way an attacker who knows the format would (re-hashing
``manifest.json`` and ``SHA256SUMS`` so the sha256 checks alone would accept it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from seg_helpers import bundle_params, rehash, run_check

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    from segstyle.export.portable.signature import ensure_key

    d = tmp_path_factory.mktemp("keys")
    return {"producer": (d / "producer.pem", ensure_key(d / "producer.pem")),
            "other": (d / "other.pem", ensure_key(d / "other.pem"))}


@pytest.fixture(scope="module")
def signed(tmp_path_factory, keys):
    from segstyle.pipelines.cli import run_cli

    params = bundle_params(tmp_path_factory)
    d = tmp_path_factory.mktemp("signed")
    b = d / "style"
    assert run_cli(["bundle", "--model", "transformer_net", "--network", "style", "--out", str(b),
                    "--sizes", "128x160,144x128", "--sign-key", str(keys["producer"][0]),
                    "--params", str(params)]) == 0
    return b


def _copy(bundle, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(bundle, out)
    return out


def _pub(keys, who="producer"):
    return str(keys[who][1])


def test_signed_bundle_verifies_and_passes(signed, keys, tmp_path):
    proc = run_check(signed, "--onnxrt", "--public-key", _pub(keys), "--json", str(tmp_path / "v.json"))
    assert proc.returncode == 0, proc.stderr
    fp = json.loads((signed / "manifest.json").read_text())["signature"]["fingerprint"]
    verdict = proc.stdout.splitlines()[-1]
    assert verdict.startswith("PASS style onnxruntime model_fp16.onnx")
    assert verdict.endswith(f"; signature: verified, key {fp}") and proc.stderr == ""
    assert json.loads((tmp_path / "v.json").read_text())["signature"] == f"signature: verified, key {fp}"
    assert (signed / "bundle.sig").is_file() and "**Signed** with the key" in (signed / "README.md").read_text()


def test_tarball_holds_the_signature(signed):
    import tarfile

    with tarfile.open(str(signed) + ".tar.gz") as tf:
        assert "style/bundle.sig" in tf.getnames()


def test_without_public_key_says_not_checked(signed):
    proc = run_check(signed, "--onnxrt")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("PASS style") and proc.stderr == ""
    assert proc.stdout.rstrip().endswith("; signature: not checked (bundle.sig present: pass --public-key PUB.pem)")


def test_changed_initializer_with_rehashed_manifest_is_refused_before_inference(signed, keys, tmp_path):
    bad = _copy(signed, tmp_path)
    m = onnx.load(str(bad / "model_fp16.onnx"))
    init = max(m.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    a = numpy_helper.to_array(init)
    init.CopyFrom(numpy_helper.from_array((a * 1.01).astype(a.dtype), init.name))
    onnx.save(m, str(bad / "model_fp16.onnx"))
    rehash(bad, "model_fp16.onnx")
    sums = json.loads((bad / "manifest.json").read_text())["files"]
    (bad / "SHA256SUMS").write_text("".join(f"{h}  {n}\n" for n, h in sorted(sums.items())))
    assert run_check(bad, "--onnxrt").returncode in (0, 1)  # the sha256 checks alone accept it: it runs
    proc = run_check(bad, "--onnxrt", "--public-key", _pub(keys))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "refused:" in proc.stderr and "model_fp16.onnx changed after signing" in proc.stderr
    assert "PASS" not in proc.stdout and "FAIL" not in proc.stderr  # no inference ran


def test_garbage_graph_is_refused_by_the_signature_not_by_onnxruntime(signed, keys, tmp_path):
    bad = _copy(signed, tmp_path)
    (bad / "model.onnx").write_bytes(b"not an onnx graph")
    rehash(bad, "model.onnx")
    proc = run_check(bad, "--onnxrt", "--graph", "model.onnx", "--public-key", _pub(keys))
    assert proc.returncode == 2 and "model.onnx changed after signing" in proc.stderr, proc.stderr


def test_changed_provenance_is_refused(signed, keys, tmp_path):
    bad = _copy(signed, tmp_path)
    mf = json.loads((bad / "manifest.json").read_text())
    assert mf["provenance"] and "model.onnx" in mf["files"]  # provenance and the graph's sha256 are signed
    mf["provenance"]["export.git_commit"] = "0" * 40
    (bad / "manifest.json").write_text(json.dumps(mf))
    proc = run_check(bad, "--onnxrt", "--public-key", _pub(keys))
    assert proc.returncode == 2 and "manifest.json changed after signing" in proc.stderr, proc.stderr


def test_another_keys_signature_is_refused(signed, keys, tmp_path):
    proc = run_check(signed, "--onnxrt", "--public-key", _pub(keys, "other"))
    assert proc.returncode == 2 and "not signed by the key" in proc.stderr, proc.stderr
    # re-signed by the other key: refused under the producer's key too
    resigned = _copy(signed, tmp_path)
    from segstyle.export.portable.signature import sign

    sign(resigned, keys["other"][0])
    proc = run_check(resigned, "--onnxrt", "--public-key", _pub(keys))
    assert proc.returncode == 2 and "not signed by the key" in proc.stderr, proc.stderr


@pytest.mark.parametrize("name", ["extra.onnx", ".gitignore"])
def test_added_file_is_refused(signed, keys, tmp_path, name):
    bad = _copy(signed, tmp_path)
    (bad / name).write_text("x")
    proc = run_check(bad, "--onnxrt", "--public-key", _pub(keys))
    assert proc.returncode == 2 and f"{name} added after signing" in proc.stderr, proc.stderr


def test_removed_file_is_refused(signed, keys, tmp_path):
    bad = _copy(signed, tmp_path)
    (bad / "lint.json").unlink()
    proc = run_check(bad, "--onnxrt", "--public-key", _pub(keys))
    assert proc.returncode == 2 and "lint.json removed after signing" in proc.stderr, proc.stderr


def test_unsigned_bundle_with_public_key_is_refused(signed, keys, tmp_path):
    bad = _copy(signed, tmp_path)
    (bad / "bundle.sig").unlink()
    proc = run_check(bad, "--onnxrt", "--public-key", _pub(keys))
    assert proc.returncode == 2 and "is not signed" in proc.stderr, proc.stderr


def test_missing_model_signing_says_how_to_install(signed, keys):
    code = ("import sys; sys.modules['model_signing'] = None; sys.argv[0] = 'check.py'; "
            "import runpy; sys.argv[1:] = ['--onnxrt', '--public-key', %r]; runpy.run_path('check.py', run_name='__main__')"
            % _pub(keys))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=signed)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "pip install" in proc.stderr and "model-signing" in proc.stderr and "PASS" not in proc.stdout


def test_segstyle_bundle_verify_with_public_key(signed, keys, tmp_path, cli):
    from segstyle.core.errors import SegstyleError
    from segstyle.export.bundle import verify_bundle

    assert cli(["bundle", "verify", str(signed), "--public-key", _pub(keys), "--run"]) == 0
    bad = _copy(signed, tmp_path)
    (bad / "extra.txt").write_text("x")
    with pytest.raises(SegstyleError, match="extra.txt added after signing"):
        verify_bundle(bad, _pub(keys))
    assert cli(["bundle", "verify", str(bad), "--public-key", _pub(keys)]) == 2  # refused: the exit code check.py refuses with
    assert cli(["bundle", "--verify", str(bad), "--public-key", _pub(keys)]) == 2  # the option spelling says the same
    assert cli(["bundle", "verify", str(signed)]) == 0  # no key: the files are checked, the signature is not


def test_unsigned_bundle_readme_says_so(tmp_path, tmp_path_factory):
    from segstyle.export.bundle import _signature_section

    assert _signature_section({"signature": None}).startswith("**Unsigned bundle.**")


def test_create_key_is_generated_once(tmp_path):
    from segstyle.export.portable.signature import ensure_key, fingerprint

    k = tmp_path / "k" / "demo.pem"
    pub = ensure_key(k)
    first = fingerprint(pub)
    assert oct(k.stat().st_mode & 0o777) == "0o600"
    assert fingerprint(ensure_key(k)) == first  # a second call keeps the key
