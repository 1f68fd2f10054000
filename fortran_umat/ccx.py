"""CalculiX (ccx 2.20) end to end: compression deck writer, runner and result parsers.

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
Newton iterations per increment are read from ccx's standard output.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from constitutive.errors import NeumatInputError

CCX_VERSION = "2.20"
#: ccx 2.20's *PLASTIC return mapping (incplas.f) copies the hardening table into arrays of 200:
#: a longer table overflows them SILENTLY (wrong stresses in the output), so it is refused here.
CCX_MAX_PLASTIC_POINTS = 200
VOIGT_DAT = ("11", "22", "33", "12", "13", "23")   # .dat prints tensor shear, this order


class CcxNotBuilt(NeumatInputError):
    """The CalculiX binary with run-time UMAT loading is not in the cache."""


class CcxError(RuntimeError):
    """ccx ran but failed (input error, no convergence, crash)."""


# ---------------------------------------------------------------------------------------------
# the binary

def cache_dir() -> Path:
    """``${NEUMAT_CACHE:-~/.cache/neumat}/ccx-2.20`` — where fortran_umat/build_ccx.sh puts ccx."""
    root = os.environ.get("NEUMAT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "neumat")
    return Path(root) / f"ccx-{CCX_VERSION}"


def ccx_binary() -> Path:
    """Path of the cached ccx 2.20 built with run-time UMAT loading; a clear error when missing."""
    d = cache_dir()
    exe = d / "ccx"
    if not (exe.is_file() and os.access(exe, os.X_OK) and (d / ".complete").is_file()):
        raise CcxNotBuilt(
            f"CalculiX ccx {CCX_VERSION} with run-time UMAT loading is not built ({exe} missing). "
            "Run `make ccx` (or `bash fortran_umat/build_ccx.sh`) once on this machine; it takes "
            "a few minutes and is cached outside git.")
    return exe


# ---------------------------------------------------------------------------------------------
# materials

@dataclass(frozen=True)
class UserMaterial:
    """A UMAT loaded by ccx at run time from ``lib<library_name>.so`` (found via LD_LIBRARY_PATH).

    ``props`` are written to ``*USER MATERIAL, CONSTANTS=len(props)``; ``nstatv`` to ``*DEPVAR``.
    ``symbol``: exported routine, ``None`` for ccx's default ``umat_``.
    """
    library_name: str
    props: Sequence[float]
    nstatv: int
    symbol: str | None = None

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


# ---------------------------------------------------------------------------------------------
# the deck

@dataclass
class Deck:
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


def write_compression_deck(path: str | Path, *, material: UserMaterial | PlasticMaterial,
                           temperature_c: float, strain_rate: float,
                           final_true_strain: float = 0.5, n_increments: int = 25,
                           side_mm: float = 1.0, n_elem: int = 1, nlgeom: bool = False,
                           frd_output: bool = True) -> Deck:
    """Write a ccx input deck for the homogeneous compression test (see the module docstring).

    ``material``: ``UserMaterial`` (the generated UMAT, name ``@ABAQUS_<LIB>``) or
    ``PlasticMaterial`` (ccx's ``*ELASTIC`` + ``*PLASTIC`` table at this temperature).
    ``side_mm``: cube side L in mm; ``n_elem``: elements per edge (n³ C3D8 in all).
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
    m = n + 1
    nid = lambda i, j, k: 1 + i + m * j + m * m * k
    h = L / n
    out = ["** neumat: homogeneous C3D8 compression (fortran_umat/ccx.py). Units mm, N, MPa, s, degC.",
           f"** T = {temperature_c} degC, strain rate = {strain_rate} 1/s, final strain = "
           f"{final_true_strain}, {n_inc} increments, NLGEOM {'on' if nlgeom else 'off'}",
           "*HEADING", "neumat compression test", "*NODE, NSET=NCUBE"]
    for k in range(m):
        for j in range(m):
            for i in range(m):
                out.append(f"{nid(i, j, k)}, {_fmt(i * h)}, {_fmt(j * h)}, {_fmt(k * h)}")
    out.append("*ELEMENT, TYPE=C3D8, ELSET=ECUBE")
    e = 0
    for k in range(n):
        for j in range(n):
            for i in range(n):
                e += 1
                conn = [nid(i, j, k), nid(i + 1, j, k), nid(i + 1, j + 1, k), nid(i, j + 1, k),
                        nid(i, j, k + 1), nid(i + 1, j, k + 1), nid(i + 1, j + 1, k + 1), nid(i, j + 1, k + 1)]
                out.append(f"{e}, " + ", ".join(map(str, conn)))
    grid = [(i, j, k) for k in range(m) for j in range(m) for i in range(m)]
    sets = {"NXMIN": [nid(*g) for g in grid if g[0] == 0],
            "NYMIN": [nid(*g) for g in grid if g[1] == 0],
            "NZMIN": [nid(*g) for g in grid if g[2] == 0],
            "NTOP": [nid(*g) for g in grid if g[2] == n],
            "NCORNER": [nid(n, n, n)]}
    for name, ids in sets.items():
        out.append(f"*NSET, NSET={name}")
        out += _id_lines(ids)

    if isinstance(material, UserMaterial):
        kind = "umat"
        mname = material.material_name(nlgeom)
        out += [f"*MATERIAL, NAME={mname}", f"*USER MATERIAL, CONSTANTS={len(material.props)}"]
        # constants 8 a line, then the temperature they belong to (ccx's layout)
        out += _lines(list(material.props) + [temperature_c])
        out += ["*DEPVAR", str(int(material.nstatv))]
    elif isinstance(material, PlasticMaterial):
        kind = "plastic"
        mname = material.name
        table = np.asarray(material.table, dtype=float)
        if table.ndim != 2 or table.shape[1] != 2 or table[0, 1] != 0 or np.any(np.diff(table[:, 1]) <= 0):
            raise NeumatInputError("*PLASTIC table: rows (yield stress, plastic strain) with plastic "
                                   "strain starting at 0 and increasing")
        if len(table) > CCX_MAX_PLASTIC_POINTS:
            raise NeumatInputError(f"*PLASTIC table: {len(table)} rows; ccx {CCX_VERSION} silently "
                                   f"overflows beyond {CCX_MAX_PLASTIC_POINTS} (incplas.f)")
        out += [f"*MATERIAL, NAME={mname}", "*ELASTIC", f"{_fmt(material.E)}, {_fmt(material.nu)}, {_fmt(temperature_c)}",
                "*PLASTIC"]
        out += [f"{_fmt(s)}, {_fmt(p)}, {_fmt(temperature_c)}" for s, p in table]
    else:
        raise TypeError("material must be a UserMaterial or a PlasticMaterial")
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
            "*EL PRINT, ELSET=ECUBE", "S, E" + (", SDV" if kind == "umat" else ", PEEQ")]
    if frd_output:
        out += ["*NODE FILE", "U", "*EL FILE", "S, E"]
    out += ["*END STEP", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out))
    return deck


# ---------------------------------------------------------------------------------------------
# parsing

@dataclass
class Increment:
    time: float                                  # step time at the end of the increment, s
    rf_total: np.ndarray | None = None           # (3,) total reaction force on the top face, N
    u_corner: np.ndarray | None = None           # (3,) displacement of the top corner node, mm
    stress: np.ndarray | None = None             # (n_ip, 6) MPa, order 11 22 33 12 13 23
    strain: np.ndarray | None = None             # (n_ip, 6) tensor shear
    sdv: np.ndarray | None = None                # (n_ip, nstatv)
    peeq: np.ndarray | None = None               # (n_ip,)
    ip: np.ndarray | None = None                 # (n_ip, 2) element, integration point
    iterations: int | None = None                # Newton iterations of the converged attempt
    attempts: int | None = None


_HEADER = re.compile(r"^\s*(.+?)\s*for set\s+(\S+)\s+and time\s+(\S+)")


def parse_dat(path: str | Path) -> list[Increment]:
    """Read a ccx ``.dat`` file into one ``Increment`` per output time (all its blocks merged)."""
    lines = Path(path).read_text().splitlines()
    incs: dict[float, Increment] = {}
    i = 0
    while i < len(lines):
        mh = _HEADER.match(lines[i])
        if not mh:
            i += 1
            continue
        what, t = mh.group(1).lower(), float(mh.group(3))
        inc = incs.setdefault(t, Increment(time=t))
        i += 1
        rows = []
        while i < len(lines) and not _HEADER.match(lines[i]):
            s = lines[i].strip()
            if s:
                try:
                    rows.append([float(v) for v in s.split()])
                except ValueError:
                    break
            i += 1
        if what.startswith("total force") or (what.startswith("forces") and "total" in what):
            inc.rf_total = np.asarray(rows[-1][-3:]) if rows else None
        elif what.startswith("displacements"):
            inc.u_corner = np.asarray(rows[0][1:4])
        elif what.startswith("stresses"):
            a = np.asarray(rows)
            inc.ip, inc.stress = a[:, :2].astype(int), a[:, 2:8]
        elif what.startswith("strains"):
            a = np.asarray(rows)
            inc.strain = a[:, 2:8]
        elif what.startswith("internal state variables"):
            inc.sdv = _sdv_rows(rows)
        elif what.startswith("equivalent plastic strain"):
            inc.peeq = np.asarray(rows)[:, 2]
    return [incs[t] for t in sorted(incs)]


def _sdv_rows(rows: list[list[float]]) -> np.ndarray:
    """SDV rows 'elem ip v1 … vn' (ccx prints up to 99 values a line: format i10,1x,i3,99(1x,e13.6))."""
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise CcxError("cannot parse the SDV block of the .dat file (more than 99 state variables?)")
    return np.asarray(rows)[:, 2:]


_INC = re.compile(r"^\s*increment\s+(\d+)\s+attempt\s+(\d+)")
_ITER = re.compile(r"^\s*iteration\s+(\d+)")


def parse_iterations(stdout: str) -> list[tuple[int, int, int, bool]]:
    """(increment, attempt, Newton iterations, converged) for every attempt in ccx's stdout."""
    out: list[list] = []
    for line in stdout.splitlines():
        m = _INC.match(line)
        if m:
            out.append([int(m.group(1)), int(m.group(2)), 0, False])
            continue
        m = _ITER.match(line)
        if m and out:
            out[-1][2] = max(out[-1][2], int(m.group(1)))
            continue
        if out and line.strip().startswith("convergence"):
            out[-1][3] = True
    return [tuple(r) for r in out]


_CORR = re.compile(r"^\s*largest correction to disp=\s*(\S+)")


def parse_corrections(stdout: str) -> list[list[float]]:
    """Largest displacement correction of every Newton iteration (mm), one list per attempt, from
    ccx's stdout — the convergence history (quadratic for a consistent tangent)."""
    out: list[list[float]] = []
    for line in stdout.splitlines():
        if _INC.match(line):
            out.append([])
            continue
        m = _CORR.match(line)
        if m and out:
            out[-1].append(float(m.group(1)))
    return out


def parse_sta(path: str | Path) -> list[tuple[int, int, int, float]]:
    """(increment, attempts, iterations, step time) per converged increment from ccx's ``.sta``."""
    rows = []
    for line in Path(path).read_text().splitlines():
        f = line.split()
        if len(f) == 7 and f[0].isdigit():
            rows.append((int(f[1]), int(f[2]), int(f[3]), float(f[5])))
    return rows


def parse_frd(path: str | Path) -> list[dict]:
    """Nodal result blocks of a ccx ``.frd`` file: [{"name", "time", "components", "values":
    {node: array}}], in file order (ASCII format, as ccx writes it by default)."""
    blocks: list[dict] = []
    cur: dict | None = None
    t = None
    for line in Path(path).read_text().splitlines():
        if line.startswith("  100C"):
            t = float(line[12:24])
        elif line.startswith(" -4"):
            parts = line.split()
            cur = {"name": parts[1], "time": t, "components": [], "values": {}}
            blocks.append(cur)
        elif line.startswith(" -5") and cur is not None:
            cur["components"].append(line.split()[1])
        elif line.startswith(" -1") and cur is not None:
            node = int(line[3:13])
            rest = line[13:]
            vals = [float(rest[k:k + 12]) for k in range(0, len(rest) - 11, 12)]
            cur["values"][node] = np.asarray(vals)
        elif line.startswith(" -3"):
            cur = None
    return blocks


# ---------------------------------------------------------------------------------------------
# running

@dataclass
class CcxResult:
    deck: Path
    workdir: Path
    jobname: str
    stdout: str
    stderr: str
    returncode: int
    wall_s: float
    threads: int
    increments: list[Increment] = field(default_factory=list)
    attempts: list[tuple[int, int, int, bool]] = field(default_factory=list)

    @property
    def dat(self) -> Path:
        return self.workdir / f"{self.jobname}.dat"

    @property
    def frd(self) -> Path:
        return self.workdir / f"{self.jobname}.frd"

    @property
    def sta(self) -> Path:
        return self.workdir / f"{self.jobname}.sta"

    def iterations(self) -> np.ndarray:
        """Newton iterations of the converged attempt of every increment."""
        return np.asarray([it for inc, att, it, ok in self.attempts if ok], dtype=int)

    def times(self) -> np.ndarray:
        return np.asarray([i.time for i in self.increments])

    def axial_stress(self) -> np.ndarray:
        """σ_33 (MPa, negative in compression) averaged over the integration points, per increment."""
        return np.asarray([i.stress[:, 2].mean() for i in self.increments])

    def axial_stress_spread(self) -> np.ndarray:
        """max − min of σ_33 over the integration points per increment (0 for a homogeneous field)."""
        return np.asarray([np.ptp(i.stress[:, 2]) for i in self.increments])


def run_ccx(deck: str | Path, workdir: str | Path | None = None, library_dir: str | Path | None = None,
            threads: int = 1, timeout_s: float = 600.0) -> CcxResult:
    """Run ccx on ``deck`` (``.inp``) in ``workdir`` (default: the deck's folder).

    ``library_dir`` is prepended to LD_LIBRARY_PATH (ccx dlopens ``lib<LIB>.so`` from there);
    ``threads`` sets OMP_NUM_THREADS and CCX_NPROC_{STIFFNESS,RESULTS,EQUATION_SOLVER}.
    Raises ``CcxError`` (with the end of ccx's output) when ccx reports an error or does not finish.
    """
    exe = ccx_binary()
    deck = Path(deck).resolve()
    if not deck.is_file():
        raise NeumatInputError(f"ccx deck {deck} not found")
    workdir = Path(workdir).resolve() if workdir else deck.parent
    workdir.mkdir(parents=True, exist_ok=True)
    job = deck.stem
    if deck.parent != workdir:
        shutil.copyfile(deck, workdir / deck.name)
    for ext in (".dat", ".frd", ".sta", ".cvg"):
        (workdir / f"{job}{ext}").unlink(missing_ok=True)
    env = dict(os.environ)
    if library_dir is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            [str(Path(library_dir).resolve())] + ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else []))
    nt = str(int(threads))
    env.update(OMP_NUM_THREADS=nt, CCX_NPROC_STIFFNESS=nt, CCX_NPROC_RESULTS=nt,
               CCX_NPROC_EQUATION_SOLVER=nt)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([str(exe), "-i", job], cwd=workdir, env=env, capture_output=True,
                              text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise CcxError(f"ccx on {deck} did not finish within {timeout_s} s") from exc
    wall = time.perf_counter() - t0
    res = CcxResult(deck, workdir, job, proc.stdout, proc.stderr, proc.returncode, wall, int(threads))
    (workdir / f"{job}.stdout").write_text(proc.stdout + ("\n--- stderr ---\n" + proc.stderr if proc.stderr else ""))
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
    if proc.returncode != 0 or "*ERROR" in proc.stdout or "Job finished" not in proc.stdout:
        hint = ""
        m = re.search(r"(lib\S+\.so): cannot open shared object", proc.stdout + proc.stderr)
        if m:
            hint = (f" (UMAT library {m.group(1)} not found on LD_LIBRARY_PATH; library_dir = "
                    f"{library_dir})")
        raise CcxError(f"ccx failed on {deck} (exit {proc.returncode}){hint}; its output ends with:\n{tail}")
    res.attempts = parse_iterations(proc.stdout)
    res.increments = parse_dat(res.dat)
    conv = [(inc, it) for inc, att, it, ok in res.attempts if ok]
    if len(conv) == len(res.increments):
        for rec, (_, it) in zip(res.increments, conv):
            rec.iterations = it
    return res


# ---------------------------------------------------------------------------------------------
# the same homogeneous path, driven in Python (for the comparison with the Python bridge)

def uniaxial_stress_path(update, *, deck: Deck, tol: float = 1e-11):
    """Integrate a material on the deck's homogeneous path, independently of ccx.

    Per increment the axial strain increment is prescribed (Δε_33 = −ε̇ Δt: the strain measure
    the material sees grows at the constant rate ε̇, see the module docstring), the shear strains
    are 0 and the lateral strain increments Δε_11 = Δε_22 are found by Newton with the
    material's tangent so that σ_11 = σ_22 = 0 — the uniaxial stress state of the cube.

    ``update(stress, statev, stran, dstran, time, dtime, temp_end) -> (stress, statev, ddsdde)``
    for one point, values at the start of the increment in (``statev`` None on the first call,
    ``time`` the step time at the start), vectors in Abaqus Voigt order with engineering shear.
    Returns the step times, stresses (n_inc, 6) and state variables (n_inc, nstatv) at the
    increment ends.
    """
    dt = deck.step_time / deck.n_increments
    stress, statev, stran = np.zeros(6), None, np.zeros(6)
    times, stresses, states = [], [], []
    d33 = -deck.strain_rate * dt
    lateral = 0.5 * -d33                       # plastic incompressibility as the first guess
    for k in range(deck.n_increments):
        for _ in range(50):
            de = np.array([lateral, lateral, d33, 0.0, 0.0, 0.0])
            s, sv, C = update(stress, statev, stran, de, k * dt, dt, deck.temperature_c)
            r = 0.5 * (s[0] + s[1])
            if abs(r) <= tol * max(1.0, abs(s[2])):
                break
            lateral -= r / (0.5 * (C[0, 0] + C[0, 1] + C[1, 0] + C[1, 1]))
        else:
            raise RuntimeError(f"uniaxial stress driver: no equilibrium in increment {k + 1}")
        stress, statev, stran = np.asarray(s, dtype=float), np.asarray(sv, dtype=float), stran + de
        times.append((k + 1) * dt)
        stresses.append(stress.copy())
        states.append(statev.copy())
    return np.asarray(times), np.asarray(stresses), np.asarray(states)


def bridge_update(onnx_path: str | Path, props: Sequence[float]):
    """The Python bridge (``fem_bridge.umat.UmatMaterial`` on the onnxruntime backend of the
    same ONNX file) as an ``update`` for :func:`uniaxial_stress_path`; ``props`` as for the UMAT."""
    from fem_bridge.backends import load_backend
    from fem_bridge.umat import UmatMaterial
    mat = UmatMaterial(load_backend(onnx_path), props=list(props))

    def update(stress, statev, stran, dstran, time, dtime, temp_end):
        sv = mat.initial_state() if statev is None else statev
        s, sv, C, pnewdt = mat.call(stress, sv, stran, dstran, time=(time, time), dtime=dtime,
                                    temp=temp_end, dtemp=0.0)
        if not pnewdt >= 1.0:
            raise RuntimeError(f"Python bridge: step cut requested at step time {time} s")
        return s, sv, C
    return update


def relative_difference(a, b) -> float:
    """max |a − b| / max |b| over the path (the ‘agreement along the path’ figure)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.abs(b)))


# ---------------------------------------------------------------------------------------------
# neumat ccx

def onnx_flow_stress(onnx_path: str | Path):
    """σ(x) from an exported model through onnxruntime (for the ``*PLASTIC`` table)."""
    import onnxruntime as ort
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float64)})[0]


def built_library(built) -> tuple[Path, str]:
    """(library path, library name) of a ``fortran_umat.build.BuildResult``."""
    path = getattr(built, "library_path", None) or getattr(built, "library")
    name = getattr(built, "library_name", None) or getattr(built, "name")
    return Path(path), str(name)


def add_arguments(p) -> None:
    """Arguments of ``neumat ccx`` (registered by fortran_umat/cli.py)."""
    p.description = (
        "Build the UMAT of an exported model, run a homogeneous C3D8 compression test in CalculiX "
        f"{CCX_VERSION} (built by `make ccx`) at constant temperature and strain rate, print the "
        "stress-strain curve and Newton iterations per increment and write results.csv. "
        "Units: °C, 1/s, MPa, mm.")
    p.epilog = ("example:\n  neumat ccx --model dz411.onnx --temperature 1000 --strain-rate 0.1 --extras 0 "
                "--compare-plastic --compare-bridge --out ccx_run")
    p.add_argument("--model", required=True, help="exported model (.onnx)")
    p.add_argument("--temperature", type=float, required=True, help="test temperature, °C")
    p.add_argument("--strain-rate", type=float, required=True, help="true strain rate, 1/s (> 0): rate of the strain the material sees (small strain; logarithmic with --nlgeom)")
    p.add_argument("--strain", type=float, default=0.5, help="final true strain (default 0.5)")
    p.add_argument("--increments", type=int, default=25, help="equal increments (default 25)")
    p.add_argument("--threads", type=int, default=1, help="ccx threads (OMP_NUM_THREADS, CCX_NPROC_*)")
    p.add_argument("--elements", type=int, default=1, help="C3D8 elements per cube edge (default 1)")
    p.add_argument("--side", type=float, default=10.0, help="cube side, mm (default 10)")
    p.add_argument("--E", dest="E", type=float, default=1.0e5,
                   help="Young's modulus, MPa (PROPS(1); default 1e5, a hot-working value)")
    p.add_argument("--nu", type=float, default=0.3, help="Poisson's ratio (PROPS(2); default 0.3)")
    p.add_argument("--extras", type=float, nargs="*", default=[],
                   help="values of the model's extra features, in its order (PROPS(5…))")
    p.add_argument("--nlgeom", action="store_true",
                   help="large deformation (NLGEOM, logarithmic strain); default small strain")
    p.add_argument("--compare-plastic", action="store_true",
                   help="also run ccx's own *PLASTIC with a hardening table sampled from the model "
                        "at this rate and temperature, and print the difference")
    p.add_argument("--compare-bridge", action="store_true",
                   help="also integrate the same homogeneous path with the Python bridge "
                        "(fem_bridge, small strain) and print the difference")
    p.add_argument("--out", default="ccx_out", help="output folder (deck, ccx files, results.csv)")


def run(args) -> int:
    """``neumat ccx``: build the UMAT, write and run the deck, print and write the results."""
    from fortran_umat.build import build_umat
    from fem_bridge.conventions import N_FIXED_PROPS, TEMP_MODE_CALCULIX

    model = Path(args.model)
    if not model.is_file():
        raise NeumatInputError(f"--model {model}: file not found (export one with `neumat export`)")
    if args.threads < 1:
        raise NeumatInputError(f"--threads {args.threads}: must be >= 1")
    if not (args.E > 0 and -1 < args.nu < 0.5):
        raise NeumatInputError(f"--E {args.E} MPa must be > 0 and --nu {args.nu} in (-1, 0.5)")
    if args.compare_bridge and args.nlgeom:
        raise NeumatInputError("--compare-bridge compares with the small-strain bridge: drop --nlgeom")
    ccx_binary()                                     # fail early with the `make ccx` hint
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    built = build_umat(model, out_dir=out / "umat")
    lib_path, lib_name = built_library(built)
    n_extras = getattr(built, "nprops", N_FIXED_PROPS + len(args.extras)) - N_FIXED_PROPS
    if len(args.extras) != n_extras:
        raise NeumatInputError(f"--extras: the model takes {n_extras} extra feature value(s), "
                               f"got {len(args.extras)}")
    props = [args.E, args.nu, float(TEMP_MODE_CALCULIX), 0.0] + list(args.extras)
    mat = UserMaterial(lib_name, props, built.nstatv)
    deck = write_compression_deck(out / "compression_umat.inp", material=mat,
                                  temperature_c=args.temperature, strain_rate=args.strain_rate,
                                  final_true_strain=args.strain, n_increments=args.increments,
                                  side_mm=args.side, n_elem=args.elements, nlgeom=args.nlgeom)
    res = run_ccx(deck.path, library_dir=lib_path.parent, threads=args.threads)
    ref = None
    if args.compare_plastic:
        table = plastic_table(onnx_flow_stress(model), args.strain_rate, args.temperature,
                              p_max=1.2 * args.strain, extras=args.extras)
        pdeck = write_compression_deck(out / "compression_plastic.inp",
                                       material=PlasticMaterial(args.E, args.nu, table),
                                       temperature_c=args.temperature, strain_rate=args.strain_rate,
                                       final_true_strain=args.strain, n_increments=args.increments,
                                       side_mm=args.side, n_elem=args.elements, nlgeom=args.nlgeom)
        ref = run_ccx(pdeck.path, threads=args.threads)
    t = res.times()
    eps = deck.applied_strain(t)
    sig = -res.axial_stress()
    bridge = ref_sig = None
    if ref:       # on the UMAT run's times (they differ only if ccx cut an increment)
        ref_sig = np.interp(t, ref.times(), -ref.axial_stress())
        ref_it = {round(a.time / deck.step_time, 9): a.iterations for a in ref.increments}
    if args.compare_bridge:
        tb, sb, _ = uniaxial_stress_path(bridge_update(model, props), deck=deck)
        bridge = np.interp(t, tb, -sb[:, 2])
    rows = ["increment,time_s,strain,stress_MPa,p,pdot_1_per_s,n_out_of_box,iterations"
            + (",plastic_stress_MPa,plastic_iterations,rel_diff" if ref else "")]
    print(f"CalculiX {CCX_VERSION}: {deck.n_elem ** 3} C3D8, T = {args.temperature} °C, "
          f"rate = {args.strain_rate} 1/s, {'NLGEOM' if args.nlgeom else 'small strain'}, "
          f"UMAT lib{lib_name}.so, {res.wall_s:.2f} s on {args.threads} thread(s)")
    print(" inc   strain   stress/MPa        p   iter" + ("  *PLASTIC/MPa  iter  rel.diff" if ref else "")
          + ("  bridge/MPa  rel.diff" if bridge is not None else ""))
    if bridge is not None:
        rows[0] += ",bridge_stress_MPa,bridge_rel_diff"
    for k, inc in enumerate(res.increments):
        sdv = inc.sdv.mean(axis=0) if inc.sdv is not None else np.full(max(built.nstatv, 9), np.nan)
        line = (f"{k + 1},{t[k]:.9g},{eps[k]:.9g},{sig[k]:.7g},{sdv[0]:.6g},{sdv[7]:.6g},"
                f"{sdv[8]:.6g},{inc.iterations}")
        txt = f"{k + 1:4d} {eps[k]:8.4f} {sig[k]:12.4f} {sdv[0]:8.4f} {inc.iterations!s:>6}"
        if ref:
            rs, ri = ref_sig[k], ref_it.get(round(t[k] / deck.step_time, 9))
            d = sig[k] / rs - 1.0
            line += f",{rs:.7g},{ri},{d:.3e}"
            txt += f" {rs:13.4f} {ri!s:>5} {d:9.2e}"
        if bridge is not None:
            d = sig[k] / bridge[k] - 1.0
            line += f",{bridge[k]:.9g},{d:.3e}"
            txt += f" {bridge[k]:11.4f} {d:9.2e}"
        rows.append(line)
        print(txt)
    (out / "results.csv").write_text("\n".join(rows) + "\n")
    it = res.iterations()
    print(f"Newton iterations per increment: mean {it.mean():.2f}, max {it.max()}"
          + (f"; *PLASTIC: mean {ref.iterations().mean():.2f}, max {ref.iterations().max()}; "
             f"max relative stress difference {relative_difference(sig, ref_sig):.2e}"
             if ref else ""))
    if bridge is not None:
        print(f"max relative stress difference to the Python bridge: {relative_difference(sig, bridge):.2e}")
    n_out = max((float(i.sdv[:, 8].max()) for i in res.increments if i.sdv is not None), default=0.0)
    if n_out > 0:
        print(f"note: up to {n_out:g} flow-stress evaluation(s) per integration point were outside the model's training "
              "box (STATEV(9)); the model's box policy applied")
    print(f"wrote {out / 'results.csv'} (stress: true axial stress magnitude, MPa)")
    return 0
