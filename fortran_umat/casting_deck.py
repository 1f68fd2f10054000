"""CalculiX (ccx 2.20) decks of the cooling casting: the transient heat conduction and the
quasi-static mechanical solution driven by its temperatures, with the generated UMAT or with ccx's
own ``*ELASTIC`` + ``*PLASTIC`` (tables sampled from the same network).

Units (ccx has none; this consistent set is used throughout): length mm, force N, time s,
temperature °C, mass t (tonne), stress MPa, energy mJ. In these units
conductivity W/(m·K) = N/(s·K) (same number), specific heat J/(kg·K) × 1e6 = mm²/(s²·K),
density kg/m³ × 1e-12 = t/mm³, film coefficient W/(m²·K) × 1e-3 = N/(mm·s·K).

**Procedure: heat transfer first, then a static analysis reading its temperatures** (not
``*UNCOUPLED TEMPERATURE-DISPLACEMENT``). The coupling is one-way: plastic work heats a cooling
casting by far less than a degree and the part does not separate from the mould in this model,
so nothing of the mechanical solution feeds back. Solving the heat conduction on its own lets its
time step follow the temperature change (``DELTMX``) instead of the mechanical Newton loop, and
above all gives *one* temperature history that drives every mechanical run alike: the UMAT run and
the ``*PLASTIC`` run see the same temperature at every node and time, so their point-by-point
comparison measures the material and nothing else. The mechanical deck has one ``*STATIC`` step
per sampled time of the thermal solution (one increment each, its length the time between the
samples, so the UMAT sees the physical rate Δp/Δt); its ``*TEMPERATURE`` lists the nodal
temperatures of that time (ccx ramps them linearly over the step), and a last step brings the
whole part to the room temperature.

Thermal strain stays the solver's: ``*EXPANSION, ZERO=T_zero`` (secant α(T), ccx
``materialdata_me.f``) and ``*INITIAL CONDITIONS, TYPE=TEMPERATURE``; ccx subtracts the thermal
strain and hands the UMAT the mechanical strain (see ``../shared/reference/calculix-umat.md``).
E(T), ν(T) reach the UMAT as ``*USER MATERIAL`` constants given per temperature, which ccx
interpolates linearly at the increment's end temperature (constant beyond the table).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from constitutive.errors import NeumatInputError
from constitutive.jsonio import write_atomic
from fem_bridge import conventions as cv

from .casting_geometry import PartMesh
from .ccx_deck import CCX_MAX_PLASTIC_POINTS, UserMaterial, _fmt, _lines, nset_lines


def _table(name: str, temps, values, lo: float = -math.inf, hi: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(temps, dtype=float).ravel()
    v = np.asarray(values, dtype=float).ravel()
    if t.size < 1 or t.shape != v.shape:
        raise NeumatInputError(f"{name}: {t.size} temperatures and {v.size} values; give one value per temperature")
    if not (np.all(np.isfinite(t)) and np.all(np.diff(t) > 0)):
        raise NeumatInputError(f"{name}: temperatures (°C) must be finite and strictly increasing, got {t.tolist()}")
    if not (np.all(np.isfinite(v)) and np.all(v > lo) and np.all(v < hi)):
        raise NeumatInputError(f"{name}: values {v.tolist()} must be finite and in ({lo:g}, {hi:g})")
    return t, v


@dataclass(frozen=True)
class SuperalloyProperties:
    """Temperature-dependent properties of a cast Ni-base superalloy, representative of the
    IN738LC / DZ411 class (typical handbook magnitudes, not measured DZ411 data; change them for
    your alloy). Tables are (°C, value), linearly interpolated by ccx, constant beyond the ends.

    * ``density``: kg/m³ (constant).
    * ``conductivity``: W/(m·K); ``specific_heat``: J/(kg·K).
    * ``E``: Young's modulus MPa; ``nu``: Poisson's ratio.
    * ``alpha``: secant thermal expansion coefficient 1/K from ``alpha_zero`` °C (ccx ``*EXPANSION,
      ZERO=``): thermal strain α(T)(T − T_zero) − α(T₀)(T₀ − T_zero) from the initial T₀.
    """
    density: float = 8200.0
    conductivity: tuple = ((20.0, 11.0), (400.0, 15.5), (800.0, 21.0), (1200.0, 27.0))
    specific_heat: tuple = ((20.0, 430.0), (400.0, 480.0), (800.0, 560.0), (1200.0, 650.0))
    E: tuple = ((20.0, 2.00e5), (400.0, 1.86e5), (700.0, 1.70e5), (900.0, 1.55e5), (1100.0, 1.35e5),
                (1200.0, 1.25e5))
    nu: tuple = ((20.0, 0.30), (1200.0, 0.32))
    alpha: tuple = ((20.0, 11.6e-6), (400.0, 13.3e-6), (700.0, 14.5e-6), (900.0, 15.6e-6),
                    (1100.0, 17.0e-6), (1200.0, 18.0e-6))
    alpha_zero: float = 20.0

    def check(self) -> None:
        if not (math.isfinite(self.density) and self.density > 0):
            raise NeumatInputError(f"density {self.density} kg/m³ must be > 0")
        for name, lo, hi in (("conductivity", 0, math.inf), ("specific_heat", 0, math.inf), ("E", 0, math.inf),
                             ("nu", -1.0, 0.5), ("alpha", -1e-3, 1e-3)):
            self.table(name, lo, hi)

    def table(self, name: str, lo: float = -math.inf, hi: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray(getattr(self, name), dtype=float)
        if rows.ndim != 2 or rows.shape[1] != 2:
            raise NeumatInputError(f"{name}: give rows (temperature °C, value)")
        return _table(name, rows[:, 0], rows[:, 1], lo, hi)

    def elastic_at(self, temps) -> tuple[np.ndarray, np.ndarray]:
        """E (MPa), ν at the temperatures (°C) as ccx interpolates them."""
        tE, E = self.table("E")
        tn, nu = self.table("nu")
        return np.interp(temps, tE, E), np.interp(temps, tn, nu)

    def elastic_temperatures(self) -> np.ndarray:
        """The temperatures of a joint E, ν table (union of both tables' temperatures)."""
        return np.union1d(self.table("E")[0], self.table("nu")[0])

    def thermal_strain(self, T, T0) -> np.ndarray:
        """ccx's thermal strain from T0 to T (secant form of ``*EXPANSION, ZERO``)."""
        ta, a = self.table("alpha")
        z = self.alpha_zero
        T, T0 = np.asarray(T, dtype=float), np.asarray(T0, dtype=float)
        return np.interp(T, ta, a) * (T - z) - np.interp(T0, ta, a) * (T0 - z)


@dataclass(frozen=True)
class Cooling:
    """The thermal load: the part starts at ``t_start`` °C everywhere and loses heat through all
    its faces by a film ``film`` W/(m²·K) to ``sink`` °C, for ``time`` s; ``deltmx``: largest
    temperature change per heat-transfer increment (°C, ccx's DELTMX); ``room``: the temperature
    of the final state (the mechanical deck's last step)."""
    t_start: float
    sink: float = 20.0
    film: float = 250.0
    time: float = 600.0
    deltmx: float = 40.0
    room: float = 20.0
    first_increment: float = 0.5

    def check(self) -> None:
        for name, v, ok in (("t_start", self.t_start, math.isfinite(self.t_start)),
                            ("sink", self.sink, math.isfinite(self.sink)),
                            ("film", self.film, math.isfinite(self.film) and self.film > 0),
                            ("time", self.time, math.isfinite(self.time) and self.time > 0),
                            ("deltmx", self.deltmx, math.isfinite(self.deltmx) and self.deltmx > 0),
                            ("room", self.room, math.isfinite(self.room)),
                            ("first_increment", self.first_increment, 0 < self.first_increment < self.time)):
            if not ok:
                raise NeumatInputError(f"cooling: {name} = {v} is out of range")
        if not self.t_start > self.room:
            raise NeumatInputError(f"cooling: start temperature {self.t_start} °C must be above the room "
                                   f"temperature {self.room} °C")


def _mesh_lines(mesh: PartMesh) -> list[str]:
    out = ["*NODE, NSET=NALL"]
    out += [f"{i + 1}, {_fmt(x)}, {_fmt(y)}, {_fmt(z)}" for i, (x, y, z) in enumerate(mesh.points)]
    out.append(f"*ELEMENT, TYPE={mesh.element_type}, ELSET=EALL")
    for e, c in enumerate(mesh.cells):
        ids = [str(int(n) + 1) for n in c]
        first = f"{e + 1}, " + ", ".join(ids[:15])
        out.append(first + ("," if len(ids) > 15 else ""))
        if len(ids) > 15:
            out.append(", ".join(ids[15:]))
    out += nset_lines({name: [int(r) + 1 for r in rows] for name, rows in mesh.sets.items() if name != "NALL"})
    for name, row in mesh.probes.items():
        out += [f"*NSET, NSET=P{name.upper().replace('_', '')}", str(int(row) + 1)]
    return out


def write_heat_deck(path: str | Path, mesh: PartMesh, props: SuperalloyProperties, cooling: Cooling) -> Path:
    """The transient heat-conduction deck (``*HEAT TRANSFER``, automatic increments limited by
    DELTMX, film on every boundary face); NT written to the ``.frd`` at every increment."""
    props.check()
    cooling.check()
    out = ["** neumat casting: transient heat conduction (fortran_umat/casting_deck.py). Units mm, N, s, t, degC.",
           f"** film {cooling.film} W/(m2 K) to {cooling.sink} degC on every face, start {cooling.t_start} degC, "
           f"{cooling.time} s", "*HEADING", "neumat casting: cooling"]
    out += _mesh_lines(mesh)
    out += ["*MATERIAL, NAME=ALLOY", "*DENSITY", _fmt(props.density * 1e-12), "*CONDUCTIVITY"]
    t, k = props.table("conductivity", 0)
    out += [f"{_fmt(v)}, {_fmt(T)}" for T, v in zip(t, k)]
    t, c = props.table("specific_heat", 0)
    out += ["*SPECIFIC HEAT"] + [f"{_fmt(v * 1e6)}, {_fmt(T)}" for T, v in zip(t, c)]
    out += ["*SOLID SECTION, ELSET=EALL, MATERIAL=ALLOY",
            "*INITIAL CONDITIONS, TYPE=TEMPERATURE", f"NALL, {_fmt(cooling.t_start)}",
            "*STEP, INC=10000",
            f"*HEAT TRANSFER, DELTMX={_fmt(cooling.deltmx)}",
            f"{_fmt(cooling.first_increment)}, {_fmt(cooling.time)}, {_fmt(cooling.first_increment * 1e-4)}, "
            f"{_fmt(cooling.time / 10)}",
            "*FILM"]
    h = cooling.film * 1e-3
    out += [f"{int(e) + 1}, F{int(f)}, {_fmt(cooling.sink)}, {_fmt(h)}" for e, f in mesh.faces]
    out += ["*NODE FILE", "NT", "*END STEP", ""]
    path = Path(path)
    write_atomic(path, "\n".join(out))
    return path


@dataclass(frozen=True)
class PlasticTables:
    """ccx ``*PLASTIC`` hardening tables per temperature: ``rows[k]`` = [(σ_y MPa, p)] at
    ``temps[k]`` °C (all sampled at ``strain_rate`` 1/s)."""
    temps: Sequence[float]
    rows: Sequence[Sequence[tuple[float, float]]]
    strain_rate: float


def sample_plastic_tables(flow_stress, *, strain_rate: float, temps: Sequence[float], extras: Sequence[float] = (),
                          p_max: float = 0.2, n_points: int = 81) -> PlasticTables:
    """σ_y(p) of the network at a constant rate for each temperature (``flow_stress``: callable on
    (n, F) arrays [strain, rate, T, extras…] → σ (n,), MPa)."""
    if not 2 <= n_points <= CCX_MAX_PLASTIC_POINTS:
        raise NeumatInputError(f"*PLASTIC: {n_points} rows per temperature; ccx takes 2 … {CCX_MAX_PLASTIC_POINTS}")
    if not (math.isfinite(strain_rate) and strain_rate > 0):
        raise NeumatInputError(f"*PLASTIC: strain rate {strain_rate} 1/s must be > 0")
    p = np.linspace(0.0, p_max, n_points)
    rows = []
    for T in temps:
        x = np.column_stack([p, np.full_like(p, strain_rate), np.full_like(p, T)] + [np.full_like(p, e) for e in extras])
        s = np.asarray(flow_stress(x), dtype=float).reshape(-1)
        if not (np.all(np.isfinite(s)) and np.all(s > 0)):
            raise NeumatInputError(f"*PLASTIC: the model gives a non-positive flow stress at {T} °C")
        rows.append(list(zip(s.tolist(), p.tolist())))
    return PlasticTables([float(t) for t in temps], rows, float(strain_rate))


@dataclass
class MechDeck:
    """A written mechanical deck: its file, the step end times (s, total time) and the material."""
    path: Path
    times: np.ndarray
    material_kind: str
    n_steps: int
    print_steps: list[int] = field(default_factory=list)


def user_material_lines(material: UserMaterial, elastic_temps, E, nu) -> list[str]:
    """``*USER MATERIAL`` with the constants given per temperature: PROPS(1) = E(T), PROPS(2) = ν(T),
    the other constants the same at every temperature (ccx interpolates them all linearly)."""
    props = list(material.props)
    t = np.atleast_1d(np.asarray(elastic_temps, dtype=float))
    E, nu = np.atleast_1d(E), np.atleast_1d(nu)
    out = [f"*USER MATERIAL, CONSTANTS={len(props)}"]
    for k in range(t.size):
        row = list(props)
        row[0], row[1] = float(E[k]), float(nu[k])
        out += _lines(row + [float(t[k])])
    return out + ["*DEPVAR", str(int(material.nstatv))]


ELASTIC_FORMS = ("per-temperature", "props-table")


def props_with_table(material: UserMaterial, props: SuperalloyProperties) -> UserMaterial:
    """The UMAT with the alloy's E(T), ν(T) as the PROPS elastic table (``fem_bridge.conventions``;
    the form for Abaqus, which does not interpolate PROPS): PROPS(1), PROPS(2) = the first row."""
    if material.n_model_props is None:
        raise NeumatInputError("props_with_table: the UserMaterial must say its n_model_props")
    tEl = props.elastic_temperatures()
    E, nu = props.elastic_at(tEl)
    base = list(material.props)[:material.n_model_props]
    base[0], base[1] = float(E[0]), float(nu[0])
    return UserMaterial(material.library_name, base + cv.elastic_table_props(tEl, E, nu), material.nstatv,
                        material.symbol, material.n_model_props)


def material_block(material, props: SuperalloyProperties, name_nlgeom: bool = False,
                   elastic: str = "per-temperature") -> tuple[str, list[str], str]:
    """(material name, deck lines, kind) of the UMAT (``UserMaterial``) or of ccx's *ELASTIC +
    *PLASTIC (``PlasticTables``), both with the alloy's E(T), ν(T) and *EXPANSION. For the UMAT,
    ``elastic`` = ``per-temperature``: the ``*USER MATERIAL`` constants once per temperature (ccx
    interpolates them); ``props-table``: one set of constants carrying the PROPS elastic table."""
    if elastic not in ELASTIC_FORMS:
        raise NeumatInputError(f"elastic form {elastic}: choose one of {', '.join(ELASTIC_FORMS)}")
    tEl = props.elastic_temperatures()
    E, nu = props.elastic_at(tEl)
    if isinstance(material, UserMaterial):
        name = material.material_name(name_nlgeom)
        if elastic == "props-table":
            m = props_with_table(material, props)
            lines = [f"*MATERIAL, NAME={name}", f"*USER MATERIAL, CONSTANTS={len(m.props)}"]
            lines += _lines(list(m.props)) + ["*DEPVAR", str(int(m.nstatv))]
        else:
            lines = [f"*MATERIAL, NAME={name}"] + user_material_lines(material, tEl, E, nu)
        kind = "umat"
    elif isinstance(material, PlasticTables):
        name = "ALLOYPLASTIC"
        lines = [f"*MATERIAL, NAME={name}", "*ELASTIC"]
        lines += [f"{_fmt(e)}, {_fmt(n)}, {_fmt(T)}" for e, n, T in zip(E, nu, tEl)]
        lines.append("*PLASTIC")
        for T, rows in zip(material.temps, material.rows):
            lines += [f"{_fmt(s)}, {_fmt(p)}, {_fmt(T)}" for s, p in rows]
        kind = "plastic"
    else:
        raise TypeError("material must be a UserMaterial or PlasticTables")
    ta, a = props.table("alpha")
    lines += [f"*EXPANSION, ZERO={_fmt(props.alpha_zero)}"] + [f"{_fmt(v)}, {_fmt(T)}" for T, v in zip(ta, a)]
    return name, lines, kind


HOLDS = ("clamped", "free")


def hold_lines(mesh: PartMesh, hold: str) -> list[str]:
    """Supports: ``clamped`` — the root's bottom face held in x, y and z (the root locked in the
    mould); ``free`` — only the rigid-body motion removed (the node nearest the bottom centre fixed,
    one more bottom node fixed in y and z, a third in z), so the part contracts freely."""
    if hold == "clamped":
        return ["*BOUNDARY", "NFIX, 1, 3"]
    if hold != "free":
        raise NeumatInputError(f"--hold {hold}: choose one of {', '.join(HOLDS)}")
    bottom = mesh.sets["NFIX"]
    p = mesh.points[bottom]
    a = bottom[np.argmin(np.sum(p[:, :2] ** 2, axis=1))]
    b = bottom[np.argmax(p[:, 0])]
    c = bottom[np.argmax(p[:, 1] - 0.1 * np.abs(p[:, 0]))]
    return ["*BOUNDARY", f"{a + 1}, 1, 3", f"{b + 1}, 2, 3", f"{c + 1}, 3, 3"]


def write_mech_deck(path: str | Path, mesh: PartMesh, material, props: SuperalloyProperties, *,
                    times: Sequence[float], temperatures: np.ndarray, t_start: float, hold: str = "clamped",
                    print_last: bool = True, inc_limit: int = 100, elastic: str = "per-temperature") -> MechDeck:
    """The static deck: initial temperature ``t_start`` everywhere, then one ``*STATIC`` step per
    time in ``times`` (s, increasing, > 0) with the nodal ``temperatures[k]`` (n_nodes,) °C.
    ``.frd``: U, NT and S with SDV (UMAT) or PEEQ (*PLASTIC) at every step; ``.dat``: S and SDV/PEEQ
    at every integration point of the last step (``print_last``)."""
    props.check()
    times = np.asarray(times, dtype=float)
    temps = np.asarray(temperatures, dtype=float)
    if times.ndim != 1 or times.size < 1 or not np.all(np.diff(np.r_[0.0, times]) > 0):
        raise NeumatInputError("mechanical deck: step end times must be positive and increasing")
    if temps.shape != (times.size, mesh.n_nodes) or not np.all(np.isfinite(temps)):
        raise NeumatInputError(f"mechanical deck: temperatures {temps.shape}; expected ({times.size}, {mesh.n_nodes}), finite")
    name, mat_lines, kind = material_block(material, props, elastic=elastic)
    out = ["** neumat casting: quasi-static thermal stress (fortran_umat/casting_deck.py). Units mm, N, s, MPa, degC.",
           f"** {times.size} steps driven by the nodal temperatures of the heat-transfer run; hold {hold}",
           "*HEADING", "neumat casting: stress"]
    out += _mesh_lines(mesh)
    out += mat_lines
    out += [f"*SOLID SECTION, ELSET=EALL, MATERIAL={name}",
            "*INITIAL CONDITIONS, TYPE=TEMPERATURE", f"NALL, {_fmt(t_start)}"]
    out += hold_lines(mesh, hold)
    prev = 0.0
    for k, t in enumerate(times):
        dt = t - prev
        prev = t
        out += [f"*STEP, INC={int(inc_limit)}", "*STATIC", f"{_fmt(dt)}, {_fmt(dt)}, {_fmt(dt * 1e-5)}, {_fmt(dt)}",
                "*TEMPERATURE"]
        out += [f"{i + 1}, {_fmt(v)}" for i, v in enumerate(temps[k])]
        out += ["*NODE FILE", "U, NT", "*EL FILE", "S, " + ("SDV" if kind == "umat" else "PEEQ")]
        if print_last and k == times.size - 1:
            out += ["*EL PRINT, ELSET=EALL", "S, " + ("SDV" if kind == "umat" else "PEEQ")]
        out.append("*END STEP")
    out.append("")
    path = Path(path)
    write_atomic(path, "\n".join(out))
    return MechDeck(path, times, kind, int(times.size), [int(times.size)] if print_last else [])
