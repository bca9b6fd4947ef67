"""An AOTInductor package runs from C++ with no Python: export/backend/aoti/cpp/run_package.

A tiny conv net is exported with a dynamic batch and dynamic H/W, compiled into a .pt2 package, and
run by the C++ program (built here with CMake against the wheel's libtorch) in a bare environment: no
PATH, no PYTHONPATH, no LD_LIBRARY_PATH, so libtorch is found through the binary's RUNPATH only. Its
output must match eager PyTorch at shapes the export never saw, and its refusals must be exit 2 with a
one-line diagnostic.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.export import Dim

CPP_DIR = Path(__file__).resolve().parents[4] / "export" / "backend" / "aoti" / "cpp"
EXPORT_SHAPE = (2, 3, 64, 48)  # the example input; every shape the program runs below differs from it
OUT_CHANNELS = 2


def _cxx() -> str | None:
    """The C++ compiler CMake (and Inductor, compiling the package) would pick: $CXX, else c++/g++/clang++."""
    for name in filter(None, (os.environ.get("CXX"), "c++", "g++", "clang++")):
        found = shutil.which(name)
        if found:
            return found
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed: cannot build run_package"),
    pytest.mark.skipif(_cxx() is None, reason="no C++ compiler ($CXX, c++, g++ or clang++): cannot build "
                                              "run_package or compile an AOTInductor package"),
]


class TinyNet(torch.nn.Module):
    """Two 3x3 convs (padding 1, stride 1): any H, W in the exported range works, and the output has
    a channel count (2) the input (3) does not, so a program that echoes its input cannot pass."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(4, OUT_CHANNELS, 3, stride=1, padding=1)

    def forward(self, x):
        return self.conv2(self.relu(self.conv1(x)))


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="session")
def run_package(tmp_path_factory) -> Path:
    """run_package, configured and built once per session (about 8 s of the 2-core machine's time)."""
    build = tmp_path_factory.mktemp("run_package_build")
    configure = ["cmake", "-S", str(CPP_DIR), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                 f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}", f"-DCMAKE_CXX_COMPILER={_cxx()}"]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    for command in (configure, ["cmake", "--build", str(build)]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        # A failed build is a failure, not a skip: cmake and a compiler are there, so it must build.
        assert done.returncode == 0, f"{' '.join(command)} failed:\n{_tail(done.stdout + done.stderr)}"
    exe = build / "run_package"
    assert exe.is_file() and os.access(exe, os.X_OK)
    return exe


@pytest.fixture(scope="session")
def package(tmp_path_factory) -> tuple[TinyNet, Path]:
    """The seeded net and its AOTInductor package: dynamic batch 1..4, dynamic H and W 32..256."""
    torch.manual_seed(0)
    model = TinyNet().eval()
    example = torch.randn(*EXPORT_SHAPE)
    dynamic = {"x": {0: Dim("batch", min=1, max=4), 2: Dim("height", min=32, max=256),
                     3: Dim("width", min=32, max=256)}}
    with torch.no_grad():
        ep = torch.export.export(model, (example,), dynamic_shapes=dynamic)
        path = tmp_path_factory.mktemp("aoti_package") / "tiny.pt2"
        # check_lowerbound off: with it on, the package's input check (AOTI_RUNTIME_CHECK_INPUTS=1)
        # refuses batch 1, "expected it to be >= 2" (the compiled lower bound, whatever Dim(min=1) says).
        torch._inductor.aoti_compile_and_package(
            ep, package_path=str(path), inductor_configs={"aot_inductor.check_lowerbound": False})
    assert path.is_file()
    return model, path


def _bare_env(**extra: str) -> dict[str, str]:
    """No PATH, PYTHONPATH, PYTHONHOME, VIRTUAL_ENV or LD_LIBRARY_PATH: nothing from this Python
    process helps the program find libtorch or a compiler. TMPDIR stays (the loader unpacks the
    package there) and OMP_NUM_THREADS (tests/conftest.py's share of the cores)."""
    env = {k: os.environ[k] for k in ("TMPDIR", "OMP_NUM_THREADS") if k in os.environ}
    env.update(extra)
    return env


def _run(exe: Path, *args, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True,
                          env=_bare_env() if env is None else env, timeout=120)


def test_no_python_among_its_libraries(run_package):
    """What the loader resolves for the binary: libtorch from its RUNPATH, and no libpython."""
    if shutil.which("ldd") is None:
        pytest.skip("ldd is not installed")
    libs = subprocess.run(["ldd", str(run_package)], capture_output=True, text=True, env=_bare_env(),
                          timeout=60, check=True).stdout
    assert "not found" not in libs, libs
    assert "libtorch_cpu.so => " + str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so") in libs, libs
    assert "libpython" not in libs and "libtorch_python" not in libs, libs


@pytest.mark.parametrize("shape", [(1, 3, 72, 40), (3, 3, 40, 104)], ids=["1x3x72x40", "3x3x40x104"])
def test_matches_eager_at_shapes_not_exported(run_package, package, tmp_path, shape):
    model, pt2 = package
    assert shape != EXPORT_SHAPE
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    src, dst = tmp_path / "input.bin", tmp_path / "output.bin"
    x.numpy().astype("<f4").tofile(src)

    # With the package's own input check on: the shape is inside the exported range, batch 1 included.
    done = _run(run_package, pt2, src, *shape, dst, env=_bare_env(AOTI_RUNTIME_CHECK_INPUTS="1"))

    assert done.returncode == 0, done.stderr
    n, _, h, w = shape
    assert done.stdout == f"output {n}x{OUT_CHANNELS}x{h}x{w}\n"
    assert dst.stat().st_size == n * OUT_CHANNELS * h * w * 4
    got = torch.from_numpy(np.fromfile(dst, dtype="<f4").reshape(n, OUT_CHANNELS, h, w))
    with torch.no_grad():
        want = model(x)
    # A program writing zeros (or a constant) fails here, not only on the comparison below.
    assert want.abs().max() > 0.1 and want.std() > 0.05
    assert (got - want).abs().max().item() <= 1e-4
    # Each image of a batch is its own: an output that repeats image 0 fails at batch 3.
    if n > 1:
        assert (want[1] - want[0]).abs().max() > 0.1


def _one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("run_package: error: "), stderr
    return lines[0]


def test_missing_package_is_exit_2_with_one_line(run_package, tmp_path):
    src, dst = tmp_path / "input.bin", tmp_path / "output.bin"
    np.zeros((1, 3, 32, 32), dtype="<f4").tofile(src)
    missing = tmp_path / "no_such.pt2"

    done = _run(run_package, missing, src, 1, 3, 32, 32, dst)

    assert done.returncode == 2
    assert str(missing) in _one_line(done.stderr)
    assert done.stdout == "" and not dst.exists()


@pytest.mark.parametrize("case", ["input_size", "argument_count", "dimension_text"])
def test_bad_arguments_are_exit_2_with_one_line(run_package, package, tmp_path, case):
    _, pt2 = package
    src, dst = tmp_path / "input.bin", tmp_path / "output.bin"
    np.zeros((1, 3, 32, 32), dtype="<f4").tofile(src)
    args = {"input_size": (pt2, src, 2, 3, 32, 32, dst),     # the file holds batch 1, not 2
            "argument_count": (pt2, src, 1, 3, 32, 32),
            "dimension_text": (pt2, src, 1, 3, "32px", 32, dst)}[case]

    done = _run(run_package, *args)

    assert done.returncode == 2
    line = _one_line(done.stderr)
    assert {"input_size": "bytes", "argument_count": "usage", "dimension_text": "'32px'"}[case] in line
    assert done.stdout == "" and not dst.exists()


def test_loader_errors_are_exit_2_and_end_with_its_line(run_package, package, tmp_path):
    """Errors raised inside libtorch: a file that is not a package, and (AOTI_RUNTIME_CHECK_INPUTS=1)
    a height over the exported 256. The model prints its own "Error: ..." line before it throws, so
    only the last line is ours."""
    _, pt2 = package
    src, dst = tmp_path / "input.bin", tmp_path / "output.bin"
    np.zeros((1, 3, 300, 32), dtype="<f4").tofile(src)

    not_a_package = _run(run_package, src, src, 1, 3, 300, 32, dst)
    too_tall = _run(run_package, pt2, src, 1, 3, 300, 32, dst, env=_bare_env(AOTI_RUNTIME_CHECK_INPUTS="1"))

    for done in (not_a_package, too_tall):
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines()[-1].startswith("run_package: error: "), done.stderr
        assert done.stdout == "" and not dst.exists()
    assert "256" in too_tall.stderr.splitlines()[-1]
