"""Verification problems of the thermal-stress interface, each with a reference that does not
depend on ccx: small C3D8 / C3D20R decks cooled by prescribed temperatures (``*EXPANSION`` in the
material, the UMAT or ccx's own elasticity), and the reference solutions — closed forms and the
Python bridge integrating the same homogeneous path.

* ``write_block_deck``: a block of n³ C3D8 at uniform temperatures per step; supports
  ``free`` (three symmetry planes: free thermal contraction, zero stress), ``bar`` (additionally
  u_x = 0 on x = L: uniaxial constraint, σ_11 = −E α ΔT while elastic, lateral faces free) or
  ``full`` (every node fixed: σ_ii = −E α ΔT / (1 − 2ν), no deviator, never yields).
* ``bridge_bar_path``: the bar's homogeneous path with ``fem_bridge.umat.UmatMaterial``: per step
  Δε_11 = −Δε_th (ccx's secant thermal strain), Δε_22 = Δε_33 found so that σ_22 = σ_33 = 0.
* ``write_plate_deck`` / ``plate_reference``: a free plate (thickness 2h in y, half modelled) with
  the parabolic profile T(y) = T_c − ΔT (y/h)²; far from its edges σ_xx = σ_zz =
  E α/(1 − ν) (T̄ − T(y)), T̄ = T_c − ΔT/3, σ_yy = 0 (Timoshenko & Goodier, thermal stress in a
  free plate).

Units: mm, s, °C, MPa.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from constitutive.errors import NeumatInputError
from constitutive.jsonio import write_atomic
from fem_bridge.umat import UmatMaterial

from .casting_deck import SuperalloyProperties, material_block
from .ccx_deck import _fmt, _id_lines, hex_block_lines, nset_lines

SUPPORTS = ("free", "bar", "full")


@dataclass
class BlockDeck:
    path: Path
    temps: np.ndarray          # (k,) °C at the step ends
    times: np.ndarray          # (k,) s, total time at the step ends
    t0: float                  # initial temperature, °C
    support: str


def write_block_deck(path: str | Path, material, props: SuperalloyProperties, *, t0: float,
                     temps: Sequence[float], step_time: float = 1.0, support: str = "bar",
                     n_elem: int = 1, side_mm: float = 1.0, elastic: str = "per-temperature") -> BlockDeck:
    """A C3D8 block (n³ elements, side ``side_mm``) starting at ``t0`` °C, one ``*STATIC`` step of
    one increment per temperature in ``temps`` (uniform), ``.dat``: S, E and SDV/PEEQ of every
    integration point at every step."""
    if support not in SUPPORTS:
        raise NeumatInputError(f"support {support}: choose one of {', '.join(SUPPORTS)}")
    temps = np.asarray(temps, dtype=float)
    n, L = int(n_elem), float(side_mm)
    out = ["** neumat thermal-stress check (fortran_umat/casting_checks.py). Units mm, N, s, MPa, degC.",
           "*HEADING", f"neumat block, support {support}"]
    block, nid, grid = hex_block_lines(n, L, "NALL", "EALL")
    out += block
    sets = {"NX0": [nid(*g) for g in grid if g[0] == 0], "NY0": [nid(*g) for g in grid if g[1] == 0],
            "NZ0": [nid(*g) for g in grid if g[2] == 0], "NXL": [nid(*g) for g in grid if g[0] == n]}
    out += nset_lines(sets)
    name, mat_lines, kind = material_block(material, props, elastic=elastic)
    out += mat_lines
    out += [f"*SOLID SECTION, ELSET=EALL, MATERIAL={name}",
            "*INITIAL CONDITIONS, TYPE=TEMPERATURE", f"NALL, {_fmt(t0)}", "*BOUNDARY"]
    if support == "full":
        out.append("NALL, 1, 3")
    else:
        out += ["NX0, 1, 1", "NY0, 2, 2", "NZ0, 3, 3"] + (["NXL, 1, 1"] if support == "bar" else [])
    for T in temps:
        out += ["*STEP, INC=100", "*STATIC", f"{_fmt(step_time)}, {_fmt(step_time)}, {_fmt(step_time * 1e-5)}, "
                f"{_fmt(step_time)}", "*TEMPERATURE", f"NALL, {_fmt(T)}",
                "*EL PRINT, ELSET=EALL", "S, E, " + ("SDV" if kind == "umat" else "PEEQ"), "*END STEP"]
    out.append("")
    path = Path(path)
    write_atomic(path, "\n".join(out))
    return BlockDeck(path, temps, step_time * np.arange(1, temps.size + 1), float(t0), support)


def bridge_bar_path(flow, props_at, thermal_strain, *, t0: float, temps: Sequence[float], step_time: float = 1.0,
                    tol: float = 1e-12):
    """The uniaxially constrained bar cooled through ``temps`` with the Python bridge.

    ``props_at(T)`` → the PROPS list at T (as ccx interpolates ``*USER MATERIAL`` constants given
    per temperature); ``thermal_strain(T, T0)`` → ccx's thermal strain. Returns stresses (k, 6)
    and STATEV (k, NSTATV) at the step ends."""
    stress, statev, stran = np.zeros(6), None, np.zeros(6)
    eth_prev = 0.0
    lateral = 0.0
    out_s, out_v = [], []
    for k, T in enumerate(np.asarray(temps, dtype=float)):
        mat = UmatMaterial(flow, props=list(props_at(T)))
        sv0 = mat.initial_state() if statev is None else statev
        eth = float(thermal_strain(T, t0))
        d11 = -(eth - eth_prev)
        lateral = -0.5 * d11 if k == 0 else lateral
        for _ in range(60):
            de = np.array([d11, lateral, lateral, 0.0, 0.0, 0.0])
            s, sv, C, pn = mat.call(stress, sv0, stran, de, time=(k * step_time, k * step_time), dtime=step_time,
                                    temp=T, dtemp=0.0)
            if not pn >= 1.0:
                raise RuntimeError(f"Python bridge: step cut requested at step {k + 1} (T = {T} °C)")
            r = 0.5 * (s[1] + s[2])
            if abs(r) <= tol * max(1.0, abs(s[0])):
                break
            lateral -= r / (0.5 * (C[1, 1] + C[1, 2] + C[2, 1] + C[2, 2]))
        else:
            raise RuntimeError(f"bar driver: no lateral equilibrium in step {k + 1}")
        stress, statev, stran = s, sv, stran + de
        eth_prev = eth
        out_s.append(s.copy())
        out_v.append(sv.copy())
    return np.asarray(out_s), np.asarray(out_v)


@dataclass
class PlateDeck:
    path: Path
    half_thickness: float
    t_centre: float
    delta_t: float
    n_elem: tuple


def _hex20(ix: int, iy: int, iz: int) -> list[tuple[int, int, int]]:
    """Half-step grid offsets of a C3D20(R) element's 20 nodes in Abaqus order."""
    c = [(0, 0, 0), (2, 0, 0), (2, 2, 0), (0, 2, 0), (0, 0, 2), (2, 0, 2), (2, 2, 2), (0, 2, 2)]
    mid = [(1, 0, 0), (2, 1, 0), (1, 2, 0), (0, 1, 0), (1, 0, 2), (2, 1, 2), (1, 2, 2), (0, 1, 2),
           (0, 0, 1), (2, 0, 1), (2, 2, 1), (0, 2, 1)]
    return [(2 * ix + a, 2 * iy + b, 2 * iz + d) for a, b, d in c + mid]


def write_plate_deck(path: str | Path, material, props: SuperalloyProperties, *, t_centre: float, delta_t: float,
                     half_thickness: float = 1.0, extent: float = 12.0, n_thick: int = 4, n_plane: int = 12) -> PlateDeck:
    """Quarter of a free plate (x, z ∈ [0, extent], y ∈ [0, h]; symmetry planes x = 0, y = 0,
    z = 0) of C3D20R, uniform at ``t_centre`` first, then in one step the nodal temperatures
    T(y) = t_centre − delta_t (y/h)² (exact in the quadratic elements). ``.dat``: S of every
    integration point."""
    h, a = float(half_thickness), float(extent)
    nx, ny, nz = int(n_plane), int(n_thick), int(n_plane)
    ids: dict[tuple[int, int, int], int] = {}
    coords = []
    for k in range(2 * nz + 1):
        for j in range(2 * ny + 1):
            for i in range(2 * nx + 1):
                if (i % 2) + (j % 2) + (k % 2) > 1:
                    continue
                ids[(i, j, k)] = len(ids) + 1
                coords.append((i * a / (2 * nx), j * h / (2 * ny), k * a / (2 * nz)))
    out = ["** neumat thermoelastic plate check (fortran_umat/casting_checks.py). Units mm, N, s, MPa, degC.",
           "*HEADING", "neumat plate, parabolic temperature", "*NODE, NSET=NALL"]
    out += [f"{n}, {_fmt(x)}, {_fmt(y)}, {_fmt(z)}" for n, (x, y, z) in zip(range(1, len(coords) + 1), coords)]
    out.append("*ELEMENT, TYPE=C3D20R, ELSET=EALL")
    e = 0
    for iz in range(nz):
        for iy in range(ny):
            for ix in range(nx):
                e += 1
                conn = [ids[q] for q in _hex20(ix, iy, iz)]
                out += [f"{e}, " + ", ".join(map(str, conn[:15])) + ",", ", ".join(map(str, conn[15:]))]
    for name, axis in (("NX0", 0), ("NY0", 1), ("NZ0", 2)):
        out.append(f"*NSET, NSET={name}")
        out += _id_lines([n for q, n in ids.items() if q[axis] == 0])
    name, mat_lines, kind = material_block(material, props)
    out += mat_lines
    out += [f"*SOLID SECTION, ELSET=EALL, MATERIAL={name}",
            "*INITIAL CONDITIONS, TYPE=TEMPERATURE", f"NALL, {_fmt(t_centre)}",
            "*BOUNDARY", "NX0, 1, 1", "NY0, 2, 2", "NZ0, 3, 3",
            "*STEP, INC=100", "*STATIC", "1, 1, 1e-05, 1", "*TEMPERATURE"]
    for q, n in ids.items():
        y = q[1] * h / (2 * ny)
        out.append(f"{n}, {_fmt(t_centre - delta_t * (y / h) ** 2)}")
    out += ["*EL PRINT, ELSET=EALL", "S", "*END STEP", ""]
    path = Path(path)
    write_atomic(path, "\n".join(out))
    return PlateDeck(path, h, float(t_centre), float(delta_t), (nx, ny, nz))


def plate_reference(deck: PlateDeck, E: float, nu: float, alpha: float, elements: Sequence[int]):
    """(element, ip, y, σ_xx = σ_zz analytic) at the 8 Gauss points (±1/√3 per direction, ccx's
    order: ξ fastest, then η, then ζ) of the given element ids of the plate."""
    nx, ny, nz = deck.n_elem
    h = deck.half_thickness
    g = 1.0 / np.sqrt(3.0)
    rows = []
    for el in elements:
        iy = ((el - 1) // nx) % ny
        for ip, (xi, eta, zeta) in enumerate([(a, b, c) for c in (-g, g) for b in (-g, g) for a in (-g, g)], start=1):
            y = (iy + 0.5 * (1.0 + eta)) * h / ny
            T = deck.t_centre - deck.delta_t * (y / h) ** 2
            Tbar = deck.t_centre - deck.delta_t / 3.0
            rows.append((el, ip, y, E * alpha / (1.0 - nu) * (Tbar - T)))
    return rows
