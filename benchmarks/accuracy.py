"""``neumat benchmark accuracy``: the networks against the phenomenological laws on gleeble_3cr2mo.

Protocols (as in Tize Mha et al. 2023, see shared/reference/anchors.md):

- ``full``   fit on all 30 curves, score on all 30;
- ``interp`` fit without the five 1 s⁻¹ curves, score on them (held out) and on the rest;
- ``extrap`` fit without the five 5 s⁻¹ curves, score on them.

Models: Arrhenius (order 9), Hensel–Spittel, Johnson–Cook (``constitutive.baselines``), a plain
MLP ``3-15-A-7-A-1`` with sigmoid (like the paper's ANN), the residual network without transfer,
with transfer from Arrhenius, and the hybrid (network × Arrhenius correction). Every network is
trained with ``--seeds`` seeds (mean ± std). The hyper-parameters are fixed in ``NETWORKS`` below
and were chosen without the held-out curves (method.md defaults, training-curve fit).

Learning curve: fixed test set of 6 curves; nested training subsets of 6, 12, 18, 24 of the other
24 curves, each starting with the four corners, then in an order fixed by seed 0.

Scores: MARE (%), RMSE (MPa), R² over all points with strain > 0 (the first point of each curve
is dropped as by the baselines and the reference study). Networks are evaluated without the
box clamp (the exported model clamps by default; here extrapolation is the point).

Writes ``benchmarks/results/accuracy.json``, plots ``accuracy_*.png`` and prints the markdown table
that ``benchmarks/README.md`` carries.
"""
from __future__ import annotations

import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from constitutive.baselines import Arrhenius, evaluate_protocol, without_zero_strain
from constitutive.datasets import dataset_available, load
from constitutive.errors import NeumatInputError
from constitutive.jsonio import write_json
from constitutive.metrics import scores

from .readme_sections import BENCHMARKS_README, write_section

RESULTS = Path(__file__).resolve().parent / "results"
DATASET = "gleeble_3cr2mo"
TEMPS = (1050.0, 1100.0, 1150.0, 1200.0, 1250.0)
PROTOCOLS = {"full": [], "interp": [(t, 1.0) for t in TEMPS], "extrap": [(t, 5.0) for t in TEMPS]}
LC_TEST = [(1100, 0.01), (1100, 2), (1150, 0.1), (1150, 5), (1200, 0.001), (1200, 1)]
LC_CORNERS = [(1050, 0.001), (1050, 5), (1250, 0.001), (1250, 5)]
LC_SIZES = (6, 12, 18, 24)
BASELINE_NAMES = ("arrhenius", "hensel_spittel", "johnson_cook")
PUBLISHED = {   # anchors.md, MARE % (held-out curves for interp/extrap; all 30 for full)
    "full": {"johnson_cook": 14.05, "hensel_spittel": 7.75, "arrhenius": 3.56, "ann": 0.62},
    "interp": {"johnson_cook": 14.87, "hensel_spittel": 3.74, "arrhenius": 1.46, "ann": 2.47},
    "extrap": {"johnson_cook": 20.16, "hensel_spittel": 7.73, "arrhenius": 3.53, "ann": 3.87},
}
GOALS = {"full": 0.6, "interp": 1.2, "extrap": 3.0, "learning_curve_12": 2.5}

# The networks of the benchmark (TrainConfig overrides). Structure and optimiser from the fit on
# all 30 curves (full protocol); validation-curve early stopping and weight decay 1e-3 chosen by
# leave-one-condition-out CV on the 25 TRAINING curves of the interp protocol (8 seeded folds,
# results/accuracy_selection.json), as are SMOTE between curves (ratio 1) for the three residual
# networks and the transfer stopping factor 1.1 (against 1.5); the plain MLP stays plain (no
# augmentation), like the reference ANN. The held-out curves play no part in these choices.
_COMMON = dict(lr=1e-2, lr_final=1e-3, max_steps=1500, patience=1000, points_per_curve=60,
               val_fraction=0.15, eval_every=50, lm_steps=300, lm_patience=30, weight_decay=1e-3,
               transfer_max_steps=1500, transfer_lr=1e-2)
RESNET = dict(_COMMON, spec="3-R-16-A-8-A-R-1", activation="tanh", smote_ratio=1.0, smote_across=True)
NETWORKS = {
    "mlp_sigmoid": dict(_COMMON, spec="3-15-A-7-A-1", activation="sigmoid", transfer=False),
    "resnet": dict(RESNET, transfer=False),
    "resnet_transfer": dict(RESNET, transfer=True, transfer_factor=1.1),
    "hybrid": dict(RESNET, transfer=False, hybrid="multiplicative"),
    # exactly what `neumat train` does without options (TrainConfig(), the ensemble method)
    "default": dict(method="ensemble"),
}
# full: fitted and scored on all 30 curves, nothing to generalise to, so no validation curves are
# set aside (as the reference ANN); the other protocols stop early on validation curves.
FULL_OVERRIDES = dict(val_fraction=0.0)
LC_NETWORKS = ("mlp_sigmoid", "resnet_transfer", "hybrid", "default")
QUICK_OVERRIDES = dict(max_steps=150, patience=100, transfer_max_steps=100, points_per_curve=15,
                       eval_every=25, transfer_points=2048, transfer_batch=256, lm_steps=3)


def add_arguments(p) -> None:
    p.add_argument("--quick", action="store_true",
                   help="tiny settings (seconds per fit, 1 seed, the interp protocol, learning-curve size 6 only); "
                        "results go to --out, never over the committed JSON unless --out says so")
    p.add_argument("--seeds", type=int, default=3, help="seeds per network (default 3)")
    p.add_argument("--jobs", type=int, default=2, help="parallel worker processes (default 2)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/accuracy.json; "
                                               "with --quick a temporary file beside it)")
    p.add_argument("--no-learning-curve", action="store_true")
    p.add_argument("--no-plots", action="store_true")


# ---------------------------------------------------------------------------------------------
def _load():
    return without_zero_strain(load(DATASET))


def lc_order(curves) -> list[tuple[float, float]]:
    """Training-curve order of the learning curve: the 4 corners, then the rest by seed 0."""
    conds = [tuple(float(v) for v in c[:2]) for c in curves.conditions()]
    test = {(float(t), float(r)) for t, r in LC_TEST}
    corners = [(float(t), float(r)) for t, r in LC_CORNERS]
    rest = sorted(c for c in conds if c not in test and c not in corners)
    perm = np.random.default_rng(0).permutation(len(rest))
    return corners + [rest[i] for i in perm]


def _job(task: dict) -> dict:
    """One network training (runs in a worker process)."""
    import torch  # optional: torch (the train extra)
    from constitutive.training import TrainConfig, fit  # optional: imports torch (the train extra)
    torch.set_num_threads(1)
    curves = _load()
    train = curves.subset(curves.match_conditions(task["train"]))
    held = curves.subset(curves.match_conditions(task["test"])) if task["test"] else None
    cfg = TrainConfig.from_dict(task["config"])
    t0 = time.perf_counter()
    model = fit(train, cfg, seed=task["seed"], arrhenius=task.get("arrhenius"))
    out = {"key": task["key"], "seconds": time.perf_counter() - t0,
           "train": scores(model.predict_curves(train), train.stress),
           "transfer": model.info.get("transfer"), "fine_tune": model.info.get("fine_tune")}
    if held is not None:
        out["heldout"] = scores(model.predict_curves(held), held.stress)
    out["all"] = scores(model.predict_curves(curves), curves.stress) if task.get("score_all") else None
    if task.get("curves_for_plot"):
        out["plot"] = {lab: model.predict(curves.subset(curves.match_conditions([c])).features()).tolist()
                       for lab, c in task["curves_for_plot"].items()}
    return out


def _agg(runs: list[dict], part: str) -> dict | None:
    vals = [r[part] for r in runs if r.get(part)]
    if not vals:
        return None
    out = {}
    for k in ("mare_pct", "rmse_mpa", "r2"):
        a = np.array([v[k] for v in vals])
        out[k] = float(a.mean())
        out[k + "_std"] = float(a.std())
    out["n_seeds"] = len(vals)
    return out


def run(args) -> int:
    from constitutive.training import TrainConfig, fit_arrhenius  # optional: imports torch (the train extra)

    if not dataset_available(DATASET):
        raise NeumatInputError(f"the accuracy benchmark needs the shared data set {DATASET} "
                               f"(set NEUMAT_DATA to the folder holding {DATASET}/)")
    quick = bool(args.quick)
    seeds = list(range(1 if quick else max(1, args.seeds)))
    out_path = Path(args.out) if args.out else (RESULTS / ("accuracy_quick.json" if quick else "accuracy.json"))
    protocols = {k: PROTOCOLS[k] for k in (("interp",) if quick else PROTOCOLS)}
    sizes = (6,) if quick else LC_SIZES
    networks = {k: dict(v, **QUICK_OVERRIDES) if quick else dict(v) for k, v in NETWORKS.items()}
    t_start = time.perf_counter()
    curves = _load()
    all_conds = [tuple(float(v) for v in c[:2]) for c in curves.conditions()]

    result = {"dataset": DATASET, "quick": quick, "seeds": seeds,
              "networks": {k: TrainConfig.from_dict(v).to_dict() for k, v in networks.items()},
              "full_protocol_overrides": FULL_OVERRIDES,
              "goals_mare_pct": GOALS, "published_mare_pct": PUBLISHED,
              "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                          "cpu_count": os.cpu_count(), "jobs": args.jobs},
              "protocols": {}, "learning_curve": None}
    tasks = []
    arr_cache = {}
    for pname, held in protocols.items():
        heldset = {(float(t), float(r)) for t, r in held}
        train_conds = [c for c in all_conds if c not in heldset]
        t0 = time.perf_counter()
        base = evaluate_protocol(curves, held, models=BASELINE_NAMES, dataset=DATASET, protocol=pname,
                                 drop_zero_strain=False)
        base["seconds_baselines"] = time.perf_counter() - t0
        result["protocols"][pname] = base
        arr_cache[pname] = fit_arrhenius(curves.subset(curves.match_conditions(train_conds)))
        plot = {f"{t:g} °C, {r:g} 1/s": (t, r) for t, r in (held or [(1150.0, 1.0)])}
        for net, cfg in networks.items():
            for s in seeds:
                tasks.append({"key": ("protocol", pname, net, s), "train": train_conds, "test": list(held),
                              "config": dict(cfg, **FULL_OVERRIDES) if pname == "full" else cfg, "seed": s, "score_all": True, "curves_for_plot": plot,
                              "arrhenius": arr_cache[pname] if (cfg.get("transfer") or cfg.get("hybrid")) else None})
        print(f"[{pname}] baselines: " + ", ".join(
            f"{m} {v['heldout' if held else 'all']['mare_pct']:.2f} %" for m, v in base["models"].items()), flush=True)

    lc = None
    if not args.no_learning_curve:
        order = lc_order(curves)
        test = [(float(t), float(r)) for t, r in LC_TEST]
        test_curves = curves.subset(curves.match_conditions(test))
        lc = {"test_conditions": test, "order": order, "sizes": list(sizes), "models": {}}
        arr_lc = {}
        for n in sizes:
            tr = curves.subset(curves.match_conditions(order[:n]))
            try:
                a = Arrhenius(order=9).fit(tr)
                arr_lc[n] = a.params
                lc["models"].setdefault("arrhenius", {})[str(n)] = {
                    "heldout": scores(a.predict_curves(test_curves), test_curves.stress),
                    "train": scores(a.predict_curves(tr), tr.stress)}
            except NeumatInputError as exc:
                arr_lc[n] = None
                lc["models"].setdefault("arrhenius", {})[str(n)] = {"error": str(exc)}
            for net in LC_NETWORKS:
                for s in seeds:
                    tasks.append({"key": ("lc", str(n), net, s), "train": order[:n], "test": test,
                                  "config": networks[net], "seed": s, "score_all": False,
                                  "arrhenius": arr_lc[n]})
        result["learning_curve"] = lc

    print(f"{len(tasks)} network trainings on {args.jobs} worker(s) ...", flush=True)
    runs: dict = {}
    done = 0
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as ex:
            for r in ex.map(_job, tasks):
                done += 1
                runs.setdefault(tuple(r["key"][:3]), []).append(r)
                _report(r, done, len(tasks), t_start)
    else:
        for t in tasks:
            r = _job(t)
            done += 1
            runs.setdefault(tuple(r["key"][:3]), []).append(r)
            _report(r, done, len(tasks), t_start)

    for (kind, a, net), rs in runs.items():
        entry = {"train": _agg(rs, "train"), "heldout": _agg(rs, "heldout"), "all": _agg(rs, "all"),
                 "seconds_mean": float(np.mean([r["seconds"] for r in rs])),
                 "per_seed": [{k: r.get(k) for k in ("train", "heldout", "all", "seconds", "transfer", "fine_tune")}
                              for r in rs]}
        if kind == "protocol":
            result["protocols"][a]["models"][net] = entry
            result["protocols"][a].setdefault("_plot", {})[net] = rs[0].get("plot")
        else:
            lc["models"].setdefault(net, {})[a] = entry
    result["seconds_total"] = time.perf_counter() - t_start
    plots = result["protocols"]
    plot_data = {p: plots[p].pop("_plot", {}) for p in plots}
    write_json(out_path, result)
    table = markdown_table(result)
    print(table)
    print(f"total {result['seconds_total']:.0f} s; wrote {out_path}")
    if not args.no_plots:
        write_plots(result, plot_data, curves, out_path.parent, prefix="accuracy_quick" if quick else "accuracy")
    if not quick and args.out is None:
        update_readme(result)
    return 0


def readme_section(result: dict) -> str:
    m = result["machine"]
    goals = result["goals_mare_pct"]
    lines = ["## Accuracy of the networks (gleeble_3cr2mo)", "",
             "`neumat benchmark accuracy` (code: `benchmarks/accuracy.py`, results: `results/accuracy.json`, "
             "plots `results/accuracy_*.png`). MARE in %; networks: mean ± std over "
             f"{len(result['seeds'])} seeds; points at strain 0 excluded (as for the baselines). "
             "Published figures (Tize Mha et al. 2023, anchors.md) in italics.", "",
             markdown_table(result), "",
             f"Goals: full ≤ {goals['full']} %, interp ≤ {goals['interp']} %, extrap ≤ {goals['extrap']} %, "
             f"learning curve at 12 curves ≤ {goals['learning_curve_12']} %.", "",
             *verdicts(result), "",
             f"Run: {result['seconds_total'] / 60:.1f} min on {m['cpu_count']} CPU cores ({m['jobs']} worker "
             f"processes, 1 torch thread each), {m['platform']}, machine shared with other jobs."]
    return "\n".join(lines)


NETS = ("mlp_sigmoid", "resnet", "resnet_transfer", "hybrid", "default")


def verdicts(result: dict) -> list[str]:
    """Which goal is met by which network, computed from the result (no figures typed in)."""
    goals, out = result["goals_mare_pct"], []
    for p, part in (("full", "all"), ("interp", "heldout"), ("extrap", "heldout")):
        models = result["protocols"].get(p, {}).get("models", {})
        nets = {m: models[m][part]["mare_pct"] for m in NETS if m in models and models[m].get(part)}
        if not nets:
            continue
        best = min(nets, key=nets.get)
        arr = models.get("arrhenius", {}).get(part, {}).get("mare_pct")
        gap = nets[best] - goals[p]
        state = "met" if gap <= 0 else f"missed by {gap:.2f} points"
        dflt = ""
        if "default" in nets:
            dgap = nets["default"] - goals[p]
            dflt = f"default model {nets['default']:.2f} % ({'met' if dgap <= 0 else f'missed by {dgap:.2f} points'}); "
        out.append(f"- `{p}`: {dflt}best network {LABELS[best]} {nets[best]:.2f} % (goal {goals[p]} %: {state}; "
                   f"our Arrhenius {arr:.2f} %). Per network: "
                   + ", ".join(f"{LABELS[m]} {v:.2f}" for m, v in nets.items()) + ".")
    lc = result.get("learning_curve")
    lc_net = next((m for m in ("default", "resnet_transfer") if lc and m in lc["models"]), None)
    if lc_net:
        tl = lc["models"][lc_net]
        v12 = tl.get("12", {}).get("heldout", {}).get("mare_pct")
        if v12 is not None:
            gap = v12 - goals["learning_curve_12"]
            out.append(f"- learning curve, 12 curves: {LABELS[lc_net]} {v12:.2f} % (goal {goals['learning_curve_12']} %: "
                       + ("met" if gap <= 0 else f"missed by {gap:.2f} points") + ").")
        for rival in ("arrhenius", "mlp_sigmoid"):
            beats = [n for n in lc["sizes"] if tl.get(str(n), {}).get("heldout") and
                     lc["models"].get(rival, {}).get(str(n), {}).get("heldout") and
                     tl[str(n)]["heldout"]["mare_pct"] < lc["models"][rival][str(n)]["heldout"]["mare_pct"]]
            out.append(f"- {LABELS[lc_net]} beats {LABELS[rival]} at {', '.join(map(str, beats)) or 'no'} of "
                       f"{', '.join(map(str, lc['sizes']))} training curves.")
    for p in ("interp", "extrap"):
        models = result["protocols"].get(p, {}).get("models", {})
        if "hybrid" in models and "resnet_transfer" in models:
            hh, tt = models["hybrid"]["heldout"], models["resnet_transfer"]["heldout"]
            h, t = hh["mare_pct"], tt["mare_pct"]
            close = abs(h - t) < max(hh.get("mare_pct_std", 0.0), tt.get("mare_pct_std", 0.0))
            out.append(f"- hybrid vs transfer on `{p}` held-out curves: {'hybrid' if h < t else 'transfer'} "
                       f"{'ahead, within the seed scatter' if close else 'wins'} "
                       f"({h:.3f} ± {hh.get('mare_pct_std', 0):.2f} vs {t:.3f} ± {tt.get('mare_pct_std', 0):.2f} %).")
    return out


def update_readme(result: dict, path: Path = BENCHMARKS_README) -> None:
    """Replace only the accuracy section of benchmarks/README.md (nothing when its markers are absent)."""
    write_section("accuracy", readme_section(result), path, missing="skip")


def _report(r, done, total, t0):
    kind, a, net, s = r["key"]
    h = r.get("heldout") or r.get("all") or r["train"]
    print(f"  [{done}/{total}] {kind} {a} {net} seed {s}: MARE {h['mare_pct']:.3f} % "
          f"({r['seconds']:.0f} s; elapsed {time.perf_counter() - t0:.0f} s)", flush=True)


LABELS = {"johnson_cook": "JC", "hensel_spittel": "HS", "arrhenius": "Arrhenius (m=9)",
          "mlp_sigmoid": "MLP 3-15-A-7-A-1 sigmoid", "resnet": "residual net, no transfer",
          "resnet_transfer": "residual net + transfer", "hybrid": "hybrid σ_A·(1+net)",
          "default": "default (5 MLPs averaged, distilled)"}


def _fmt(e: dict | None, part: str) -> str:
    if not e or not e.get(part):
        return "–"
    v = e[part]
    s = f"{v['mare_pct']:.2f}"
    if "mare_pct_std" in v:
        s += f" ± {v['mare_pct_std']:.2f}"
    return s


def markdown_table(result: dict) -> str:
    lines = []
    ps = result["protocols"]
    names = list(dict.fromkeys(m for p in ps.values() for m in p["models"]))
    hdr = "| model | full: all 30 | interp: 1 s⁻¹ held out | interp: fitted 25 | extrap: 5 s⁻¹ held out | extrap: fitted 25 |"
    lines += [hdr, "| --- | --- | --- | --- | --- | --- |"]
    for m in names:
        row = [LABELS.get(m, m)]
        row.append(_fmt(ps.get("full", {}).get("models", {}).get(m), "all"))
        for p in ("interp", "extrap"):
            e = ps.get(p, {}).get("models", {}).get(m)
            row += [_fmt(e, "heldout"), _fmt(e, "train")]
        lines.append("| " + " | ".join(row) + " |")
    pub = result["published_mare_pct"]
    lines.append(f"| *published AR* | *{pub['full']['arrhenius']}* | *{pub['interp']['arrhenius']}* | *3.96* | "
                 f"*{pub['extrap']['arrhenius']}* | *4.03* |")
    lines.append(f"| *published ANN 3-15-7-1* | *{pub['full']['ann']}* | *{pub['interp']['ann']}* | *0.70* | "
                 f"*{pub['extrap']['ann']}* | *0.61* |")
    lc = result.get("learning_curve")
    if lc:
        lines += ["", "Learning curve (MARE % on the fixed 6-curve test set):", "",
                  "| model | " + " | ".join(f"{n} curves" for n in lc["sizes"]) + " |",
                  "| --- |" + " --- |" * len(lc["sizes"])]
        for m, per in lc["models"].items():
            cells = []
            for n in lc["sizes"]:
                e = per.get(str(n))
                cells.append(_fmt(e, "heldout") if e and "error" not in e else "fit failed")
            lines.append(f"| {LABELS.get(m, m)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_plots(result, plot_data, curves, folder: Path, prefix: str) -> None:
    import matplotlib  # optional: matplotlib (the train extra)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional: matplotlib (the train extra)
    for p, per in plot_data.items():
        if not per:
            continue
        labels = list(next(iter(per.values())).keys()) if next(iter(per.values())) else []
        if not labels:
            continue
        fig, axes = plt.subplots(1, len(labels), figsize=(3.2 * len(labels), 3.2), squeeze=False)
        for ax, lab in zip(axes[0], labels):
            t, r = (float(v) for v in lab.replace(" °C,", "").replace(" 1/s", "").split())
            c = curves.subset(curves.match_conditions([(t, r)]))
            ax.plot(c.strain, c.stress, "k.", ms=1, label="measured")
            for net, pr in per.items():
                if pr and lab in pr:
                    ax.plot(c.strain, pr[lab], "-", lw=1, label=LABELS.get(net, net))
            ax.set_title(lab, fontsize=8)
            ax.set_xlabel("true strain")
        axes[0][0].set_ylabel("true stress (MPa)")
        axes[0][-1].legend(fontsize=6)
        fig.suptitle(f"{p}: {'held-out curves' if result['protocols'][p]['heldout'] else 'one fitted curve'} (seed 0)",
                     fontsize=9)
        fig.tight_layout()
        fig.savefig(folder / f"{prefix}_{p}.png", dpi=110)
        plt.close(fig)
    lc = result.get("learning_curve")
    if lc:
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for m, per in lc["models"].items():
            xs, ys, es = [], [], []
            for n in lc["sizes"]:
                e = per.get(str(n))
                if e and e.get("heldout"):
                    xs.append(n)
                    ys.append(e["heldout"]["mare_pct"])
                    es.append(e["heldout"].get("mare_pct_std", 0.0))
            if xs:
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=LABELS.get(m, m))
        ax.axhline(GOALS["learning_curve_12"], color="grey", ls=":", lw=0.8)
        ax.set_xlabel("training curves")
        ax.set_ylabel("test MARE (%)")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(folder / f"{prefix}_learning_curve.png", dpi=110)
        plt.close(fig)
