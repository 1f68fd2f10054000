"""The casting step of ``neumat demo``: ``neumat casting`` on a coarse mesh (about a minute on
2 cores with the ``*PLASTIC`` comparison), and its part of ``report.md`` read back from
``casting/summary.json`` (nothing in the report is typed in: every figure comes from the run)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

#: the demo's mesh and stepping: coarser than the command's defaults so that the step (UMAT and
#: *PLASTIC runs) stays near a minute on 2 cores
DEMO_CASTING_ARGS = ("--element", "C3D10", "--size", "10", "--blade-size", "5", "--deltmx", "150",
                     "--max-step-change", "150")


#: ``neumat demo --quick`` (a smoke test): linear tetrahedra, a very coarse mesh and 200 °C steps
QUICK_CASTING_ARGS = ("--element", "C3D4", "--size", "10", "--blade-size", "6", "--deltmx", "200",
                      "--max-step-change", "200")


def casting_argv(onnx: Path, out: Path, extras: Sequence[float], quick: bool = False) -> list[str]:
    """``neumat casting`` arguments of the demo step (output in ``out / 'casting'``)."""
    argv = ["casting", "--model", str(onnx), "--out", str(out / "casting"),
            *(QUICK_CASTING_ARGS if quick else DEMO_CASTING_ARGS), "--compare-plastic"]
    if extras:
        argv += ["--extras", *[f"{v:g}" for v in extras]]
    return argv


def casting_summary(out: Path) -> dict | None:
    p = out / "casting" / "summary.json"
    return json.loads(p.read_text()) if p.is_file() else None


def casting_markdown(out: Path) -> list[str]:
    """Report lines: what ran, the table (peak residual von Mises and where, plastic zone, run times
    with the UMAT and with *PLASTIC, cut increments, out-of-box evaluations) and the figures; [] when
    the step wrote no summary."""
    s = casting_summary(out)
    if not s:
        return []
    u, p, c = s["umat"], s.get("plastic"), s.get("umat_vs_plastic")
    cool = s["cooling"]
    m = s["mesh"]
    L = [f"`neumat casting`: a blade-like part (root {s['geometry']['root_length']:g} × {s['geometry']['root_width']:g}"
         f" × {s['geometry']['root_height']:g} mm, airfoil blade of chord {s['geometry']['chord']:g} mm and "
         f"{100 * s['geometry']['thickness']:.0f} % thickness, {s['geometry']['blade_height']:g} mm tall; "
         f"{m['elements']} {m['element_type']}, {m['nodes']} nodes) cooled from {cool['t_start']:g} °C (inside the "
         f"model's box {s['model_box']['T_C'][0]:g} … {s['model_box']['T_C'][1]:g} °C) by a film of "
         f"{cool['film']:g} W/(m² K) to {cool['sink']:g} °C for {cool['time']:g} s, then brought to "
         f"{cool['room']:g} °C; root bottom face {s['hold']}. Heat conduction first ({s['heat']['increments']} "
         f"increments), then {s['stress_steps']} static steps reading its temperatures "
         "(`fortran_umat/casting_deck.py` says why).", "",
         "| | UMAT (neural flow stress) | `*PLASTIC` (tables from the network) |", "| --- | --- | --- |"]

    def both(label, key, fmt):
        a = fmt(u[key]) if key in u else "–"
        b = fmt(p[key]) if p and key in p else "–"
        L.append(f"| {label} | {a} | {b} |")
    both("peak residual von Mises, MPa", "peak_von_mises_MPa", lambda v: f"{v:.1f}")
    L.append(f"| where | {u['peak_at']['region']}, element {u['peak_at']['element']} at "
             f"({', '.join(f'{x:.1f}' for x in u['peak_at']['element_centre_mm'])}) mm | "
             + (f"{p['peak_at']['region']}, element {p['peak_at']['element']}" if p else "–") + " |")
    both(f"plastic zone (p > {u.get('plastic_threshold', 0):g}), % of the volume", "plastic_volume_pct",
         lambda v: f"{v:.1f}")
    both("largest equivalent plastic strain", "max_peeq", lambda v: f"{v:.4f}")
    both("ccx wall time of the stress run, s", "wall_s", lambda v: f"{v:.1f}")
    both("converged increments", "converged_increments", lambda v: f"{v}")
    L.append(f"| cut (retried) attempts | {u['cut_attempts']} | {p['cut_attempts'] if p else '–'} |")
    L.append(f"| out-of-box evaluations (STATEV 9): total, largest at a point, points | "
             f"{u.get('out_of_box_total', 0):.0f}, {u.get('out_of_box_max', 0):.0f}, "
             f"{u.get('out_of_box_points_pct', 0):.0f} % | – |")
    L.append("")
    if c:
        L += [f"Point by point at the {u['integration_points']} integration points after cooling: residual von Mises "
              f"differs by {c['max_abs_von_mises_difference_MPa']:.1f} MPa at most "
              f"({c['max_von_mises_difference_pct_of_peak']:.2f} % of the peak), median "
              f"{c['median_von_mises_difference_pct_of_peak']:.2f} %, RMS {c['rms_von_mises_difference_MPa']:.1f} MPa. "
              f"The `*PLASTIC` tables are sampled at {p['table_rate_per_s']:.3g} 1/s (the UMAT run's median plastic "
              "rate) and carry no rate dependence."]
        below = s.get("plastic_rates_below_box_pct")
        lo_rate = s["model_box"]["rate_per_s"][0]
        if below is not None:
            L[-1] += (f" {below:.0f} % of the UMAT's plastic rates lie below the model's lowest training rate "
                      f"({lo_rate:g} 1/s), where the network is evaluated at the box edge ({s['model_box']['policy']})"
                      + (": there the UMAT is rate-independent too, so rate dependence separates the two only at "
                         "the remaining points." if s["model_box"]["policy"] == "clamp" else "."))
        ratio = (s.get("properties") or {}).get("E_room_over_E_start")
        if ratio is not None:
            L[-1] += (f" The other difference is the elastic law under E(T), which rises {ratio:.2f}-fold while the "
                      "part cools: the UMAT integrates σ incrementally with C(T_end) (hypoelastic, "
                      "`fem_bridge/conventions.py`), ccx's `*ELASTIC` is total, σ = C(T)(ε − ε_p). With a constant E "
                      "the two agree within 1 % of the peak (checked by `tests/test_casting.py`).")
        L.append("")
    L += [f"Run time of the whole step {s['total_wall_s']:.0f} s (heat {s['heat']['wall_s']:.1f} s). Files: "
          "`casting/vtu/casting.pvd` (ParaView: temperature, stress, von Mises, peeq, STATEV 9 per step), "
          "`casting/histories.csv`, `casting/summary.json`.", ""]
    for name, alt in (("casting_temperature.png", "temperature history"),
                      ("casting_von_mises.png", "residual von Mises"), ("casting_peeq.png", "plastic strain")):
        if (out / "casting" / name).is_file():
            L += [f"![{alt}](casting/{name})", ""]
    return L
