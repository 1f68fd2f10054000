"""Model selection: leave-one-condition-out cross-validation and an optuna search.

Both work on the TRAINING curves only (the caller removes held-out/test curves first): the CV
folds hold out one condition (all its replicates) at a time, train on the rest and score the
held-out curves (MARE over all their points with strain > 0). ``search`` minimises the mean CV
MARE with optuna's TPE sampler (seeded) over structure, activation, learning rate, weight
decay, batch size, SMOTE ratio and the transfer stopping factor (for the ensemble method: of its
members, ``ensemble_member``); the best configuration is a
``TrainConfig`` dict that ``neumat train --config`` reads.
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from . import ensemble
from .errors import NeumatInputError
from .flow_curves import FlowCurves
from .training import TrainConfig, fit, fit_arrhenius, score_model

SEARCH_SPECS = ("4-R-8-A-4-A-R-1", "4-8-A-4-A-1", "4-R-12-A-8-A-R-1", "4-R-16-A-8-A-R-1",
                "4-15-A-7-A-1", "4-R-8-A-8-A-R-R-8-A-8-A-R-1")
SEARCH_ACTIVATIONS = ("elu", "tanh", "sigmoid", "softplus", "leaky_relu")


def cv_folds(curves: FlowCurves, max_folds: int | None = None, seed: int = 0):
    """(condition label, train, test) per fold; with ``max_folds`` a seeded subset of the folds."""
    groups = curves.condition_groups()
    order = np.arange(len(groups))
    if max_folds is not None and 0 < max_folds < len(groups):
        order = np.sort(np.random.default_rng(seed).choice(len(groups), max_folds, replace=False))
    for g in order:
        test_idx = groups[g]
        rest = np.setdiff1d(np.arange(curves.n_curves), test_idx)
        yield curves.condition_label(int(test_idx[0])), curves.subset(rest), curves.subset(test_idx)


def cross_validate(curves: FlowCurves, config: TrainConfig, seed: int = 0, max_folds: int | None = None,
                   progress: bool = False, log=None, reuse_arrhenius: bool = False) -> dict:
    """Leave-one-condition-out CV. Returns mean/std MARE (%), RMSE (MPa) and per-fold scores.

    ``reuse_arrhenius``: fit Arrhenius once on all given curves instead of per fold (faster;
    then the held-out condition leaks into the transfer source, so the default is per fold)."""
    if curves.n_curves < 3:
        raise NeumatInputError(f"cross-validation needs at least 3 curves, got {curves.n_curves}")
    say = log or (lambda *a: None)
    need_arr = config.transfer or config.hybrid != "none"
    arr_all = fit_arrhenius(curves, config.arrhenius_order) if (need_arr and reuse_arrhenius) else None
    folds = []
    t0 = time.perf_counter()
    for label, train, test in cv_folds(curves, max_folds, seed):
        arr = arr_all
        if need_arr and arr is None:
            try:
                arr = fit_arrhenius(train, config.arrhenius_order)
            except NeumatInputError:
                arr = None
        model = fit(train, config, seed=seed, progress=progress, arrhenius=arr)
        s = score_model(model, test)
        folds.append({"condition": label, **s})
        say(f"  fold {len(folds)}: held out {label}: MARE {s['mare_pct']:.3f} %, RMSE {s['rmse_mpa']:.3f} MPa")
    m = np.array([f["mare_pct"] for f in folds])
    r = np.array([f["rmse_mpa"] for f in folds])
    return {"n_folds": len(folds), "mean_mare_pct": float(m.mean()), "std_mare_pct": float(m.std()),
            "mean_rmse_mpa": float(r.mean()), "folds": folds, "seconds": time.perf_counter() - t0,
            "config": config.to_dict(), "seed": seed}


def suggest_config(trial, base: TrainConfig) -> TrainConfig:
    """A trial's configuration: the network's settings, or, for the ensemble method, its
    members' settings (``ensemble_member``)."""
    d = base.to_dict()
    net = d if base.method != "ensemble" else {**d, **d["ensemble_member"]}
    p = {"spec": trial.suggest_categorical("spec", list(SEARCH_SPECS)),
         "activation": trial.suggest_categorical("activation", list(SEARCH_ACTIVATIONS)),
         "lr": trial.suggest_float("lr", 1e-3, 2e-2, log=True)}
    p["lr_final"] = p["lr"] * 0.04
    p["weight_decay"] = trial.suggest_float("weight_decay", 1e-7, 1e-3, log=True)
    p["batch_size"] = trial.suggest_categorical("batch_size", [0, 256, 1024])
    p["smote_ratio"] = trial.suggest_categorical("smote_ratio", [0.0, 0.5, 1.0])
    if net["transfer"] and net["hybrid"] == "none":
        p["transfer_factor"] = trial.suggest_float("transfer_factor", 1.02, 2.0, log=True)
    if base.method == "ensemble":
        d["ensemble_member"] = {**d["ensemble_member"], **p}
    else:
        d.update(p)
    return TrainConfig.from_dict(d)


def search(curves: FlowCurves, base: TrainConfig, n_trials: int = 20, seed: int = 0,
           max_folds: int | None = 6, timeout: float | None = None, log=None) -> dict:
    """optuna TPE search; objective = mean leave-one-condition-out MARE on ``curves``."""
    import optuna  # optional: the train extra; only the hyper-parameter search needs it
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    say = log or (lambda *a: None)
    eff = replace(base, **ensemble.member_overrides(base)) if base.method == "ensemble" else base
    need_arr = base.method != "anchored" and (eff.transfer or eff.hybrid != "none")
    # Arrhenius per fold is fixed by the fold, not by the trial: fit each fold's law once.
    fold_arr = {}
    if need_arr:
        for label, train, _ in cv_folds(curves, max_folds, seed):
            try:
                fold_arr[label] = fit_arrhenius(train, eff.arrhenius_order)
            except NeumatInputError:
                fold_arr[label] = None

    def objective(trial):
        cfg = suggest_config(trial, base)
        errs = []
        for label, train, test in cv_folds(curves, max_folds, seed):
            model = fit(train, cfg, seed=seed, arrhenius=fold_arr.get(label))
            errs.append(score_model(model, test)["mare_pct"])
            trial.report(float(np.mean(errs)), len(errs))
        val = float(np.mean(errs))
        say(f"  trial {trial.number}: CV MARE {val:.3f} %  {trial.params}")
        return val

    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.optimize(objective, n_trials=n_trials, timeout=timeout)
    best = suggest_config(optuna.trial.FixedTrial(study.best_params), base)
    return {"best_config": best.to_dict(), "best_cv_mare_pct": float(study.best_value),
            "best_params": study.best_params, "n_trials": len(study.trials), "max_folds": max_folds,
            "seed": seed,
            "trials": [{"number": t.number, "params": t.params, "cv_mare_pct": t.value} for t in study.trials]}
