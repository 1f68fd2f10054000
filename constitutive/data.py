"""Flow-curve data: one table of points, loaders with unit conversion and strict validation.

Units inside neumat (the one place they are fixed):

| quantity       | unit  | field           |
| -------------- | ----- | --------------- |
| temperature    | °C    | ``temperature`` |
| strain rate    | 1/s   | ``strain_rate`` |
| true strain    | –     | ``strain``      |
| true stress    | MPa   | ``stress``      |

Extra features (e.g. ``direction``: 0 = axial, 1 = radial) are dimensionless columns in
``extras``. A *condition* is (temperature, strain rate, extras...); a *curve* is one test.
"""
from __future__ import annotations

import csv
import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .errors import DataError, NeumatInputError

KELVIN_OFFSET = 273.15
ABSOLUTE_ZERO_C = -KELVIN_OFFSET
MIN_POINTS_PER_CURVE = 5

# Canonical fields of a long CSV and their accepted units (factor, offset to the internal unit).
FIELDS = ("temperature", "strain_rate", "strain", "stress")
TEMPERATURE_UNITS = {"C": (1.0, 0.0), "K": (1.0, -KELVIN_OFFSET), "F": (5.0 / 9.0, -32.0 * 5.0 / 9.0)}
STRESS_UNITS = {"MPa": 1.0, "Pa": 1e-6, "kPa": 1e-3, "GPa": 1e3, "psi": 6.894757e-3, "ksi": 6.894757}
STRAIN_RATE_UNITS = {"1/s": 1.0, "1/min": 1.0 / 60.0, "1/ms": 1e3}
# Plausibility range of a hot-working flow stress in MPa; outside it the unit is most likely wrong.
PLAUSIBLE_STRESS_MPA = (1e-3, 2e4)
PLAUSIBLE_TEMPERATURE_C = (ABSOLUTE_ZERO_C, 3500.0)


def celsius_to_kelvin(t_c):
    return np.asarray(t_c, dtype=float) + KELVIN_OFFSET


def kelvin_to_celsius(t_k):
    return np.asarray(t_k, dtype=float) - KELVIN_OFFSET


@dataclass
class FlowCurves:
    """All points of a set of flow curves, one row per point (float64 / int arrays)."""

    curve: np.ndarray            # int index into ``curve_names``
    temperature: np.ndarray      # °C
    strain_rate: np.ndarray      # 1/s
    strain: np.ndarray           # true strain
    stress: np.ndarray           # true stress, MPa
    curve_names: list[str]
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    time_index: np.ndarray | None = None
    source: str = ""
    synthetic: bool = False
    excluded: list[tuple[str, str]] = field(default_factory=list)   # (what, why)

    def __post_init__(self):
        self.curve = np.asarray(self.curve, dtype=np.int64)
        for name in FIELDS:
            setattr(self, name, np.asarray(getattr(self, name), dtype=float))
        self.extras = {k: np.asarray(v, dtype=float) for k, v in self.extras.items()}
        if self.time_index is None:
            self.time_index = np.zeros(len(self.curve), dtype=np.int64)
            for c in range(len(self.curve_names)):
                idx = np.flatnonzero(self.curve == c)
                self.time_index[idx] = np.arange(len(idx))
        self.time_index = np.asarray(self.time_index, dtype=np.int64)

    # ---- basic views -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.curve)

    @property
    def n_curves(self) -> int:
        return len(self.curve_names)

    @property
    def temperature_k(self) -> np.ndarray:
        return celsius_to_kelvin(self.temperature)

    @property
    def extra_names(self) -> list[str]:
        return list(self.extras)

    @property
    def feature_names(self) -> list[str]:
        """Network inputs in their fixed order: strain, strain rate, temperature, extras."""
        return ["strain", "strain_rate", "temperature", *self.extras]

    def features(self) -> np.ndarray:
        """(n, 3 + n_extras) array in physical units, columns as ``feature_names``."""
        return np.column_stack([self.strain, self.strain_rate, self.temperature,
                                *self.extras.values()])

    def conditions(self) -> np.ndarray:
        """(n_curves, 2 + n_extras): temperature °C, strain rate 1/s, extras per curve."""
        first = np.array([np.flatnonzero(self.curve == c)[0] for c in range(self.n_curves)])
        cols = [self.temperature[first], self.strain_rate[first],
                *(v[first] for v in self.extras.values())]
        return np.column_stack(cols)

    def curve_points(self, c: int) -> np.ndarray:
        return np.flatnonzero(self.curve == c)

    def iter_curves(self) -> Iterator[tuple[int, "FlowCurves"]]:
        for c in range(self.n_curves):
            yield c, self.subset([c])

    def condition_label(self, c: int) -> str:
        cond = self.conditions()[c]
        extra = "".join(f", {k}={v:g}" for k, v in zip(self.extras, cond[2:]))
        return f"{cond[0]:g} °C, {cond[1]:g} 1/s{extra}"

    def data_hash(self) -> str:
        """SHA-256 over the point table (recorded in exported models)."""
        h = hashlib.sha256()
        for arr in (self.curve, self.temperature, self.strain_rate, self.strain, self.stress,
                    *self.extras.values()):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()

    # ---- selection ---------------------------------------------------------------------
    def take(self, idx: np.ndarray) -> "FlowCurves":
        """Points ``idx`` (curve indices renumbered over the curves that remain)."""
        idx = np.asarray(idx)
        kept = np.unique(self.curve[idx])
        remap = -np.ones(self.n_curves, dtype=np.int64)
        remap[kept] = np.arange(len(kept))
        return FlowCurves(
            curve=remap[self.curve[idx]], temperature=self.temperature[idx],
            strain_rate=self.strain_rate[idx], strain=self.strain[idx], stress=self.stress[idx],
            curve_names=[self.curve_names[k] for k in kept],
            extras={k: v[idx] for k, v in self.extras.items()},
            time_index=self.time_index[idx], source=self.source, synthetic=self.synthetic,
            excluded=list(self.excluded))

    def subset(self, curves: Sequence[int]) -> "FlowCurves":
        mask = np.isin(self.curve, np.asarray(list(curves), dtype=np.int64))
        return self.take(np.flatnonzero(mask))

    def match_conditions(self, conditions: Sequence[Sequence[float]], rtol: float = 1e-6) -> np.ndarray:
        """Curve indices whose (T, rate[, extras]) equal any of ``conditions``.

        A condition may give fewer columns than the table has (e.g. (T, rate) only); unspecified
        columns match anything. Raises if a condition matches no curve.
        """
        conds = self.conditions()
        hits: list[int] = []
        for cond in conditions:
            cond = np.asarray(cond, dtype=float)
            m = np.all(np.isclose(conds[:, :len(cond)], cond, rtol=rtol, atol=1e-12), axis=1)
            if not m.any():
                raise NeumatInputError(
                    f"held-out condition {tuple(float(x) for x in cond)} matches no curve of "
                    f"{self.source or 'the data'}; available (T °C, rate 1/s): "
                    + ", ".join(f"({c[0]:g}, {c[1]:g})" for c in np.unique(conds[:, :2], axis=0)))
            hits.extend(np.flatnonzero(m).tolist())
        return np.array(sorted(set(hits)), dtype=np.int64)

    def split_heldout(self, conditions: Sequence[Sequence[float]]) -> tuple["FlowCurves", "FlowCurves"]:
        """(train, heldout): whole curves of the given conditions go to heldout."""
        held = self.match_conditions(conditions)
        rest = np.setdiff1d(np.arange(self.n_curves), held)
        return self.subset(rest), self.subset(held)

    def condition_groups(self) -> list[np.ndarray]:
        """Curves grouped by identical condition (replicates share a group)."""
        conds = self.conditions()
        _, inverse = np.unique(conds, axis=0, return_inverse=True)
        return [np.flatnonzero(inverse.ravel() == g) for g in range(inverse.max() + 1)]

    def leave_one_condition_out(self) -> Iterator[tuple["FlowCurves", "FlowCurves"]]:
        """k folds for k conditions: (train, test) with one condition's curves as test."""
        for group in self.condition_groups():
            rest = np.setdiff1d(np.arange(self.n_curves), group)
            yield self.subset(rest), self.subset(group)

    # ---- signal processing (method.md) ---------------------------------------------------
    def resample(self, strain_grid: np.ndarray) -> "FlowCurves":
        """Each curve linearly interpolated on ``strain_grid`` (points beyond a curve's range dropped)."""
        strain_grid = np.asarray(strain_grid, dtype=float)
        cols = {k: [] for k in ("curve", "temperature", "strain_rate", "strain", "stress")}
        extras = {k: [] for k in self.extras}
        for c in range(self.n_curves):
            i = self.curve_points(c)
            e, s = self.strain[i], self.stress[i]
            order = np.argsort(e, kind="stable")
            e, s = e[order], s[order]
            g = strain_grid[(strain_grid >= e[0]) & (strain_grid <= e[-1])]
            cols["curve"].append(np.full(len(g), c))
            cols["temperature"].append(np.full(len(g), self.temperature[i[0]]))
            cols["strain_rate"].append(np.full(len(g), self.strain_rate[i[0]]))
            cols["strain"].append(g)
            cols["stress"].append(np.interp(g, e, s))
            for k in self.extras:
                extras[k].append(np.full(len(g), self.extras[k][i[0]]))
        return FlowCurves(**{k: np.concatenate(v) for k, v in cols.items()},
                          curve_names=list(self.curve_names),
                          extras={k: np.concatenate(v) for k, v in extras.items()},
                          source=self.source, synthetic=self.synthetic, excluded=list(self.excluded))

    def smoothed(self, window: int = 31, order: int = 3) -> "FlowCurves":
        """Savitzky–Golay smoothing of stress along each curve (used for the Arrhenius fit only)."""
        from scipy.signal import savgol_filter
        out = self.take(np.arange(len(self)))
        for c in range(self.n_curves):
            i = self.curve_points(c)
            w = min(window, len(i) - (1 - len(i) % 2))
            if w > order + 1:
                out.stress[i] = savgol_filter(self.stress[i], w, order)
        out.stress = np.maximum(out.stress, 1e-6)
        return out

    def summary(self) -> str:
        conds = self.conditions()
        lines = [f"{self.source or 'data'}{' (SYNTHETIC)' if self.synthetic else ''}: "
                 f"{self.n_curves} curves, {len(self)} points",
                 f"  temperature {conds[:, 0].min():g} … {conds[:, 0].max():g} °C; "
                 f"strain rate {conds[:, 1].min():g} … {conds[:, 1].max():g} 1/s; "
                 f"strain {self.strain.min():.3g} … {self.strain.max():.3g}; "
                 f"stress {self.stress.min():.4g} … {self.stress.max():.4g} MPa"]
        if self.extras:
            lines.append("  extra features: " + ", ".join(
                f"{k} ∈ {sorted(set(np.round(v, 6).tolist()))}" for k, v in self.extras.items()))
        for what, why in self.excluded:
            lines.append(f"  excluded {what}: {why}")
        return "\n".join(lines)

    def to_csv(self, path: str | os.PathLike) -> None:
        """Long CSV in internal units, readable back with ``load_csv`` and default columns."""
        header = ["curve", "temperature_C", "strain_rate_per_s", "true_strain", "true_stress_MPa",
                  *self.extras]
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            for i in range(len(self)):
                w.writerow([self.curve_names[self.curve[i]], repr(float(self.temperature[i])),
                            repr(float(self.strain_rate[i])), repr(float(self.strain[i])),
                            repr(float(self.stress[i])),
                            *(repr(float(v[i])) for v in self.extras.values())])


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
DEFAULT_COLUMNS = {"curve": "curve", "temperature": "temperature_C", "strain_rate": "strain_rate_per_s",
                   "strain": "true_strain", "stress": "true_stress_MPa"}

# The shared real data sets: file, column mapping, how a curve is identified, replicates.
NAMED_DATASETS = {
    "gleeble_3cr2mo": dict(file="flow_curves.csv",
                           columns={"temperature": "temperature_C", "strain_rate": "strain_rate_per_s",
                                    "strain": "true_strain", "stress": "true_stress_MPa"},
                           allow_replicates=False,
                           attribution="P. Tize Mha et al., Metals 13 (2023) 633, doi:10.3390/met13030633; "
                                       "data CC BY-SA 4.0 (github.com/pantale/mdpi-metals-2023)"),
    "bst_freiberg": dict(file="flow_curves.csv",
                         columns={"curve": "file", "temperature": "temp", "strain_rate": "rate",
                                  "strain": "strain", "stress": "stress"},
                         allow_replicates=True,
                         attribution="Institute of Metal Forming, TU Bergakademie Freiberg, "
                                     "notebooks-flow-stress (bst.csv), MIT licence"),
}


def data_root() -> Path:
    """Folder of the shared data sets: ``$NEUMAT_DATA`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("NEUMAT_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent
    for cand in (here.parent / "shared" / "data", Path.cwd().parent / "shared" / "data",
                 Path.cwd() / "shared" / "data"):
        if cand.is_dir():
            return cand
    return here.parent / "shared" / "data"


def dataset_available(name: str) -> bool:
    return name in NAMED_DATASETS and (data_root() / name / NAMED_DATASETS[name]["file"]).is_file()


def load(spec: str, **kwargs) -> FlowCurves:
    """Load by name (shared data set or ``synthetic_dz411``), CSV file, or folder of CSVs."""
    if spec in NAMED_DATASETS:
        return load_named(spec)
    if spec in ("synthetic", "synthetic_dz411"):
        from .synthetic import generate_dz411
        return generate_dz411(seed=kwargs.get("data_seed", 0))
    kwargs.pop("data_seed", None)
    p = Path(spec)
    if p.is_dir():
        return load_folder(p, **kwargs)
    if p.is_file():
        return load_csv(p, **kwargs)
    raise NeumatInputError(
        f"data '{spec}' is neither a known data set ({', '.join([*NAMED_DATASETS, 'synthetic_dz411'])}) "
        f"nor an existing CSV file or folder")


def load_named(name: str) -> FlowCurves:
    info = NAMED_DATASETS[name]
    path = data_root() / name / info["file"]
    if not path.is_file():
        raise NeumatInputError(f"data set '{name}' not found at {path}; set NEUMAT_DATA to the folder "
                               f"holding {name}/")
    fc = load_csv(path, columns=info["columns"], allow_replicates=info["allow_replicates"])
    fc.source = name
    return fc


def parse_columns(text: str | None) -> dict[str, str]:
    """``"strain=true_strain,stress=sig"`` → mapping of canonical field to CSV column."""
    if not text:
        return {}
    out = {}
    for part in text.split(","):
        if "=" not in part:
            raise NeumatInputError(f"--columns: '{part}' is not FIELD=COLUMN")
        k, v = (s.strip() for s in part.split("=", 1))
        out[k] = v
    return out


def _read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            sample = f.read(4096)
            f.seek(0)
            try:
                dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
            except csv.Error:
                dialect = csv.excel
            rows = list(csv.reader(f, dialect))
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror}", file=str(path)) from None
    except UnicodeDecodeError:
        raise DataError("not a UTF-8 text (CSV) file", file=str(path)) from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise DataError("the file is empty", file=str(path))
    return [h.strip() for h in rows[0]], rows[1:]


def _numeric_column(path: Path, header: list[str], rows: list[list[str]], column: str) -> np.ndarray:
    j = header.index(column)
    out = np.empty(len(rows))
    for i, r in enumerate(rows):
        line = i + 2            # 1-based line in the file, header is line 1
        cell = r[j].strip() if j < len(r) else ""
        if cell == "":
            raise DataError("empty value", file=str(path), row=line, column=column)
        try:
            v = float(cell)
        except ValueError:
            raise DataError(f"'{cell}' is not a number", file=str(path), row=line, column=column) from None
        if not math.isfinite(v):
            raise DataError(f"value {cell} is not finite", file=str(path), row=line, column=column)
        out[i] = v
    return out


def _convert_units(path, values, lines, columns, temperature_unit, stress_unit, strain_rate_unit):
    """Convert to internal units in place and check physical ranges; errors name the row."""
    def fail(name, i, msg):
        raise DataError(msg, file=str(path), row=int(lines[i]), column=columns[name])

    if temperature_unit not in TEMPERATURE_UNITS:
        raise NeumatInputError(f"temperature unit '{temperature_unit}' unknown; use one of {list(TEMPERATURE_UNITS)}")
    if stress_unit not in STRESS_UNITS:
        raise NeumatInputError(f"stress unit '{stress_unit}' unknown; use one of {list(STRESS_UNITS)}")
    if strain_rate_unit not in STRAIN_RATE_UNITS:
        raise NeumatInputError(f"strain-rate unit '{strain_rate_unit}' unknown; use one of {list(STRAIN_RATE_UNITS)}")
    a, b = TEMPERATURE_UNITS[temperature_unit]
    values["temperature"] = values["temperature"] * a + b
    values["stress"] = values["stress"] * STRESS_UNITS[stress_unit]
    values["strain_rate"] = values["strain_rate"] * STRAIN_RATE_UNITS[strain_rate_unit]

    t = values["temperature"]
    bad = np.flatnonzero(t < ABSOLUTE_ZERO_C)
    if len(bad):
        fail("temperature", bad[0], f"temperature {t[bad[0]]:g} °C is below absolute zero "
                                    f"(allowed: > {ABSOLUTE_ZERO_C} °C; unit given: {temperature_unit})")
    bad = np.flatnonzero(t > PLAUSIBLE_TEMPERATURE_C[1])
    if len(bad):
        fail("temperature", bad[0], f"temperature {t[bad[0]]:g} °C is above {PLAUSIBLE_TEMPERATURE_C[1]:g} °C: "
                                    f"wrong unit? (given: {temperature_unit}; use --temperature-unit)")
    for name, unit in (("stress", stress_unit), ("strain_rate", strain_rate_unit)):
        v = values[name]
        bad = np.flatnonzero(v <= 0)
        if len(bad):
            fail(name, bad[0], f"{name.replace('_', ' ')} {v[bad[0]]:g} must be > 0 "
                               f"(compression given as negative? give magnitudes)")
    s = values["stress"]
    if np.median(s) > PLAUSIBLE_STRESS_MPA[1] or np.median(s) < PLAUSIBLE_STRESS_MPA[0]:
        i = int(np.argmax(s)) if np.median(s) > PLAUSIBLE_STRESS_MPA[1] else int(np.argmin(s))
        fail("stress", i, f"median stress {np.median(s):g} MPa is outside {PLAUSIBLE_STRESS_MPA} MPa: "
                          f"wrong unit? (given: {stress_unit}; use --stress-unit Pa|kPa|MPa|GPa|psi|ksi)")


def load_csv(path: str | os.PathLike, columns: dict[str, str] | None = None,
             temperature_unit: str = "C", stress_unit: str = "MPa", strain_rate_unit: str = "1/s",
             extras: Sequence[str] = (), allow_replicates: bool = False,
             min_points: int = MIN_POINTS_PER_CURVE, exclude_conditions: Sequence[Sequence[float]] = ()
             ) -> FlowCurves:
    """Load a long CSV (one row per point).

    ``columns`` maps canonical fields (``temperature``, ``strain_rate``, ``strain``, ``stress``,
    optional ``curve``) to CSV headers; unmapped fields use ``DEFAULT_COLUMNS``. ``extras`` are
    further numeric columns used as features (a mapping ``name=column`` in ``columns`` also
    works). Without a ``curve`` column a curve is one condition; a strain that falls back to the
    start within a condition reveals a second curve of the same condition, which is an error
    (as is any repeated condition, unless ``allow_replicates``).
    """
    path = Path(path)
    header, rows = _read_table(path)
    columns = dict(columns or {})
    extra_cols = {e: columns.pop(e, e) for e in extras}
    for k in list(columns):
        if k not in (*FIELDS, "curve"):
            extra_cols[k] = columns.pop(k)
    mapping = {k: columns.get(k, DEFAULT_COLUMNS[k]) for k in FIELDS}
    for name, col in (*mapping.items(), *extra_cols.items()):
        if col not in header:
            raise DataError(f"missing column '{col}' (for {name}); the file has: {', '.join(header)}; "
                            f"map it with --columns {name}=<column>", file=str(path), column=col)
    curve_col = columns.get("curve", DEFAULT_COLUMNS["curve"] if "curve" in header else None)
    if curve_col is not None and curve_col not in header:
        raise DataError(f"missing curve-id column '{curve_col}'; the file has: {', '.join(header)}",
                        file=str(path), column=curve_col)
    lines = np.arange(len(rows)) + 2
    for i, r in enumerate(rows):
        if len(r) < len(header):
            raise DataError(f"{len(r)} fields, header has {len(header)}", file=str(path), row=i + 2)
    values = {k: _numeric_column(path, header, rows, col) for k, col in mapping.items()}
    extra_vals = {k: _numeric_column(path, header, rows, col) for k, col in extra_cols.items()}
    col_names = {**mapping, **extra_cols}
    _convert_units(path, values, lines, col_names, temperature_unit, stress_unit, strain_rate_unit)

    # --- identify curves ---------------------------------------------------------------------
    cond = np.column_stack([values["temperature"], values["strain_rate"], *extra_vals.values()])
    if curve_col is not None:
        jc = header.index(curve_col)
        ids = [r[jc].strip() for r in rows]
    else:
        ids = [None] * len(rows)
    curve_of_row = np.empty(len(rows), dtype=np.int64)
    names: list[str] = []
    key_to_curve: dict = {}
    last_key = None
    for i in range(len(rows)):
        ckey = tuple(np.round(cond[i], 9))
        key = (ids[i], ckey) if ids[i] is not None else ckey
        if ids[i] is not None and any(k[0] == ids[i] and k != key for k in key_to_curve if isinstance(k[0], str)):
            raise DataError(f"curve '{ids[i]}' changes its condition here (T, rate, extras = {ckey})",
                            file=str(path), row=int(lines[i]), column=curve_col)
        if key not in key_to_curve:
            key_to_curve[key] = len(names)
            if ids[i] is not None:
                names.append(ids[i])
            else:
                names.append("T{:g}_R{:g}".format(*ckey[:2]) + "".join(
                    f"_{k}{v:g}" for k, v in zip(extra_cols, ckey[2:])))
        elif ids[i] is None and key == last_key and values["strain"][i] < values["strain"][i - 1] - 0.05 \
                and values["strain"][i] <= values["strain"].min() + 0.02:
            raise DataError(f"strain restarts at {values['strain'][i]:g}: a second curve with the same "
                            f"condition {ckey} (add a curve-id column, e.g. --columns curve=<column>)",
                            file=str(path), row=int(lines[i]), column=col_names["strain"])
        elif ids[i] is None and key != last_key:
            raise DataError(f"condition {ckey} appears again after other rows: two curves with the same "
                            f"condition? (add a curve-id column)", file=str(path), row=int(lines[i]))
        curve_of_row[i] = key_to_curve[key]
        last_key = key

    # --- per-curve checks ----------------------------------------------------------------------
    if not allow_replicates and curve_col is not None:
        seen: dict = {}
        for key, c in key_to_curve.items():
            if key[1] in seen:
                first = int(lines[np.flatnonzero(curve_of_row == c)[0]])
                raise DataError(f"curves '{seen[key[1]]}' and '{key[0]}' have the same condition {key[1]}; "
                                f"replicates need --allow-replicates", file=str(path), row=first,
                                column=curve_col)
            seen[key[1]] = key[0]
    excluded: list[tuple[str, str]] = []
    keep = np.ones(len(rows), dtype=bool)
    for c, name in enumerate(names):
        idx = np.flatnonzero(curve_of_row == c)
        if len(idx) < min_points:
            raise DataError(f"curve '{name}' has {len(idx)} points; at least {min_points} are needed",
                            file=str(path), row=int(lines[idx[0]]), column=col_names["strain"])
        for ex in exclude_conditions:
            ex = np.asarray(ex, dtype=float)
            if np.allclose(cond[idx[0], :len(ex)], ex):
                keep[idx] = False
                excluded.append((f"curve '{name}' ({len(idx)} points)", "condition excluded by the user"))
    fc = FlowCurves(curve=curve_of_row, temperature=values["temperature"],
                    strain_rate=values["strain_rate"], strain=values["strain"], stress=values["stress"],
                    curve_names=names, extras=extra_vals, source=str(path))
    if not keep.all():
        fc = fc.take(np.flatnonzero(keep))
    fc.excluded = excluded
    return fc


FILENAME_PATTERN = r"T(?P<temperature>-?[\d.]+)_R(?P<strain_rate>[\d.eE+-]+?)(?:_D(?P<direction>\d))?$"


def load_folder(folder: str | os.PathLike, columns: dict[str, str] | None = None,
                manifest: str | None = "manifest.csv", name_pattern: str = FILENAME_PATTERN,
                temperature_unit: str = "C", stress_unit: str = "MPa", strain_rate_unit: str = "1/s",
                min_points: int = MIN_POINTS_PER_CURVE, allow_replicates: bool = False, **_ignored
                ) -> FlowCurves:
    """One CSV per curve (strain and stress columns); the condition comes from ``manifest.csv``
    (columns ``file``, ``temperature``, ``strain_rate``, optional extras) or from the file name
    via ``name_pattern`` (default ``T<temperature>_R<rate>[_D<direction>].csv``)."""
    folder = Path(folder)
    columns = dict(columns or {})
    files = sorted(p for p in folder.glob("*.csv") if p.name != manifest)
    if not files:
        raise DataError("no *.csv curve files in the folder", file=str(folder))
    man_path = folder / manifest if manifest else None
    conds: dict[str, dict[str, float]] = {}
    if man_path is not None and man_path.is_file():
        header, rows = _read_table(man_path)
        for col in ("file", "temperature", "strain_rate"):
            if col not in header:
                raise DataError(f"missing column '{col}' in the manifest", file=str(man_path), column=col)
        numeric = [h for h in header if h != "file"]
        vals = {h: _numeric_column(man_path, header, rows, h) for h in numeric}
        jf = header.index("file")
        for i, r in enumerate(rows):
            conds[r[jf].strip()] = {h: float(vals[h][i]) for h in numeric}
    else:
        rx = re.compile(name_pattern)
        for p in files:
            m = rx.search(p.stem)
            if not m:
                raise DataError(f"file name does not give the condition (pattern {name_pattern}) and there "
                                f"is no {manifest}", file=str(p))
            conds[p.name] = {k: float(v) for k, v in m.groupdict().items() if v is not None}
    extra_names = sorted({k for c in conds.values() for k in c} - {"temperature", "strain_rate"})
    parts = []
    for p in files:
        if p.name not in conds:
            raise DataError(f"curve file {p.name} is not listed in the manifest", file=str(man_path))
        header, rows = _read_table(p)
        scol, tcol = columns.get("strain", "true_strain"), columns.get("stress", "true_stress_MPa")
        for col in (scol, tcol):
            if col not in header:
                raise DataError(f"missing column '{col}'; the file has: {', '.join(header)}", file=str(p), column=col)
        c = conds[p.name]
        for k in extra_names:
            if k not in c:
                raise DataError(f"no value of '{k}' for this curve", file=str(p))
        n = len(rows)
        vals = {"strain": _numeric_column(p, header, rows, scol), "stress": _numeric_column(p, header, rows, tcol),
                "temperature": np.full(n, c["temperature"]), "strain_rate": np.full(n, c["strain_rate"])}
        _convert_units(p, vals, np.arange(n) + 2, {"strain": scol, "stress": tcol, "temperature": "temperature",
                                                    "strain_rate": "strain_rate"},
                       temperature_unit, stress_unit, strain_rate_unit)
        if n < min_points:
            raise DataError(f"curve has {n} points; at least {min_points} are needed", file=str(p), row=2, column=scol)
        parts.append((p.name, vals, {k: np.full(n, c[k]) for k in extra_names}))
    seen: dict = {}
    for name, vals, ex in parts:
        key = (vals["temperature"][0], vals["strain_rate"][0], *(v[0] for v in ex.values()))
        if key in seen and not allow_replicates:
            raise DataError(f"same condition {key} as {seen[key]}; replicates need --allow-replicates",
                            file=str(folder / name))
        seen[key] = name
    fc = FlowCurves(
        curve=np.concatenate([np.full(len(v["strain"]), i) for i, (_, v, _) in enumerate(parts)]),
        **{k: np.concatenate([v[k] for _, v, _ in parts]) for k in FIELDS},
        curve_names=[n for n, _, _ in parts],
        extras={k: np.concatenate([e[k] for _, _, e in parts]) for k in extra_names},
        source=str(folder))
    return fc


def parse_heldout(text: str | None) -> list[tuple[float, ...]]:
    """``"1100:0.01,1150:5"`` (or ``T:rate:direction``) → list of condition tuples."""
    if not text:
        return []
    out = []
    for part in text.split(","):
        try:
            out.append(tuple(float(x) for x in part.strip().split(":")))
        except ValueError:
            raise NeumatInputError(f"--heldout: '{part}' is not T:rate[:extra...] (numbers)") from None
        if len(out[-1]) < 2:
            raise NeumatInputError(f"--heldout: '{part}' needs at least T:rate")
    return out
