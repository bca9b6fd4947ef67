"""Demo-profile segmentation benchmark: train + evaluate each model on the embedded sample data.

For every dataset and model it runs the real CLI (``segstyle train`` then ``segstyle evaluate``) in a
subprocess and records wall time, CPU time (children's user+sys), the validation mIoU / pixel accuracy
and the majority-class baseline from the evaluation's ``record.json`` (:func:`eval_row`); then it exports
the checkpoint to ONNX, times ONNX Runtime CPU at 512x512 (``segstyle engine bench``, batch 1) and
validates the FP16 graph against PyTorch on the sample validation split with the fixed fp16 bounds
(``segstyle engine validate``, :func:`deploy_row`). Results go to
``benchmarks/seg_demo.json`` and ``benchmarks/seg_demo.md`` (rendered from the JSON by
:func:`render_markdown`, so the two cannot disagree; tests/test_benchmark_docs.py re-renders it). The JSON names the commit whose code was
measured, and whether models/, pipelines/ or params.yaml had uncommitted changes. Rerun:

    .venv/bin/python benchmarks/seg_demo.py                 # all registered segmentation models
    .venv/bin/python benchmarks/seg_demo.py --models demo   # only params train.models (the pipeline's)
    .venv/bin/python benchmarks/seg_demo.py --md-only       # re-render the .md from the committed JSON

The sample data is generated into ``--data-root`` (default ``data``) when absent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import git_commit  # noqa: E402


def eval_row(eval_dir: Path) -> dict:
    """The figures of one ``segstyle evaluate --out EVAL_DIR`` run, from its ``record.json`` (the whole
    result: the metrics file beside it holds figures only, not the majority class's name)."""
    m = json.loads((Path(eval_dir) / "record.json").read_text())
    row = {"val_samples": m["samples"], "miou": m["miou"], "pixel_acc": m["pixel_acc"],
           "mean_class_acc": m["mean_class_acc"], "baseline_miou": m["baseline"]["miou"],
           "baseline_pixel_acc": m["baseline"]["pixel_acc"], "majority_class": m["baseline"]["majority_class"]}
    if "pet_iou" in m:
        row["pet_iou"], row["baseline_pet_iou"] = m["pet_iou"], m["baseline"]["pet_iou"]
    if "foreground_iou" in m:  # a two-label split: the foreground task's figures and their baselines
        for k in ("foreground_iou", "dice", "boundary_f"):
            row[k], row[f"baseline_{k}"] = m[k], m["baseline"][k]
    return row


MODES = {"pets": ("pets_mode", "trimap"), "voc": ("voc_mode", "classes")}


def parse_dataset(spec: str) -> tuple[str, str | None]:
    """``pets`` or ``pets:binary`` / ``voc:person`` (params ``data.pets_mode`` / ``data.voc_mode``):
    the dataset and its mode where it is not the default (None)."""
    dataset, _, mode = spec.partition(":")
    if dataset not in MODES:
        raise SystemExit(f"unknown dataset {dataset!r} in --datasets (voc, pets, pets:binary, voc:person)")
    return dataset, (mode if mode and mode != MODES[dataset][1] else None)


def dataset_label(row: dict) -> str:
    """The table's dataset cell: ``pets`` or ``pets (binary)``."""
    return row["dataset"] + (f" ({row['mode']})" if row.get("mode") else "")


LATENCY_SIZE = "512x512"


def deploy_row(out: Path) -> dict:
    """ORT CPU latency and the FP16 graph's validation figures from the files the deploy step wrote."""
    bench = json.loads((out / "bench.json").read_text())
    row = next(r for r in bench["results"] if r["backend"] == "ort-cpu")
    rec = json.loads((out / "validate_fp16.json").read_text())
    fp16 = next(r for r in rec["rows"] if r["ran"] and r["precision"] == "fp16")
    f = fp16["figures"]
    par = json.loads((out / "parity.json").read_text())
    parity = {"parity_max_abs_err": par["max_abs_err"]}
    if "forced_max_abs_err" in par:  # a routed network (SegNet): judged with the graph's own switches
        parity.update({"parity_forced_max_abs_err": par["forced_max_abs_err"],
                       "parity_flipped_windows": sum(sum(r["routing"]["flipped_windows"]) for r in par["rows"]),
                       "parity_max_flip_margin": max(r["routing"]["max_flip_margin"] for r in par["rows"])})
    alpha = {"fp16_alpha_psnr_db_min": f["alpha_psnr_db_min"]} if "alpha_psnr_db_min" in f else {}
    return {**parity, "ort_cpu_p50_ms_512": round(row["p50_ms"], 1), "fp16_agreement_pct": f["agreement_pct"],
            "fp16_delta_miou_pts": f.get("delta_miou_pts"), **alpha,
            # the share of flips where PyTorch's own top-2 margin was within the FP16 tolerance (a near-tie)
            "fp16_explained_pct": f.get("explained_pct"), "fp16_max_abs_logit_err": f.get("max_abs_logit_err"),
            "fp16_passed": bool(fp16["passed"]),
            "fp16_violations": fp16["violations"]}


def deploy(segstyle: str, ck: str, dep: Path, dataset: str, common: list[str], env: dict) -> None:
    """ONNX export (with its parity check), FP16 graph, ORT CPU latency, FP16 validation."""
    run([segstyle, "export", "onnx", "--checkpoint", ck, "--out", str(dep / "model.onnx"), "--report",
         str(dep / "parity.json"), *common], env)
    run([segstyle, "export", "fp16", str(dep / "model.onnx"), "--out", str(dep / "model_fp16.onnx"), *common], env)
    run([segstyle, "engine", "bench", "--checkpoint", ck, "--onnx", str(dep / "model.onnx"), "--backends",
         "ort-cpu", "--sizes", LATENCY_SIZE, "--warmup", "2", "--iters", "10", "--out",
         str(dep / "bench.json"), *common], env)
    run([segstyle, "engine", "validate", "--checkpoint", ck, "--backend", "ort-cpu", "--onnx",
         str(dep / "model_fp16.onnx"), "--dataset", dataset, "--latency-size", "0",
         "--out", str(dep / "validate_fp16.json"), *common], env, ok_codes=(0, 1))


def run(cmd: list[str], env: dict, ok_codes=(0,)) -> tuple[float, float]:
    """Run ``cmd``; return (wall s, CPU s of the child). Raises on failure with its stderr tail
    (``ok_codes``: validate exits 1 on a broken bound, which is a figure here, not a failure)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode not in ok_codes:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def render_markdown(doc: dict) -> str:
    """The .md table from the JSON document (the only writer of seg_demo.md)."""
    meta, results = doc["meta"], doc["results"]
    lines = [
        "# Segmentation demo benchmark (embedded sample data, demo profile, CPU, from scratch)",
        "",
        f"Command: `{meta['command']}` at commit `{meta['commit']}` (JSON: `benchmarks/seg_demo.json`), "
        f"{meta['date']}; {meta['machine']}. Wall time depends on how busy the shared machine was; "
        "CPU time is the training process's user+sys seconds."
        + (f" Uncommitted files in the measured tree: {', '.join(meta['uncommitted'])}." if meta.get("uncommitted")
           else "") + (f" Note: {meta['note']}." if meta.get("note") else ""),
        "",
        "| dataset | model | commit | epochs | train wall s | train CPU s | val mIoU | majority mIoU | val pixel acc | "
        "majority pixel acc | pet / foreground IoU (majority) | boundary F (majority) | ORT parity max abs | "
        "ORT CPU p50 ms 512x512 | FP16 agreement % (delta mIoU pt) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        pet = f"{r['pet_iou']:.3f} ({r['baseline_pet_iou']:.3f})" if "pet_iou" in r else \
            (f"{r['foreground_iou']:.3f} ({r['baseline_foreground_iou']:.3f})" if "foreground_iou" in r else "-")
        bf = f"{r['boundary_f']:.3f} ({r['baseline_boundary_f']:.3f})" if "boundary_f" in r else "-"
        lat = f"{r['ort_cpu_p50_ms_512']}" if "ort_cpu_p50_ms_512" in r else \
            (f"export failed: {r['deploy_error']}" if "deploy_error" in r else "not measured")
        extra = f", alpha {r['fp16_alpha_psnr_db_min']:.1f} dB" if r.get("fp16_alpha_psnr_db_min") is not None else ""
        if not r.get("fp16_passed", True) and r.get("fp16_explained_pct") is not None:
            extra += f", {r['fp16_explained_pct']:.1f} % of flips at near-ties"
        fp16 = (f"{r['fp16_agreement_pct']:.2f} ({r['fp16_delta_miou_pts']:+.2f}){extra} "
                f"{'pass' if r['fp16_passed'] else 'FAIL'}") if "fp16_agreement_pct" in r else "not measured"
        par = f"{r['parity_max_abs_err']:.1e}" if "parity_max_abs_err" in r else "not measured"
        if "parity_forced_max_abs_err" in r:
            par += (f" ({r['parity_forced_max_abs_err']:.1e} with its own switches; {r['parity_flipped_windows']} "
                    f"flipped window(s), margin <= {r['parity_max_flip_margin']:.1e})")
        lines.append(f"| {dataset_label(r)} | {r['model']} | {r.get('commit', meta['commit'])} | {r['epochs']} | {r['train_wall_s']} | {r['train_cpu_s']} | "
                     f"{r['miou']:.3f} | {r['baseline_miou']:.3f} | {r['pixel_acc']:.3f} | "
                     f"{r['baseline_pixel_acc']:.3f} | {pet} | {bf} | {par} | {lat} | {fp16} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--models", default="all", help="'all', 'demo' or a comma-separated list")
    ap.add_argument("--datasets", default="voc,pets",
                    help="comma-separated: voc, pets, and the foreground task's pets:binary, voc:person")
    ap.add_argument("--out", default="artifacts/bench/seg")
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the runs")
    ap.add_argument("--append", action="store_true",
                    help="keep rows of benchmarks/seg_demo.json for (dataset, model) pairs not rerun")
    ap.add_argument("--note", default=None, help="a sentence for the page (e.g. what was not measured)")
    ap.add_argument("--md-only", action="store_true", help="re-render seg_demo.md from seg_demo.json, no runs")
    args = ap.parse_args()
    from segstyle.core.io import write_json, write_text

    if args.md_only:
        doc = json.loads((REPO / "benchmarks/seg_demo.json").read_text())
        write_text(REPO / "benchmarks/seg_demo.md", render_markdown(doc))
        return
    commit, uncommitted = git_commit()
    omp = os.environ.get("OMP_NUM_THREADS")
    command = (f"OMP_NUM_THREADS={omp} " if omp else "") + "python benchmarks/seg_demo.py" + \
        "".join(f" {a}" for a in sys.argv[1:])

    from segstyle.models import list_models
    from segstyle.pipelines.config import load_params

    params = load_params(REPO / args.params)
    root = Path(args.data_root)
    if root != Path(params.data.root):  # engine validate reads the split from params data.root
        raise SystemExit(f"--data-root {root} differs from params data.root {params.data.root}; set it there")
    if not (REPO / root / "voc").is_dir():
        from segstyle.pipelines.data.sample import generate

        generate(REPO / root)
    segstyle = str(Path(sys.executable).with_name("segstyle"))
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    results = []
    previous = []
    if args.append and (REPO / "benchmarks/seg_demo.json").is_file():
        previous = json.loads((REPO / "benchmarks/seg_demo.json").read_text())["results"]
    for spec in args.datasets.split(","):
        dataset, mode = parse_dataset(spec)
        if args.models == "all":
            names = list_models(task="segmentation")
        elif args.models == "demo":
            names = [params.train.models[dataset]]
        else:
            names = args.models.split(",")
        prm = args.params
        if mode:  # the same params with the dataset's mode switched (train, evaluate and validate read it)
            import yaml

            raw = yaml.safe_load((REPO / args.params).read_text())
            raw["data"][MODES[dataset][0]] = mode
            prm = str(Path(args.out) / f"params_{dataset}_{mode}.yaml")
            write_text(REPO / prm, yaml.safe_dump(raw, sort_keys=False))
        for name in names:
            out = Path(args.out) / (f"{dataset}_{mode}" if mode else dataset) / name
            print(f"== {spec} / {name}", flush=True)
            tw, tc = run([segstyle, "train", "--params", prm, "--dataset", dataset, "--model", name,
                          "--data-root", str(root), "--out", str(out / "train"), "--no-pretrained"], env)
            ew, ec = run([segstyle, "evaluate", "--params", prm, "--dataset", dataset,
                          "--data-root", str(root), "--checkpoint", str(out / "train" / "checkpoint.pt"),
                          "--out", str(out / "eval")], env)
            ck, dep = str(out / "train" / "checkpoint.pt"), REPO / out / "deploy"
            row = {"dataset": dataset, **({"mode": mode} if mode else {}), "model": name, "commit": commit,
                   "epochs": params.train.epochs, "train_wall_s": round(tw, 1), "train_cpu_s": round(tc, 1),
                   "eval_wall_s": round(ew, 1), **eval_row(REPO / out / "eval")}
            try:
                deploy(segstyle, ck, dep, dataset, ["--params", prm], env)
                row.update(deploy_row(dep))
            except SystemExit as e:  # a failed export is a finding of the row, not the end of the benchmark
                row["deploy_error"] = str(e).strip().splitlines()[-1]
            print(json.dumps(row), flush=True)
            results.append(row)

    rerun = {(dataset_label(r), r["model"]) for r in results}
    results = sorted([r for r in previous if (dataset_label(r), r["model"]) not in rerun] + results,
                     key=lambda r: (r["dataset"] != "voc", bool(r.get("mode")), r["model"]))
    meta = {"command": command, "commit": commit, "uncommitted": uncommitted, "profile": params.profile,
            "augment": params.augment.model_dump(), "train": params.train.model_dump(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.1f} at end",
            "omp_num_threads": env.get("OMP_NUM_THREADS", "default"), "data_root": str(root),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if args.note:
        meta["note"] = args.note
    doc = {"meta": meta, "results": results}
    write_json(REPO / "benchmarks/seg_demo.json", doc)
    md = render_markdown(doc)
    write_text(REPO / "benchmarks/seg_demo.md", md)
    print(md)


if __name__ == "__main__":
    main()
