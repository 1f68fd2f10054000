"""Results of the casting runs: the temperature history of the heat-transfer ``.frd``, the
mechanical ``.frd`` as a VTU series (ParaView: open ``casting.pvd``), histories at the probe
nodes as CSV, the integration-point fields of the last step, and the PNG figures (matplotlib,
headless Agg backend; optional).

Units: mm, s, °C, MPa. Stress components in the VTU and CSV files in the order 11, 22, 33, 12,
13, 23 (tensor shear); ccx's ``.frd`` writes xx, yy, zz, xy, yz, zx and is reordered here.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import meshio
import numpy as np

from constitutive.errors import NeumatInputError
from constitutive.jsonio import write_atomic

from .casting_geometry import TET_FACES, PartMesh
from .ccx_results import CcxError, parse_frd

_FRD_TO_VOIGT = [0, 1, 2, 3, 5, 4]          # frd xx yy zz xy yz zx → 11 22 33 12 13 23


def von_mises(s: np.ndarray) -> np.ndarray:
    """σ_eq of (..., 6) stresses in the order 11 22 33 12 13 23 (plain shear), MPa."""
    s = np.asarray(s, dtype=float)
    m = s[..., :3].mean(axis=-1, keepdims=True)
    d = s[..., :3] - m
    return np.sqrt(1.5 * (np.sum(d * d, axis=-1) + 2.0 * np.sum(s[..., 3:] ** 2, axis=-1)))


def _block_array(block: dict, n_nodes: int) -> np.ndarray:
    comps = len(block["components"]) or 1
    a = np.full((n_nodes, comps), np.nan)
    for node, v in block["values"].items():
        if 1 <= node <= n_nodes:
            a[node - 1, :len(v)] = v[:comps]
    return a


def temperature_history(frd: str | Path, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """(times (k,) s, nodal temperatures (k, n_nodes) °C) of a heat-transfer ``.frd``."""
    blocks = [b for b in parse_frd(frd) if b["name"] == "NDTEMP"]
    if not blocks:
        raise CcxError(f"{frd}: no NDTEMP (temperature) blocks")
    times = np.asarray([b["time"] for b in blocks], dtype=float)
    temps = np.stack([_block_array(b, n_nodes)[:, 0] for b in blocks])
    if np.any(np.isnan(temps)):
        raise CcxError(f"{frd}: temperatures missing for some nodes")
    return times, temps


def sample_times(temps: np.ndarray, start: np.ndarray | float, max_change: float) -> np.ndarray:
    """Indices of the thermal outputs (rows of ``temps``) that the mechanical steps follow: an
    output is taken when the next one would have moved some node by more than ``max_change`` °C
    since the last taken one (or the start field ``start``); the last output always. So a step
    spans at most ``max_change`` °C at every node, unless one thermal increment alone does."""
    if not (np.isfinite(max_change) and max_change > 0):
        raise NeumatInputError(f"--max-step-change {max_change} °C must be > 0")
    base = np.broadcast_to(np.asarray(start, dtype=float), temps.shape[1:])
    keep = []
    n = len(temps)
    for k in range(n):
        d_next = np.max(np.abs(temps[k + 1] - base)) if k + 1 < n else np.inf
        if d_next > max_change or k == n - 1:
            keep.append(k)
            base = temps[k]
    return np.asarray(keep, dtype=int)


@dataclass
class MechResults:
    """Nodal results per step of a mechanical run (``.frd``): U (k, n, 3) mm, NT (k, n) °C,
    S (k, n, 6) MPa (11 22 33 12 13 23), von Mises (k, n), PEEQ (k, n) (SDV 1 for the UMAT, PEEQ
    for *PLASTIC), SDV (k, n, nstatv) or None."""
    times: np.ndarray
    U: np.ndarray
    NT: np.ndarray
    S: np.ndarray
    mises: np.ndarray
    peeq: np.ndarray
    sdv: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


def read_mech_frd(frd: str | Path, n_nodes: int) -> MechResults:
    """Read the mechanical ``.frd`` (blocks DISP, NDTEMP, STRESS, SDV or PE per output time)."""
    blocks = parse_frd(frd)
    by_time: dict[float, dict[str, np.ndarray]] = {}
    for b in blocks:
        by_time.setdefault(b["time"], {})[b["name"]] = _block_array(b, n_nodes)
    times = sorted(t for t, d in by_time.items() if "STRESS" in d)
    if not times:
        raise CcxError(f"{frd}: no STRESS blocks")
    U = np.stack([by_time[t]["DISP"][:, :3] for t in times])
    NT = np.stack([by_time[t]["NDTEMP"][:, 0] for t in times])
    S = np.stack([by_time[t]["STRESS"][:, :6][:, _FRD_TO_VOIGT] for t in times])
    sdv = None
    if "SDV" in by_time[times[0]]:
        sdv = np.stack([by_time[t]["SDV"] for t in times])
        peeq = sdv[:, :, 0]
    elif "PE" in by_time[times[0]]:
        peeq = np.stack([by_time[t]["PE"][:, 0] for t in times])
    else:
        raise CcxError(f"{frd}: neither SDV nor PE (equivalent plastic strain) blocks")
    return MechResults(np.asarray(times), U, NT, S, von_mises(S), peeq, sdv)


def write_vtu_series(folder: str | Path, mesh: PartMesh, res: MechResults, stem: str = "casting") -> Path:
    """One VTU per step (point data: temperature, displacement, stress, von_mises, peeq and, for
    the UMAT, STATEV 9 = out-of-box count) and ``<stem>.pvd`` listing them with their times."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cells = [(mesh.meshio_cell_type(), mesh.cells)]
    entries = []
    for k, t in enumerate(res.times):
        data = {"temperature_C": res.NT[k], "displacement_mm": res.U[k], "stress_MPa": res.S[k],
                "von_mises_MPa": res.mises[k], "peeq": res.peeq[k]}
        if res.sdv is not None:
            data["statev"] = res.sdv[k]
            if res.sdv.shape[2] >= 9:
                data["statev9_out_of_box"] = res.sdv[k][:, 8]
        name = f"{stem}_{k:04d}.vtu"
        buf = folder / (name + ".tmp.vtu")
        meshio.write(buf, meshio.Mesh(mesh.points, cells, point_data=data), file_format="vtu")
        buf.replace(folder / name)
        entries.append(f'    <DataSet timestep="{t:.9g}" group="" part="0" file="{name}"/>')
    pvd = folder / f"{stem}.pvd"
    write_atomic(pvd, '<?xml version="1.0"?>\n<VTKFile type="Collection" version="0.1">\n  <Collection>\n'
                 + "\n".join(entries) + "\n  </Collection>\n</VTKFile>\n")
    return pvd


def write_histories(path: str | Path, mesh: PartMesh, res: MechResults, heat_times=None, heat_temps=None) -> Path:
    """CSV, one row per (probe node, time): time_s, probe, node, x, y, z, temperature_C, von_mises_MPa,
    peeq, s11 … s23 (MPa), out_of_box (STATEV 9, UMAT only). With ``heat_times``/``heat_temps`` the
    full thermal history of the probes is added with source = 'heat'."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["source", "time_s", "probe", "node", "x_mm", "y_mm", "z_mm", "temperature_C", "von_mises_MPa",
                "peeq", "s11_MPa", "s22_MPa", "s33_MPa", "s12_MPa", "s13_MPa", "s23_MPa", "out_of_box"])
    for name, row in mesh.probes.items():
        x, y, z = mesh.points[row]
        if heat_times is not None:
            for t, T in zip(heat_times, heat_temps[:, row]):
                w.writerow(["heat", f"{t:.6g}", name, row + 1, f"{x:.4g}", f"{y:.4g}", f"{z:.4g}", f"{T:.6g}"]
                           + [""] * 9)
        for k, t in enumerate(res.times):
            nout = res.sdv[k, row, 8] if res.sdv is not None and res.sdv.shape[2] >= 9 else ""
            w.writerow(["stress", f"{t:.6g}", name, row + 1, f"{x:.4g}", f"{y:.4g}", f"{z:.4g}", f"{res.NT[k, row]:.6g}",
                        f"{res.mises[k, row]:.6g}", f"{res.peeq[k, row]:.6g}"]
                       + [f"{v:.6g}" for v in res.S[k, row]] + [nout if nout == "" else f"{nout:.6g}"])
    return write_atomic(path, buf.getvalue())


def surface_triangles(mesh: PartMesh) -> np.ndarray:
    """(f, 3) corner-node rows of the boundary faces (for the figures)."""
    faces = [mesh.cells[e, list(TET_FACES[f - 1])] for e, f in mesh.faces]
    return np.asarray(faces, dtype=int)


def render_figures(folder: str | Path, mesh: PartMesh, res: MechResults, heat_times, heat_temps) -> list[Path]:
    """PNG figures: the probes' temperature histories; residual von Mises and equivalent plastic
    strain on the part's surface (two views each). Needs matplotlib (headless Agg)."""
    try:
        import matplotlib  # optional: figures only (extra 'train')
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # optional: figures only
    except ImportError as exc:               # pragma: no cover - depends on the install
        raise NeumatInputError("the casting figures need matplotlib (pip install matplotlib)") from exc
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, row in mesh.probes.items():
        ax.plot(heat_times, heat_temps[:, row], label=name.replace("_", " "))
    ax.set_xscale("symlog", linthresh=10.0)
    ax.set_xlabel("time, s")
    ax.set_ylabel("temperature, °C")
    ax.set_title("cooling: temperature at the probe nodes")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = folder / "casting_temperature.png"
    _save(fig, p)
    plt.close(fig)
    out.append(p)

    tri = surface_triangles(mesh)
    for field_name, values, label, fname in (
            ("von Mises", res.mises[-1], "residual von Mises stress, MPa", "casting_von_mises.png"),
            ("peeq", res.peeq[-1], "equivalent plastic strain", "casting_peeq.png")):
        fig = plt.figure(figsize=(9.0, 4.6))
        vals = values[tri].mean(axis=1)
        vmin, vmax = float(np.nanmin(vals)), float(np.nanmax(vals))
        if vmax <= vmin:
            vmax = vmin + 1e-12
        cmap = plt.get_cmap("viridis")
        colors = cmap((vals - vmin) / (vmax - vmin))
        for j, (elev, azim) in enumerate(((22, -60), (22, 120))):
            ax = fig.add_subplot(1, 2, j + 1, projection="3d")
            x, y, z = mesh.points.T
            surf = ax.plot_trisurf(x, y, z, triangles=tri, shade=False, linewidth=0.0, antialiased=False)
            surf.set_facecolor(colors)                    # one colour per boundary face
            surf.set_edgecolor("none")
            lo, hi = mesh.points.min(axis=0), mesh.points.max(axis=0)
            ax.set_xlim(lo[0], hi[0])
            ax.set_ylim(lo[1], hi[1])
            ax.set_zlim(lo[2], hi[2])
            ax.set_box_aspect(hi - lo)
            ax.view_init(elev=elev, azim=azim)
            ax.set_axis_off()
        sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(vmin, vmax))
        fig.colorbar(sm, ax=fig.axes, shrink=0.7, label=label)
        fig.suptitle(f"{field_name} at room temperature (end of cooling)")
        p = folder / fname
        _save(fig, p)
        plt.close(fig)
        out.append(p)
    return out


def _save(fig, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


def heat_retries(stdout: str, deltmx: float) -> dict:
    """Reattempted heat-transfer increments in ccx's stdout, split by cause: ``deltmx`` — the
    largest temperature change of the attempt exceeded DELTMX (ccx's automatic time control, which
    ccx also prints as "divergence"); ``other`` — anything else (a real lack of convergence)."""
    n_dt = n_other = 0
    last_dT = None
    for line in stdout.splitlines():
        t = line.strip()
        if t.startswith("largest increment of temp="):
            try:
                last_dT = float(t.split("=")[1].split()[0])
            except (IndexError, ValueError):
                last_dT = None
        elif t.startswith("increment") and "attempt" in t:
            last_dT = None
        elif t.startswith("the increment is reattempted"):
            if last_dT is not None and abs(last_dT) > deltmx:
                n_dt += 1
            else:
                n_other += 1
    return {"deltmx_retries": n_dt, "other_retries": n_other}


def ip_fields(increment, nstatv_expected: int | None = None) -> dict[str, np.ndarray]:
    """Integration-point fields of one parsed ``.dat`` increment: (element, ip), stress (n, 6),
    von Mises, PEEQ (SDV 1 or PEEQ), out-of-box count (SDV 9) where present."""
    if increment.stress is None:
        raise CcxError("no integration-point stresses in the .dat output")
    d = {"ip": increment.ip, "stress": increment.stress, "mises": von_mises(increment.stress)}
    if increment.sdv is not None:
        d["peeq"] = increment.sdv[:, 0]
        if increment.sdv.shape[1] >= 9:
            d["n_out"] = increment.sdv[:, 8]
    elif increment.peeq is not None:
        d["peeq"] = increment.peeq
    return d
