"""``neumat baselines``: fit Arrhenius / Hensel–Spittel / Johnson–Cook and score them.

Protocols:

- ``full``    fit and score on all curves (with ``--heldout``, the named curves are held out);
- ``interp``  hold out the 1 1/s curves (gleeble_3cr2mo; other data: give ``--heldout``);
- ``extrap``  hold out the 5 1/s curves (gleeble_3cr2mo; other data: give ``--heldout``).

Points at strain 0 are dropped before fitting and scoring (as in the reference study) unless
``--keep-zero-strain``. Writes the result dict of ``baselines.evaluate_protocol`` with ``--json``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .baselines import BASELINES, evaluate_protocol, make_model, without_zero_strain
from .cli_common import add_data_arguments, add_heldout_argument, heldout_from_args, load_from_args
from .errors import NeumatInputError
from .flow_curves import check_fit_conditions
from .jsonio import write_json

PROTOCOLS = ("full", "interp", "extrap")
DESCRIPTION = """\
Fit the strain-compensated Arrhenius, Hensel–Spittel and Johnson–Cook laws and score them
(MARE %, RMSE MPa, R² over all points) on the fitted, held-out and all curves.

protocols:
  full    fit and score on all curves (with --heldout: all but the named curves)
  interp  hold out the 1 1/s curves of gleeble_3cr2mo (other data: give --heldout)
  extrap  hold out the 5 1/s curves of gleeble_3cr2mo (other data: give --heldout)

Points at strain 0 are dropped before fitting and scoring, as in the reference study,
unless --keep-zero-strain. Extra features (e.g. direction) are ignored by all three laws."""
# Held-out strain rate (1/s) of each protocol on the data sets that define one.
PROTOCOL_RATES = {"gleeble_3cr2mo": {"interp": 1.0, "extrap": 5.0}}


def register(sub) -> None:
    p = sub.add_parser("baselines", help="fit and score the Arrhenius, Hensel–Spittel and Johnson–Cook laws",
                       description=DESCRIPTION,
                       epilog="examples:\n"
                              "  neumat baselines --data gleeble_3cr2mo --protocol full\n"
                              "  neumat baselines --data my_curves.csv --heldout 1100:0.01 --json scores.json --save-dir fits/")
    add_data_arguments(p)
    p.add_argument("--protocol", default="full",
                   help="full | interp | extrap (interp/extrap hold out the 1 or 5 1/s curves of "
                        "gleeble_3cr2mo; for other data give --heldout)")
    add_heldout_argument(p)
    p.add_argument("--order", type=int, default=9, help="Arrhenius polynomial order in strain, 1…9 (default 9)")
    p.add_argument("--arrhenius-alpha", default="standard", choices=["standard", "fit"],
                   help="α per strain level: standard (β/n₁, as the reference study) or fit")
    p.add_argument("--hs-objective", default="relative", choices=["relative", "absolute", "log"],
                   help="Hensel–Spittel fit objective: relative stress error (lowest MARE, default), "
                        "absolute stress error in MPa (the reference study's), or log-space only")
    p.add_argument("--models", default=",".join(BASELINES),
                   help=f"comma-separated subset of {', '.join(BASELINES)}")
    p.add_argument("--melting-temperature", type=float, default=1460.0,
                   help="Johnson–Cook T_melt in °C (default 1460)")
    p.add_argument("--keep-zero-strain", action="store_true",
                   help="keep the points at strain 0 (dropped by default, as in the reference study)")
    p.add_argument("--json", help="write the scores to this JSON file")
    p.add_argument("--save-dir", help="write each fitted model as <model>.json into this folder")
    p.set_defaults(func=run)


def heldout_for(args, curves) -> list[tuple[float, ...]]:
    if args.protocol not in PROTOCOLS:
        raise NeumatInputError(f"--protocol '{args.protocol}' unknown; use one of {', '.join(PROTOCOLS)}")
    explicit = heldout_from_args(args)
    if explicit:
        return explicit
    if args.protocol == "full":
        return []
    rates = PROTOCOL_RATES.get(args.data)
    if rates is None:
        raise NeumatInputError(f"--protocol {args.protocol} defines its held-out curves for "
                               f"{', '.join(PROTOCOL_RATES)} only; for '{args.data}' give --heldout \"T:rate,...\"")
    conds = curves.conditions()
    hit = conds[np.isclose(conds[:, 1], rates[args.protocol])]
    if len(hit) == 0:
        raise NeumatInputError(f"--protocol {args.protocol}: no curve at {rates[args.protocol]:g} 1/s in {args.data}")
    return [tuple(float(x) for x in c[:2]) for c in hit]


def format_table(result: dict) -> str:
    cols = [("train", "fitted curves"), ("heldout", "held-out curves"), ("all", "all curves")]
    head = f"{'model':<16}" + "".join(f"| {label:^27} " for _, label in cols)
    sub = f"{'':<16}" + "| MARE %  RMSE MPa     R²    " * len(cols)
    lines = [head, sub, "-" * len(sub)]
    for name, e in result["models"].items():
        row = f"{name:<16}"
        for key, _ in cols:
            s = e.get(key)
            r2 = f"{s['r2']:7.4f}" if s and s["r2"] is not None else f"{'–':>7}"
            row += "|" + (f" {s['mare_pct']:6.2f}  {s['rmse_mpa']:8.3f}  {r2}  " if s else f"{'–':^29}")
        lines.append(row)
    return "\n".join(lines)


def run(args) -> int:
    if args.protocol not in PROTOCOLS:
        raise NeumatInputError(f"--protocol '{args.protocol}' unknown; use one of {', '.join(PROTOCOLS)}")
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in names:
        if m not in BASELINES:
            raise NeumatInputError(f"--models: '{m}' unknown; use {', '.join(BASELINES)}")
    options = {"arrhenius": {"order": args.order, "alpha_method": args.arrhenius_alpha},
               "hensel_spittel": {"objective": args.hs_objective},
               "johnson_cook": {"melting_temperature": args.melting_temperature}}
    for m in names:
        make_model(m, **options.get(m, {}))          # option errors before the (slower) load
    curves = load_from_args(args)
    heldout = heldout_for(args, curves)
    if heldout:
        curves.match_conditions(heldout)            # a condition matching nothing: error now
    check_fit_conditions(curves.split_heldout(heldout)[0] if heldout else curves, "the fitted curves")
    shown = curves if args.keep_zero_strain else without_zero_strain(curves)
    print(shown.summary())
    if curves.extras:
        print(f"  note: the baselines ignore the extra features ({', '.join(curves.extras)})")
    result, fitted = evaluate_protocol(curves, heldout, models={m: options.get(m, {}) for m in names},
                                       dataset=args.data, protocol=args.protocol,
                                       drop_zero_strain=not args.keep_zero_strain, return_models=True)
    held = result["heldout"]
    print(f"\nprotocol {args.protocol}: fitted on {shown.n_curves - len(held)} curves"
          + (f", held out {len(held)}: " + ", ".join("(" + ", ".join(f"{x:g}" for x in c) + ")" for c in held)
             if held else "") + "  [T °C, rate 1/s" + "".join(f", {k}" for k in curves.extras) + "]")
    print(format_table(result))
    if args.json:
        path = write_json(args.json, result)            # atomically: temporary file, then rename
        print(f"scores: {path}")
    if args.save_dir:
        d = Path(args.save_dir)
        d.mkdir(parents=True, exist_ok=True)
        for name, model in fitted.items():
            model.save(d / f"{name}.json")
        print(f"models: {d}/<model>.json")
    sys.stdout.flush()
    return 0
