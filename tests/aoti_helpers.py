"""Shared by the AOTInductor test files: one compile per network and module, and the check that a
package run in a process without the model code matches eager PyTorch at shapes export never ran."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from segstyle.export.backend.aoti.loader import Ranges, check_sizes

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def settings():
    from segstyle.export.settings import ExportSettings
    from segstyle.pipelines.config import load_params

    return ExportSettings.from_params(load_params(REPO / "params.yaml", profile="demo"))


@pytest.fixture(scope="module")
def built(tmp_path_factory, settings):
    """model -> (loaded net, program path, package path, export record), compiled once per module."""
    from segstyle.export.backend.aoti.loader import compile_package, export_program
    from segstyle.export.backend.pyt.loader import load_net

    cache: dict[str, tuple] = {}

    def build(model: str):
        if model not in cache:
            d = tmp_path_factory.mktemp(model)
            loaded = load_net(model, None, seed=settings.seed)
            rec = export_program(loaded, settings, d / "model.ep.pt2")
            compile_package(d / "model.ep.pt2", d / "model_cpu_fp32.aoti.pt2")
            cache[model] = (loaded, d / "model.ep.pt2", d / "model_cpu_fp32.aoti.pt2", rec)
        return cache[model]

    return build


# a process that cannot import the model code: only the package, its sidecar and the runner
RUN_WITHOUT_MODELS = r"""
import sys
sys.modules["segstyle.models"] = None  # any import of the model code now raises ImportError
import torch
torch.set_num_threads(1)
from segstyle.export.backend.aoti.runner import AotiBackend
inputs = torch.load(sys.argv[2])
b = AotiBackend(sys.argv[1])
torch.save([b.run(b.prepare(x)) for x in inputs], sys.argv[3])
assert not any(m.startswith("segstyle.models") for m in sys.modules if sys.modules[m] is not None)
"""


def unseen_inputs(r: Ranges, export_shapes: set[tuple[int, ...]]) -> list[torch.Tensor]:
    """Batch 1 non-square, batch max, and a range edge (min H, max W); none of them a shape export ran."""
    g = torch.Generator().manual_seed(7)
    if r.height is None:
        xs = [torch.randn(1, r.noise_dim, generator=g), torch.randn(r.batch[1], r.noise_dim, generator=g),
              torch.randn(7, r.noise_dim, generator=g)]
    else:
        a = r.align
        xs = [torch.rand(1, 3, a * -(-200 // a), a * -(-152 // a), generator=g),
              torch.rand(r.batch[1], 3, a * -(-136 // a) + a, a * -(-136 // a), generator=g),
              torch.rand(1, 3, r.height[0], r.width[1], generator=g)]
    assert not {tuple(x.shape) for x in xs} & export_shapes
    return xs


def check_package_without_model_code(built, settings, model: str, tmp_path: Path) -> None:
    """Compile ``model``, run its package in a subprocess that never imports segstyle.models, compare with eager."""
    from segstyle.export.backend.aoti.loader import example, read_program_record, read_sidecar
    from segstyle.export.backend.pyt.loader import ExportWrapper

    loaded, program, package, rec = built(model)
    r = Ranges.from_json(rec["ranges"])
    assert read_program_record(program)["ranges"] == rec["ranges"]
    side = read_sidecar(package)
    assert side["device"] == "cpu" and side["torch_version"] == torch.__version__ and side["cpu_isa"]
    assert side["compile_seconds"] > 0 and side["program_sha256"] and Path(package).stat().st_size > 0
    # the shapes export_program ran (its example and its checks), so the inputs here can avoid them
    seen = {tuple(example(r, 2, settings.size).shape)}
    if r.height is not None:
        seen |= {(b, 3, h, w) for b in (1, 3) for h, w in check_sizes(r, settings.parity_sizes)}
    xs = unseen_inputs(r, seen)
    torch.save(xs, tmp_path / "in.pt")
    proc = subprocess.run([sys.executable, "-c", RUN_WITHOUT_MODELS, str(package), str(tmp_path / "in.pt"),
                           str(tmp_path / "out.pt")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    outs = torch.load(tmp_path / "out.pt")
    net = ExportWrapper(loaded.net).eval()
    for x, got in zip(xs, outs):
        with torch.no_grad():
            want = net(x)
        assert got.shape == want.shape, (tuple(x.shape), tuple(got.shape), tuple(want.shape))
        assert float((got - want).abs().max()) <= 1e-4, tuple(x.shape)
        assert float(want.abs().max()) > 0  # a package that returns zeros cannot pass on a non-zero network
