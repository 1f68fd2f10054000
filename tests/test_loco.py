"""The leave-one-condition-out benchmark (--quick), the anchored model's nested CV (never the
held-out fold), its determinism, bound and export, and the loud failure of an absurd fit."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from benchmarks import loco
from constitutive import anchored
from constitutive.baselines import without_zero_strain
from constitutive.synthetic import CAMPAIGNS, generate_campaign
from constitutive.training import TrainConfig, TrainingFailedError, check_trained, fit

SUMMARY_KEYS = {"mean_mare_pct", "median_mare_pct", "worst_mare_pct", "wins_vs_best_classical",
                "worst_ratio_to_best_classical", "n_folds"}


def quick_args(out, **kw):
    d = dict(quick=True, datasets="synthetic_peak_4x3,synthetic_hardening_3x4", models=None, jobs=1, seed=0,
             out=str(out), no_readme=True)
    d.update(kw)
    return argparse.Namespace(**d)


def test_loco_quick_writes_the_json_shape_and_plot(tmp_path):
    out = tmp_path / "loco.json"
    assert loco.run(quick_args(out)) == 0
    res = json.loads(out.read_text())
    assert res["default_model"] == "default" and res["quick"] is True
    assert set(res["datasets"]) == {"synthetic_peak_4x3", "synthetic_hardening_3x4"}
    for name, d in res["datasets"].items():
        assert d["synthetic"] is True
        assert len(d["folds"]) == loco.QUICK_FOLDS
        for f in d["folds"]:
            assert isinstance(f["edge"], bool) and len(f["heldout"]) == 1 and len(f["heldout"][0]) == 2
            assert set(loco.MODELS) | {"best_classical"} <= set(f["mare_pct"])
            cl = [f["mare_pct"][m] for m in loco.CLASSICAL]
            assert f["mare_pct"]["best_classical"] == min(cl)
        s = d["summary"]
        for m in list(loco.MODELS) + ["best_classical"]:
            assert SUMMARY_KEYS <= set(s[m]) and s[m]["n_folds"] == len(d["folds"])
        # the best classical law's mean is the mean of the per-fold minima
        assert np.isclose(s["best_classical"]["mean_mare_pct"],
                          np.mean([f["mare_pct"]["best_classical"] for f in d["folds"]]))
        wins = sum(f["mare_pct"]["default"] < f["mare_pct"]["best_classical"] for f in d["folds"])
        assert s["default"]["wins_vs_best_classical"] == wins
        ratio = max(f["mare_pct"]["default"] / f["mare_pct"]["best_classical"] for f in d["folds"])
        assert np.isclose(s["default"]["worst_ratio_to_best_classical"], ratio)
        n_edge = sum(f["edge"] for f in d["folds"])
        assert d["summary_edge"]["arrhenius"]["n_folds"] == n_edge
        assert d["summary_interior"]["arrhenius"]["n_folds"] == len(d["folds"]) - n_edge
    assert res["synthetic_family"]["summary"]["default"]["n_folds"] == 2 * loco.QUICK_FOLDS
    assert (tmp_path / "loco.png").stat().st_size > 0
    assert "| data set |" in loco.markdown(res)
    # --resummarise: no training, the default column is the model TrainConfig() now equals
    alias = loco.default_alias(True)
    again = loco.resummarise(out)
    assert again["default_is"] == alias == res["default_is"]
    for name, d in again["datasets"].items():
        ref = alias or "default"        # the default trained as itself: its folds stay as they were
        assert all(f["mare_pct"]["default"] == f["mare_pct"][ref] for f in d["folds"])
        assert [f["mare_pct"]["default"] for f in d["folds"]] == [f["mare_pct"]["default"] for f in
                                                                   res["datasets"][name]["folds"]]
        assert d["summary"]["default"] == d["summary"][ref] | {}


def test_edge_flags_mark_extreme_conditions():
    c = generate_campaign("peak_4x3")
    flags = loco.edge_flags(c)
    conds = [c.conditions()[g[0]] for g in c.condition_groups()]
    for f, (t, r) in zip(flags, conds):
        assert f == (t in (900, 1200) or r in (0.01, 1.0))
    assert 0 < sum(flags) < len(flags)        # 4 x 3 grid: the two middle-T, middle-rate ones are interior


def test_nested_cv_never_touches_the_heldout_fold(monkeypatch):
    """Every set of curves the anchored model's fits see (base laws and corrections, inner folds
    and final) is recorded; none may hold a point of the held-out condition."""
    seen = []
    monkeypatch.setattr(anchored, "spy", lambda curves: seen.append(curves))
    name = "synthetic_peak_4x4_corner"
    full = without_zero_strain(loco.load_dataset(name))
    fold = 5
    held = full.conditions()[full.condition_groups()[fold][0]]
    r = loco.run_fold(name, fold, ["anchored"], quick=True)
    assert r["mare_pct"]["anchored"] is not None
    assert [list(held)] == r["heldout"]
    assert len(seen) > 3                                  # inner folds and the final fit all reported
    n_train_conditions = len(full.condition_groups()) - 1
    inner = 0
    for c in seen:
        conds = c.conditions()
        assert not np.any(np.all(np.isclose(conds[:, :2], held[:2]), axis=1)), "the held-out condition leaked"
        inner += len(c.condition_groups()) < n_train_conditions
    assert inner > 0                                      # some fits were inner-CV fits on fewer conditions


def test_anchored_is_deterministic_bounded_and_exports():
    c = without_zero_strain(generate_campaign("regimes_4x3"))
    cfg = TrainConfig.quick(method="anchored", anchor_strengths=[0.01], anchor_orders=[5])
    a, b = fit(c, cfg, seed=2), fit(c, cfg, seed=2)
    x = c.features()
    assert np.array_equal(a.predict(x), b.predict(x))
    # far outside the training box the prediction stays within the bound of its base law
    rng = np.random.default_rng(0)
    xf = np.column_stack([rng.uniform(0, 2, 300), 10 ** rng.uniform(-6, 4, 300), rng.uniform(0, 2000, 300)])
    info = a.info["anchored"]
    base, _ = anchored.fit_base(c, info["base_law"], (x.min(0), x.max(0)))
    ratio = a.predict(xf) / anchored.base_stress(base, xf)
    bnd = cfg.anchor_bound
    assert np.all(np.isfinite(ratio))
    assert np.all((ratio >= min(1 - bnd, np.exp(-bnd)) - 1e-12) & (ratio <= max(1 + bnd, np.exp(bnd)) + 1e-12))
    # FlowNet (the exported description) gives the same σ and a gradient that matches differences
    fn = a.to_flownet()
    s, g = fn.evaluate(x[:20], policy=False)
    assert np.allclose(s, a.predict(x[:20]), rtol=1e-12)
    h = 1e-6
    xp = x[:20].copy()
    xp[:, 2] += h
    assert np.allclose((fn.evaluate(xp, policy=False)[0] - s) / h, g[:, 2], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["arrhenius:5", "loglinear"])
def test_both_base_laws_export_to_onnx(kind):
    onnxruntime = pytest.importorskip("onnxruntime")
    from export.onnx_export import build_model
    c = without_zero_strain(generate_campaign("hardening_4x3_uneven"))
    cfg = TrainConfig.quick(method="anchored", anchor_strengths=[0.01], anchor_orders=[5] if kind != "loglinear" else [],
                            anchor_loglinear=kind == "loglinear")
    m = fit(c, cfg, seed=0)
    assert m.info["anchored"]["base_law"] == kind
    fn = m.to_flownet()
    sess = onnxruntime.InferenceSession(build_model(fn).SerializeToString())
    x = c.features()[::5]
    sigma, grad = sess.run(None, {"x": x})
    ref, gref = fn.evaluate(x)
    assert np.allclose(sigma, ref, rtol=1e-10) and np.allclose(grad, gref, rtol=1e-8, atol=1e-10)


def test_absurd_training_fit_fails_loudly(tmp_path, monkeypatch):
    c = without_zero_strain(generate_campaign("peak_4x3"))
    m = fit(c, TrainConfig.quick(method="anchored", anchor_strengths=[0.01]), seed=0)
    check_trained(m, c)                                   # a sane model passes
    monkeypatch.setattr(type(m), "predict", lambda self, x: -3e22 * np.ones(len(np.atleast_2d(x))))
    with pytest.raises(TrainingFailedError, match="-3e\\+22 MPa"):
        check_trained(m, c)
    from constitutive import training
    from constitutive.cli import main
    monkeypatch.setattr(training, "fit", lambda *a, **k: m)
    out = tmp_path / "run"
    rc = main(["train", "--data", str(write_csv(c, tmp_path)), "--out", str(out), "--no-plots", "--quiet"])
    assert rc == 1
    assert not (out / "model.json").exists()


def write_csv(c, tmp_path):
    p = tmp_path / "curves.csv"
    c.to_csv(p)
    return p


def test_campaign_family_is_labelled_synthetic_and_deterministic():
    assert len(CAMPAIGNS) >= 6
    shapes = {v["shape"] for v in CAMPAIGNS.values()}
    assert shapes == {"peak", "hardening", "regimes"}
    for name in CAMPAIGNS:
        a, b = generate_campaign(name, seed=1), generate_campaign(name, seed=1)
        assert a.synthetic and a.source == f"synthetic_{name}"
        assert np.array_equal(a.stress, b.stress)
        assert 3 <= len(np.unique(a.temperature)) <= 4 and 3 <= len(np.unique(a.strain_rate)) <= 4
        assert np.all(a.stress > 0)


def test_default_ensemble_never_touches_the_heldout_fold(monkeypatch):
    """Every training the default (ensemble) model runs — each member with its own validation
    curves, and the whole — is recorded; none may hold a point of the held-out condition."""
    from constitutive import training
    seen = []
    real = training._fit

    def spy_fit(curves, *a, **kw):
        seen.append(curves)
        return real(curves, *a, **kw)
    monkeypatch.setattr(training, "_fit", spy_fit)
    name, fold = "synthetic_peak_4x3", 4
    full = without_zero_strain(loco.load_dataset(name))
    held = full.conditions()[full.condition_groups()[fold][0]]
    r = loco.run_fold(name, fold, ["default"], quick=True)
    assert r["mare_pct"]["default"] is not None and [list(held)] == r["heldout"]
    assert len(seen) == 1 + TrainConfig.quick().ensemble_members       # the whole and every member
    for c in seen:
        assert not np.any(np.all(np.isclose(c.conditions()[:, :2], held[:2]), axis=1)), "the held-out condition leaked"
