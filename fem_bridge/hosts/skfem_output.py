"""The files of the scikit-fem host: one ``increment_NNNN.vtu`` per converged increment,
``compression.pvd`` (the ParaView time series of them) and ``force_displacement.csv``.

VTU: initial coordinates; point data ``displacement_mm``; cell data per element, averaged over
its 8 Gauss points: ``stress_MPa`` (Voigt 11,22,33,12,13,23), ``mises_stress_MPa``,
``equivalent_plastic_strain``, per Gauss point ``equivalent_plastic_strain_qp`` (n_el, 8), and
``status`` (max over the points). Units: mm, s, MPa, N.
"""
from __future__ import annotations

import csv
from pathlib import Path

import meshio
import numpy as np

from .. import conventions as cv
from .compression_setup import CSV_COLUMNS


def mises(s: np.ndarray) -> np.ndarray:
    """von Mises equivalent (MPa) of Voigt stresses (..., 6)."""
    return np.sqrt(0.5 * ((s[..., 0] - s[..., 1]) ** 2 + (s[..., 1] - s[..., 2]) ** 2
                          + (s[..., 2] - s[..., 0]) ** 2) + 3.0 * np.sum(s[..., 3:] ** 2, axis=-1))


def write_increment_vtu(path: Path, X0, t, U, stress, statev, status, ne, nq) -> Path:
    """One increment: nodes X0 (3, nn), hexahedra t (8, ne) in scikit-fem order, displacement U
    (3, nn), Gauss-point stress (ne·nq, 6), STATEV (ne·nq, NSTATV) and status (ne·nq,)."""
    from skfem.io.meshio import HEX_MAPPING  # optional: scikit-fem (the fem extra)
    s = stress.reshape(ne, nq, 6)
    p = statev[:, cv.SV_P].reshape(ne, nq)
    cells = [("hexahedron", t[HEX_MAPPING[:8]].T)]
    m = meshio.Mesh(X0.T, cells, point_data={"displacement_mm": U.T.copy()},
                    cell_data={"stress_MPa": [s.mean(axis=1)], "mises_stress_MPa": [mises(s).mean(axis=1)],
                               "equivalent_plastic_strain": [p.mean(axis=1)],
                               "equivalent_plastic_strain_qp": [p],
                               "status": [status.reshape(ne, nq).max(axis=1).astype(np.int32)]})
    meshio.write(path, m)
    return path


def write_pvd(path: Path, vtus: list[Path], times: list[float]) -> Path:
    lines = ['<?xml version="1.0"?>', '<VTKFile type="Collection" version="0.1">', "<Collection>"]
    lines += [f'<DataSet timestep="{t:.10g}" file="{f.name}"/>' for t, f in zip(times, vtus)]
    lines += ["</Collection>", "</VTKFile>", ""]
    path.write_text("\n".join(lines))
    return path


def write_csv(path: Path, res) -> Path:
    """``force_displacement.csv`` of a ``CompressionResult`` (columns ``CSV_COLUMNS``)."""
    tab = res.table()
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for i, r in enumerate(res.records):
            w.writerow([r.increment, f"{r.time:.10g}", f"{r.dt:.10g}", f"{r.platen_displacement:.10g}",
                        f"{r.height:.10g}", f"{tab['true_strain'][i]:.10g}", f"{tab['nominal_strain'][i]:.10g}",
                        f"{r.force:.10g}", f"{r.area:.10g}", f"{r.force / r.area:.10g}", f"{r.mean_p:.10g}",
                        len(r.residuals) - 1, r.cuts, r.contact_nodes])
    return path
