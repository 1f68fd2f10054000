"""Baseline benchmark on gleeble_3cr2mo: the three protocols of the reference study, our
Arrhenius / Hensel–Spittel / Johnson–Cook fits beside the published errors.

    .venv/bin/python -m benchmarks.classical_laws [--out benchmarks/results/baselines.json] [--readme]

Writes ``{"full": ..., "interp": ..., "extrap": ...}`` (each the dict of
``constitutive.baselines.evaluate_protocol``) plus ``machine``/``generated_by``/``notes`` and an
``variants`` (other fit options); with ``--readme`` it rewrites the section between
``<!-- baselines:start -->`` and ``<!-- baselines:end -->`` of benchmarks/README.md in place.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy

from constitutive.baselines import evaluate_protocol
from constitutive.datasets import load
from constitutive.errors import NeumatInputError
from constitutive.jsonio import write_json

from .readme_sections import BENCHMARKS_README, write_section

DATASET = "gleeble_3cr2mo"
HERE = Path(__file__).resolve().parent
COMMAND = ".venv/bin/python -m benchmarks.classical_laws --readme"
PROTOCOL_RATE = {"full": None, "interp": 1.0, "extrap": 5.0}
MODELS = ("arrhenius", "hensel_spittel", "johnson_cook")
LABEL = {"arrhenius": "Arrhenius (m = 9)", "hensel_spittel": "Hensel–Spittel", "johnson_cook": "Johnson–Cook"}

# Tize Mha et al., Metals 13 (2023) 633, as quoted in shared/reference/anchors.md.
# (protocol, model) -> {(subset, measure): value}; None where the paper gives no figure.
PUBLISHED = {
    ("full", "johnson_cook"): {("all", "mare_pct"): 14.05, ("all", "rmse_mpa"): 12.00},
    ("full", "hensel_spittel"): {("all", "mare_pct"): 7.75, ("all", "rmse_mpa"): 3.80},
    ("full", "arrhenius"): {("all", "mare_pct"): 3.56, ("all", "rmse_mpa"): 2.18},
    ("interp", "johnson_cook"): {("train", "mare_pct"): 13.79, ("heldout", "mare_pct"): 14.87,
                                 ("heldout", "rmse_mpa"): 12.02, ("all", "mare_pct"): 14.42},
    ("interp", "hensel_spittel"): {("train", "mare_pct"): 8.57, ("heldout", "mare_pct"): 3.74,
                                   ("heldout", "rmse_mpa"): 3.10, ("all", "mare_pct"): 7.55},
    ("interp", "arrhenius"): {("train", "mare_pct"): 3.96, ("heldout", "mare_pct"): 1.46,
                              ("heldout", "rmse_mpa"): 1.46, ("all", "mare_pct"): 3.45},
    ("extrap", "johnson_cook"): {("train", "mare_pct"): 13.09, ("heldout", "mare_pct"): 20.16,
                                 ("heldout", "rmse_mpa"): 20.73, ("all", "mare_pct"): 15.12},
    ("extrap", "hensel_spittel"): {("train", "mare_pct"): 7.30, ("heldout", "mare_pct"): 7.73,
                                   ("heldout", "rmse_mpa"): 7.83, ("all", "mare_pct"): 7.12},
    ("extrap", "arrhenius"): {("train", "mare_pct"): 4.03, ("heldout", "mare_pct"): 3.53,
                              ("heldout", "rmse_mpa"): 4.02, ("all", "mare_pct"): 3.86},
}
# Fits beside the defaults: the option that differs, reported in the README and the JSON.
VARIANTS = {"arrhenius_alpha_fit": ("arrhenius", {"alpha_method": "fit"}),
            "hensel_spittel_absolute": ("hensel_spittel", {"objective": "absolute"})}
TARGETS = {"arrhenius": 4.06, "hensel_spittel": 9.25, "johnson_cook": 17.0}   # full fit, MARE %


def heldout_conditions(curves, protocol: str) -> list[tuple[float, float]]:
    rate = PROTOCOL_RATE[protocol]
    if rate is None:
        return []
    conds = curves.conditions()
    return [(float(t), float(r)) for t, r in conds[np.isclose(conds[:, 1], rate), :2]]


def machine() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "git_commit": commit}


def run_all() -> dict:
    curves = load(DATASET)
    out: dict = {}
    t0 = time.perf_counter()
    for protocol in PROTOCOL_RATE:
        out[protocol] = evaluate_protocol(curves, heldout_conditions(curves, protocol), models=MODELS,
                                          dataset=DATASET, protocol=protocol)
    out["variants"] = {}
    for key, (model, options) in VARIANTS.items():
        v = {"model": model, "options": options}
        for protocol in PROTOCOL_RATE:
            r = evaluate_protocol(curves, heldout_conditions(curves, protocol), models={model: options},
                                  dataset=DATASET, protocol=protocol)
            v[protocol] = r["models"][model]
        out["variants"][key] = v
    kept = evaluate_protocol(curves, [], models=["arrhenius"], dataset=DATASET, protocol="full",
                             drop_zero_strain=False)
    out["variants"]["arrhenius_zero_strain_kept"] = {"model": "arrhenius", "options": {},
                                                     "full": kept["models"]["arrhenius"]}
    zero = curves.strain == 0
    out["min_stress_at_zero_strain"] = float(curves.stress[zero].min()) if zero.any() else None
    out["machine"] = machine()
    out["generated_by"] = {"command": COMMAND,
                           "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
                           "wall_s": round(time.perf_counter() - t0, 1)}
    out["notes"] = ("Points at strain 0 (the first point of each curve) are dropped before fitting and "
                    "scoring, as in the reference study: 30 curves x 700 points. Published values: Tize Mha "
                    "et al., Metals 13 (2023) 633 (shared/reference/anchors.md). variants: "
                    "arrhenius_alpha_fit = alpha per strain level by least squares instead of beta/n1; "
                    "hensel_spittel_absolute = HS fitted on the absolute stress error (the reference "
                    "study's objective); arrhenius_zero_strain_kept = full fit and scores with the strain-0 "
                    "points kept.")
    return out


def _cell(ours: dict | None, paper: float | None, key: str) -> str:
    v = "–" if ours is None else f"{ours[key]:.2f}"
    return f"{v} ({paper:.2f})" if paper is not None else v


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = ["## Phenomenological baselines (gleeble_3cr2mo)", "",
             "30 measured Gleeble curves of a 3Cr2Mo-type medium-carbon steel (1050–1250 °C, 0.001–5 1/s, "
             "strain to 0.7; attribution in `../shared/data/gleeble_3cr2mo/README.md`). Errors over all "
             "points as defined in `shared/reference/anchors.md`; **ours (published)**, published = "
             "Tize Mha et al., Metals 13 (2023) 633; – where the paper gives no figure.", ""]
    titles = {"full": "Full fit: fitted on all 30 curves, scored on all 30",
              "interp": "Interpolation: fitted without the five 1 s⁻¹ curves",
              "extrap": "Extrapolation: fitted without the five 5 s⁻¹ curves"}
    for protocol in ("full", "interp", "extrap"):
        r = res[protocol]
        lines += [f"**{titles[protocol]}**", ""]
        if protocol == "full":
            lines += ["| model | MARE % | RMSE MPa | R² | target MARE % |", "| --- | --- | --- | --- | --- |"]
            for name in MODELS:
                e, p = r["models"][name], PUBLISHED[(protocol, name)]
                ok = "met" if e["all"]["mare_pct"] <= TARGETS[name] else "MISSED"
                lines.append(f"| {LABEL[name]} | {_cell(e['all'], p.get(('all', 'mare_pct')), 'mare_pct')} | "
                             f"{_cell(e['all'], p.get(('all', 'rmse_mpa')), 'rmse_mpa')} | {e['all']['r2']:.4f} | "
                             f"≤ {TARGETS[name]:g} ({ok}) |")
        else:
            lines += ["| model | fitted 25: MARE % | fitted 25: RMSE MPa | held-out 5: MARE % | "
                      "held-out 5: RMSE MPa | all 30: MARE % | all 30: RMSE MPa |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for name in MODELS:
                e, p = r["models"][name], PUBLISHED[(protocol, name)]
                cells = [_cell(e[s], p.get((s, k)), k) for s in ("train", "heldout", "all")
                         for k in ("mare_pct", "rmse_mpa")]
                lines.append(f"| {LABEL[name]} | " + " | ".join(cells) + " |")
        lines.append("")
    var = res["variants"]
    lines += ["**Variants** (one fit option changed; not the defaults)", "",
              "| variant | protocol | fitted: MARE % | fitted: RMSE MPa | held-out: MARE % | held-out: RMSE MPa | "
              "all: MARE % | all: RMSE MPa |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    vlabel = {"arrhenius_alpha_fit": "Arrhenius, α fitted per level (`--arrhenius-alpha fit`)",
              "hensel_spittel_absolute": "Hensel–Spittel, absolute-stress objective (`--hs-objective absolute`)"}
    for key, label in vlabel.items():
        for protocol in ("full", "interp", "extrap"):
            e, p = var[key][protocol], PUBLISHED[(protocol, var[key]["model"])]
            cells = [_cell(e[s], p.get((s, k)), k) for s in ("train", "heldout", "all") for k in ("mare_pct", "rmse_mpa")]
            lines.append(f"| {label} | {protocol} | " + " | ".join(cells) + " |")
    lines.append("")
    def paper_cells(model, skip_all_of_heldout_protocols=True):
        for (pr, mo), cells in PUBLISHED.items():
            if mo == model:
                for (sub, k), val in cells.items():
                    if not (skip_all_of_heldout_protocols and pr != "full" and sub == "all"):
                        yield pr, sub, k, val

    ar_diff = max(abs(res[pr]["models"]["arrhenius"][sub][k] - val)
                  for pr, sub, k, val in paper_cells("arrhenius") if k == "mare_pct")
    hs_abs = var["hensel_spittel_absolute"]
    hs_diff = max(abs(hs_abs[pr][sub][k] - val) for pr, sub, k, val in paper_cells("hensel_spittel"))
    # With 700 points per curve, MARE over all 30 curves = (25·fitted + 5·held-out)/30 exactly.
    implied = []
    for pr in ("interp", "extrap"):
        for mo in MODELS:
            c = PUBLISHED[(pr, mo)]
            implied.append((abs((25 * c[("train", "mare_pct")] + 5 * c[("heldout", "mare_pct")]) / 30
                                - c[("all", "mare_pct")]), pr, mo, c))
    worst = max(implied, key=lambda x: x[0])
    ours_ok = max(abs((25 * res[pr]["models"][mo]["train"]["mare_pct"] + 5 * res[pr]["models"][mo]["heldout"]["mare_pct"])
                      / 30 - res[pr]["models"][mo]["all"]["mare_pct"]) for pr in ("interp", "extrap") for mo in MODELS)
    af = var["arrhenius_alpha_fit"]
    kept = var["arrhenius_zero_strain_kept"]["full"]["all"]["mare_pct"]
    lines += [
        "**Why ours differ from the paper**", "",
        "- *Arrhenius* follows the paper's procedure (per strain level: n₁, β, α = β/n₁, n, Q, ln A from "
        "the regression lines; order-9 polynomials in strain) on Savitzky–Golay smoothed curves at 60 "
        f"strain levels from 0.01 to 0.7. Its MARE is within {ar_diff:.2f} points of every published "
        "full-fit, fitted and held-out Arrhenius cell; the remainder comes from the strain levels and the "
        "smoothing (the paper identifies on a coarser strain grid of its own, without further smoothing).",
        "- The paper's 'all 30' MARE cells of interp/extrap are not comparable as printed: with 700 points "
        "per curve the MARE over all 30 curves is exactly (25 × fitted + 5 × held-out)/30, and the paper's "
        f"own cells miss that identity by up to {worst[0]:.2f} points ({LABEL[worst[2]]}, {worst[1]}: "
        f"{(25 * worst[3][('train', 'mare_pct')] + 5 * worst[3][('heldout', 'mare_pct')]) / 30:.2f} implied, "
        f"{worst[3][('all', 'mare_pct')]:.2f} printed). Ours meet it to {ours_ok:.1e}.",
        "- *Hensel–Spittel*: by default we fit the 9-parameter form by linear least squares on ln σ, "
        "refined on the relative stress error, keeping the lowest MARE on the fitted curves: lower MARE, "
        "higher RMSE than the paper. The paper fits its 7-parameter form (ours without T^m9; dropping "
        "that term changed our errors by less than 0.01 in a check) on the absolute stress error; with "
        f"that objective (variant above) ours matches every fitted and held-out cell within {hs_diff:.2f}. "
        "The absolute objective weights the high-stress, high-rate curves more, which is why it "
        "extrapolates better to 5 s⁻¹. The default objective was chosen on the fitted curves, not on "
        "the held-out ones.",
        "- *Johnson–Cook*: the paper identifies A, B, n on the reference curve (1050 °C, 0.001 1/s) and "
        "then C and m by averaged regressions, step by step; we fit all five parameters at once by least "
        "squares on the relative error over all fitted points (same ε̇₀ = 0.001 1/s, T_ref = 1050 °C, "
        "T_melt = 1460 °C). The joint fit is a better optimum of the same law, so our errors are lower; "
        "the law's shape (no softening, one rate sensitivity at all temperatures) remains the limit.",
        "- Points at strain 0 (the first point of each curve; one of them is "
        f"{res['min_stress_at_zero_strain']:.2f} MPa) are dropped before fitting and scoring, as the paper "
        f"does: 30 × 700 points. Kept, the full-fit Arrhenius MARE becomes {kept:.2f} %.",
        "- α = β/n₁ is an approximation (n₁ belongs to the power-law, β to the exponential regime of the "
        "sinh law): on curves made by the law itself the standard procedure is a few per cent off, the "
        "fitted α exact (tests/test_baselines.py). On this data the fitted α (variant above) moves the "
        f"full-fit Arrhenius MARE from {res['full']['models']['arrhenius']['all']['mare_pct']:.2f} to "
        f"{af['full']['all']['mare_pct']:.2f} %, the held-out MARE from "
        f"{res['interp']['models']['arrhenius']['heldout']['mare_pct']:.2f} to {af['interp']['heldout']['mare_pct']:.2f} % "
        f"(interp) and from {res['extrap']['models']['arrhenius']['heldout']['mare_pct']:.2f} to "
        f"{af['extrap']['heldout']['mare_pct']:.2f} % (extrap). The default stays the reference procedure.",
        "",
        f"Regenerate: `{COMMAND}` (writes `benchmarks/results/baselines.json` and this section; "
        f"{res['generated_by']['wall_s']:.0f} s). One protocol from the command line: "
        "`neumat baselines --data gleeble_3cr2mo --protocol full|interp|extrap --json out.json`.",
        f"Machine: {m['platform']}, {m['cpu_count']} CPUs, Python {m['python']}, numpy {m['numpy']}, "
        f"scipy {m['scipy']}; commit {m['git_commit']}; {res['generated_by']['date_utc']} UTC. "
        "The fits are deterministic (no random starts).",
    ]
    return "\n".join(lines)


def update_readme(path: Path, section: str) -> None:
    """Put ``section`` in the baselines section of ``path`` (exits with a message without its markers)."""
    try:
        write_section("baselines", section, path)
    except NeumatInputError as exc:
        raise SystemExit(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(HERE / "results" / "baselines.json"))
    ap.add_argument("--readme", action="store_true", help="rewrite the baselines section of benchmarks/README.md")
    args = ap.parse_args(argv)
    res = run_all()
    out = write_json(args.out, res)
    section = markdown(res)
    print(section)
    print(f"\nwritten: {out}")
    if args.readme:
        update_readme(BENCHMARKS_README, section)
        print(f"updated: {BENCHMARKS_README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
