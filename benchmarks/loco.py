"""``neumat benchmark loco``: leave-one-condition-out on every real data set and a family of
SYNTHETIC small campaigns — accuracy on conditions a model has not seen, edge conditions included.

Data: the shared real sets (``gleeble_3cr2mo`` 30 folds, ``bst_freiberg`` 15 folds — both
replicates of a condition held out together —, ``ti64_babu2013`` 46 folds) and the six SYNTHETIC
campaigns of ``constitutive.synthetic.CAMPAIGNS`` (labelled ``synthetic``; the family is also
summarised as one pool, ``synthetic_family``).

Each fold holds out ONE condition (every curve of it), fits every model on the other curves and
scores MARE (%) on the held-out points with strain ≥ ``SCORE_STRAIN`` = 0.05 (the start of a
curve, elastic rise and strain 0, is left out for every model alike). Nothing of the held-out
condition enters any fit: the anchored model's own choices (base law, correction
strength) are made by inner cross-validation on the fold's training curves only.
``--resummarise FILE`` re-reads the folds of an earlier run and recomputes summaries, plot and
README section (no training): ``default`` is pointed at the model TrainConfig() now equals, or
kept when the run's own default has TrainConfig()'s configuration (``configs`` in the JSON).

Models: ``arrhenius``, ``hensel_spittel``, ``johnson_cook`` (``constitutive.baselines``, default
options), ``mlp`` (the plain 3-15-A-7-A-1 sigmoid network of the accuracy benchmark, no
transfer), ``default`` (exactly ``TrainConfig()``, what ``neumat train`` does without options:
the ensemble method, ``constitutive.ensemble``; a model with the same configuration and seed as
another, or as a member of the default, is not trained twice), ``seed`` (the seed method:
``TrainConfig(method="network")``, residual network with transfer from Arrhenius and early
stopping on validation curves) and ``anchored`` (``TrainConfig(method="anchored")``,
``constitutive.anchored``: base law × bounded correction, chosen by inner cross-validation;
only with ``--models``: it lost to the others and adds about 10 minutes on 2 cores). Networks
are evaluated without the box clamp (extrapolation is the point). A model that fails on a fold
(exception, non-finite prediction) scores None there and counts as a loss.

Summary per data set and model: mean / median / worst fold MARE, ``wins_vs_best_classical`` (folds
where the model is below the lowest of the three laws on that fold), ``worst_ratio_to_best_classical``
(largest fold MARE / best-classical fold MARE), ``n_folds``; ``best_classical`` is listed as a model
(its mean = the mean of the per-fold minima). The same apart for interior and edge folds (edge: the
held-out temperature or rate is the lowest or highest of the data set).

Writes ``benchmarks/results/loco.json`` (atomically), ``loco.png`` and the ``loco`` section of
``benchmarks/README.md``. Folds run in ``--jobs`` spawned worker processes, one BLAS/torch thread each.
"""
from __future__ import annotations

import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from constitutive.baselines import make_model, without_zero_strain
from constitutive.datasets import dataset_available, load
from constitutive.errors import NeumatInputError
from constitutive.flow_curves import FlowCurves
from constitutive.jsonio import read_json, write_json
from constitutive.synthetic import CAMPAIGNS, generate_campaign

from .readme_sections import BENCHMARKS_README, write_section

RESULTS = Path(__file__).resolve().parent / "results"
REAL = ("gleeble_3cr2mo", "bst_freiberg", "ti64_babu2013")
SYNTHETIC = tuple(f"synthetic_{k}" for k in CAMPAIGNS)
CLASSICAL = ("arrhenius", "hensel_spittel", "johnson_cook")
NETWORK_MODELS = ("mlp", "default", "seed", "anchored")
ALL_MODELS = CLASSICAL + NETWORK_MODELS
# what a run without --models trains: the laws, the plain MLP, the default and the seed method
# (anchored, which lost to them, only on request: about 20 CPU-minutes more, 10 on 2 cores)
MODELS = CLASSICAL + ("mlp", "default", "seed")
DEFAULT_MODEL = "default"
SCORE_STRAIN = 0.05
QUICK_FOLDS = 2
# the plain MLP: the accuracy benchmark's mlp_sigmoid (3-15-A-7-A-1, sigmoid, no transfer)
MLP = dict(method="network", spec="3-15-A-7-A-1", activation="sigmoid", transfer=False, lr=1e-2, lr_final=1e-3,
           max_steps=1500, patience=1000, points_per_curve=60, val_fraction=0.15, eval_every=50, lm_steps=300,
           lm_patience=30, weight_decay=1e-3)
MODEL_INFO = {
    "arrhenius": "strain-compensated Arrhenius, order 9",
    "hensel_spittel": "Hensel-Spittel, 9 parameters",
    "johnson_cook": "Johnson-Cook",
    "mlp": "plain MLP 3-15-A-7-A-1 sigmoid, no transfer",
    "default": "TrainConfig() = neumat train without options: 5 plain MLPs (3-15-A-7-A-1 sigmoid, own seeds) "
               "averaged in ln(stress) and distilled into one 3-15-A-7-A-1",
    "seed": "seed method: TrainConfig(method='network'), residual 4-R-16-A-8-A-R-1 + transfer from Arrhenius",
    "anchored": "TrainConfig(method='anchored'): base law (Arrhenius or log-linear Zener-Hollomon, inner CV) "
                "x bounded correction, strength by inner CV",
}


def load_dataset(name: str) -> FlowCurves:
    if name.startswith("synthetic_") and name[len("synthetic_"):] in CAMPAIGNS:
        return generate_campaign(name[len("synthetic_"):], seed=0)
    return load(name)


def train_config(model: str, quick: bool):
    from constitutive.training import TrainConfig  # optional: torch (train extra)
    if model == "default":
        return TrainConfig.quick() if quick else TrainConfig()
    if model == "seed":
        return TrainConfig.quick(method="network") if quick else TrainConfig(method="network")
    if model == "anchored":
        return TrainConfig.quick(method="anchored") if quick else TrainConfig(method="anchored")
    if model == "mlp":
        return TrainConfig.quick(**MLP) if quick else TrainConfig(**MLP)
    raise NeumatInputError(f"unknown network model '{model}'")


def _config_key(config: dict, seed: int) -> str:
    """Same key = same training: the full TrainConfig and the seed."""
    return json.dumps({"config": config, "seed": int(seed)}, sort_keys=True)


def edge_flags(curves: FlowCurves) -> list[bool]:
    """Per condition group: True when its T or rate is the lowest/highest of the data set."""
    conds = curves.conditions()
    t, r = conds[:, 0], conds[:, 1]
    out = []
    for g in curves.condition_groups():
        c = conds[g[0]]
        out.append(bool(np.isclose(c[0], t.min()) or np.isclose(c[0], t.max())
                        or np.isclose(c[1], r.min()) or np.isclose(c[1], r.max())))
    return out


def folds_of(curves: FlowCurves, quick: bool) -> list[int]:
    n = len(curves.condition_groups())
    if not quick:
        return list(range(n))
    return sorted({0, n // 2})[:QUICK_FOLDS]


def _score(pred, stress) -> float | None:
    pred = np.asarray(pred, float)
    if pred.shape != stress.shape or not np.all(np.isfinite(pred)):
        return None
    return float(np.mean(np.abs(pred - stress) / np.abs(stress)) * 100.0)


def run_fold(dataset: str, fold: int, models: list[str], quick: bool, seed: int = 0) -> dict:
    """Fit every model on all conditions but fold ``fold``; MARE (%) on the held-out points."""
    curves = without_zero_strain(load_dataset(dataset))
    groups = curves.condition_groups()
    test_idx = groups[fold]
    train = curves.subset(np.setdiff1d(np.arange(curves.n_curves), test_idx))
    test = curves.subset(test_idx)
    test = test.take(np.flatnonzero(test.strain >= SCORE_STRAIN))
    conds = [[float(v) for v in c] for c in np.unique(test.conditions(), axis=0)]
    out = {"dataset": dataset, "fold": int(fold), "heldout": conds, "edge": edge_flags(curves)[fold],
           "n_train_curves": int(train.n_curves), "mare_pct": {}, "seconds": {}, "errors": {}}
    done: dict = {}     # config → (model name, MARE): a configuration is trained once per fold
    order = sorted(models, key=lambda m: m != "default")    # the default first: its members can serve others
    for m in order:
        t0 = time.perf_counter()
        key = None if m in CLASSICAL else _config_key(train_config(m, quick).to_dict(), seed)
        if key in done:
            src, val = done[key]
            out["mare_pct"][m] = val
            out["seconds"][m] = 0.0
            out.setdefault("same_as", {})[m] = src
            continue
        try:
            if m in CLASSICAL:
                pred = make_model(m).fit(train).predict_curves(test)
            else:
                from constitutive.training import fit  # optional: torch (train extra)
                model = fit(train, train_config(m, quick), seed=seed)
                pred = model.predict_curves(test)
                if model.info.get("anchored"):
                    out.setdefault("info", {})[m] = model.info["anchored"]
                if model.info.get("ensemble"):
                    ens = model.info["ensemble"]
                    out.setdefault("info", {})[m] = {k: ens[k] for k in ("member_train_mare_pct", "spread_pct",
                                                                         "student_vs_teacher_mare_pct")}
                    for mk, (mcfg, mseed, member) in enumerate(model.member_models):   # a member = a plain network
                        done.setdefault(_config_key(mcfg.to_dict(), mseed),
                                        (f"{m} member {mk + 1}", _score(member.predict_curves(test), test.stress)))
            out["mare_pct"][m] = _score(pred, test.stress)
            if key is not None:
                done[key] = (m, out["mare_pct"][m])
            if out["mare_pct"][m] is None:
                out["errors"][m] = "non-finite prediction"
        except Exception as exc:        # noqa: BLE001 - a model failing on a fold is a result, not a crash
            out["mare_pct"][m] = None
            out["errors"][m] = f"{type(exc).__name__}: {exc}"
        out["seconds"][m] = time.perf_counter() - t0
    out["mare_pct"] = {m: out["mare_pct"][m] for m in models}
    cl = [out["mare_pct"].get(m) for m in CLASSICAL if out["mare_pct"].get(m) is not None]
    out["mare_pct"]["best_classical"] = min(cl) if cl else None
    if not out["errors"]:
        del out["errors"]
    return out


def summarise(folds: list[dict], models: list[str]) -> dict:
    out = {}
    for m in list(models) + ["best_classical"]:
        vals = [f["mare_pct"].get(m) for f in folds]
        best = [f["mare_pct"].get("best_classical") for f in folds]
        ok = [v for v in vals if v is not None]
        ratios = [v / b for v, b in zip(vals, best) if v is not None and b]
        wins = sum(1 for v, b in zip(vals, best) if v is not None and b is not None and v < b)
        out[m] = {"mean_mare_pct": float(np.mean(ok)) if ok else None,
                  "median_mare_pct": float(np.median(ok)) if ok else None,
                  "worst_mare_pct": float(np.max(ok)) if ok else None,
                  "wins_vs_best_classical": int(wins) if m != "best_classical" else None,
                  "worst_ratio_to_best_classical": float(np.max(ratios)) if ratios and m != "best_classical" else None,
                  "n_folds": len(folds), "n_failed": len(vals) - len(ok)}
    return out


def _summaries(folds: list[dict], models: list[str]) -> dict:
    return {"summary": summarise(folds, models),
            "summary_interior": summarise([f for f in folds if not f["edge"]], models),
            "summary_edge": summarise([f for f in folds if f["edge"]], models)}


def goals(result: dict) -> list[dict]:
    """The issue's accuracy goals for the default model, per data set and the synthetic family."""
    rows = []
    sets = [d for d in result["datasets"] if not result["datasets"][d]["synthetic"]]
    if result.get("synthetic_family"):
        sets.append("synthetic_family")
    for d in sets:
        s = (result["synthetic_family"] if d == "synthetic_family" else result["datasets"][d])["summary"]
        dm, bc = s.get(DEFAULT_MODEL), s.get("best_classical")
        if not dm or dm["mean_mare_pct"] is None or bc["mean_mare_pct"] is None:
            continue
        n = dm["n_folds"]
        rows.append({"dataset": d, "mean_ratio": dm["mean_mare_pct"] / bc["mean_mare_pct"],
                     "mean_ok": dm["mean_mare_pct"] <= 0.7 * bc["mean_mare_pct"],
                     "win_share": dm["wins_vs_best_classical"] / n if n else None,
                     "wins_ok": n > 0 and dm["wins_vs_best_classical"] >= 0.8 * n,
                     "worst_ratio": dm["worst_ratio_to_best_classical"],
                     "worst_ok": (dm["worst_ratio_to_best_classical"] or np.inf) <= 1.5 and dm["n_failed"] == 0})
    return rows


def markdown(result: dict) -> str:
    models = result["models"]
    lines = ["## Leave-one-condition-out on every data set (`neumat benchmark loco`)", "",
             "Each fold holds out one condition (all its curves; bst_freiberg's two replicates together), fits every "
             "model on the rest and scores the held-out curves; every fold, edge conditions included. No held-out "
             "curve enters any fit or choice: the networks stop early on validation curves drawn from the fold's "
             "training curves (each member of the default its own), the anchored model chooses its base law and "
             "correction strength by cross-validation inside them. A model run as a member of another (the plain MLP "
             "is the default's first member: same configuration, same seed) is trained once. `default` is the column of the model TrainConfig() equals"
             + (f" (`{result['default_is']}`)" if result.get("default_is") else "") + ". Synthetic campaigns are labelled SYNTHETIC "
             "(`constitutive/synthetic.py`, CAMPAIGNS). Models: " + "; ".join(f"`{m}` {result['model_info'][m]}"
                                                                           for m in result["models"]) + ".", "",
             f"Leave-one-condition-out, MARE % on the held-out curves (strain ≥ {SCORE_STRAIN}), "
             f"default model = `{result['default_model']}` ({MODEL_INFO['default']}); "
             f"{'QUICK run (not the benchmark)' if result['quick'] else 'full run'}, "
             f"{result['seconds'] / 60:.1f} min with {result['jobs']} jobs on {result['machine']['cpu_count']} CPUs. "
             "Mean (median / worst) per data set; wins = folds below the best of the three laws on that fold; "
             "ratio = worst fold MARE / best-classical MARE of that fold.", "",
             "| data set | folds | " + " | ".join(models) + " | best classical | default wins | default worst ratio |",
             "| --- | --- | " + " | ".join("---" for _ in models) + " | --- | --- | --- |"]
    rows = list(result["datasets"].items())
    if result.get("synthetic_family"):
        rows.append(("synthetic_family (pooled)", {**result["synthetic_family"], "synthetic": True}))
    for name, d in rows:
        s = d["summary"]

        def cell(m):
            v = s.get(m)
            if not v or v["mean_mare_pct"] is None:
                return "–"
            return f"{v['mean_mare_pct']:.2f} ({v['median_mare_pct']:.2f} / {v['worst_mare_pct']:.3g})"
        dm = s.get(DEFAULT_MODEL, {})
        label = name + (" (SYNTHETIC)" if d["synthetic"] and "pooled" not in name else "")
        lines.append(f"| {label} | {s['best_classical']['n_folds']} | " + " | ".join(cell(m) for m in models)
                     + f" | {cell('best_classical')} | {dm.get('wins_vs_best_classical', '–')}"
                     + f" | {dm.get('worst_ratio_to_best_classical') or float('nan'):.2f} |")
    lines += ["", "Interior and edge folds apart (edge: the held-out condition is at the lowest or highest "
              "temperature or strain rate of its data set): default mean MARE % / best classical law's mean, "
              "default wins of folds.", "",
              "| data set | interior folds | interior: default / best classical | interior wins "
              "| edge folds | edge: default / best classical | edge wins |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, d in rows:
        if d["synthetic"] and "pooled" not in name:
            continue
        cells = []
        for part in ("summary_interior", "summary_edge"):
            s = d.get(part) or {}
            dm, bc = s.get(DEFAULT_MODEL) or {}, s.get("best_classical") or {}
            if not bc.get("n_folds") or dm.get("mean_mare_pct") is None:
                cells += [str(bc.get("n_folds", 0)), "–", "–"]
                continue
            cells += [str(bc["n_folds"]), f"{dm['mean_mare_pct']:.2f} / {bc['mean_mare_pct']:.2f}",
                      str(dm["wins_vs_best_classical"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    g = goals(result)
    if g:
        lines += ["", "Goals of the default model (issue 12): mean ≤ 0.7 × best classical, wins ≥ 80 % of folds, "
                  "no fold worse than 1.5 × the best classical law of that fold.", "",
                  "| data set | mean / best classical | wins | worst fold ratio |", "| --- | --- | --- | --- |"]
        for r in g:
            lines.append(f"| {r['dataset']} | {r['mean_ratio']:.2f} ({'reached' if r['mean_ok'] else 'missed'}) | "
                         f"{100 * r['win_share']:.0f} % ({'reached' if r['wins_ok'] else 'missed'}) | "
                         f"{r['worst_ratio']:.2f} ({'reached' if r['worst_ok'] else 'missed'}) |")
    lines += ["", "![loco](results/loco.png)"]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib  # optional: matplotlib (train extra)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional: matplotlib (train extra)
    names = list(result["datasets"])
    models = result["models"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    ax = axes[0]
    w = 0.8 / max(len(models), 1)
    for k, m in enumerate(models):
        v = [result["datasets"][d]["summary"][m]["mean_mare_pct"] or np.nan for d in names]
        ax.bar(np.arange(len(names)) + (k - len(models) / 2 + 0.5) * w, v, w, label=m)
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels([n.replace("synthetic_", "syn_") for n in names], rotation=35, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("mean held-out MARE (%)")
    ax.set_title("leave-one-condition-out: mean MARE per data set (syn_ = SYNTHETIC)", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1]
    for m in [m for m in models if m not in CLASSICAL]:
        xs, ys = [], []
        for k, d in enumerate(names):
            for f in result["datasets"][d]["folds"]:
                v, b = f["mare_pct"].get(m), f["mare_pct"].get("best_classical")
                if v is not None and b:
                    xs.append(k + np.random.default_rng(len(xs)).uniform(-0.3, 0.3))
                    ys.append(v / b)
        ax.plot(xs, ys, ".", ms=4, alpha=0.6, label=m)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(1.5, color="r", lw=0.8, ls="--", label="1.5 × best classical")
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels([n.replace("synthetic_", "syn_") for n in names], rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("fold MARE / best classical law's MARE")
    ax.set_title("per fold: ratio to the best classical law of that fold", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def add_arguments(p) -> None:
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_FOLDS} folds per data set and tiny training (seconds per fold; a test, not the benchmark)")
    p.add_argument("--datasets", default=None,
                   help="comma-separated data sets (default: every real set found and the synthetic family; "
                        f"'synthetic' = all of {', '.join(SYNTHETIC)})")
    p.add_argument("--models", default=None, help=f"comma-separated models of {','.join(ALL_MODELS)} (default {','.join(MODELS)})")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON file (default benchmarks/results/loco.json; the plot beside it)")
    p.add_argument("--no-readme", action="store_true", help="do not rewrite the loco section of benchmarks/README.md")
    p.add_argument("--resummarise", default=None, metavar="JSON",
                   help="no training: re-read the folds of an earlier loco.json, set the 'default' column to the "
                        "model whose configuration TrainConfig() now equals (the run's own default, or its seed or anchored "
                        "model; identical configuration and seed give identical folds) and rewrite summaries, plot and "
                        "README section")


def _parse_list(text, allowed, what):
    if text is None:
        return None
    out = []
    for t in (s.strip() for s in text.split(",")):
        if not t:
            continue
        if what == "data set" and t == "synthetic":
            out += list(SYNTHETIC)
            continue
        if t not in allowed:
            raise NeumatInputError(f"--{what.replace(' ', '')}s: unknown {what} '{t}'; known: {', '.join(allowed)}")
        out.append(t)
    if not out:
        raise NeumatInputError(f"no {what} given")
    return out


def _init_worker():
    import torch  # optional: torch (train extra); one thread per worker
    torch.set_num_threads(1)


def default_alias(quick: bool) -> str | None:
    """The trained model (seed or anchored) whose configuration is exactly TrainConfig() now."""
    want = train_config("default", quick).to_dict()
    return next((m for m in ("seed", "anchored") if train_config(m, quick).to_dict() == want), None)


def configs(models: list[str], quick: bool) -> dict:
    """The TrainConfig of every network model of a run (what --resummarise compares)."""
    return {m: train_config(m, quick).to_dict() for m in models if m not in CLASSICAL}


def resummarise(path: Path) -> dict:
    res = read_json(path)
    models = res["models"]
    alias = default_alias(res["quick"])
    same = res.get("configs", {}).get("default") == train_config("default", res["quick"]).to_dict()
    if alias is None and not same:
        raise NeumatInputError("TrainConfig() is not the configuration of the run's default, seed or anchored "
                               "model: rerun the benchmark")
    for d, v in res["datasets"].items():
        if alias is not None:
            for f in v["folds"]:
                f["mare_pct"]["default"] = f["mare_pct"][alias]
                f.setdefault("same_as", {})["default"] = alias
        v.update(_summaries(v["folds"], models))
    syn = [f for d in res["datasets"] if res["datasets"][d]["synthetic"] for f in res["datasets"][d]["folds"]]
    if syn:
        res["synthetic_family"].update(_summaries(syn, models))
    res["default_is"] = alias
    res["model_info"]["default"] = MODEL_INFO["default"] + (f" (= {alias})" if alias else "")
    res["configs"] = configs(models, res["quick"])
    res["goals"] = goals(res)
    return res


def _write(res: dict, out: Path, no_readme: bool) -> None:
    write_json(out, res, nonfinite="null")
    print(markdown(res))
    try:
        plot(res, out.with_suffix(".png"))
        print(f"wrote {out} and {out.with_suffix('.png')}")
    except ImportError:
        print(f"wrote {out} (no plot: matplotlib missing)")
    if not no_readme and out.resolve() == (RESULTS / "loco.json").resolve():
        write_section("loco", markdown(res), BENCHMARKS_README, missing="append")
        print(f"updated the loco section of {BENCHMARKS_README}")


def run(args) -> int:
    if getattr(args, "resummarise", None):
        src = Path(args.resummarise)
        _write(resummarise(src), Path(args.out) if args.out else src, args.no_readme)
        return 0
    t_start = time.perf_counter()
    models = _parse_list(args.models, ALL_MODELS, "model") or list(MODELS)
    datasets = _parse_list(args.datasets, REAL + SYNTHETIC, "data set")
    if datasets is None:
        datasets = [d for d in REAL if dataset_available(d)] + list(SYNTHETIC)
        missing = [d for d in REAL if not dataset_available(d)]
        if missing:
            print(f"note: real data set(s) {', '.join(missing)} not found (set NEUMAT_DATA); left out")
    for d in datasets:
        if d in REAL and not dataset_available(d):
            raise NeumatInputError(f"data set '{d}' not found; set NEUMAT_DATA to the folder holding {d}/")
    if args.jobs < 1:
        raise NeumatInputError("--jobs must be >= 1")
    out = Path(args.out) if args.out else RESULTS / "loco.json"
    curves = {d: without_zero_strain(load_dataset(d)) for d in datasets}
    tasks = [(d, k) for d in datasets for k in folds_of(curves[d], args.quick)]
    print(f"loco: {len(tasks)} folds over {len(datasets)} data sets, models {', '.join(models)}, "
          f"{args.jobs} jobs{' (QUICK)' if args.quick else ''}")
    # one BLAS/OpenMP thread per worker: spawned workers read these before numpy loads
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[k] = "1"
    results = []
    bar = None
    try:
        from tqdm import tqdm  # optional: the train extra; only the progress bar
        bar = tqdm(total=len(tasks), desc="loco folds", dynamic_ncols=True)
    except ImportError:
        pass
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn"),
                             initializer=_init_worker) as pool:
        futs = {pool.submit(run_fold, d, k, models, args.quick, args.seed): (d, k) for d, k in tasks}
        for f in as_completed(futs):
            r = f.result()
            results.append(r)
            if bar is not None:
                dm = r["mare_pct"].get(DEFAULT_MODEL)
                bar.set_postfix_str(f"{r['dataset']} fold {r['fold']}: default "
                                    f"{'–' if dm is None else f'{dm:.2g} %'}", refresh=False)
                bar.update(1)
    if bar is not None:
        bar.close()
    res = {"default_model": DEFAULT_MODEL, "models": models, "model_info": {m: MODEL_INFO[m] for m in models},
           "score": f"MARE % over held-out points with strain >= {SCORE_STRAIN}", "quick": bool(args.quick),
           "seed": args.seed, "jobs": args.jobs, "configs": configs(models, args.quick), "datasets": {}}
    for d in datasets:
        fl = sorted([{k: v for k, v in r.items() if k != "dataset"} for r in results if r["dataset"] == d],
                    key=lambda r: r["fold"])
        res["datasets"][d] = {"synthetic": bool(curves[d].synthetic), "n_conditions": len(curves[d].condition_groups()),
                              "folds": fl, **_summaries(fl, models)}
    syn = [f for d in datasets if res["datasets"][d]["synthetic"] for f in res["datasets"][d]["folds"]]
    if syn:
        res["synthetic_family"] = {"datasets": [d for d in datasets if res["datasets"][d]["synthetic"]],
                                   **_summaries(syn, models)}
    res["goals"] = goals(res)
    res["seconds"] = time.perf_counter() - t_start
    res["machine"] = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    res["default_is"] = default_alias(args.quick)
    _write(res, out, args.no_readme)
    return 0
