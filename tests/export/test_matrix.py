"""`segstyle engine matrix`: one table from validation records, GPU records made elsewhere joining CPU ones."""

from __future__ import annotations

import json
import os

import pytest


def _record(network, rows, task="segmentation", images=32):
    return {"network": network, "model": "m", "task": task, "inputs": {"images": images, "source": "voc 'val'"},
            "latency": {"size": [256, 256]}, "rows": rows, "passed": all(r.get("passed", True) for r in rows)}


def _seg_row(backend, precision, agree, delta, expl, err, p50, violations=()):
    return {"backend": backend, "precision": precision, "ran": True, "passed": not violations,
            "violations": list(violations),
            "figures": {"agreement_pct": agree, "delta_miou_pts": delta, "explained_pct": expl,
                        "max_abs_logit_err": err, "p50_ms": p50}}


def _not_run(backend, reason):
    return {"backend": backend, "precision": "fp16", "ran": False, "reason": reason}


@pytest.fixture
def records(tmp_path):
    cpu = tmp_path / "cpu"
    (cpu / "voc").mkdir(parents=True)
    (cpu / "style").mkdir()
    (cpu / "voc" / "record.json").write_text(json.dumps(_record("voc", [
        _seg_row("ort-cpu", "fp32", 100.0, 0.0, 100.0, 8.6e-6, 455.6),
        _seg_row("ort-cpu", "fp16", 99.994, -0.006, 100.0, 0.0153, 713.7),
        _not_run("tensorrt", "no CUDA GPU visible")])))
    (cpu / "voc" / "metrics.json").write_text(json.dumps({"images": 32}))  # not a record: ignored
    (cpu / "style" / "record.json").write_text(json.dumps(_record("style", [
        {"backend": "ort-cpu", "precision": "fp16", "ran": True, "passed": False,
         "violations": ["PSNR 30.00 dB < 35 dB"],
         "figures": {"psnr_db_min": 30.0, "ssim_min": 0.99, "max_abs_err": 0.1, "p50_ms": 1500.0}}], task="style")))
    gpu = tmp_path / "gpu"
    gpu.mkdir()
    (gpu / "tensorrt.json").write_text(json.dumps(_record("voc", [
        _seg_row("tensorrt", "fp16", 99.2, -0.41, 87.5, 0.09, 1.8,
                 violations=["argmax agreement 99.200% < 99.5%", "|delta mIoU| 0.410 pt > 0.3 pt"])])))
    old = (cpu / "voc" / "record.json").stat().st_mtime - 100
    os.utime(cpu / "voc" / "record.json", (old, old))
    return cpu, gpu


def test_matrix_merges_records_and_a_ran_row_replaces_not_run(records, tmp_path):
    from segstyle.export.matrix import build_matrix

    cpu, gpu = records
    out = tmp_path / "m" / "matrix.md"
    doc = build_matrix([cpu, gpu], out)
    keys = [(r["network"], r["backend"], r["precision"]) for r in doc["rows"]]
    assert keys == [("style", "ort-cpu", "fp16"), ("voc", "ort-cpu", "fp32"), ("voc", "ort-cpu", "fp16"),
                    ("voc", "tensorrt", "fp16")]
    trt = doc["rows"][-1]
    assert trt["ran"] and not trt["passed"] and trt["record"].endswith("tensorrt.json")
    md = out.read_text()
    assert "| voc | tensorrt | fp16 | 99.200 | -0.410 | 87.5 | 0.09 |  | 1.8 @256x256 | FAIL: argmax agreement 99.200% < 99.5%; " in md
    assert "| voc | ort-cpu | fp16 | 99.994 | -0.006 | 100.0 | 0.0153 |  | 713.7 @256x256 | PASS |" in md
    assert "| style | ort-cpu | fp16 | - | - | - | 30.00 dB, 0.9900 |  | 1500.0 @256x256 | FAIL: PSNR 30.00 dB < 35 dB |" in md
    assert json.loads(out.with_suffix(".json").read_text())["rows"][1]["figures"]["max_abs_logit_err"] == 8.6e-6


def test_not_run_rows_say_why(records, tmp_path, cli, capsys):
    cpu, _ = records
    out = tmp_path / "matrix.md"
    assert cli(["engine", "matrix", "--records", str(cpu), "--out", str(out)]) == 0
    assert "| voc | tensorrt | fp16 |  |  |  |  |  |  | not run: no CUDA GPU visible |" in out.read_text()
    assert "1 not run" in capsys.readouterr().err


def test_no_records_is_one_line(tmp_path, cli, capsys):
    (tmp_path / "x.json").write_text("{}")
    assert cli(["engine", "matrix", "--records", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no validation records" in err[0]
    assert cli(["engine", "matrix", "--records", str(tmp_path / "absent")]) == 1


def test_int8_rows_both_graphs_sizes_per_class_and_not_deployable(tmp_path):
    """The two INT8 graphs of one network are two rows (the trt one labelled an accuracy stand-in), sizes
    show, per-class IoU deltas follow the table with class names, and a listed not-deployable network's
    failing row says so instead of FAIL."""
    from segstyle.export.matrix import build_matrix

    cpu = _seg_row("ort-cpu", "int8", 99.66, -0.54, 100.0, 0.73, 31.1)
    cpu["graph"], cpu["figures"]["size_mb"], cpu["figures"]["delta_iou_pts"] = "cpu", 10.7, [-0.1, None, 1.5]
    trt = _seg_row("ort-cpu", "int8", 99.79, -0.06, 100.0, 0.66, 219.2)
    trt["graph"], trt["figures"]["size_mb"], trt["figures"]["delta_iou_pts"] = "trt", 7.0, [0.0, 0.2, -0.3]
    rec = _record("voc", [_seg_row("ort-cpu", "fp32", 100.0, 0.0, 100.0, 1e-5, 36.8), cpu, trt])
    rec["classes"] = ["background", "aeroplane", "bicycle"]
    (tmp_path / "voc.json").write_text(json.dumps(rec))
    style = {"backend": "ort-cpu", "precision": "int8", "graph": "cpu", "ran": True, "passed": False,
             "not_deployable": "PSNR far too low", "violations": ["PSNR 12.19 dB < 30 dB"],
             "figures": {"psnr_db_min": 12.19, "ssim_min": 0.44, "size_mb": 0.5, "p50_ms": 31.7}}
    (tmp_path / "style.json").write_text(json.dumps(_record("style", [style], task="style")))
    out = tmp_path / "m.md"
    doc = build_matrix([tmp_path], out)
    md = out.read_text()
    assert len([r for r in doc["rows"] if r["precision"] == "int8"]) == 3
    assert "| voc | ort-cpu | int8 | 99.660 | -0.540 | 100.0 | 0.73 | 10.7 | 31.1 @256x256 | PASS |" in md
    assert "| voc | ort-cpu (trt graph: accuracy stand-in) | int8 | 99.790 |" in md
    assert "| style | ort-cpu | int8 |" in md and "not deployable: PSNR 12.19 dB < 30 dB |" in md
    assert "- voc ort-cpu: background -0.10, aeroplane n/a, bicycle +1.50" in md


def test_a_one_logit_row_shows_its_alpha_psnr():
    from segstyle.export.matrix import cells

    row = {"network": "pets_binary", "backend": "ort-cpu", "precision": "fp16", "task": "segmentation",
           "ran": True, "passed": True, "violations": [], "latency_size": None,
           "figures": {"agreement_pct": 99.99, "delta_miou_pts": 0.0, "explained_pct": 100.0,
                       "max_abs_logit_err": 0.00098, "alpha_psnr_db_min": 80.2386, "alpha_identical": False}}
    assert cells(row)[6] == "0.00098, alpha 80.24 dB"
    row["figures"].update(alpha_psnr_db_min=None, alpha_identical=True)
    assert cells(row)[6] == "0.00098, alpha identical"
    del row["figures"]["alpha_psnr_db_min"], row["figures"]["alpha_identical"]
    assert cells(row)[6] == "0.00098"  # several logits: no matte
