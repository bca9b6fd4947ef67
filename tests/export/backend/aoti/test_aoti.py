"""AOTInductor packages: every deployable network compiles, runs without its model code and matches eager;
every input the package would silently mis-run is refused in one line; a package for another machine is
refused and rebuilt."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from segstyle.core.errors import SegstyleError
from segstyle.export.backend.aoti.loader import Ranges, check_sizes
from segstyle.export.backend.aoti.runner import check_input
from segstyle.models import list_models
from aoti_helpers import built, check_package_without_model_code, settings  # noqa: F401  (fixtures)

IMAGE = Ranges(batch=(1, 4), height=(128, 1024), width=(128, 1024), align=8)
NOISE = Ranges(batch=(1, 64), noise_dim=100)
CPU = torch.device("cpu")


def _refused(x, ranges=IMAGE, dtype=torch.float32) -> str:
    with pytest.raises(SegstyleError) as e:
        check_input(x, ranges, dtype=dtype, device=CPU)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_every_input_a_package_would_mis_run_is_refused_in_one_line():
    check_input(torch.rand(1, 3, 136, 144), IMAGE, dtype=torch.float32, device=CPU)  # inside: runs
    check_input(torch.rand(4, 3, 1024, 128), IMAGE, dtype=torch.float32, device=CPU)
    assert "H 130 is not a multiple of 8" in _refused(torch.rand(1, 3, 130, 136))
    assert "W 141 is not a multiple of 8" in _refused(torch.rand(1, 3, 136, 141))
    assert "batch 5 outside" in _refused(torch.rand(5, 3, 136, 136))
    assert "channels_last" in _refused(torch.rand(1, 3, 136, 144).contiguous(memory_format=torch.channels_last))
    assert "strided" in _refused(torch.rand(1, 3, 144, 272)[..., ::2])
    assert "dtype float64" in _refused(torch.rand(1, 3, 136, 144, dtype=torch.float64))
    assert "dtype uint8" in _refused(torch.zeros(1, 3, 136, 144, dtype=torch.uint8))
    assert "float16" in _refused(torch.rand(1, 3, 136, 144), dtype=torch.float16)  # an FP16 package
    assert "H 1032 outside" in _refused(torch.rand(1, 3, 1032, 136))
    assert "W 120 outside" in _refused(torch.rand(1, 3, 136, 120))
    assert "1 channels" in _refused(torch.rand(1, 1, 136, 136))
    assert "input shape" in _refused(torch.rand(3, 136, 136))
    assert "torch.Tensor" in _refused(torch.rand(1, 3, 136, 136).numpy())
    check_input(torch.randn(64, 100), NOISE, dtype=torch.float32, device=CPU)
    assert "noise length 99" in _refused(torch.randn(2, 99), NOISE)
    assert "batch 65 outside" in _refused(torch.randn(65, 100), NOISE)


def test_ranges_move_inwards_onto_the_alignment():
    r = Ranges(batch=(1, 4), height=(129, 1000), width=(128, 1024)).aligned(32)
    assert (r.height, r.width, r.align) == ((160, 992), (128, 1024), 32)
    assert Ranges.from_json(json.loads(json.dumps(r.as_json()))) == r


def test_check_sizes_include_an_odd_multiple_of_the_alignment():
    # a program specialised at "H is a multiple of 32" must meet an H that is not one (and the reverse)
    for align in (1, 2, 8, 16):
        r = Ranges(batch=(1, 4), height=(128, 1024), width=(128, 1024)).aligned(align)
        sizes = check_sizes(r, [(96, 160), (144, 112)])
        assert all(h % align == 0 and w % align == 0 for h, w in sizes)
        assert any(h % 32 for h, _ in sizes) and any(h % 32 == 0 for h, _ in sizes)
        assert all(128 <= h <= 1024 and 128 <= w <= 1024 for h, w in sizes)


def test_fit_to_profile_puts_images_onto_the_alignment():
    from segstyle.export.inputs import Sample
    from segstyle.export.validate import fit_to_profile

    s = Sample("a", torch.rand(3, 375, 500), torch.zeros(375, 500, dtype=torch.uint8))
    fitted, changed = fit_to_profile(s, (128, 128), (1024, 1024), 32)
    assert changed and tuple(fitted.image.shape) == (3, 384, 512) and tuple(fitted.mask.shape) == (384, 512)
    same, changed = fit_to_profile(Sample("b", torch.rand(3, 384, 512)), (128, 128), (1024, 1024), 32)
    assert not changed and same.image.shape == (3, 384, 512)
    big, _ = fit_to_profile(Sample("c", torch.rand(3, 600, 2000)), (128, 128), (1024, 1024), 32)
    assert tuple(big.image.shape) == (3, 320, 1024)


# ---- compiled packages (slow: 10-40 s of C++ compilation per network on 2 cores) ------------------------
# the fused region-style network (165 s) has its own file, test_aoti_fused.py, so xdist runs it beside this one

@pytest.mark.slow
@pytest.mark.parametrize("model", [m for m in list_models(deployable=True) if m != "fused_region_style"])
def test_package_matches_eager_in_a_process_without_the_model_code(model, built, settings, tmp_path):
    check_package_without_model_code(built, settings, model, tmp_path)


@pytest.mark.slow
def test_alignment_is_found_and_recorded(built):
    """FCN crops its x32 upsampling back to the input: torch.export proves that only for multiples of 32
    (a package exported at 8 returned a cropped map); the search skips to what export's own fix names."""
    loaded, _, package, rec = built("fcn_resnet18")
    assert rec["ranges"]["align"] == 32 and rec["alignments_tried"][0].startswith("align 1:")
    assert not any(t.startswith(("align 2:", "align 4:")) for t in rec["alignments_tried"])
    from segstyle.export.backend.aoti.runner import AotiBackend

    b = AotiBackend(package)
    with pytest.raises(SegstyleError, match="not a multiple of 32"):
        b(torch.rand(1, 3, 200, 136))  # would have come back 192x128 without the check
    _, _, _, rec_u = built("unet_mobilenetv2")
    assert rec_u["ranges"]["align"] == 1 and rec_u["alignments_tried"] == []


@pytest.mark.slow
def test_a_package_for_another_machine_is_refused_and_rebuilt(built, tmp_path, cli):
    from segstyle.export.backend.aoti.loader import ensure_package, read_sidecar, sidecar_path
    from segstyle.export.backend.aoti.runner import AotiBackend

    _, program, package, _ = built("dcgan_generator")
    here = read_sidecar(package)
    others = {"torch_version": "2.13.0+cu128", "cpu_model": "Another CPU",  # never this machine's own value:
              "cpu_isa": "avx512" if here["cpu_isa"] == "avx2" else "avx2"}  # a CI machine's ISA was avx2
    for field, value in others.items():
        copy = tmp_path / f"{field}.aoti.pt2"
        shutil.copy(package, copy)
        side = here | {field: value}
        sidecar_path(copy).write_text(json.dumps(side))
        with pytest.raises(SegstyleError, match=f"built for another machine \\({field}: package has"):
            AotiBackend(copy)
        if field == "torch_version":  # rebuilt from its program, then it runs (one compile is enough to show it)
            side2, reasons = ensure_package(None, copy)
            assert reasons and reasons[0].startswith("torch_version: package has '2.13.0+cu128'")
            assert side2["torch_version"] == torch.__version__ and read_sidecar(copy) == side2
            assert AotiBackend(copy)(torch.randn(2, 100)).shape == (2, 3, 64, 64)
            assert ensure_package(None, copy)[1] == []  # and is reused from then on
    # a program whose bytes changed (another checkpoint) rebuilds too, by its sha256 in the key
    changed = tmp_path / "other.ep.pt2"
    shutil.copy(program, changed)
    with open(changed, "ab") as f:
        f.write(b"\0")
    copy = tmp_path / "torch_version.aoti.pt2"
    side3 = read_sidecar(copy)
    from segstyle.export.backend.aoti.loader import expected_sidecar, stale_reasons

    want = expected_sidecar(device="cpu", program_sha256="0" * 64, ranges=Ranges.from_json(side3["ranges"]),
                            precision="fp32")
    assert [r.split(":")[0] for r in stale_reasons(side3, want)] == ["program_sha256"]


@pytest.mark.slow
def test_engine_commands_build_validate_and_bench_a_package(built, tmp_path, cli, capsys):
    """The CLI path the aoti_* stages run: build (then up to date), validate by the bounds, bench beside
    eager and ONNX Runtime with one thread count; a mismatched thread count or a wrong --out is refused."""
    _, program, _, _ = built("dcgan_generator")
    pkg = tmp_path / "gan_cpu_fp32.aoti.pt2"
    assert cli(["engine", "build", "--backend", "aoti", "--program", str(program), "--out", str(pkg),
                "--threads", "1"]) == 0
    assert "compiled in" in capsys.readouterr().err
    assert cli(["engine", "build", "--backend", "aoti", "--program", str(program), "--out", str(pkg),
                "--threads", "1"]) == 0
    assert "up to date" in capsys.readouterr().err
    assert cli(["engine", "build", "--backend", "aoti", "--program", str(program),
                "--out", str(tmp_path / "x.ep.pt2")]) == 1
    assert "different files" in capsys.readouterr().err
    rec = tmp_path / "aoti-cpu.json"
    assert cli(["engine", "validate", "--backend", "aoti-cpu", "--model", "dcgan_generator", "--package", str(pkg),
                "--samples", "4", "--latency-size", "0", "--out", str(rec)]) == 0
    row = json.loads(rec.read_text())["rows"][0]
    assert row["backend"] == "aoti-cpu" and row["ran"] and row["passed"] and row["figures"]["psnr_db_min"] > 60
    assert row["package"]["compile_seconds"] > 0
    out = tmp_path / "bench.json"
    assert cli(["engine", "bench", "--backends", "torch-fp32,aoti-cpu", "--model", "dcgan_generator",
                "--package", str(pkg), "--threads", "1", "--iters", "2", "--warmup", "1", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert {r["backend"] for r in doc["results"]} == {"torch-fp32", "aoti-cpu"} and doc["threads"] == 1
    assert cli(["engine", "bench", "--backends", "aoti-cpu", "--model", "dcgan_generator", "--package", str(pkg),
                "--threads", "2", "--iters", "1", "--out", str(out)]) == 1
    assert "runs 1 thread(s)" in capsys.readouterr().err
