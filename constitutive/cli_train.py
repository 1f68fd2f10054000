"""``neumat train``, ``neumat cv``, ``neumat search``.

``train`` writes into ``--out``:

- ``model.json``   the FlowNet (``constitutive.flownet``) read by the exporter; ``meta`` holds
                   spec, dataset, data hash, seed, neumat version, held-out conditions, training
                   box; ``box_lo``/``box_hi`` = min/max of the training inputs; ``rate_floor`` =
                   0.1 × the smallest training strain rate (1/s);
- ``config.json``  the TrainConfig used (``--config`` reads the same format), with ``spec`` as
                   built (its first number = the actual input width);
- ``metrics.json`` scores (MARE %, RMSE MPa, R²) on train / validation / held-out curves and
                   per held-out curve, plus the Arrhenius fit's scores for comparison, and
                   ``warnings``: the phases that ended on their step limit (also printed);
- ``weights.pt``, ``transforms.json`` torch state dict and everything to rebuild the model;
- ``history.json`` and plots ``heldout.png`` (measured vs predicted held-out curves),
  ``parity.png``, ``history.png`` (transfer, fine-tuning and Levenberg–Marquardt phases).

``--out`` must be a new or empty folder (``--force`` replaces a previous run). The run is built
in a temporary folder beside it and moved into place when complete: a failed run leaves nothing,
and no file of an earlier run survives next to the new one. A model with ``rank`` normalisation
is train-only: no ``model.json`` is written and the command says so. Every JSON file of
``cv --json`` and ``search --out`` is written atomically (temporary file, then rename).
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .cli_common import add_data_arguments, add_heldout_argument, load_from_args
from .flow_curves import FlowCurves, check_fit_conditions, parse_heldout
from .admissibility import admissibility, plot_admissibility, summary_lines
from .baselines import Arrhenius, without_zero_strain
from .errors import NeumatInputError
from .jsonio import current_umask, write_atomic, write_json
from .laws import arrhenius_stress
from .metrics import per_curve_scores, scores
from .synthetic import DZ411_TEST_CONDITIONS


def _version() -> str:
    try:
        return importlib.metadata.version("neumat")
    except importlib.metadata.PackageNotFoundError:       # noqa: BLE001 - not installed: source tree
        return "0+unknown"


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train a flow-stress model (default: an ensemble of small networks distilled into one)",
        description="Train a flow-stress model on flow curves (inputs strain, strain rate 1/s, temperature °C "
                    "and extra features; output flow stress MPa). Default method (ensemble): 5 plain networks "
                    "(3-15-A-7-A-1 sigmoid), each with its own seed and its own validation curves for early "
                    "stopping, averaged in ln(stress) and distilled into one network of the same size. "
                    "--method network: the residual network with SMOTE and transfer learning from the fitted "
                    "Arrhenius law; --method anchored: a base law x a bounded correction. Held-out curves are "
                    "never used in any fit. Writes model.json (for `neumat export`), metrics.json and plots.",
        epilog="examples:\n"
               "  neumat train --data synthetic_dz411 --out runs/dz411          # its 3 test conditions held out\n"
               "  neumat train --data gleeble_3cr2mo --heldout 1100:1,1200:1 --seed 1 --out runs/g1\n"
               "  neumat train --data my_curves.csv --config best.json --heldout 1100:0.01 --out runs/mine")
    add_data_arguments(p)
    add_heldout_argument(p)
    _common(p)
    p.add_argument("--out", required=True, help="output folder (e.g. runs/NAME); must be new or empty")
    p.add_argument("--force", action="store_true",
                   help="replace the contents of a non-empty --out folder (when the new run is complete)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=run_train)

    p = sub.add_parser(
        "cv", help="leave-one-condition-out cross-validation on the training curves",
        description="k conditions, k fits: each fit leaves one condition's curves out and scores on them "
                    "(MARE %). Held-out conditions (--heldout) are excluded first and never seen.",
        epilog="example:\n  neumat cv --data gleeble_3cr2mo --heldout 1100:1,1200:1 --max-folds 6 --json cv.json")
    add_data_arguments(p)
    add_heldout_argument(p)
    _common(p)
    p.add_argument("--max-folds", type=int, default=None, help="a seeded subset of the folds (default all)")
    p.add_argument("--json", default=None, help="write the CV result here")
    p.set_defaults(func=run_cv)

    p = sub.add_parser(
        "search", help="optuna hyper-parameter search (objective: CV error on training curves)",
        description="Search structure, activation, learning rate, weight decay, SMOTE and preprocessing with "
                    "optuna (TPE, seeded); the objective is the cross-validation MARE (%) on the training "
                    "curves only. Writes the best TrainConfig as JSON for `neumat train --config`.",
        epilog="example:\n  neumat search --data my_curves.csv --heldout 1100:0.01 --trials 40 --out best.json")
    add_data_arguments(p)
    add_heldout_argument(p)
    _common(p)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--max-folds", type=int, default=6, help="CV folds per trial (seeded subset; 0 = all)")
    p.add_argument("--timeout", type=float, default=None, help="seconds")
    p.add_argument("--out", required=True, help="JSON file for the best configuration (train --config reads it)")
    p.set_defaults(func=run_search)


def _common(p) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--config", default=None, help="JSON TrainConfig (e.g. written by neumat search)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--quick", action="store_true", help="small fast settings (seconds)")
    g.add_argument("--method", default=None, choices=["ensemble", "network", "anchored"],
                   help="ensemble (default): 5 plain 3-15-A-7-A-1 sigmoid networks with their own seeds, averaged "
                        "and distilled into one; network: the residual network with SMOTE and transfer from "
                        "Arrhenius (the seed method); anchored: a base law (Arrhenius or log-linear Zener-Hollomon) "
                        "x a bounded correction, chosen by inner cross-validation on the training curves; "
                        "--hybrid, --no-transfer, --spec, --activation and --max-steps imply network")
    g.add_argument("--spec", default=None, help="layer spec, e.g. 4-R-8-A-4-A-R-1 (first number = inputs)")
    g.add_argument("--activation", default=None)
    g.add_argument("--hybrid", default=None, choices=["none", "multiplicative", "additive"])
    g.add_argument("--no-transfer", action="store_true", help="no pre-training on the Arrhenius law")
    g.add_argument("--max-steps", type=int, default=None)
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args):
    from .training import TrainConfig  # optional: torch (train extra)
    if args.config:
        cfg = TrainConfig.load(args.config)
        if args.quick:
            q = TrainConfig.quick()
            for k in ("max_steps", "patience", "transfer_max_steps", "points_per_curve", "transfer_points",
                      "transfer_batch"):
                setattr(cfg, k, getattr(q, k))
    else:
        cfg = TrainConfig.quick() if args.quick else TrainConfig()
    for attr, key in (("spec", "spec"), ("activation", "activation"), ("hybrid", "hybrid"),
                      ("max_steps", "max_steps"), ("threads", "threads")):
        v = getattr(args, attr, None)
        if v is not None:
            setattr(cfg, key, v)
    if args.no_transfer:
        cfg.transfer = False
    method = getattr(args, "method", None)
    if method is not None:
        cfg.method = method
    elif not args.config and (args.no_transfer or any(getattr(args, a, None) is not None
                                                       for a in ("spec", "activation", "hybrid", "max_steps"))):
        cfg.method = "network"      # options of the network method only
    cfg.validate("command line")
    return cfg


def _data_and_heldout(args) -> tuple[FlowCurves, FlowCurves | None, list, str]:
    curves = load_from_args(args)
    name = args.data if not Path(args.data).exists() else Path(args.data).name
    if args.heldout is not None and args.heldout.strip().lower() in ("", "none"):
        held = []
    elif args.heldout is not None:
        held = parse_heldout(args.heldout)
    elif curves.source == "synthetic_dz411" or args.data in ("synthetic", "synthetic_dz411"):
        held = [tuple(c) for c in DZ411_TEST_CONDITIONS]
    else:
        held = []
    if held:
        train, test = curves.split_heldout(held)
        if train.n_curves < 2:
            raise NeumatInputError("the held-out conditions leave fewer than 2 training curves")
    else:
        train, test = curves, None
    check_fit_conditions(train)
    return train, test, held, name


def _progress_enabled(args) -> bool:
    return not args.quiet and sys.stderr.isatty()


def prepare_run_folder(out: Path, force: bool) -> None:
    """Refuse a run folder that holds files unless ``force`` (checked before any work)."""
    if out.exists() and not out.is_dir():
        raise NeumatInputError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise NeumatInputError(f"--out {out}: the folder is not empty (a previous run?); choose another "
                               f"folder or add --force to replace its contents")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NeumatInputError(f"--out {out}: cannot create {out.parent}: {exc.strerror}") from None


def commit_run_folder(tmp: Path, out: Path) -> None:
    """Move the finished run from ``tmp`` to ``out``, replacing what ``out`` held (nothing stale
    stays: no plot or file of an earlier run survives)."""
    if out.is_dir():
        shutil.rmtree(out)
    os.replace(tmp, out)


def stop_warnings(model) -> list[str]:
    """One line per training phase that ended on its step limit instead of its own criterion."""
    cfg, info = model.config, model.info
    out = []
    tr = info.get("transfer")
    if tr and tr.get("stopped") == "max_steps":
        out.append(f"transfer stopped at transfer_max_steps ({cfg.transfer_max_steps}) before the network "
                   f"reached {tr['factor']:g} x the Arrhenius MARE ({tr['train_mare_pct']:.3g} % vs target "
                   f"{tr['target_mare_pct']:.3g} %)")
    ft = info.get("fine_tune") or {}
    if ft.get("stopped") == "max_steps":
        out.append(f"fine-tuning stopped at max_steps ({cfg.max_steps}), not by early stopping (best "
                   f"{ft.get('criterion', 'MARE')} at step {ft.get('best_step')}); more steps "
                   f"(--max-steps) may lower the error")
    lm = ft.get("lm")
    if lm and cfg.lm_steps and lm.get("iterations") == cfg.lm_steps:
        out.append(f"the Levenberg-Marquardt polish used all its lm_steps ({cfg.lm_steps}) iterations "
                   f"(best at {lm.get('best_iteration')})")
    return out


def built_config(model) -> dict:
    """The TrainConfig of ``model`` as written to config.json, the layer spec the network was
    built from (``spec``, or ``anchor_spec`` for the anchored method) with its first number set
    to the network's actual input width (the columns of its input transform; the default's 4 is
    a placeholder)."""
    d = model.config.to_dict()
    holder, key = d, "spec"                                              # where the built network's spec is
    if d.get("method") == "anchored":
        key = "anchor_spec"
    elif d.get("method") == "ensemble":
        holder = d["ensemble_member"] = dict(d["ensemble_member"])
    if isinstance(holder.get(key), str):
        holder[key] = "-".join([str(len(model.in_tf.columns)), *holder[key].split("-")[1:]])
    return d


def run_train(args) -> int:
    from .training import fit, score_model  # optional: torch (train extra)

    cfg = config_from_args(args)
    train, test, held, name = _data_and_heldout(args)
    out = Path(args.out)
    prepare_run_folder(out, args.force)
    # the run is written into a temporary folder beside --out and moved there when complete: a
    # failed run leaves nothing behind and an earlier run in --out stays until the new one is done
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    os.chmod(tmp, 0o777 & ~current_umask())             # mkdtemp's 0700 -> what mkdir would give
    try:
        rc = _train_into(args, cfg, train, test, held, name, tmp, fit, score_model)
        if rc == 0:      # a failed training (rc 1) writes nothing and leaves an earlier run in --out
            commit_run_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if rc == 0:
        print(f"wrote {out}/: " + ", ".join(sorted(p.name for p in out.iterdir())))
    return rc


def _train_into(args, cfg, train, test, held, name, out: Path, fit, score_model) -> int:
    print(train.summary())
    if test is not None:
        print(f"held out: {test.n_curves} curves: " + "; ".join(test.condition_label(c) for c in range(test.n_curves)))
    if cfg.features.get("normalisation") == "rank":
        print("NOTE: rank normalisation is train-only: this model CANNOT be exported (no model.json "
              "is written); choose minmax, mean or zscore to export.")
    t0 = time.perf_counter()
    model = fit(train, cfg, seed=args.seed, progress=_progress_enabled(args), log=print)
    seconds = time.perf_counter() - t0
    from .training import TrainingFailedError, check_trained  # optional: torch (train extra)
    try:
        check_trained(model, train)
    except TrainingFailedError as exc:
        print(f"error: training failed: {exc}", file=sys.stderr)
        return 1

    tr = without_zero_strain(train)
    metrics = {"dataset": name, "seed": args.seed, "train_seconds": seconds,
               "heldout_conditions": [list(c) for c in held],
               "validation_curves": model.info.get("validation_curves", []),
               "train": score_model(model, train)}
    if model.info.get("validation_curves"):
        vi = [train.curve_names.index(n) for n in model.info["validation_curves"]]
        metrics["validation"] = score_model(model, train.subset(vi))
    if test is not None:
        te = without_zero_strain(test)
        pred_te = model.predict_curves(te)
        metrics["heldout"] = scores(pred_te, te.stress)
        metrics["heldout_per_curve"] = per_curve_scores(te, pred_te)
    if model.arrhenius is not None:
        a = lambda c: arrhenius_stress(model.arrhenius, c.strain, c.strain_rate, c.temperature)
        metrics["arrhenius"] = {"train": scores(a(tr), tr.stress)}
        if test is not None:
            metrics["arrhenius"]["heldout"] = scores(a(te), te.stress)
    metrics["transfer"] = model.info.get("transfer")
    metrics["fine_tune"] = model.info.get("fine_tune")
    if "outlier_comparison" in model.info:
        metrics["outlier_comparison"] = model.info["outlier_comparison"]
    warnings = stop_warnings(model)
    if model.info.get("ensemble"):
        metrics["ensemble"] = ens = model.info["ensemble"]
        if ens["student_vs_teacher_mare_pct"] > 1.0:
            warnings.append(f"the distilled network is {ens['student_vs_teacher_mare_pct']:.3g} % MARE away from "
                            f"the ensemble it stands for (more distil_steps / distil_lm_steps may help)")
    if model.info.get("anchored"):
        metrics["anchored"] = model.info["anchored"]
        if model.info["anchored"].get("base_quality") == "poor":
            a = model.info["anchored"]
            warnings.append(f"the Arrhenius base law (order {a['base_order']}) is poor on these curves: "
                            f"{a['base_train_mare_pct']:.3g} % MARE on the training curves; the correction is "
                            f"bounded to ±{a['bound']:g} of it")
    metrics["admissibility"] = admissibility(model.predict, model.box_lo, model.box_hi,
                                             extras_values=_extras_rows(train))
    adm_lines = summary_lines(metrics["admissibility"])
    metrics["warnings"] = warnings

    box = {"lo": model.box_lo, "hi": model.box_hi, "features": model.feature_names}
    meta = {"dataset": name, "source": train.source, "synthetic": bool(train.synthetic),
            "data_hash": train.data_hash(), "seed": args.seed, "version": _version(),
            "training_box": box, "heldout": [list(c) for c in held],
            "train_curves": list(train.curve_names), "method": cfg.method,
            "hybrid": cfg.hybrid if cfg.method == "network" else "none",
            "transfer": bool(cfg.transfer and cfg.method == "network"),
            "rate_floor_rule": "0.1 x smallest training strain rate (1/s)",
            "metrics": {k: metrics[k] for k in ("train", "heldout") if k in metrics}}
    model.save(out)
    if model.exportable:
        model.to_flownet(meta).save(out / "model.json")
    else:
        write_atomic(out / "NOT_EXPORTABLE.txt", "rank normalisation is train-only; retrain with minmax, "
                                                 "mean or zscore to get model.json\n")
    write_json(out / "config.json", built_config(model))
    write_json(out / "metrics.json", metrics)
    write_json(out / "history.json", model.history, indent=None)
    if not args.no_plots:
        write_plots(model, train, test, out)
    line = f"train MARE {metrics['train']['mare_pct']:.3f} %"
    if "heldout" in metrics:
        line += f", held-out MARE {metrics['heldout']['mare_pct']:.3f} % (RMSE {metrics['heldout']['rmse_mpa']:.3f} MPa)"
    if "arrhenius" in metrics and "heldout" in metrics["arrhenius"]:
        line += f"; Arrhenius held-out {metrics['arrhenius']['heldout']['mare_pct']:.3f} %"
    print(f"{line}; {seconds:.1f} s")
    if not args.no_plots:
        _plot_admissibility(model, train, out)
    for w in adm_lines:
        print(w)
    for w in warnings:
        print(f"warning: {w}")
    return 0


def _plot_admissibility(model, train: FlowCurves, out: Path) -> None:
    """admissibility.png: σ maps and σ(T), σ(ε̇) beside an Arrhenius law fitted on the same curves."""
    try:
        law = Arrhenius().fit(without_zero_strain(train))
        classical = law.predict
    except NeumatInputError:
        classical = None
    rows = _extras_rows(train)
    plot_admissibility(model.predict, model.box_lo, model.box_hi, np.unique(train.conditions()[:, :2], axis=0),
                       out / "admissibility.png", classical=classical, extras=None if rows is None else rows[0],
                       title=train.source + (" (SYNTHETIC data)" if train.synthetic else ""))


def _extras_rows(train: FlowCurves):
    """The distinct extra-feature rows of the training curves (at most 4), for the admissibility grid."""
    if not train.extra_names:
        return None
    rows = np.unique(train.conditions()[:, 2:], axis=0)
    return rows[:4]


PHASES = ("transfer", "fine-tune", "distil", "lm")
PHASE_LABELS = {"lm": "Levenberg-Marquardt"}


def history_series(history: list[dict]) -> dict[str, tuple[list, list, list | None]]:
    """{phase: (x, train MARE %, validation MARE % or None)} for the phases present, in training
    order (transfer, fine-tune, lm), each phase's x shifted to start after the previous one's
    end (Adam steps, then LM iterations) so that the three read as one history."""
    out, off = {}, 0
    for phase in PHASES:
        rows = [r for r in history if r["phase"] == phase]
        if not rows:
            continue
        x = [r["step"] + off for r in rows]
        val = [r["val_mare_pct"] for r in rows] if "val_mare_pct" in rows[0] else None
        out[phase] = (x, [r["train_mare_pct"] for r in rows], val)
        off = x[-1]
    return out


def write_plots(model, train: FlowCurves, test: FlowCurves | None, out: Path) -> None:
    import matplotlib  # optional: matplotlib (train extra)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional: matplotlib (train extra)

    show = test if test is not None else train.subset(list(range(min(6, train.n_curves))))
    show = without_zero_strain(show)
    tag = f" — {train.source}" + (" (SYNTHETIC data)" if train.synthetic else "")
    fig, ax = plt.subplots(figsize=(7, 5))
    for c in range(show.n_curves):
        i = show.curve_points(c)
        o = np.argsort(show.strain[i])
        i = i[o]
        line, = ax.plot(show.strain[i], show.stress[i], ".", ms=2)
        ax.plot(show.strain[i], model.predict(show.features()[i]), "-", color=line.get_color(),
                label=show.condition_label(c))
    ax.set_xlabel("true strain")
    ax.set_ylabel("true stress (MPa)")
    ax.set_title(("held-out" if test is not None else "training") + " curves: measured (dots), model (lines)" + tag,
                 fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "heldout.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    tr = without_zero_strain(train)
    ax.plot(tr.stress, model.predict_curves(tr), ".", ms=1, alpha=0.4, label="train")
    if test is not None:
        te = without_zero_strain(test)
        ax.plot(te.stress, model.predict_curves(te), ".", ms=2, label="held-out")
    lim = [0, max(tr.stress.max(), 1.0) * 1.05]
    ax.plot(lim, lim, "k-", lw=0.8)
    ax.set_xlabel("measured stress (MPa)")
    ax.set_ylabel("predicted stress (MPa)")
    ax.set_title("parity" + tag, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "parity.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    for phase, (st, train_mare, val_mare) in history_series(model.history).items():
        label = PHASE_LABELS.get(phase, phase)
        ax.semilogy(st, train_mare, label=f"{label}: train MARE")
        if val_mare is not None:
            ax.semilogy(st, val_mare, "--", label=f"{label}: validation MARE")
        ax.axvline(st[0], color="0.8", lw=0.6)
    ax.set_xlabel("step (Adam) / iteration (Levenberg-Marquardt), one axis, phases in order")
    ax.set_ylabel("MARE (%)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no iterative training history for this method", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(out / "history.png", dpi=110)
    plt.close(fig)


def run_cv(args) -> int:
    from .selection import cross_validate  # optional: torch (train extra)
    cfg = config_from_args(args)
    train, _, held, _ = _data_and_heldout(args)
    print(f"leave-one-condition-out CV on {train.n_curves} training curves"
          + (f" ({len(held)} held-out conditions excluded)" if held else ""))
    res = cross_validate(train, cfg, seed=args.seed, max_folds=args.max_folds,
                         progress=_progress_enabled(args), log=print)
    print(f"CV MARE {res['mean_mare_pct']:.3f} ± {res['std_mare_pct']:.3f} % over {res['n_folds']} folds "
          f"({res['seconds']:.0f} s)")
    if args.json:
        write_json(args.json, res)
    return 0


def run_search(args) -> int:
    from .selection import search  # optional: torch and optuna (train extra)
    cfg = config_from_args(args)
    train, _, held, _ = _data_and_heldout(args)
    if args.trials < 1:
        raise NeumatInputError("--trials must be >= 1")
    print(f"optuna search: {args.trials} trials, objective = leave-one-condition-out MARE on "
          f"{train.n_curves} training curves (held-out curves never used)")
    res = search(train, cfg, n_trials=args.trials, seed=args.seed, max_folds=args.max_folds or None,
                 timeout=args.timeout, log=print)
    out = Path(args.out)
    write_json(out, res["best_config"])
    write_json(out.with_suffix(".search.json"), res)
    print(f"best CV MARE {res['best_cv_mare_pct']:.3f} %: {res['best_params']}")
    print(f"wrote {out} (use: neumat train --config {out} ...) and {out.with_suffix('.search.json')}")
    return 0
