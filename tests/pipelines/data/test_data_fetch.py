"""``segstyle data fetch`` against a real HTTP server on 127.0.0.1 serving archives the test builds."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import segstyle.pipelines.data.fetch as fetch_mod
from segstyle.pipelines.data.sample import generate
from segstyle.pipelines.data.verify import verify


class ArchiveServer(ThreadingHTTPServer):
    """Serves ``files`` (name -> bytes) with HTTP Range support; can drop a response midway."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []   # (path, Range header)
        self.cut_after: int | None = None                   # next response stops after this many bytes

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/mirror"


class RangeHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv: ArchiveServer = self.server  # type: ignore[assignment]
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        name = self.path.removeprefix("/mirror/")
        if name not in srv.files:
            self.send_error(404, "Not Found")
            return
        data = srv.files[name]
        start = 0
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if srv.cut_after is not None:
            body, srv.cut_after = body[: srv.cut_after], None
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)   # the "network" drops mid-transfer
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = ArchiveServer()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sample") / "data"
    generate(root, progress=False)
    return root


def tar_bytes(base: Path, arcname: str, mode: str = "w", extra: list[tuple[tarfile.TarInfo, bytes]] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        tar.add(base, arcname=arcname)
        for info, payload in extra:
            tar.addfile(info, io.BytesIO(payload) if payload else None)
    return buf.getvalue()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def serve(monkeypatch, server: ArchiveServer, dataset: str, archives: dict[str, bytes], *, patch_md5: bool = True):
    """Put ``archives`` on the server and make SOURCES expect their checksums (unless told otherwise)."""
    server.files.update(archives)
    if patch_md5:
        src = fetch_mod.SOURCES[dataset]
        new = tuple(dataclasses.replace(a, md5=md5(archives[a.filename])) for a in src.archives)
        monkeypatch.setitem(fetch_mod.SOURCES, dataset, dataclasses.replace(src, archives=new))


def voc_archive(sample_root: Path, extra=()) -> dict[str, bytes]:
    return {"VOCtrainval_11-May-2012.tar": tar_bytes(sample_root / "voc" / "VOCdevkit", "VOCdevkit", extra=extra)}


def run_fetch(cli, dataset, root, server, dl, *more):
    return cli(["data", "fetch", dataset, "--root", str(root), "--mirror", server.url, "--downloads", str(dl), *more])


def test_fetch_voc_success(sample_root, server, monkeypatch, tmp_path, cli, capsys):
    serve(monkeypatch, server, "voc", voc_archive(sample_root))
    root, dl = tmp_path / "data", tmp_path / "dl"
    shutil.copytree(sample_root, root)                   # start from the sample, as a user would
    assert run_fetch(cli, "voc", root, server, dl) == 1  # existing voc/: refuses without --force
    assert "--force" in capsys.readouterr().err
    assert run_fetch(cli, "voc", root, server, dl, "--force") == 0
    assert f"installed voc in {root / 'voc'}" in capsys.readouterr().out
    assert verify(root, "voc", progress=False).ok
    assert not (root / "README.md").exists()             # no longer the pure sample: `data sample` won't clobber it
    assert list(dl.iterdir()) == []                      # archive removed after a successful install
    assert sorted(p.name for p in root.iterdir()) == ["pets", "style", "voc"]   # no temporary directory left
    assert server.requests == [("/mirror/VOCtrainval_11-May-2012.tar", None)]


def test_fetch_into_a_dataset_folder(sample_root, server, monkeypatch, tmp_path, cli, capsys):
    """`--root data/voc` (the torchvision dataset folder) installs data/voc/VOCdevkit, not data/voc/voc."""
    serve(monkeypatch, server, "voc", voc_archive(sample_root))
    root, dl = tmp_path / "data", tmp_path / "dl"
    assert run_fetch(cli, "voc", root / "voc", server, dl) == 0
    assert f"installed voc in {root / 'voc'}" in capsys.readouterr().out
    assert (root / "voc" / "VOCdevkit" / "VOC2012").is_dir() and not (root / "voc" / "voc").exists()
    assert verify(root / "voc", "voc", progress=False).ok


def test_fetch_pets_two_archives(sample_root, server, monkeypatch, tmp_path, cli):
    pets = sample_root / "pets" / "oxford-iiit-pet"
    serve(monkeypatch, server, "pets", {
        "images.tar.gz": tar_bytes(pets / "images", "images", "w:gz"),
        "annotations.tar.gz": tar_bytes(pets / "annotations", "annotations", "w:gz"),
    })
    root, dl = tmp_path / "data", tmp_path / "dl"
    assert run_fetch(cli, "pets", root, server, dl, "--keep-archives") == 0
    assert verify(root, "pets", progress=False).ok
    assert sorted(p.name for p in dl.iterdir()) == ["annotations.tar.gz", "images.tar.gz"]
    # a second install reuses the verified archives without downloading again
    n = len(server.requests)
    assert run_fetch(cli, "pets", root, server, dl, "--force") == 0
    assert len(server.requests) == n


def test_fetch_resumes_after_interrupted_download(sample_root, server, monkeypatch, tmp_path, cli, capsys):
    archives = voc_archive(sample_root)
    serve(monkeypatch, server, "voc", archives)
    size = len(archives["VOCtrainval_11-May-2012.tar"])
    root, dl = tmp_path / "data", tmp_path / "dl"
    server.cut_after = size // 3
    assert run_fetch(cli, "voc", root, server, dl) == 1
    err = capsys.readouterr().err
    assert "VOCtrainval_11-May-2012.tar: download" in err and "rerun the same command to resume" in err
    assert "Traceback" not in err
    part = dl / "VOCtrainval_11-May-2012.tar.part"
    assert part.stat().st_size == size // 3
    assert not root.exists() or list(root.iterdir()) == []   # nothing installed, nothing half-extracted
    assert run_fetch(cli, "voc", root, server, dl) == 0
    assert server.requests[-1] == ("/mirror/VOCtrainval_11-May-2012.tar", f"bytes={size // 3}-")
    assert not part.exists() and verify(root, "voc", progress=False).ok


def test_wrong_checksum_names_file_and_leaves_nothing(sample_root, server, monkeypatch, tmp_path, cli, capsys):
    serve(monkeypatch, server, "voc", voc_archive(sample_root), patch_md5=False)   # the real md5 won't match
    root, dl = tmp_path / "data", tmp_path / "dl"
    assert run_fetch(cli, "voc", root, server, dl) == 1
    err = capsys.readouterr().err
    assert "VOCtrainval_11-May-2012.tar: checksum mismatch" in err and "6cd6e144f989b92b3379bac3b3de84fd" in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert list(dl.iterdir()) == [] and not root.exists()


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "VOCdevkit/../../evil.txt"])
def test_archive_escaping_the_root_is_rejected(sample_root, server, monkeypatch, tmp_path, cli, capsys, member):
    info = tarfile.TarInfo(member)
    info.size = 4
    serve(monkeypatch, server, "voc", voc_archive(sample_root, extra=[(info, b"evil")]))
    root, dl = tmp_path / "data", tmp_path / "dl"
    assert run_fetch(cli, "voc", root, server, dl) == 1
    err = capsys.readouterr().err
    assert f"VOCtrainval_11-May-2012.tar: refusing unsafe member '{member}'" in err and "Traceback" not in err
    assert not any(tmp_path.rglob("evil.txt")) and not Path("/abs/evil.txt").exists()
    assert not root.exists() or list(root.iterdir()) == []   # the good members were not kept either


def _info(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    t = tarfile.TarInfo(name)
    t.type, t.linkname = kind, link
    return t


@pytest.mark.parametrize("info,reason", [
    (_info("a/link", tarfile.SYMTYPE, "../../etc/passwd"), "points outside"),
    (_info("link", tarfile.SYMTYPE, "/etc/passwd"), "points outside"),
    (_info("a/hard", tarfile.LNKTYPE, "../outside"), "points outside"),
    (_info("dev", tarfile.CHRTYPE), "device"),
    (_info("fifo", tarfile.FIFOTYPE), "device or FIFO"),
    (_info("C:/win.txt", tarfile.REGTYPE), "absolute"),
])
def test_unsafe_members(tmp_path, info, reason):
    assert reason in fetch_mod.unsafe_reason(info, tmp_path)


@pytest.mark.parametrize("info", [
    _info("a/b/file.txt", tarfile.REGTYPE),
    _info("a/b", tarfile.DIRTYPE),
    _info("a/link", tarfile.SYMTYPE, "../b/file.txt"),
    _info("a/hard", tarfile.LNKTYPE, "a/b/file.txt"),
])
def test_safe_members(tmp_path, info):
    assert fetch_mod.unsafe_reason(info, tmp_path) is None


def test_http_error_is_one_line(server, tmp_path, cli, capsys):
    assert run_fetch(cli, "pets", tmp_path / "data", server, tmp_path / "dl") == 1
    err = capsys.readouterr().err
    assert err.startswith(f"segstyle: error: {server.url}/images.tar.gz: HTTP 404") and err.count("\n") == 1


def test_official_sources():
    """The URLs and MD5s torchvision uses for the same archives."""
    voc, = fetch_mod.SOURCES["voc"].archives
    assert voc.url() == "https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
    assert voc.md5 == "6cd6e144f989b92b3379bac3b3de84fd"
    images, ann = fetch_mod.SOURCES["pets"].archives
    assert (images.url(), images.md5) == ("https://thor.robots.ox.ac.uk/datasets/pets/images.tar.gz",
                                          "5c4f3ee8e5d25df40f4fd59a7f44e54c")
    assert (ann.url(), ann.md5) == ("https://thor.robots.ox.ac.uk/datasets/pets/annotations.tar.gz",
                                    "95a8c909bbe2e81eed6a22bccdf3f68f")
    from torchvision.datasets import voc as tv_voc

    assert tv_voc.DATASET_YEAR_DICT["2012"]["md5"] == voc.md5
