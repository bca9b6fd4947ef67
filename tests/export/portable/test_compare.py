"""export/portable/compare.py against Polygraphy's own comparator, hand-computed cases, and torchmetrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segstyle.export.portable.compare import (
    PARITY,
    AgreementCounts,
    Bounds,
    Tolerance,
    compare_arrays,
    merge,
    psnr,
    violation_line,
)


def _polygraphy_verdict(a, b, atol, rtol, stat):
    from polygraphy.comparator import CompareFunc, IterationResult
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.CRITICAL
    func = CompareFunc.simple(atol=atol, rtol=rtol, check_error_stat=stat)
    res = func(IterationResult({"y": a}, runner_name="a"), IterationResult({"y": b}, runner_name="b"))
    return bool(res["y"]), res["y"]


@pytest.mark.parametrize("stat", ["max", "mean", "median", "elemwise"])
def test_verdicts_and_figures_match_polygraphy(stat):
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2, 5, 7, 9)).astype(np.float32)
    got = (ref + rng.normal(scale=1e-3, size=ref.shape)).astype(np.float32)
    got.flat[17] += 0.05  # one outlier: max and elemwise fail where mean/median pass
    for atol, rtol in [(1e-2, 0.0), (1e-1, 0.0), (1e-4, 1e-1), (0.0, 1e3), (2e-3, 0.0)]:
        ours = compare_arrays(got, ref, Tolerance(atol, rtol, stat))
        theirs, res = _polygraphy_verdict(got, ref, atol, rtol, stat)
        assert ours.passed == theirs, (stat, atol, rtol)
    r = compare_arrays(got, ref, Tolerance(1.0, 0.0, stat))
    _, res = _polygraphy_verdict(got, ref, 1.0, 0.0, stat)
    assert r.max_abs == pytest.approx(res.max_absdiff, rel=1e-6)
    assert r.mean_abs == pytest.approx(res.mean_absdiff, rel=1e-6)
    assert r.median_abs == pytest.approx(res.median_absdiff, rel=1e-6)
    assert r.max_rel == pytest.approx(res.max_reldiff, rel=1e-6)


@pytest.mark.parametrize("stat", ["max", "mean", "median"])
def test_required_tolerance_is_the_smallest_that_passes(stat):
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(3, 40))
    got = ref + rng.normal(scale=0.01, size=ref.shape)
    need = compare_arrays(got, ref, Tolerance(1.0, 0.0, stat)).required_atol
    assert compare_arrays(got, ref, Tolerance(need, 0.0, stat)).passed
    assert not compare_arrays(got, ref, Tolerance(need * 0.999, 0.0, stat)).passed
    need_rel = compare_arrays(got, ref, Tolerance(0.0, 1.0, stat)).required_rtol
    assert compare_arrays(got, ref, Tolerance(0.0, need_rel, stat)).passed
    assert not compare_arrays(got, ref, Tolerance(0.0, need_rel * 0.999, stat)).passed


def test_non_finite_output_fails_any_tolerance_and_argmax_agreement():
    ref = np.zeros((1, 3, 2, 2))
    ref[0, 1] = 1.0  # class 1 wins everywhere
    got = ref.copy()
    got[0, 2, 0, 0] = 5.0  # one pixel flips to class 2
    r = compare_arrays(got, ref, Tolerance(10.0), argmax_axis=1)
    assert r.passed and r.argmax_agreement_pct == pytest.approx(75.0)
    got[0, 0, 1, 1] = np.nan
    r = compare_arrays(got, ref, Tolerance(1e9, 1e9), argmax_axis=1)
    assert not r.passed and not r.finite and math.isinf(r.max_abs)
    with pytest.raises(ValueError):
        compare_arrays(np.zeros(3), np.zeros(4), PARITY)


def test_merge_takes_worst_maxima_and_weighted_means():
    a = compare_arrays(np.array([0.0, 0.1]), np.zeros(2), Tolerance(0.2))
    b = compare_arrays(np.array([0.0, 0.0, 0.0, 0.4]), np.zeros(4), Tolerance(0.2))
    m = merge([a, b])
    assert not m.passed and m.max_abs == pytest.approx(0.4)
    assert m.mean_abs == pytest.approx((0.1 + 0.4) / 6)
    with pytest.raises(ValueError):
        merge([a, compare_arrays(np.zeros(2), np.zeros(2), Tolerance(0.3))])


def test_explained_share_hand_computed():
    """Four pixels, class 0 leading with reference margins 0.1, 1.0, 3.0, 3.0. Under a fixed logit
    tolerance of 0.3 a flip is explained where the margin is below 0.6, whatever the backend's error."""
    ref = np.zeros((2, 1, 4))
    ref[0, 0] = [0.1, 1.0, 3.0, 3.0]
    got = ref.copy()
    got[0, 0, 2] = 2.7        # agreeing pixel, error 0.3
    got[1, 0, 0] = 0.3        # pixel 0 flips; margin 0.1 < 0.6: explained
    got[1, 0, 1] = 1.2        # pixel 1 flips; margin 1.0 >= 0.6: unexplained
    c = AgreementCounts(logit_tolerance=0.3)
    row = c.add(got, ref)
    assert (c.pixels, c.agree, c.disagreeing, c.explained) == (4, 2, 2, 1)
    assert c.explained_pct == pytest.approx(50.0) and c.agreement_pct == pytest.approx(50.0)
    assert row["max_abs_logit_err"] == pytest.approx(1.2) and row["agreeing_max_abs_logit_err"] == pytest.approx(0.3)
    # a second image with the same flips and a larger error where it agrees (0.6): the tolerance is fixed,
    # so the same flip is explained the same way (the old rule, 2 x the image's own noise, explained both)
    got2 = got.copy()
    got2[0, 0, 3] = 2.4
    c.add(got2[None], ref[None])  # (1, C, H, W) accepted too
    assert (c.images, c.disagreeing, c.explained) == (2, 4, 2) and c.explained_pct == pytest.approx(50.0)
    # a looser tolerance explains the margin-1.0 flip too
    c2 = AgreementCounts(logit_tolerance=0.6)
    c2.add(got, ref)
    assert c2.explained == 2
    # no disagreement at all: 100 % explained (nothing to explain), agreement 100 %
    c3 = AgreementCounts(logit_tolerance=0.3)
    c3.add(ref, ref)
    assert c3.explained_pct == 100.0 and c3.agreement_pct == 100.0 and c3.max_abs_logit_err == 0.0


def test_explained_share_does_not_scale_with_the_error():
    """A broken backend, wrong by a lot everywhere, must not explain its flips by its own large error
    (the old definition gave a corrupted FP16 graph 100 % explained): under a fixed tolerance, flips
    at large margins are unexplained however large the error where it agrees."""
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 3, (4, 32, 32))
    broken = ref + rng.normal(0, 4, ref.shape)   # error ~ the logits themselves
    c = AgreementCounts(logit_tolerance=0.05)
    c.add(broken, ref)
    assert c.agreement_pct < 80 and c.explained_pct < 10
    # the old rule (twice the image's own error where it agrees) called every one of these flips explained
    row = c.per_image[0]
    top2 = np.sort(ref, axis=0)[-2:]
    flips = broken.argmax(0) != ref.argmax(0)
    assert ((top2[1] - top2[0])[flips] < 2 * row["agreeing_max_abs_logit_err"]).mean() == 1.0
    # FP16-sized noise: flips only where two classes nearly tie (planted: 64 pixels at margins < 0.02)
    tied = ref.copy()
    lead = tied.argmax(0)
    ys, xs = np.unravel_index(rng.choice(32 * 32, 64, replace=False), (32, 32))
    for y, x in zip(ys, xs):
        other = (lead[y, x] + 1) % 4
        tied[other, y, x] = tied[lead[y, x], y, x] - rng.uniform(0.001, 0.02)
    good = tied + rng.normal(0, 0.01, ref.shape)
    g = AgreementCounts(logit_tolerance=0.05)
    g.add(good, tied)
    assert g.disagreeing > 0 and g.explained_pct == 100.0
    # a single flipped pixel with no error elsewhere is unexplained too
    ref2 = np.zeros((3, 2, 2))
    ref2[0] = 5.0
    got = ref2.copy()
    got[2, 1, 1] = 9.0
    c1 = AgreementCounts(logit_tolerance=0.05)
    c1.add(got, ref2)
    assert c1.disagreeing == 1 and c1.explained == 0 and c1.explained_pct == 0.0


def test_bounds_violations_name_the_figure():
    b = Bounds(min_agreement=99.5, max_delta_miou=0.3, min_psnr=35.0)
    assert b.violations("segmentation", {"agreement_pct": 99.6, "delta_miou_pts": -0.2}) == []
    v = b.violations("segmentation", {"agreement_pct": 99.4, "delta_miou_pts": 0.31})
    assert len(v) == 2 and "argmax agreement 99.400% < 99.5%" in v[0] and "delta mIoU" in v[1]
    assert b.violations("segmentation", {"agreement_pct": float("nan")})  # unmeasured is not passed
    assert b.violations("segmentation", {"agreement_pct": 100.0, "delta_miou_pts": None}) == []  # no labels
    assert b.violations("style", {"psnr_db_min": 35.0}) == []
    assert "PSNR 34.99 dB < 35 dB" in b.violations("style", {"psnr_db_min": 34.99})[0]
    assert b.violations("style", {"psnr_db_min": None})
    assert violation_line("voc", "ort-cpu fp16", v).startswith("voc ort-cpu fp16: argmax agreement")


def test_a_one_logit_output_reports_its_alpha_psnr_and_the_bound_holds_it():
    """One channel: each image's PSNR of sigmoid(actual) against sigmoid(reference), the worst kept;
    the mask can agree everywhere while the matte is off (logits shifted, signs kept), and that fails."""
    g = np.random.default_rng(0)
    ref = g.normal(0, 3, (1, 1, 16, 16))
    ref[np.abs(ref) < 0.5] = 1.0  # no near-ties: the shift below flips no label
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    c = AgreementCounts(logit_tolerance=0.05)
    c.add(ref + 0.001, ref)
    shifted = ref * 1.4  # same signs, softer/harder matte
    row = c.add(shifted, ref)
    assert c.agreement_pct == 100.0
    want = 10 * math.log10(1 / np.mean((sig(shifted) - sig(ref)) ** 2))
    assert row["alpha_psnr_db"] == pytest.approx(want, rel=1e-9) and c.alpha_psnr_db_min == pytest.approx(want)
    figs = c.alpha_figures()
    assert figs == {"alpha_psnr_db_min": pytest.approx(want), "alpha_identical": False} and want < 35
    b = Bounds(min_psnr=35.0)
    seg = {"agreement_pct": c.agreement_pct, **figs}
    assert any("alpha PSNR" in v for v in b.violations("segmentation", seg))
    assert b.violations("segmentation", {**seg, "alpha_psnr_db_min": 40.0}) == []
    assert b.violations("segmentation", {**seg, "alpha_psnr_db_min": None})  # a NaN matte is no pass
    same = AgreementCounts(logit_tolerance=0.05)
    same.add(ref, ref)
    assert same.alpha_figures() == {"alpha_psnr_db_min": None, "alpha_identical": True}
    assert b.violations("segmentation", {"agreement_pct": 100.0, **same.alpha_figures()}) == []
    many = AgreementCounts(logit_tolerance=0.05)
    many.add(np.concatenate([ref, -ref], axis=1), np.concatenate([ref, -ref], axis=1))
    assert many.alpha_figures() == {} and many.alpha_psnr_db_min is None  # several logits: no matte


def test_numpy_psnr_matches_torchmetrics():
    torch = pytest.importorskip("torch")
    from torchmetrics.functional.image import peak_signal_noise_ratio

    g = torch.Generator().manual_seed(0)
    a = torch.rand(1, 3, 20, 30, generator=g, dtype=torch.float64)
    b = (a + 0.01 * torch.randn(a.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    assert psnr(b.numpy(), a.numpy()) == pytest.approx(float(peak_signal_noise_ratio(b, a, data_range=1.0)), abs=1e-5)
    assert psnr(a.numpy(), a.numpy()) == math.inf
    bad = b.clone()
    bad[0, 0, 0, 0] = float("nan")
    assert psnr(bad.numpy(), a.numpy()) == -math.inf


def test_the_bundle_copy_of_label_map_is_the_model_layers_own():
    """compare.py ships alone (numpy only), so it carries a copy of the one label rule; it must stay that rule."""
    import inspect

    import torch

    from segstyle.export.portable import compare
    from segstyle.models import classes

    assert inspect.getsource(compare.label_map) == inspect.getsource(classes.label_map)
    one = np.array([[[[-1.0, 0.0, 2.0]]]])  # (1, 1, 1, 3): one logit per pixel
    assert compare.label_map(one).tolist() == [[[0, 0, 1]]]  # an argmax would give [[[0, 0, 0]]]
    assert classes.label_map(torch.from_numpy(one)).tolist() == [[[0, 0, 1]]]
    many = np.array([[[[0.0]], [[3.0]], [[1.0]]]])  # (1, 3, 1, 1)
    assert compare.label_map(many).tolist() == [[[1]]] == classes.label_map(torch.from_numpy(many)).tolist()


def test_the_bundle_check_holds_a_one_logit_graph_to_its_alpha_psnr(tmp_path):
    """check.py as a bundle ships it (beside segstyle_compare.py): a one-logit graph whose mask agrees
    everywhere but whose matte is off fails on its alpha PSNR; the same outputs as the reference pass."""
    import importlib.util
    import shutil
    import sys
    from pathlib import Path

    here = Path(__file__).parents[3] / "export" / "portable"
    shutil.copy(here / "check.py", tmp_path / "check.py")
    shutil.copy(here / "compare.py", tmp_path / "segstyle_compare.py")
    spec = importlib.util.spec_from_file_location("bundle_check_alpha", tmp_path / "check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.pop("segstyle_compare", None)
    try:
        spec.loader.exec_module(mod)
        b = {"min_agreement": 99.5, "max_delta_miou": 0.3, "min_psnr": 35.0, "logit_tolerance": 0.05}
        manifest = {"task": "segmentation", "bounds": {"fp32": b, "fp16": b, "int8": b}}
        ref = np.random.default_rng(1).normal(0, 3, (1, 1, 24, 24)).astype(np.float32)
        golden = [(None, ref)]
        bad, figs = mod.check([ref * 1.4], golden, manifest, "onnxruntime model_fp16.onnx")
        assert figs["agreement_pct"] == 100.0 and figs["alpha_psnr_db_min"] < 35
        assert len(bad) == 1 and "alpha PSNR" in bad[0]
        good, figs = mod.check([ref + 1e-4], golden, manifest, "onnxruntime model_fp16.onnx")
        assert good == [] and figs["alpha_psnr_db_min"] > 60
    finally:
        sys.modules.pop("segstyle_compare", None)
