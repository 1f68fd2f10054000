"""Training: determinism, transfer learning on a designed case, config files, the CLI, the benchmark."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from constitutive.errors import NeumatInputError
from constitutive.flow_curves import FlowCurves
from constitutive.flownet import FlowNet
from constitutive.laws import arrhenius_stress
from constitutive.training import TrainConfig, TrainedModel, choose_validation_curves, fit, score_model

# A sinh law whose hyperbolic-sine knee lies inside the temperature range: ln σ is far from
# linear in T between 900 and 1200 °C, so two measured temperatures do not tell a network what
# happens at 1050 °C — the (correct) physics model does.
TRUTH = {"alpha": [0.012, -0.006], "n": [3.0], "Q": [4.0e5], "lnA": [34.07], "strain_min": 0.0, "strain_max": 0.8}


def law_curves(conds, seed=0, n=40, noise=0.003):
    rng = np.random.default_rng(seed)
    parts = []
    for c, (t, r) in enumerate(conds):
        e = np.linspace(0.0, 0.7, n)
        s = arrhenius_stress(TRUTH, e, np.full(n, r), np.full(n, t)) * (1 + noise * rng.standard_normal(n))
        parts.append((np.full(n, c), np.full(n, float(t)), np.full(n, float(r)), e, s))
    cols = [np.concatenate(x) for x in zip(*parts)]
    return FlowCurves(*cols, curve_names=[f"T{t}_R{r}" for t, r in conds], source="test law")


TRAIN = [(t, r) for t in (900, 1200) for r in (0.001, 0.01, 0.1, 1.0, 10.0)]
TEST = [(1050, 0.01), (1050, 1.0)]


def tiny_config(**kw) -> TrainConfig:
    base = dict(method="network", max_steps=300, patience=200, transfer_max_steps=200, points_per_curve=15,
                eval_every=20, transfer_points=2048, transfer_batch=256, val_fraction=0.0, lm_steps=0)
    base.update(kw)
    return TrainConfig(**base)


def test_seed_determinism():
    fc = law_curves(TRAIN)
    cfg = tiny_config(transfer=True, smote_ratio=0.5, arrhenius_order=2, lm_steps=3, max_steps=100,
                      transfer_max_steps=60)
    a = fit(fc, cfg, seed=3)
    b = fit(fc, cfg, seed=3)
    c = fit(fc, cfg, seed=4)
    for pa, pb in zip(a.net.parameters(), b.net.parameters()):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.net.parameters(), c.net.parameters()))
    x = fc.features()[::7]
    assert np.array_equal(a.predict(x), b.predict(x))


def test_transfer_beats_no_transfer_on_designed_case():
    train, test = law_curves(TRAIN), law_curves(TEST, seed=1)
    common = dict(max_steps=600, patience=600, transfer_max_steps=1500, transfer_factor=1.0,
                  lr=3e-3, lr_final=3e-4, transfer_lr=1e-2)
    errs = {}
    for transfer in (False, True):
        m = fit(train, tiny_config(transfer=transfer, **common), seed=0, arrhenius=TRUTH)
        errs[transfer] = score_model(m, test)["mare_pct"]
        assert score_model(m, train)["mare_pct"] < 3.0          # both fit what they saw
    assert errs[True] < 0.6 * errs[False], errs


def test_hybrid_starts_at_arrhenius_and_improves():
    train = law_curves(TRAIN)
    wrong = dict(TRUTH, lnA=[34.3])          # a slightly wrong base law
    m0 = fit(train, tiny_config(transfer=False, hybrid="multiplicative", max_steps=1, lr=1e-12, lr_final=1e-12),
             seed=0, arrhenius=wrong)
    x = train.features()
    assert np.allclose(m0.predict(x), arrhenius_stress(wrong, x[:, 0], x[:, 1], x[:, 2]), rtol=1e-9)
    m = fit(train, tiny_config(transfer=False, hybrid="multiplicative", max_steps=300), seed=0, arrhenius=wrong)
    base_err = np.mean(np.abs(arrhenius_stress(wrong, x[:, 0], x[:, 1], x[:, 2]) / train.stress - 1)) * 100
    assert score_model(m, train)["mare_pct"] < 0.5 * base_err
    fn = m.to_flownet()
    assert fn.base["mode"] == "multiplicative"
    assert np.allclose(fn.evaluate(x[x[:, 0] > 0], policy=False)[0], m.predict(x[x[:, 0] > 0]), rtol=1e-12)


def test_validation_curves_are_whole_interior_curves():
    fc = law_curves([(t, r) for t in (900, 1000, 1100, 1200) for r in (0.01, 0.1, 1.0, 10.0)])
    idx = choose_validation_curves(fc, 0.15, np.random.default_rng(0))
    conds = fc.conditions()[idx]
    assert len(idx) == 2
    assert np.all((conds[:, 0] > 900) & (conds[:, 0] < 1200) & (conds[:, 1] > 0.01) & (conds[:, 1] < 10))


def test_config_round_trip_and_errors(tmp_path):
    cfg = TrainConfig(spec="4-8-A-4-A-1", activation="tanh", smote_ratio=0.5)
    p = tmp_path / "c.json"
    p.write_text(json.dumps(cfg.to_dict()))
    assert TrainConfig.load(p) == cfg
    p.write_text(json.dumps({"spek": "4-8-A-1"}))
    with pytest.raises(NeumatInputError, match="spek"):
        TrainConfig.load(p)
    with pytest.raises(NeumatInputError):
        TrainConfig.from_dict({"hybrid": "sideways"})
    # without "method": a setting of the network method alone means that method, else the default
    assert TrainConfig.from_dict({"spec": "4-8-A-1", "weight_decay": 0.0}).method == "network"
    assert TrainConfig.from_dict({"distil_sign_penalty": 100.0}).method == TrainConfig().method == "ensemble"


def _cli(argv):
    from constitutive.cli import main
    return main(argv)


def test_train_cli_quick_writes_model_folder(tmp_path, capsys):
    fc = law_curves(TRAIN + TEST)
    csv = tmp_path / "curves.csv"
    fc.to_csv(csv)
    out = tmp_path / "run"
    rc = _cli(["train", "--data", str(csv), "--heldout", "1050:0.01,1050:1", "--quick", "--quiet",
               "--seed", "1", "--out", str(out)])
    assert rc == 0
    for f in ("model.json", "config.json", "metrics.json", "weights.pt", "transforms.json", "heldout.png",
              "parity.png", "history.png"):
        assert (out / f).is_file(), f
    net = FlowNet.load(out)
    met = json.loads((out / "metrics.json").read_text())
    assert met["heldout"]["mare_pct"] > 0 and len(met["heldout_per_curve"]) == 2
    assert net.meta["data_hash"] == FlowCurves.data_hash(fc.split_heldout(TEST)[0])
    assert net.meta["seed"] == 1 and net.meta["heldout"] == [[1050.0, 0.01], [1050.0, 1.0]]
    assert net.box_lo[2] == 900 and net.box_hi[2] == 1200 and net.rate_floor == pytest.approx(1e-4)
    m = TrainedModel.load(out)
    x = fc.features()[fc.strain > 0][::5]
    assert np.allclose(net.evaluate(x, policy=False)[0], m.predict(x), rtol=1e-12)
    # the written config is accepted by --config
    out2 = tmp_path / "run2"
    assert _cli(["train", "--data", str(csv), "--heldout", "none", "--config", str(out / "config.json"),
                 "--quick", "--quiet", "--no-plots", "--out", str(out2)]) == 0
    # user errors: exit 2, no traceback
    assert _cli(["train", "--data", str(csv), "--heldout", "1000:3", "--quick", "--out", str(tmp_path / "x")]) == 2
    assert _cli(["train", "--data", str(csv), "--spec", "4-R-8-1", "--quick", "--out", str(tmp_path / "x")]) == 2
    assert "error" in capsys.readouterr().err


def test_rank_normalisation_is_not_exported(tmp_path, capsys):
    fc = law_curves(TRAIN)
    csv = tmp_path / "c.csv"
    fc.to_csv(csv)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"features": {"normalisation": "rank"}, "transfer": False}))
    out = tmp_path / "run"
    assert _cli(["train", "--data", str(csv), "--config", str(cfg), "--quick", "--quiet", "--no-plots",
                 "--out", str(out)]) == 0
    assert not (out / "model.json").exists() and (out / "NOT_EXPORTABLE.txt").exists()
    assert "CANNOT be exported" in capsys.readouterr().out


def test_cv_and_search(tmp_path):
    from constitutive.selection import cross_validate, search
    fc = law_curves([(t, r) for t in (900, 1050, 1200) for r in (0.01, 1.0)], n=20)
    cfg = tiny_config(transfer=False, max_steps=60, eval_every=20)
    res = cross_validate(fc, cfg, seed=0, max_folds=2)
    assert res["n_folds"] == 2 and res["mean_mare_pct"] > 0
    s = search(fc, cfg, n_trials=2, seed=0, max_folds=1)
    best = TrainConfig.from_dict(s["best_config"])
    assert best.max_steps == 60 and s["n_trials"] == 2


def test_benchmark_accuracy_quick(tmp_path):
    from constitutive.datasets import dataset_available
    if not dataset_available("gleeble_3cr2mo"):
        pytest.skip("shared data set gleeble_3cr2mo not present")
    out = tmp_path / "acc.json"
    assert _cli(["benchmark", "accuracy", "--quick", "--jobs", "1", "--no-plots", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["protocols"]) == {"interp"}
    m = res["protocols"]["interp"]["models"]
    assert {"arrhenius", "hensel_spittel", "johnson_cook", "mlp_sigmoid", "resnet", "resnet_transfer",
            "hybrid"} <= set(m)
    assert m["hybrid"]["heldout"]["mare_pct"] > 0
    assert res["learning_curve"]["order"][:4] == [[1050.0, 0.001], [1050.0, 5.0], [1250.0, 0.001], [1250.0, 5.0]]


def test_outlier_keep_drop_comparison_is_reported():
    fc = law_curves(TRAIN + [(1050, 0.1), (1000, 1.0)])
    i = fc.curve_points(0)[10]
    fc.stress[i] *= 1.6                              # one spike
    m = fit(fc, tiny_config(transfer=False, outliers="compare", val_fraction=0.2, max_steps=60), seed=0)
    comp = m.info["outlier_comparison"]
    assert comp["flagged_points"] >= 1
    assert comp["chosen"] in ("outliers kept", "outliers dropped")
    assert min(comp["val_mare_pct_kept"], comp["val_mare_pct_dropped"]) == m.info["fine_tune"]["best_crit_mare_pct"]


# ---- the run folder and what a run says about itself (issue 16) --------------------------------
def _network_config(tmp_path, **kw):
    """A quick config file for the residual network (the method that has the phases below)."""
    d = TrainConfig.quick(**kw).to_dict()
    if "method" in d:
        d["method"] = "network"
    path = tmp_path / "net_cfg.json"
    path.write_text(json.dumps(d))
    return path


def test_train_run_folder_refused_forced_and_clean_after_failure(tmp_path, capsys, monkeypatch):
    fc = law_curves(TRAIN, n=20)
    csv = tmp_path / "c.csv"
    fc.to_csv(csv)
    out = tmp_path / "run"
    out.mkdir()
    (out / "stale.png").write_text("old plot")
    argv = ["train", "--data", str(csv), "--quick", "--quiet", "--no-plots", "--out", str(out)]
    assert _cli(argv) == 2
    assert "not empty" in capsys.readouterr().err and (out / "stale.png").read_text() == "old plot"
    assert _cli(argv + ["--force"]) == 0
    assert not (out / "stale.png").exists() and (out / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv", "run"]     # no temporary folder left
    # a failing training leaves no folder behind (and an earlier run where it was)
    import constitutive.training as training

    def broken(*a, **k):
        raise RuntimeError("injected failure")
    monkeypatch.setattr(training, "fit", broken)
    with pytest.raises(RuntimeError, match="injected"):
        _cli(argv[:-1] + [str(tmp_path / "new")])
    with pytest.raises(RuntimeError, match="injected"):
        _cli(argv + ["--force"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv", "run"]
    assert (out / "config.json").is_file()


def test_train_refuses_a_single_temperature_or_rate(tmp_path, capsys):
    for conds, needle in (([(1000, 0.01), (1000, 1.0)], "single temperature"),
                          ([(900, 0.1), (1000, 0.1), (1100, 0.1)], "single strain rate")):
        csv = tmp_path / "one.csv"
        law_curves(conds, n=20).to_csv(csv)
        out = tmp_path / "run"
        assert _cli(["train", "--data", str(csv), "--quick", "--quiet", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert needle in err and "2 or more temperatures" in err and not out.exists()
        assert _cli(["baselines", "--data", str(csv)]) == 2
        assert needle in capsys.readouterr().err
    # held-out conditions that leave one temperature: also refused before training
    csv = tmp_path / "two.csv"
    law_curves(TRAIN, n=20).to_csv(csv)
    assert _cli(["train", "--data", str(csv), "--heldout", ",".join(f"900:{r:g}" for _, r in TRAIN[:5]),
                 "--quick", "--quiet", "--out", str(tmp_path / "r2")]) == 2
    assert "single temperature" in capsys.readouterr().err


def test_train_reports_max_steps_and_writes_the_built_spec_and_lm_history(tmp_path, capsys, monkeypatch):
    import matplotlib.figure
    fc = law_curves(TRAIN, n=20)
    csv = tmp_path / "c.csv"
    fc.to_csv(csv)
    cfg = _network_config(tmp_path, max_steps=40, patience=1000, eval_every=20, lm_steps=3, lm_patience=10,
                          transfer=False)
    labels = {}
    real_savefig = matplotlib.figure.Figure.savefig

    def savefig(fig, path, *a, **k):
        labels[str(path).rsplit("/", 1)[-1]] = [t for ax in fig.axes for t in ax.get_legend_handles_labels()[1]]
        return real_savefig(fig, path, *a, **k)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    out = tmp_path / "run"
    assert _cli(["train", "--data", str(csv), "--config", str(cfg), "--quiet", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    met = json.loads((out / "metrics.json").read_text())
    assert met["fine_tune"]["stopped"] == "max_steps"
    assert any("max_steps (40)" in w for w in met["warnings"])
    assert "warning: fine-tuning stopped at max_steps (40)" in text
    written = json.loads((out / "config.json").read_text())
    n_in = len(TrainedModel.load(out).in_tf.columns)
    assert written["spec"].split("-")[0] == str(n_in) == "3"
    assert FlowNet.load(out).meta["spec"] == written["spec"]
    # history.png shows the Levenberg–Marquardt phase after fine-tuning
    hist = labels["history.png"]
    assert any("fine-tune" in t for t in hist) and any("Levenberg" in t for t in hist)
    from constitutive.cli_train import history_series
    series = history_series(json.loads((out / "history.json").read_text()))
    assert list(series) == ["fine-tune", "lm"] and series["lm"][0][0] > series["fine-tune"][0][-1]
