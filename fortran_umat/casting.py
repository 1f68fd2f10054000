"""``neumat casting``: residual stress of a blade-like casting cooled from near-solidus to room
temperature in CalculiX, with the UMAT generated from an ONNX flow-stress model (and, optionally,
ccx's own ``*PLASTIC`` with tables sampled from the same network, for comparison).

The chain (``run_casting``): gmsh mesh (``casting_geometry``) → transient heat conduction
(``casting_deck.write_heat_deck``) → the nodal temperatures sampled every ``max_step_change`` °C
→ the static deck with the UMAT (``write_mech_deck``) → VTU series, CSV histories, PNG figures,
``summary.json`` (``casting_results``). Units: mm, s, °C, MPa.

What ``summary.json`` reports: the peak residual von Mises stress (integration points of the last
step, and where), the plastic zone (elements with an integration point whose equivalent plastic
strain exceeds ``PLASTIC_THRESHOLD``: count, volume, share of the part), the increments, attempts
and cut increments of each run (a cut = an increment ccx had to retry), the out-of-box
evaluations (STATEV 9: total, largest at a point, share of points), the wall-clock time of each
ccx run and, with ``compare_plastic``, the point-by-point difference to ``*PLASTIC``.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from constitutive.errors import NeumatInputError
from constitutive.jsonio import write_json
from export.contract import read_model_info
from fem_bridge.conventions import N_FIXED_PROPS, TEMP_MODE_CALCULIX

from .build import build_umat
from .casting_deck import (HOLDS, Cooling, SuperalloyProperties, sample_plastic_tables, write_heat_deck,
                           write_mech_deck)
from .casting_geometry import BladeGeometry, PartMesh, mesh_blade
from .casting_results import (heat_retries, ip_fields, read_mech_frd, render_figures, sample_times, temperature_history,
                              write_histories, write_vtu_series)
from .ccx_compare import onnx_flow_stress
from .ccx_deck import UserMaterial, built_library
from .ccx_run import ccx_binary, run_ccx

PLASTIC_THRESHOLD = 1e-5        # equivalent plastic strain above which a point counts as plastic
START_MARGIN_C = 20.0           # default start temperature: this far below the model's upper T


@dataclass
class CastingOptions:
    model: Path
    out: Path
    element_type: str = "C3D10"
    size: float = 6.0
    blade_size: float = 3.5
    t_start: float | None = None          # °C; None: the model's upper temperature − START_MARGIN_C
    film: float = 250.0                   # W/(m² K)
    sink: float = 20.0                    # °C
    cool_time: float = 600.0              # s
    room: float = 20.0                    # °C
    deltmx: float = 80.0                  # °C per heat-transfer increment
    max_step_change: float = 60.0         # °C per mechanical step at any node
    hold: str = "clamped"
    elastic: str = "per-temperature"      # E(T), ν(T) of the UMAT: constants per temperature | PROPS table
    extras: tuple = ()
    threads: int = 2
    compare_plastic: bool = False
    plastic_rate: float | None = None     # 1/s; None: the part's typical rate from the UMAT run
    figures: bool = True
    vtu: bool = True
    props: SuperalloyProperties = field(default_factory=SuperalloyProperties)
    geometry: BladeGeometry = field(default_factory=BladeGeometry)


def _run_stats(res) -> dict:
    att = res.attempts
    incs = [a for a in att if a[3]]
    cuts = sum(1 for a in att if not a[3])
    return {"wall_s": round(res.wall_s, 3), "attempts": len(att), "converged_increments": len(incs),
            "cut_attempts": cuts, "max_iterations": max((a[2] for a in incs), default=0)}


def typical_rate(res_sdv: np.ndarray | None, floor: float) -> float:
    """Median of the positive equivalent plastic strain rates (STATEV 8, nodal, every step) of the
    UMAT run, 1/s; ``floor`` when nothing flowed."""
    if res_sdv is None or res_sdv.shape[2] < 8:
        return floor
    r = res_sdv[:, :, 7].ravel()
    r = r[np.isfinite(r) & (r > 1e-12)]
    return float(np.median(r)) if r.size else floor


def _ip_summary(fields: dict, mesh: PartMesh, geometry: BladeGeometry) -> dict:
    mises = fields["mises"]
    k = int(np.argmax(mises))
    el, ip = (int(v) for v in fields["ip"][k])
    centre = mesh.points[mesh.cells[el - 1, :4]].mean(axis=0)
    where = "blade" if centre[2] > geometry.root_height + 1e-9 else "root"
    peeq = fields.get("peeq")
    out = {"peak_von_mises_MPa": float(mises[k]), "peak_at": {"element": el, "ip": ip, "region": where,
                                                              "element_centre_mm": [float(v) for v in centre]},
           "integration_points": int(len(mises))}
    if peeq is not None:
        vol = mesh.volumes()
        pl_el = np.zeros(mesh.n_elements, bool)
        pl_el[fields["ip"][peeq > PLASTIC_THRESHOLD, 0] - 1] = True
        out.update(max_peeq=float(np.max(peeq)), plastic_threshold=PLASTIC_THRESHOLD,
                   plastic_elements=int(pl_el.sum()), plastic_volume_mm3=float(vol[pl_el].sum()),
                   plastic_volume_pct=float(100 * vol[pl_el].sum() / vol.sum()),
                   part_volume_mm3=float(vol.sum()))
    if "n_out" in fields:
        n = fields["n_out"]
        out.update(out_of_box_total=float(n.sum()), out_of_box_max=float(n.max()),
                   out_of_box_points_pct=float(100 * np.mean(n > 0)))
    return out


def compare_fields(a: dict, b: dict) -> dict:
    """Point-by-point difference of two runs' last-step integration-point fields (same mesh)."""
    if not np.array_equal(a["ip"], b["ip"]):
        raise NeumatInputError("the two runs' integration points differ")
    peak = float(np.max(b["mises"]))
    ds = np.abs(a["stress"] - b["stress"]).max(axis=1)
    dm = np.abs(a["mises"] - b["mises"])
    out = {"peak_von_mises_reference_MPa": peak,
           "max_abs_stress_difference_MPa": float(ds.max()),
           "max_abs_von_mises_difference_MPa": float(dm.max()),
           "rms_von_mises_difference_MPa": float(np.sqrt(np.mean(dm ** 2))),
           "max_von_mises_difference_pct_of_peak": float(100 * dm.max() / peak),
           "median_von_mises_difference_pct_of_peak": float(100 * np.median(dm) / peak)}
    if "peeq" in a and "peeq" in b:
        dp = np.abs(a["peeq"] - b["peeq"])
        out.update(max_abs_peeq_difference=float(dp.max()), max_peeq_reference=float(np.max(b["peeq"])))
    return out


def run_casting(opt: CastingOptions, log=print) -> dict:
    """The whole chain; returns (and writes to ``out/summary.json``) the summary."""
    t0 = time.perf_counter()
    model = Path(opt.model)
    if not model.is_file():
        raise NeumatInputError(f"--model {model}: file not found (export one with `neumat export`)")
    if opt.hold not in HOLDS:
        raise NeumatInputError(f"--hold {opt.hold}: choose one of {', '.join(HOLDS)}")
    if opt.threads < 1:
        raise NeumatInputError(f"--threads {opt.threads}: must be >= 1")
    info = read_model_info(model)
    T_lo, T_hi = float(info.box_lo[2]), float(info.box_hi[2])
    t_start = T_hi - START_MARGIN_C if opt.t_start is None else float(opt.t_start)
    if not (T_lo <= t_start <= T_hi):
        raise NeumatInputError(f"--t-start {t_start} °C is outside the model's temperature range "
                               f"{T_lo:g} … {T_hi:g} °C")
    n_extra = info.n_features - 3
    extras = list(opt.extras) if opt.extras else [float(v) for v in info.box_lo[3:]]
    if len(extras) != n_extra:
        raise NeumatInputError(f"--extras: the model takes {n_extra} extra feature value(s) "
                               f"({', '.join(info.feature_names[3:]) or 'none'}), got {len(extras)}")
    cooling = Cooling(t_start=t_start, sink=opt.sink, film=opt.film, time=opt.cool_time, deltmx=opt.deltmx,
                      room=opt.room)
    cooling.check()
    opt.props.check()
    ccx_binary()                                     # fail early with the `make ccx` hint
    out = Path(opt.out)
    out.mkdir(parents=True, exist_ok=True)

    mesh = mesh_blade(opt.geometry, element_type=opt.element_type, size=opt.size, blade_size=opt.blade_size)
    log(f"mesh      {mesh.n_elements} {mesh.element_type} elements, {mesh.n_nodes} nodes "
        f"(size {opt.size:g} mm, blade {opt.blade_size:g} mm), volume {mesh.volumes().sum():.0f} mm³")
    heat_deck = write_heat_deck(out / "heat.inp", mesh, opt.props, cooling)
    heat = run_ccx(heat_deck, threads=opt.threads)
    h_times, h_temps = temperature_history(heat.frd, mesh.n_nodes)
    log(f"heat      {len(h_times)} increments to {h_times[-1]:g} s in {heat.wall_s:.1f} s; "
        f"T {h_temps[-1].min():.1f} … {h_temps[-1].max():.1f} °C at the end")
    idx = sample_times(h_temps, t_start, opt.max_step_change)
    times = list(h_times[idx])
    temps = [h_temps[i] for i in idx]
    dt_room = max(60.0, 0.1 * opt.cool_time)
    times.append(times[-1] + dt_room)                 # the last step: the whole part at room temperature
    temps.append(np.full(mesh.n_nodes, opt.room))
    times, temps = np.asarray(times), np.stack(temps)

    built = build_umat(model, out_dir=out / "umat")
    lib_path, lib_name = built_library(built)
    props = [1.0, 0.3, float(TEMP_MODE_CALCULIX), 0.0] + extras   # E, ν replaced per temperature
    if len(props) != N_FIXED_PROPS + n_extra:
        raise AssertionError("PROPS layout")
    mat = UserMaterial(lib_name, props, built.nstatv, n_model_props=N_FIXED_PROPS + n_extra)
    mdeck = write_mech_deck(out / "stress_umat.inp", mesh, mat, opt.props, times=times, temperatures=temps,
                            t_start=t_start, hold=opt.hold, elastic=opt.elastic)
    mres = run_ccx(mdeck.path, library_dir=lib_path.parent, threads=opt.threads)
    res = read_mech_frd(mres.frd, mesh.n_nodes)
    fields = ip_fields(mres.increments[-1])
    umat_stats = _run_stats(mres)
    log(f"umat      {mdeck.n_steps} steps, {umat_stats['attempts']} attempts "
        f"({umat_stats['cut_attempts']} cut) in {mres.wall_s:.1f} s")
    summary = {"model": str(model), "mesh": {"element_type": mesh.element_type, "elements": mesh.n_elements,
                                             "nodes": mesh.n_nodes, "size_mm": opt.size,
                                             "blade_size_mm": opt.blade_size},
               "geometry": asdict(opt.geometry), "cooling": asdict(cooling), "hold": opt.hold,
               "elastic_form": opt.elastic,
               "extras": extras, "heat": {**_run_stats(heat), **heat_retries(heat.stdout, cooling.deltmx),
                                          "increments": int(len(h_times)),
                                          "end_time_s": float(h_times[-1])},
               "stress_steps": int(mdeck.n_steps), "step_times_s": [float(t) for t in times],
               "umat": {**umat_stats, **_ip_summary(fields, mesh, opt.geometry)},
               "model_box": {"T_C": [T_lo, T_hi], "rate_per_s": [float(info.box_lo[1]), float(info.box_hi[1])],
                             "strain": [float(info.box_lo[0]), float(info.box_hi[0])],
                             "rate_floor_per_s": float(info.rate_floor), "policy": info.box_policy}}
    rate = typical_rate(res.sdv, float(info.rate_floor))
    summary["typical_plastic_rate_per_s"] = rate
    rates = res.sdv[:, :, 7].ravel() if res.sdv is not None and res.sdv.shape[2] >= 8 else np.zeros(0)
    rates = rates[np.isfinite(rates) & (rates > 1e-12)]
    summary["plastic_rates_below_box_pct"] = float(100 * np.mean(rates < info.box_lo[1])) if rates.size else None
    E_lo, E_hi = opt.props.elastic_at([opt.room, t_start])[0]
    summary["properties"] = {**asdict(opt.props), "E_room_over_E_start": float(E_lo / E_hi)}

    if opt.compare_plastic:
        r = float(opt.plastic_rate) if opt.plastic_rate else rate
        grid = np.unique(np.r_[np.linspace(opt.room, t_start, 13), T_lo, T_hi].clip(T_lo, T_hi))
        tables = sample_plastic_tables(onnx_flow_stress(model), strain_rate=r, temps=grid, extras=extras)
        pdeck = write_mech_deck(out / "stress_plastic.inp", mesh, tables, opt.props, times=times,
                                temperatures=temps, t_start=t_start, hold=opt.hold)
        pres = run_ccx(pdeck.path, threads=opt.threads)
        pfields = ip_fields(pres.increments[-1])
        p_stats = _run_stats(pres)
        summary["plastic"] = {**p_stats, **_ip_summary(pfields, mesh, opt.geometry), "table_rate_per_s": r,
                              "table_temperatures_C": [float(t) for t in grid]}
        summary["umat_vs_plastic"] = compare_fields(fields, pfields)
        log(f"plastic   *PLASTIC tables at {r:.3g} 1/s: {pres.wall_s:.1f} s; residual von Mises differs by "
            f"{summary['umat_vs_plastic']['max_abs_von_mises_difference_MPa']:.2f} MPa at most "
            f"({summary['umat_vs_plastic']['max_von_mises_difference_pct_of_peak']:.2f} % of the peak)")

    # the thermal history from t = 0 (the start temperature) for the CSV and the figure
    h_times = np.r_[0.0, h_times]
    h_temps = np.vstack([np.full(mesh.n_nodes, t_start), h_temps])
    files = []
    if opt.vtu:
        files.append(str(write_vtu_series(out / "vtu", mesh, res)))
    files.append(str(write_histories(out / "histories.csv", mesh, res, h_times, h_temps)))
    if opt.figures:
        files += [str(p) for p in render_figures(out, mesh, res, h_times, h_temps)]
    summary["files"] = files
    summary["total_wall_s"] = round(time.perf_counter() - t0, 2)
    write_json(out / "summary.json", summary)
    u = summary["umat"]
    log(f"residual  peak von Mises {u['peak_von_mises_MPa']:.1f} MPa in the {u['peak_at']['region']} "
        f"(element {u['peak_at']['element']}); plastic zone {u.get('plastic_volume_pct', 0):.1f} % of the part; "
        f"out-of-box evaluations (STATEV 9): {u.get('out_of_box_total', 0):.0f} in all, "
        f"{u.get('out_of_box_points_pct', 0):.0f} % of the points")
    if not math.isfinite(u["peak_von_mises_MPa"]):
        raise NeumatInputError("non-finite residual stress")
    return summary
