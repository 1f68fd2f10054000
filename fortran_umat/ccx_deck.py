"""The CalculiX (ccx 2.20) input deck of the homogeneous compression test, and its materials
(the generated UMAT as ``UserMaterial``, ccx's own ``*PLASTIC`` as ``PlasticMaterial``).

Units throughout: length mm, force N, stress MPa, time s, temperature °C, strain rate 1/s.

The test is a cube of side L meshed with n×n×n C3D8 elements, three symmetry planes
(x = 0: u_x = 0, y = 0: u_y = 0, z = 0: u_z = 0; frictionless, so the lateral faces stay free and
the solution is homogeneous: uniaxial stress σ_33 in every integration point), compressed along z
by a prescribed displacement of the top face z = L, at a constant temperature.

Strain path. The displacement is given through ``*AMPLITUDE`` (one point per increment end, so
the increments hit it exactly) such that the strain measure *the material sees* grows at the
constant rate ε̇ and reaches the requested true strain at the end of the step:

* ``nlgeom=False`` (default; small strain, ``@ABAQUS_…`` material name): the UMAT receives the
  infinitesimal strain ε_33 = u/L, so u(t) = −L ε̇ t. This is the path that the small-strain
  Python bridge (``fem_bridge``) integrates, and on it the rate seen by the material is exactly
  constant; "true strain" then means this small-strain measure (the usual reading of a
  small-strain material-point test).
* ``nlgeom=True`` (``*STEP, NLGEOM``, ``@ABAQUSNL_…`` name, logarithmic strain): the physical
  compression test, u(t) = −L (1 − exp(−ε̇ t)), true (logarithmic) strain ln(h/L) = −ε̇ t.

Either way the step time is final_true_strain / ε̇ and ``*STATIC`` uses ``n_increments`` equal
increments (automatic stepping may still cut an increment that does not converge — a UMAT asks
for that with PNEWDT < 1; inside a cut increment the amplitude is linear in time, so the NLGEOM
path is exponential only at the nominal increment ends).

Why NLGEOM off is the default: the Python bridge and the UMAT are small-strain J2 models (additive
strain); with NLGEOM off ccx hands the UMAT exactly the infinitesimal strain increments the bridge
integrates, so the two must agree to round-off. With NLGEOM on, ccx passes logarithmic strain to
``@ABAQUSNL_`` materials; in this coaxial test (no rotation) the UMAT then still agrees with ccx's
finite-strain *PLASTIC to about 0.1 % (tests/test_ccx.py checks 0.5 %).

Output requested: ``*NODE PRINT`` RF (total over the top face) and U of the top corner node,
``*EL PRINT`` S, E (and SDV for a UMAT, PEEQ for ``*PLASTIC``) at every integration point, every
increment, all in the ``.dat`` file; ``*NODE FILE`` U and ``*EL FILE`` S, E in the ``.frd``.
Newton iterations per increment are read from ccx's standard output (``fortran_umat.ccx_results``).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from constitutive.errors import NeumatInputError
from fem_bridge import conventions as cv

from .ccx_run import CCX_VERSION

#: ccx 2.20's *PLASTIC return mapping (incplas.f) copies the hardening table into arrays of 200:
#: a longer table overflows them SILENTLY (wrong stresses in the output), so it is refused here.
CCX_MAX_PLASTIC_POINTS = 200


@dataclass(frozen=True)
class UserMaterial:
    """A UMAT loaded by ccx at run time from ``lib<library_name>.so`` (found via LD_LIBRARY_PATH).

    ``props`` are written to ``*USER MATERIAL, CONSTANTS=len(props)``; ``nstatv`` to ``*DEPVAR``.
    ``symbol``: exported routine, ``None`` for ccx's default ``umat_``.
    ``n_model_props``: the model's PROPS count (4 + extras); when given, whatever follows them is
    checked here, before any deck is written, as the optional elastic table of
    ``fem_bridge.conventions`` (count, increasing temperatures, E > 0, −1 < ν < 0.5).
    """
    library_name: str
    props: Sequence[float]
    nstatv: int
    symbol: str | None = None
    n_model_props: int | None = None

    def __post_init__(self):
        if self.n_model_props is not None:
            if len(self.props) < self.n_model_props:
                raise NeumatInputError(f"UMAT PROPS: {len(self.props)} given, the model needs at least "
                                       f"{self.n_model_props}")
            cv.check_elastic_table(self.props, int(self.n_model_props), where=f"*USER MATERIAL of {self.library_name}")

    def material_name(self, nlgeom: bool) -> str:
        lib = self.library_name.upper()
        if not re.fullmatch(r"[A-Z0-9]+", lib):
            raise NeumatInputError(
                f"UMAT library name '{self.library_name}': ccx needs letters and digits only "
                "(no '_', which separates the symbol name)")
        name = ("@ABAQUSNL_" if nlgeom else "@ABAQUS_") + lib
        if self.symbol:
            name += "_" + self.symbol.upper()
        if len(name) > 80:
            raise NeumatInputError(f"material name {name} is longer than ccx's 80 characters")
        return name


def built_library(built) -> tuple[Path, str]:
    """(library path, library name) of a ``fortran_umat.build.BuildResult``: the folder to put on
    LD_LIBRARY_PATH and the ``library_name`` of its ``UserMaterial``."""
    path = getattr(built, "library_path", None) or getattr(built, "library")
    name = getattr(built, "library_name", None) or getattr(built, "name")
    return Path(path), str(name)


@dataclass(frozen=True)
class PlasticMaterial:
    """ccx's own ``*ELASTIC`` + ``*PLASTIC`` (isotropic hardening, von Mises).

    ``table``: rows (yield stress MPa, equivalent plastic strain), plastic strain increasing from 0.
    """
    E: float
    nu: float
    table: Sequence[tuple[float, float]]
    name: str = "JTWOPLASTIC"


def plastic_table(flow_stress, strain_rate: float, temperature_c: float, p_max: float = 0.6,
                  n_points: int = 151, extras: Sequence[float] = ()) -> list[tuple[float, float]]:
    """Hardening table σ_y(p) = flow_stress(x) at constant rate and temperature, p in [0, p_max].

    ``flow_stress``: callable taking an (n, F) array [strain, rate (1/s), T (°C), extras…] and
    returning σ (n,) in MPa (e.g. ``FlowNet.__call__``). Linear interpolation in ccx between
    rows; the default spacing 0.004 keeps that error far below 1e-4 relative for smooth curves.
    At most ``CCX_MAX_PLASTIC_POINTS`` rows.
    """
    if not 2 <= n_points <= CCX_MAX_PLASTIC_POINTS:
        raise NeumatInputError(f"*PLASTIC table: {n_points} rows; ccx {CCX_VERSION} takes 2 to "
                               f"{CCX_MAX_PLASTIC_POINTS}")
    p = np.linspace(0.0, p_max, n_points)
    x = np.column_stack([p, np.full_like(p, strain_rate), np.full_like(p, temperature_c)]
                        + [np.full_like(p, e) for e in extras])
    s = np.asarray(flow_stress(x), dtype=float).reshape(-1)
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise NeumatInputError("the model gives a non-positive or non-finite flow stress for the "
                               f"*PLASTIC table at rate {strain_rate} 1/s, T {temperature_c} °C")
    return list(zip(s.tolist(), p.tolist()))


@dataclass
class Deck:
    """A written compression deck: its file and the loading it prescribes (lengths mm, time s,
    rate 1/s, °C); the parsers and comparisons read the strain path from here."""
    path: Path
    side_mm: float
    n_elem: int
    n_increments: int
    step_time: float
    strain_rate: float
    final_true_strain: float
    nlgeom: bool
    temperature_c: float
    material_kind: str            # "umat" | "plastic"

    def applied_strain(self, t) -> np.ndarray:
        """Compressive strain magnitude of the material measure at step time t (see module doc)."""
        t = np.asarray(t, dtype=float)
        return self.strain_rate * t

    def applied_displacement(self, t) -> np.ndarray:
        """Top-face displacement u_z(t) in mm (negative: compression)."""
        t = np.asarray(t, dtype=float)
        if self.nlgeom:
            return -self.side_mm * (1.0 - np.exp(-self.strain_rate * t))
        return -self.side_mm * self.strain_rate * t


def _fmt(v: float) -> str:
    """A number as ccx reads it: at most 20 characters a field (Fortran f20.0)."""
    v = float(v)
    if not math.isfinite(v):
        raise NeumatInputError(f"non-finite number {v} in a ccx deck")
    for digits in (15, 14, 13, 12):
        s = format(v, f".{digits}g")
        if len(s) <= 20:
            return s
    return format(v, ".10g")


def _lines(values: Sequence[float], per_line: int = 8) -> list[str]:
    vals = [_fmt(v) for v in values]
    return [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]


def _id_lines(ids: Sequence[int], per_line: int = 16) -> list[str]:
    return [", ".join(str(i) for i in ids[k:k + per_line]) for k in range(0, len(ids), per_line)]


def nset_lines(sets: dict) -> list[str]:
    """``*NSET`` blocks, one per name, of the node ids (1-based) given for each name."""
    out = []
    for name, ids in sets.items():
        out.append(f"*NSET, NSET={name}")
        out += _id_lines([int(i) for i in ids])
    return out


def hex_block_lines(n: int, side_mm: float, nset: str, elset: str):
    """``*NODE`` and ``*ELEMENT, TYPE=C3D8`` lines of a cube of n³ elements with side ``side_mm``
    (corner at the origin), the node id of grid point (i, j, k) and the list of grid points."""
    m = n + 1
    nid = lambda i, j, k: 1 + i + m * j + m * m * k
    h = side_mm / n
    grid = [(i, j, k) for k in range(m) for j in range(m) for i in range(m)]
    out = [f"*NODE, NSET={nset}"]
    out += [f"{nid(i, j, k)}, {_fmt(i * h)}, {_fmt(j * h)}, {_fmt(k * h)}" for i, j, k in grid]
    out.append(f"*ELEMENT, TYPE=C3D8, ELSET={elset}")
    cells = [(i, j, k) for k in range(n) for j in range(n) for i in range(n)]
    for e, (i, j, k) in enumerate(cells, start=1):
        conn = [nid(i, j, k), nid(i + 1, j, k), nid(i + 1, j + 1, k), nid(i, j + 1, k),
                nid(i, j, k + 1), nid(i + 1, j, k + 1), nid(i + 1, j + 1, k + 1), nid(i, j + 1, k + 1)]
        out.append(f"{e}, " + ", ".join(map(str, conn)))
    return out, nid, grid


def material_block(material, temperature_c: float, nlgeom: bool = False) -> tuple[str, str, list[str]]:
    """(kind "umat" | "plastic", material name, the ``*MATERIAL`` … deck lines)."""
    if isinstance(material, UserMaterial):
        mname = material.material_name(nlgeom)
        out = [f"*MATERIAL, NAME={mname}", f"*USER MATERIAL, CONSTANTS={len(material.props)}"]
        # constants 8 a line, then the temperature they belong to (ccx's layout)
        out += _lines(list(material.props) + [temperature_c])
        out += ["*DEPVAR", str(int(material.nstatv))]
        return "umat", mname, out
    if isinstance(material, PlasticMaterial):
        table = np.asarray(material.table, dtype=float)
        if table.ndim != 2 or table.shape[1] != 2 or table[0, 1] != 0 or np.any(np.diff(table[:, 1]) <= 0):
            raise NeumatInputError("*PLASTIC table: rows (yield stress, plastic strain) with plastic "
                                   "strain starting at 0 and increasing")
        if len(table) > CCX_MAX_PLASTIC_POINTS:
            raise NeumatInputError(f"*PLASTIC table: {len(table)} rows; ccx {CCX_VERSION} silently "
                                   f"overflows beyond {CCX_MAX_PLASTIC_POINTS} (incplas.f)")
        out = [f"*MATERIAL, NAME={material.name}", "*ELASTIC",
               f"{_fmt(material.E)}, {_fmt(material.nu)}, {_fmt(temperature_c)}", "*PLASTIC"]
        out += [f"{_fmt(s)}, {_fmt(p)}, {_fmt(temperature_c)}" for s, p in table]
        return "plastic", material.name, out
    raise TypeError("material must be a UserMaterial or a PlasticMaterial")


def _check_deck_args(what: str, checks) -> None:
    for name, v, ok in checks:
        if not ok:
            raise NeumatInputError(f"{what}: {name} = {v} is out of range")


def write_axisymmetric_deck(path: str | Path, *, material: UserMaterial | PlasticMaterial,
                            temperature_c: float, strain_rate: float, final_true_strain: float = 0.5,
                            n_increments: int = 25, radius_mm: float = 5.0, height_mm: float = 7.5,
                            n_r: int = 2, n_z: int = 3) -> Deck:
    """The Gleeble cylinder as an axisymmetric model: n_r × n_z CAX4 elements in the (r, z) plane
    (x = r, y = z: radius ``radius_mm``, half height ``height_mm``, symmetric about z = 0),
    frictionless platen, so the field is homogeneous uniaxial compression along y (component 22)
    with the same strain path as ``write_compression_deck`` (small strain, u_y(top) = −H ε̇ t).
    Boundary: r = 0 u_r = 0 (axis), z = 0 u_z = 0, top face u_z prescribed. ccx expands CAX4 into
    a thin 3-D wedge of C3D8 internally, so its UMAT calls carry NTENS = 6 there; Abaqus calls the
    UMAT of a CAX4 with NTENS = 4 (11 = rr, 22 = zz, 33 = θθ, 12 = rz), the layout the generated
    UMAT and ``fem_bridge.umat`` take too (``conventions.LAYOUTS``). Returns a ``Deck``
    (``side_mm`` = the half height, ``n_elem`` = n_r × n_z elements)."""
    path = Path(path)
    _check_deck_args("axisymmetric deck", (
        ("temperature_c", temperature_c, math.isfinite(temperature_c)),
        ("strain_rate", strain_rate, strain_rate > 0 and math.isfinite(strain_rate)),
        ("final_true_strain", final_true_strain, 0 < final_true_strain < 2),
        ("n_increments", n_increments, int(n_increments) == n_increments and n_increments >= 1),
        ("radius_mm", radius_mm, radius_mm > 0), ("height_mm", height_mm, height_mm > 0),
        ("n_r", n_r, int(n_r) == n_r and n_r >= 1), ("n_z", n_z, int(n_z) == n_z and n_z >= 1)))
    nr, nz, H = int(n_r), int(n_z), float(height_mm)
    n_inc = int(n_increments)
    period = final_true_strain / strain_rate
    dt = period / n_inc
    nid = lambda i, j: 1 + i + (nr + 1) * j
    out = ["** neumat: axisymmetric CAX4 Gleeble cylinder, frictionless (fortran_umat/ccx_deck.py). "
           "Units mm, N, MPa, s, degC.",
           f"** R = {radius_mm} mm, half height {H} mm, T = {temperature_c} degC, strain rate = {strain_rate} 1/s, "
           f"final strain = {final_true_strain}, {n_inc} increments, small strain; x = r, y = z",
           "*HEADING", "neumat axisymmetric compression", "*NODE, NSET=NALL"]
    for j in range(nz + 1):
        for i in range(nr + 1):
            out.append(f"{nid(i, j)}, {_fmt(radius_mm * i / nr)}, {_fmt(H * j / nz)}, 0")
    out.append("*ELEMENT, TYPE=CAX4, ELSET=EALL")
    e = 0
    for j in range(nz):
        for i in range(nr):
            e += 1
            out.append(f"{e}, {nid(i, j)}, {nid(i + 1, j)}, {nid(i + 1, j + 1)}, {nid(i, j + 1)}")
    sets = {"NAXIS": [nid(0, j) for j in range(nz + 1)], "NZMIN": [nid(i, 0) for i in range(nr + 1)],
            "NTOP": [nid(i, nz) for i in range(nr + 1)]}
    out += nset_lines(sets)
    kind, mname, mlines = material_block(material, temperature_c, False)
    out += mlines
    out += [f"*SOLID SECTION, ELSET=EALL, MATERIAL={mname}",
            "*INITIAL CONDITIONS, TYPE=TEMPERATURE", f"NALL, {_fmt(temperature_c)}",
            "*BOUNDARY", "NAXIS, 1, 1", "NZMIN, 2, 2", "*AMPLITUDE, NAME=COMPR"]
    deck = Deck(path, H, nr * nz, n_inc, period, float(strain_rate), float(final_true_strain), False,
                float(temperature_c), kind)
    times = np.linspace(0.0, period, n_inc + 1)
    out += _lines([v for tv in zip(times, -deck.applied_displacement(times) / H) for v in tv])
    out += [f"*STEP, INC={max(100, 8 * n_inc)}", "*STATIC",
            f"{_fmt(dt)}, {_fmt(period)}, {_fmt(dt * 1e-4)}, {_fmt(dt)}",
            "*BOUNDARY, AMPLITUDE=COMPR", f"NTOP, 2, 2, {_fmt(-H)}",
            "*TEMPERATURE", f"NALL, {_fmt(temperature_c)}",
            "*NODE PRINT, NSET=NTOP, TOTALS=ONLY", "RF",
            "*EL PRINT, ELSET=EALL", "S, E" + (", SDV" if kind == "umat" else ", PEEQ"),
            "*END STEP", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out))
    return deck


def write_compression_deck(path: str | Path, *, material: UserMaterial | PlasticMaterial,
                           temperature_c: float, strain_rate: float,
                           final_true_strain: float = 0.5, n_increments: int = 25,
                           side_mm: float = 1.0, n_elem: int = 1, nlgeom: bool = False,
                           frd_output: bool = True, state_output: bool = True) -> Deck:
    """Write a ccx input deck for the homogeneous compression test (see the module docstring).

    ``material``: ``UserMaterial`` (the generated UMAT, name ``@ABAQUS_<LIB>``) or
    ``PlasticMaterial`` (ccx's ``*ELASTIC`` + ``*PLASTIC`` table at this temperature).
    ``side_mm``: cube side L in mm; ``n_elem``: elements per edge (n³ C3D8 in all).
    ``state_output=False`` prints S, E only (no SDV / PEEQ): the same output for both materials.
    Returns the ``Deck`` description used by the parsers and comparisons.
    """
    path = Path(path)
    for name, v, ok in (("temperature_c", temperature_c, math.isfinite(temperature_c)),
                        ("strain_rate", strain_rate, strain_rate > 0 and math.isfinite(strain_rate)),
                        ("final_true_strain", final_true_strain, 0 < final_true_strain < 2),
                        ("n_increments", n_increments, int(n_increments) == n_increments and n_increments >= 1),
                        ("side_mm", side_mm, side_mm > 0), ("n_elem", n_elem, int(n_elem) == n_elem and n_elem >= 1)):
        if not ok:
            raise NeumatInputError(f"compression deck: {name} = {v} is out of range")
    n, L = int(n_elem), float(side_mm)
    n_inc = int(n_increments)
    period = final_true_strain / strain_rate
    dt = period / n_inc

    # nodes on an (n+1)^3 grid, id = 1 + i + (n+1) j + (n+1)^2 k
    out = ["** neumat: homogeneous C3D8 compression (fortran_umat/ccx_deck.py). Units mm, N, MPa, s, degC.",
           f"** T = {temperature_c} degC, strain rate = {strain_rate} 1/s, final strain = "
           f"{final_true_strain}, {n_inc} increments, NLGEOM {'on' if nlgeom else 'off'}",
           "*HEADING", "neumat compression test"]
    block, nid, grid = hex_block_lines(n, L, "NCUBE", "ECUBE")
    out += block
    sets = {"NXMIN": [nid(*g) for g in grid if g[0] == 0],
            "NYMIN": [nid(*g) for g in grid if g[1] == 0],
            "NZMIN": [nid(*g) for g in grid if g[2] == 0],
            "NTOP": [nid(*g) for g in grid if g[2] == n],
            "NCORNER": [nid(n, n, n)]}
    out += nset_lines(sets)

    kind, mname, mlines = material_block(material, temperature_c, nlgeom)
    out += mlines
    out += [f"*SOLID SECTION, ELSET=ECUBE, MATERIAL={mname}",
            "*INITIAL CONDITIONS, TYPE=TEMPERATURE", f"NCUBE, {_fmt(temperature_c)}",
            "*BOUNDARY", "NXMIN, 1, 1", "NYMIN, 2, 2", "NZMIN, 3, 3",
            "*AMPLITUDE, NAME=COMPR"]
    deck = Deck(path, L, n, n_inc, period, float(strain_rate), float(final_true_strain), bool(nlgeom),
                float(temperature_c), kind)
    times = np.linspace(0.0, period, n_inc + 1)
    amp = -deck.applied_displacement(times) / L          # the boundary value below is -L
    out += _lines([v for tv in zip(times, amp) for v in tv])
    out += [f"*STEP, INC={max(100, 8 * n_inc)}" + (", NLGEOM" if nlgeom else ""),
            "*STATIC",
            f"{_fmt(dt)}, {_fmt(period)}, {_fmt(dt * 1e-4)}, {_fmt(dt)}",
            "*BOUNDARY, AMPLITUDE=COMPR", f"NTOP, 3, 3, {_fmt(-L)}",
            "*TEMPERATURE", f"NCUBE, {_fmt(temperature_c)}",
            "*NODE PRINT, NSET=NTOP, TOTALS=ONLY", "RF",
            "*NODE PRINT, NSET=NCORNER", "U",
            "*EL PRINT, ELSET=ECUBE", "S, E" + ((", SDV" if kind == "umat" else ", PEEQ") if state_output else "")]
    if frd_output:
        out += ["*NODE FILE", "U", "*EL FILE", "S, E"]
    out += ["*END STEP", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out))
    return deck
