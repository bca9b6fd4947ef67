"""Bundle signatures: OpenSSF model signing (``model-signing``, private-key mode) over the whole directory.

Shipped in every bundle as ``segstyle_signature.py`` (a byte-identical copy) so that ``check.py
--public-key PUB.pem`` and ``segstyle bundle verify DIR --public-key PUB.pem`` run the same code.

Why a signature on top of ``manifest.json`` / ``SHA256SUMS``: those travel inside the bundle, so
anyone who can change a graph can re-hash them too. The signature covers the sha256 of every file
in the directory (the manifest with its provenance included) and can only be made with the
producer's private key; the device holds the public key alone.

``SIGNATURE`` (``bundle.sig``, a Sigstore bundle as model-signing writes it) is the one file the
signature leaves out, and it says so inside the signed payload. Git paths are *not* ignored: a
file added after signing, whatever its name, is refused.

ECDSA signatures are randomised, so ``bundle.sig`` (and the tarball holding it) differs between
two signings of the same files; every other file stays byte-identical.

Standard library only at import; ``model-signing`` (and ``cryptography``, which it pulls in) are
imported when a signature is made or checked, so ``check.py --onnxrt`` still needs numpy alone.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

SIGNATURE = "bundle.sig"
INSTALL = "pip install 'model-signing>=1.1,<2' pyopenssl"


class SignatureError(Exception):
    """The bundle is refused (one line for the user)."""


def _model_signing():
    try:
        import model_signing  # noqa: F401  (pulls in the submodules)
        from model_signing import hashing, signing, verifying
    except ImportError as e:
        raise SignatureError(f"signature checks need model-signing ({e.name} missing): {INSTALL}") from None
    return hashing, signing, verifying


def _hashing_config(hashing):
    # ignore_git_paths=False: a `.gitignore` dropped into the bundle after signing is refused like any file
    return hashing.Config().set_ignored_paths(paths=[SIGNATURE], ignore_git_paths=False)


def fingerprint(public_key: str | Path) -> str:
    """``SHA256:<hex>`` of the public key's DER encoding (what the report and the manifest name)."""
    from cryptography.hazmat.primitives import serialization

    data = Path(public_key).read_bytes()
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise SignatureError(f"{public_key}: not a PEM public key") from None
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "SHA256:" + hashlib.sha256(der).hexdigest()


def public_key_path(private_key: str | Path) -> Path:
    """Where the public half of ``private_key`` lies (``KEY.pem`` -> ``KEY.pub.pem``)."""
    p = Path(private_key)
    return p.with_name(p.stem + ".pub.pem")


def ensure_key(private_key: str | Path) -> Path:
    """Create a P-256 key pair at ``private_key`` (mode 0600) and its ``.pub.pem`` unless the key exists.

    Safe when several bundle stages start at once: the key is written to a temporary file and
    linked into place, so exactly one key wins and every stage signs with it.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    priv = Path(private_key)
    pub = public_key_path(priv)
    if not priv.exists():
        priv.parent.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd, tmp = tempfile.mkstemp(dir=priv.parent, prefix=".key-")  # mkstemp: mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
            os.link(tmp, priv)  # fails if another process linked its key first: then use that one
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    if not pub.exists():
        _write_public(priv, pub)
    return pub


def _write_public(priv: Path, pub: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(priv.read_bytes(), None)
    data = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    fd, tmp = tempfile.mkstemp(dir=pub.parent, prefix=".pub-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, pub)


def sign(bundle: str | Path, private_key: str | Path) -> Path:
    """Sign every file of ``bundle`` with ``private_key``; returns the signature's path."""
    hashing, signing, _ = _model_signing()
    bundle, key = Path(bundle), Path(private_key)
    if not key.is_file():
        raise SignatureError(f"{key}: no such signing key")
    out = bundle / SIGNATURE
    try:
        signing.Config().use_elliptic_key_signer(private_key=key).set_hashing_config(
            _hashing_config(hashing)).sign(bundle, out)
    except ValueError as e:  # not a PEM key, an unsupported curve, an encrypted key without password
        raise SignatureError(f"{key}: cannot sign with this key ({str(e).splitlines()[0][:160]})") from None
    os.chmod(out, 0o644)
    return out


def verify(bundle: str | Path, public_key: str | Path) -> str:
    """Refuse (``SignatureError``) unless ``bundle`` is exactly what ``public_key``'s owner signed.

    Reads no graph: it hashes the files' bytes and compares them with the signed digests. Returns
    the key's fingerprint.
    """
    hashing, _, verifying = _model_signing()
    bundle, pub = Path(bundle), Path(public_key)
    if not pub.is_file():
        raise SignatureError(f"{pub}: no such public key")
    fp = fingerprint(pub)
    sig = bundle / SIGNATURE
    if not sig.is_file():
        raise SignatureError(f"{bundle} is not signed ({SIGNATURE} missing); refusing it with --public-key")
    try:
        verifying.Config().use_elliptic_key_verifier(public_key=pub).set_hashing_config(
            _hashing_config(hashing)).verify(bundle, sig)
    except Exception as e:  # model-signing raises ValueError, InvalidSignature, protobuf/JSON errors
        why = (str(e).splitlines() or [type(e).__name__])[0] or type(e).__name__
        changed = re.findall(r"Hash mismatch for \\?'([^'\\]+)", str(e))
        if type(e).__name__ == "InvalidSignature" or "Key mismatch" in why:
            why = f"not signed by the key {fp}"
        elif changed:
            why = f"{', '.join(changed)} changed after signing"
        elif m := re.search(r"Extra files found in model '[^']*': ([^'\"\\\]]+)", str(e)):
            why = f"{m.group(1)} added after signing"
        elif m := re.search(r"Missing files in model '[^']*': ([^'\"\\\]]+)", str(e)):
            why = f"{m.group(1)} removed after signing"
        raise SignatureError(f"{bundle}: signature check failed: {why[:300]}") from None
    return fp
