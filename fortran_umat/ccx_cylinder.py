"""A non-homogeneous CalculiX (ccx 2.20) deck: a cylinder compressed between sticking platens.

Units: length mm, force N, stress MPa, time s, temperature °C, strain rate 1/s.

The part is the Gleeble-type cylinder of radius R and height 2H; by symmetry one eighth is meshed
(x, y >= 0, 0 <= z <= H) with C3D8 elements on the quarter-disc O-grid of
``fem_bridge.hosts.cylinder_mesh`` (a square core and two ring blocks) extruded in ``n_z`` layers.
Boundary conditions: symmetry planes x = 0 (u_x = 0), y = 0 (u_y = 0), z = 0 (u_z = 0); the
platen face z = H *sticks* (u_x = u_y = 0) and moves down by u_z(t) = −H ε̇ t (small strain, the
nominal height strain grows at the rate ε̇, like the cube of ``fortran_umat.ccx_deck``). The
sticking face makes the field non-homogeneous: a nearly rigid cap under the platen, a shear band
towards the equator, barrelling — integration points in very different strain, strain-rate and
elastic/plastic states in the same increment, which the homogeneous cube never shows.

``write_cylinder_deck`` writes the deck for a ``UserMaterial`` (the generated UMAT) or a
``PlasticMaterial`` (ccx's ``*PLASTIC``); output: ``*NODE PRINT`` RF totals of the platen face
and ``*EL PRINT`` S (and SDV / PEEQ) at the last increment only, so that writing the ``.dat``
does not weigh on the solver's time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from constitutive.errors import NeumatInputError
from fem_bridge.hosts.cylinder_mesh import quarter_cylinder_arrays

from .ccx_deck import PlasticMaterial, UserMaterial, _fmt, _lines, material_block, nset_lines

# DOLFINx/basix tensor-product vertex order (i fastest, then j, then k) → C3D8 (counter-clockwise
# bottom face, then the top face)
_TP_TO_C3D8 = [0, 1, 3, 2, 4, 5, 7, 6]


@dataclass
class CylinderDeck:
    """A written cylinder deck (lengths mm, time s, rate 1/s, °C)."""
    path: Path
    radius_mm: float
    half_height_mm: float
    n_elements: int
    n_nodes: int
    n_increments: int
    step_time: float
    strain_rate: float
    final_strain: float
    temperature_c: float
    material_kind: str            # "umat" | "plastic"

    @property
    def n_integration_points(self) -> int:
        return 8 * self.n_elements


def cylinder_mesh(radius_mm: float, half_height_mm: float, n_core: int, n_ring: int, n_z: int):
    """Nodes (n, 3) and C3D8 connectivity (m, 8), 0-based, with positive Jacobians at every corner."""
    pts, cells = quarter_cylinder_arrays(radius_mm, half_height_mm, n_core, n_ring, n_z)
    conn = cells[:, _TP_TO_C3D8]
    x = pts[conn]                                       # (m, 8, 3)
    # corner Jacobian at node 1: edges 1→2, 1→4, 1→5 (C3D8 numbering)
    j = np.einsum("ij,ij->i", np.cross(x[:, 1] - x[:, 0], x[:, 3] - x[:, 0]), x[:, 4] - x[:, 0])
    flip = j < 0
    conn[flip] = conn[flip][:, [0, 3, 2, 1, 4, 7, 6, 5]]   # mirror the bottom/top faces
    return pts, conn


def write_cylinder_deck(path: str | Path, *, material: UserMaterial | PlasticMaterial,
                        temperature_c: float, strain_rate: float, final_strain: float = 0.5,
                        n_increments: int = 10, radius_mm: float = 5.0, half_height_mm: float = 7.5,
                        n_core: int = 10, n_ring: int = 10, n_z: int = 27,
                        state_output: bool = True) -> CylinderDeck:
    """Write the sticking-platen cylinder deck (module docstring); elements:
    (n_core² + 2 n_core n_ring) × n_z; ``state_output=False`` prints S only (no SDV / PEEQ).
    Returns the ``CylinderDeck`` description."""
    path = Path(path)
    for name, v, ok in (("temperature_c", temperature_c, math.isfinite(temperature_c)),
                        ("strain_rate", strain_rate, strain_rate > 0 and math.isfinite(strain_rate)),
                        ("final_strain", final_strain, 0 < final_strain < 1),
                        ("n_increments", n_increments, int(n_increments) == n_increments and n_increments >= 1),
                        ("radius_mm", radius_mm, radius_mm > 0), ("half_height_mm", half_height_mm, half_height_mm > 0),
                        ("n_core", n_core, int(n_core) == n_core and n_core >= 1),
                        ("n_ring", n_ring, int(n_ring) == n_ring and n_ring >= 1),
                        ("n_z", n_z, int(n_z) == n_z and n_z >= 1)):
        if not ok:
            raise NeumatInputError(f"cylinder deck: {name} = {v} is out of range")
    pts, conn = cylinder_mesh(radius_mm, half_height_mm, int(n_core), int(n_ring), int(n_z))
    n_inc = int(n_increments)
    period = final_strain / strain_rate
    dt = period / n_inc
    tol = 1e-9 * max(radius_mm, half_height_mm)
    ids = np.arange(1, len(pts) + 1)
    out = ["** neumat: 1/8 cylinder between sticking platens (fortran_umat/ccx_cylinder.py). "
           "Units mm, N, MPa, s, degC.",
           f"** R = {radius_mm} mm, H = {2 * half_height_mm} mm, T = {temperature_c} degC, nominal rate = "
           f"{strain_rate} 1/s, final height strain = {final_strain}, {n_inc} increments, small strain",
           "*HEADING", "neumat sticking-platen cylinder", "*NODE, NSET=NALL"]
    out += [f"{i}, {_fmt(x)}, {_fmt(y)}, {_fmt(z)}" for i, (x, y, z) in zip(ids, pts)]
    out.append("*ELEMENT, TYPE=C3D8, ELSET=EALL")
    out += [f"{e + 1}, " + ", ".join(str(int(n) + 1) for n in c) for e, c in enumerate(conn)]
    sets = {"NXMIN": ids[np.abs(pts[:, 0]) <= tol], "NYMIN": ids[np.abs(pts[:, 1]) <= tol],
            "NZMIN": ids[np.abs(pts[:, 2]) <= tol],
            "NTOP": ids[np.abs(pts[:, 2] - half_height_mm) <= tol]}
    out += nset_lines(sets)
    kind, mname, mlines = material_block(material, temperature_c)
    out += mlines
    out += [f"*SOLID SECTION, ELSET=EALL, MATERIAL={mname}",
            "*INITIAL CONDITIONS, TYPE=TEMPERATURE", f"NALL, {_fmt(temperature_c)}",
            "*BOUNDARY", "NXMIN, 1, 1", "NYMIN, 2, 2", "NZMIN, 3, 3", "NTOP, 1, 2",
            "*AMPLITUDE, NAME=COMPR"]
    times = np.linspace(0.0, period, n_inc + 1)
    out += _lines([v for tv in zip(times, strain_rate * times) for v in tv])
    out += [f"*STEP, INC={max(100, 8 * n_inc)}", "*STATIC",
            f"{_fmt(dt)}, {_fmt(period)}, {_fmt(dt * 1e-4)}, {_fmt(dt)}",
            "*BOUNDARY, AMPLITUDE=COMPR", f"NTOP, 3, 3, {_fmt(-half_height_mm)}",
            "*TEMPERATURE", f"NALL, {_fmt(temperature_c)}",
            "*NODE PRINT, NSET=NTOP, TOTALS=ONLY, FREQUENCY=" + str(n_inc), "RF",
            "*EL PRINT, ELSET=EALL, FREQUENCY=" + str(n_inc), "S" + ((", SDV" if kind == "umat" else ", PEEQ") if state_output else ""),
            "*END STEP", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out))
    return CylinderDeck(path, float(radius_mm), float(half_height_mm), len(conn), len(pts), n_inc, period,
                        float(strain_rate), float(final_strain), float(temperature_c), kind)
