"""``report.md`` of ``neumat demo``: every section is filled from the files of the run; a step
that did not run says so and why, instead of showing a number."""
from __future__ import annotations

import csv
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from constitutive.flow_curves import FlowCurves

from . import demo
from .demo_casting import casting_markdown
from .demo_latency_table import markdown as latency_markdown


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def _img(out: Path, name: str, alt: str) -> list[str]:
    return [f"![{alt}]({name})", ""] if (out / name).is_file() else [f"*({alt}: not produced in this run)*", ""]


def _step(results: dict, name: str) -> dict | None:
    return next((e for e in results["steps"] if e["name"] == name), None)


def _missing(results: dict, name: str) -> list[str]:
    e = _step(results, name)
    if e is None:
        return [f"*Step '{name}' did not run.*", ""]
    if e["rc"] is None:
        return [f"*Step '{name}' {e['note']}.*", ""]
    return [f"*Step '{name}' failed (exit {e['rc']}){': ' + e['note'] if e.get('note') else ''}; see the console "
            f"output.*", ""]


def _baselines(out: Path) -> list[str]:
    b = _read_json(out / "baselines.json")
    if not b:
        return []
    lines = ["| law | MARE %, fitted curves | MARE %, held-out curves | R², held-out |", "| --- | --- | --- | --- |"]
    for name, s in b["models"].items():
        h = s.get("heldout") or {}
        lines.append(f"| {name} | {s['train']['mare_pct']:.2f} | {h.get('mare_pct', float('nan')):.2f} | "
                     f"{h.get('r2', float('nan')):.4f} |")
    return lines + [""]


def _admissibility(out: Path) -> list[str]:
    """Shares of the training box (and of a 10 % margin) where σ falls with strain rate or rises
    with temperature, the largest hardening slope against E, and the σ maps (``neumat train``
    writes them into network/metrics.json and network/admissibility.png)."""
    m = _read_json(out / "network" / "metrics.json") or {}
    a = m.get("admissibility")
    if not a:
        return ["*(admissibility: not in this run's network/metrics.json)*", ""]
    b, g = a["box"], a["margin"]
    lines = ["| region | ∂σ/∂ε̇ < 0 | ∂σ/∂T > 0 | grid points |", "| --- | --- | --- | --- |",
             f"| training box | {100 * b['share_rate_negative']:.1f} % | {100 * b['share_temperature_positive']:.1f} % "
             f"| {b['n_points']} |",
             f"| {100 * a['margin_fraction']:.0f} % margin around it | {100 * g['share_rate_negative']:.1f} % | "
             f"{100 * g['share_temperature_positive']:.1f} % | {g['n_points']} |", "",
             f"Largest |∂σ/∂ε| in the box: {a['max_dsigma_dstrain_mpa']:.4g} MPa = {a['max_slope_over_young']:.3g} × E "
             f"(E = {a['young_modulus_mpa']:.3g} MPa). "
             + ("**Violations inside the training box** (see the `neumat train` warnings)." if a["violated_in_box"]
                else "No sign violation inside the training box.")
             + (" Violations in the margin." if a["violated_in_margin"] else ""), "",
             "σ over (T, log ε̇) at strains 0.1, 0.3, 0.5 with the measured conditions marked, and σ against T and "
             "against ε̇ beside the Arrhenius law fitted on the same curves:", ""]
    return lines + _img(out, "network/admissibility.png", "admissibility maps")


def _compression(out: Path) -> list[str]:
    lines = []
    fd = out / "simulate" / "force_displacement.csv"
    if fd.is_file():
        rows = list(csv.DictReader(fd.open()))
        last = rows[-1]
        its = [int(r["newton_iterations"]) for r in rows]
        lines.append(f"- scikit-fem host (Gleeble cylinder Ø10 × 15 mm, 1/8 model, frictionless): {len(rows)} "
                     f"increments to true strain {float(last['true_strain']):.3f}, final force "
                     f"{float(last['force_N']) / 1e3:.2f} kN, true stress {float(last['true_stress_MPa']):.1f} MPa; "
                     f"Newton iterations per increment mean {sum(its) / len(its):.2f}, max {max(its)} "
                     f"(`simulate/force_displacement.csv`, `simulate/compression.pvd` for ParaView). The platens "
                     f"close at constant speed, so the true strain rate rises to "
                     f"{np.exp(float(last['true_strain'])):.3g} × the nominal one by the "
                     f"end, which lifts the stress above the flow curve at the nominal rate; the CalculiX cube "
                     f"runs at constant true strain rate.")
    res = out / "ccx" / "results.csv"
    if res.is_file():
        rows = list(csv.DictReader(res.open()))
        its = [int(r["iterations"]) for r in rows]
        pl = [int(r["plastic_iterations"]) for r in rows if r.get("plastic_iterations")]
        worst_pl = max(abs(float(r["rel_diff"])) for r in rows if r.get("rel_diff"))
        worst_br = max(abs(float(r["bridge_rel_diff"])) for r in rows if r.get("bridge_rel_diff"))
        lines.append(f"- CalculiX 2.20 with the generated UMAT (one C3D8 cube, uniaxial compression): {len(rows)} "
                     f"increments; Newton iterations mean {sum(its) / len(its):.2f}, max {max(its)}"
                     + (f" (`*PLASTIC` table of the same network: mean {sum(pl) / len(pl):.2f}, max {max(pl)})" if pl else "")
                     + f"; largest relative stress difference to the Python bridge {worst_br:.2e}, to the "
                       f"`*PLASTIC` run {worst_pl:.2e} (tabulated hardening, interpolated) (`ccx/results.csv`).")
    return lines + ([""] if lines else [])


def is_dz411_campaign(train: FlowCurves, results: dict) -> bool:
    """The report's sentences about the DZ411 design (three temperature regimes, the
    regime-wise Arrhenius fit of the method) hold for the embedded SYNTHETIC campaign only."""
    return bool(results.get("synthetic")) and train.source == "synthetic_dz411"


def baselines_text(train: FlowCurves, results: dict) -> str:
    text = ("Each law fitted on all training curves (Arrhenius: strain-compensated, order 9, on smoothed "
            "curves).")
    if train.extras:
        text += f" The laws ignore the extra inputs ({', '.join(train.extras)})."
    if is_dz411_campaign(train, results):
        text += (" One Arrhenius fit cannot span the campaign's room, intermediate and high temperatures at "
                 "once; section 3 fits it regime-wise, as the method does.")
    comp = results.get("comparison") or {}
    arr = next((r for r in comp.get("rows", []) if r["model"].startswith("Arrhenius")), None)
    if arr and not is_dz411_campaign(train, results):
        text += f" Section 3 uses the Arrhenius law fitted on {arr['trained_on']}."
    return text + "\n"


def write_report(out: Path, results: dict, train: FlowCurves, test: FlowCurves) -> Path:
    syn = results["synthetic"]
    tag = " (SYNTHETIC data)" if syn else ""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    L = [f"# neumat demo report — {train.source}{tag}", "",
         f"{when}; seed {results['seed']}; {'quick settings (smoke test); ' if results['quick'] else ''}"
         f"total {results['seconds']:.0f} s on {results['machine']}.", ""]
    if syn:
        L += ["> **SYNTHETIC data.** The curves come from neumat's documented DZ411-like flow law "
              "(`constitutive/synthetic.py`) with measurement-like noise; nothing here is measured. Run "
              "`neumat demo --data YOUR.csv --heldout ...` for your own campaign.", ""]
    L += ["## 1. Data", "",
          f"{train.n_curves} training curves and {test.n_curves} held-out curves (never used in any fit): "
          + "; ".join(test.condition_label(c) for c in range(test.n_curves)) + ".", ""]
    L += _img(out, "data.png", "the campaign")

    L += ["## 2. Phenomenological baselines", "", baselines_text(train, results)]
    L += _baselines(out) or _missing(results, "baselines")

    L += ["## 3. Held-out comparison", ""]
    comp = results.get("comparison")
    if comp:
        L += [f"MAPE (mean absolute percentage error) on the held-out curves ({'; '.join(comp['heldout'])})"
              + (f"; the high-T axial column uses {'; '.join(comp['high_t_axial_heldout'])} at strain < 0.21"
                 if comp["high_t_axial_heldout"] else "") + ". Layout of method.md's result table.", "",
              demo.comparison_markdown(comp), ""]
        m = _read_json(out / "network" / "metrics.json") or {}
        if m.get("heldout_per_curve"):
            L += ["The default model per held-out curve: " + "; ".join(
                f"{c['condition']}: {c['mare_pct']:.3f} %" for c in m["heldout_per_curve"]) + ".", ""]
    else:
        L += _missing(results, "compare")
    L += ["### Measured vs predicted flow curves", ""] + _img(out, "flow_curves.png", "flow curves")
    L += ["### Parity (training and held-out points)", ""] + _img(out, "network/parity.png", "parity plot")
    L += ["### Physical admissibility of the trained model", ""] + _admissibility(out)

    L += ["## 4. Learning curve", ""]
    lc = results.get("learning_curve")
    if lc:
        L += ["The default model trained on nested random subsets of the training curves (same settings, same "
              "seed), scored on the held-out curves.", "",
              "| training curves | " + " | ".join(str(r["training_curves"]) for r in lc) + " |",
              "| --- |" + " --- |" * len(lc),
              "| held-out MAPE % | " + " | ".join(f"{r['heldout']['mare_pct']:.3f}" for r in lc) + " |", ""]
        L += _img(out, "learning_curve.png", "learning curve")
    else:
        L += _missing(results, "learning curve")

    L += ["## 5. Export and UMAT", ""]
    onnx = out / "model.onnx"
    if onnx.is_file():
        L += [f"- ONNX: `model.onnx` ({onnx.stat().st_size / 1024:.1f} KiB), float64, outputs σ (MPa) and "
              "dσ/dx (MPa per unit of each input), metadata (feature names and units, training box, rate floor, "
              "policy, hashes) inside the file."]
    else:
        L += _missing(results, "export")
    v = _read_json(out / "umat" / "verification.json")
    if v:
        lib = next((p.name for p in (out / "umat").glob("lib*.so")), "?")
        L += [f"- Fortran UMAT: `umat/{lib}` with `umat/material.inp` (the `*MATERIAL` snippet), generated "
              "from the ONNX file alone.",
              f"- Verified against the Python bridge on {v['paths']} strain paths, {v['increments']} increments "
              f"({v['plastic_increments']} plastic): largest relative difference stress {v['max_rel_stress']:.1e}, "
              f"STATEV {v['max_rel_statev']:.1e}, consistent tangent {v['max_rel_tangent']:.1e} (tolerance "
              f"{v['tolerance']:g}): **{'passed' if v['passed'] else 'FAILED'}**.", ""]
    else:
        L += _missing(results, "umat")

    L += ["## 6. Mesh evaluation (meshio)", ""]
    m = results.get("mesh")
    if m:
        L += [f"`mesh/block.vtu`, {m['points']:,} points and {m['cells']:,} hexahedra with temperature, strain-rate "
              f"and plastic-strain fields spanning the training box → `mesh/block_flow.vtu` with "
              f"{', '.join(m['fields'])}. Flow stress {m['flow_stress_min_mpa']:.1f} … "
              f"{m['flow_stress_max_mpa']:.1f} MPa; {m['out_of_box_points']} points lie outside the training box and are evaluated under the model's "
              f"box policy and flagged in `out_of_box`.", ""]
    else:
        L += _missing(results, "mesh")

    t, r, ex = results["fe_condition"]
    L += ["## 7. FE runs", "", f"At the first held-out condition: {t:g} °C, {r:g} 1/s"
          + (f", extras {ex}" if ex else "") + ".", ""]
    L += _compression(out) or _missing(results, "simulate")
    ccx_step = _step(results, "ccx")
    if ccx_step and ccx_step["rc"] is None:
        L += [f"*CalculiX: {ccx_step['note']}.*", ""]
    L += _img(out, "compression.png", "hot compression")
    L += ["### Residual stress of a cooling casting (CalculiX, UMAT against `*PLASTIC`)", ""]
    cast_step = _step(results, "casting")
    L += casting_markdown(out) or ([f"*CalculiX: {cast_step['note']}.*", ""] if cast_step and cast_step["rc"] is None
                                   else _missing(results, "casting"))

    L += ["## 8. Latency of this model", ""]
    if results.get("latency"):
        L += [f"Measured in this run on {results['machine']} (min and median of repeated timings; other work on "
              "the machine slows them; `neumat bench` is the full study).", "",
              latency_markdown(results["latency"]), ""]
    else:
        L += _missing(results, "latency")

    L += ["## Steps", "", "| step | command | result | seconds |", "| --- | --- | --- | --- |"]
    for e in results["steps"]:
        state = "ok" if e["rc"] == 0 else (e["note"] if e["rc"] is None else f"failed (exit {e['rc']})")
        L.append(f"| {e['name']} | {'`' + e['command'] + '`' if e.get('command') else '(in process)'} | {state} | "
                 f"{e['seconds']:.1f} |")
    L.append("")
    path = out / "report.md"
    path.write_text("\n".join(L))
    return path
