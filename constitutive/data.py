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
        n = len(self.curve)
        for name, arr in (*((k, getattr(self, k)) for k in FIELDS), *self.extras.items(),
                          ("time_index", self.time_index)):
            if arr.shape != (n,):
                raise ValueError(f"FlowCurves: '{name}' has shape {arr.shape}, expected ({n},)")
        if n and (self.curve.min() < 0 or self.curve.max() >= len(self.curve_names)):
            raise ValueError("FlowCurves: curve index outside curve_names")
        if len(np.unique(self.curve)) != len(self.curve_names):
            raise ValueError("FlowCurves: every curve in curve_names needs at least one point")

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
        _, first = np.unique(self.curve, return_index=True)
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
            cond = np.asarray(cond, dtype=float).ravel()
            if not 2 <= len(cond) <= conds.shape[1]:
                raise NeumatInputError(
                    f"condition {tuple(float(x) for x in cond)} has {len(cond)} values; the data "
                    f"{self.source or ''} has {conds.shape[1]} condition columns (T °C, rate 1/s"
                    + "".join(f", {k}" for k in self.extras) + "): give 2 to "
                    f"{conds.shape[1]} values")
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
        if not len(rest):
            raise NeumatInputError("the held-out conditions take every curve; none is left to fit")
        return self.subset(rest), self.subset(held)

    def condition_groups(self) -> list[np.ndarray]:
        """Curves grouped by identical condition (replicates share a group)."""
        conds = self.conditions()
        _, inverse = np.unique(conds, axis=0, return_inverse=True)
        return [np.flatnonzero(inverse.ravel() == g) for g in range(inverse.max() + 1)]

    def leave_one_condition_out(self) -> Iterator[tuple["FlowCurves", "FlowCurves"]]:
        """k folds for k conditions: (train, test) with one condition's curves as test."""
        groups = self.condition_groups()
        if len(groups) < 2:
            raise NeumatInputError("leave-one-condition-out needs at least 2 conditions")
        for group in groups:
            rest = np.setdiff1d(np.arange(self.n_curves), group)
            yield self.subset(rest), self.subset(group)

    # ---- signal processing (method.md) ---------------------------------------------------
    def resample(self, strain_grid: np.ndarray) -> "FlowCurves":
        """Each curve linearly interpolated in strain on ``strain_grid``.

        Grid points outside a curve's strain range are dropped (no extrapolation). Points are
        sorted by strain first (equal strains are averaged). A curve whose strain range holds
        no grid point is dropped and listed in ``excluded`` (curve indices then renumber; the
        result's ``conditions()`` stays consistent with its ``curve``).
        """
        strain_grid = np.unique(np.asarray(strain_grid, dtype=float).ravel())
        if len(strain_grid) == 0 or not np.all(np.isfinite(strain_grid)):
            raise NeumatInputError("resample: the strain grid must hold finite values")
        cols = {k: [] for k in ("curve", "temperature", "strain_rate", "strain", "stress")}
        extras = {k: [] for k in self.extras}
        names, excluded = [], list(self.excluded)
        for c in range(self.n_curves):
            i = self.curve_points(c)
            e, inv = np.unique(self.strain[i], return_inverse=True)
            s = np.bincount(inv.ravel(), weights=self.stress[i]) / np.bincount(inv.ravel())
            g = strain_grid[(strain_grid >= e[0]) & (strain_grid <= e[-1])]
            if len(g) == 0:
                excluded.append((f"curve '{self.curve_names[c]}'",
                                 f"its strain range {e[0]:g} … {e[-1]:g} holds no point of the "
                                 f"resampling grid"))
                continue
            names.append(self.curve_names[c])
            cols["curve"].append(np.full(len(g), len(names) - 1))
            cols["temperature"].append(np.full(len(g), self.temperature[i[0]]))
            cols["strain_rate"].append(np.full(len(g), self.strain_rate[i[0]]))
            cols["strain"].append(g)
            cols["stress"].append(np.interp(g, e, s))
            for k in self.extras:
                extras[k].append(np.full(len(g), self.extras[k][i[0]]))
        if not names:
            raise NeumatInputError("resample: no curve overlaps the strain grid")
        return FlowCurves(**{k: np.concatenate(v) for k, v in cols.items()},
                          curve_names=names,
                          extras={k: np.concatenate(v) for k, v in extras.items()},
                          source=self.source, synthetic=self.synthetic, excluded=excluded)

    def smoothed(self, window: int = 31, order: int = 3) -> "FlowCurves":
        """Savitzky–Golay smoothing of stress along each curve (used for the Arrhenius fit only).

        ``window`` (points, made odd) is cut to the curve length; curves shorter than
        ``order + 2`` points stay as they are. Points are taken in the order of the table (the
        test's time order); the filter assumes roughly even spacing, as flow curves have.
        """
        from scipy.signal import savgol_filter
        if order < 0 or window < 1:
            raise NeumatInputError("smoothing: window must be >= 1 and order >= 0")
        out = self.take(np.arange(len(self)))
        for c in range(self.n_curves):
            i = self.curve_points(c)
            w = min(window, len(i))
            w -= 1 - w % 2                      # odd
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

    def to_csv(self, path: str | os.PathLike, attribution: str | None = None) -> None:
        """Long CSV in internal units that ``load_csv(path)`` reads back identically.

        Columns ``curve, temperature_C, strain_rate_per_s, true_strain, true_stress_MPa`` and one
        per extra feature, values written exactly (``repr``). Leading ``# key: value`` comment
        lines record the source, the SYNTHETIC flag, the extra-feature columns (so they load as
        features again), whether replicate curves are present (so they load without
        ``allow_replicates``) and the attribution of real data.
        """
        header = ["curve", "temperature_C", "strain_rate_per_s", "true_strain", "true_stress_MPa",
                  *self.extras]
        meta = [("neumat", "flow curves, long CSV; temperature °C, strain rate 1/s, true strain, "
                           "true stress MPa"),
                ("source", self.source or "unknown"),
                ("synthetic", "true (SYNTHETIC data, not measured)" if self.synthetic else "false")]
        if self.extras:
            meta.append(("extras", ",".join(self.extras)))
        if self.n_curves and len(np.unique(self.conditions(), axis=0)) < self.n_curves:
            meta.append(("replicates", "true"))
        if attribution:
            meta.append(("attribution", attribution))
        with open(path, "w", newline="", encoding="utf-8") as f:
            for k, v in meta:
                f.write(f"# {k}: {v}\n")
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


# Extra-feature columns used automatically when present (method.md's record has ``direction``);
# any other extra must be asked for (``extras=[...]``, ``--extras``, ``--columns name=column``).
AUTO_EXTRAS = ("direction",)
SYNTHETIC_NAMES = ("synthetic_dz411", "synthetic")
# Options that only apply to reading CSV files and folders, with their neutral values.
_FILE_OPTIONS = {"columns": ({}, None), "extras": ((), [], None), "temperature_unit": ("C",),
                 "stress_unit": ("MPa",), "strain_rate_unit": ("1/s",)}


def load(spec: str, **kwargs) -> FlowCurves:
    """Load by name (shared data set or ``synthetic_dz411``), CSV file, or folder of CSVs.

    Keyword arguments go to :func:`load_csv` / :func:`load_folder`; ``data_seed`` selects the
    noise of the synthetic set; ``exclude_conditions`` (list of (T °C, rate 1/s[, extras])) drops
    whole curves, listed in ``FlowCurves.excluded``.
    """
    data_seed = kwargs.pop("data_seed", 0)
    exclude = kwargs.pop("exclude_conditions", ())
    if spec in NAMED_DATASETS or spec in SYNTHETIC_NAMES:
        for k, v in kwargs.items():
            if k in _FILE_OPTIONS and not any(v == d for d in _FILE_OPTIONS[k]):
                raise NeumatInputError(
                    f"'{spec}' is a named data set with fixed columns and units; the option "
                    f"{k.replace('_', '-')}={v!r} applies to CSV files and folders only")
        if spec in NAMED_DATASETS:
            return load_named(spec, exclude_conditions=exclude)
        from .synthetic import generate_dz411
        return exclude_curves(generate_dz411(seed=data_seed), exclude)
    p = Path(spec)
    if p.is_dir():
        return load_folder(p, exclude_conditions=exclude, **kwargs)
    if p.is_file():
        return load_csv(p, exclude_conditions=exclude, **kwargs)
    raise NeumatInputError(
        f"data '{spec}' is neither a known data set ({', '.join([*NAMED_DATASETS, 'synthetic_dz411'])}) "
        f"nor an existing CSV file or folder")


def load_named(name: str, exclude_conditions: Sequence[Sequence[float]] = ()) -> FlowCurves:
    """A shared data set of ``NAMED_DATASETS`` from :func:`data_root` (source = its name)."""
    if name not in NAMED_DATASETS:
        raise NeumatInputError(f"unknown data set '{name}'; known: {', '.join(NAMED_DATASETS)}")
    info = NAMED_DATASETS[name]
    path = data_root() / name / info["file"]
    if not path.is_file():
        raise NeumatInputError(f"data set '{name}' not found at {path}; set NEUMAT_DATA to the folder "
                               f"holding {name}/")
    fc = load_csv(path, columns=info["columns"], allow_replicates=info["allow_replicates"],
                  exclude_conditions=exclude_conditions)
    fc.source = name
    return fc


def exclude_curves(fc: FlowCurves, conditions: Sequence[Sequence[float]],
                   reason: str = "condition excluded by the user") -> FlowCurves:
    """Drop the whole curves matching ``conditions`` (as ``match_conditions``); list them in
    ``excluded`` with ``reason``. A condition that matches nothing is an error."""
    if not len(conditions):
        return fc
    try:
        drop = fc.match_conditions(conditions)
    except NeumatInputError as exc:
        raise NeumatInputError(str(exc).replace("held-out condition", "excluded condition")) from None
    keep = np.setdiff1d(np.arange(fc.n_curves), drop)
    if not len(keep):
        raise NeumatInputError("the excluded conditions leave no curve")
    out = fc.subset(keep)
    out.excluded = list(fc.excluded) + [
        (f"curve '{fc.curve_names[c]}' ({fc.condition_label(c)}, {len(fc.curve_points(c))} points)",
         reason) for c in drop]
    return out


def parse_columns(text: str | None) -> dict[str, str]:
    """``"strain=true_strain,stress=sig"`` → mapping of canonical field to CSV column."""
    if not text:
        return {}
    out = {}
    for part in text.split(","):
        if "=" not in part:
            raise NeumatInputError(f"--columns: '{part}' is not FIELD=COLUMN")
        k, v = (s.strip() for s in part.split("=", 1))
        if not k or not v:
            raise NeumatInputError(f"--columns: '{part}' is not FIELD=COLUMN")
        out[k] = v
    return out


@dataclass
class _Table:
    """A CSV file read as text: header, data rows and their 1-based line numbers in the file."""
    path: Path
    header: list[str]
    header_line: int
    rows: list[list[str]]
    lines: np.ndarray
    meta: dict[str, str]
    decimal_comma: bool

    def where(self, column: str) -> int:
        if self.header.count(column) > 1:
            raise DataError(f"column '{column}' appears {self.header.count(column)} times in the header",
                            file=str(self.path), row=self.header_line, column=column)
        return self.header.index(column)

    def require(self, column: str, what: str, hint: str = "") -> None:
        if column not in self.header:
            raise DataError(f"missing column '{column}' (for {what}); the file has: "
                            f"{', '.join(self.header)}{hint}", file=str(self.path),
                            row=self.header_line, column=column)

    def text_column(self, column: str) -> list[str]:
        j = self.where(column)
        return [r[j].strip() if j < len(r) else "" for r in self.rows]

    def numeric(self, column: str) -> np.ndarray:
        """Finite floats of a column; the first bad cell raises naming file, line and column."""
        j = self.where(column)
        out = np.empty(len(self.rows))
        for i, r in enumerate(self.rows):
            cell = r[j].strip() if j < len(r) else ""
            if cell == "":
                more = "" if j < len(r) else f" (the row has {len(r)} fields, the header {len(self.header)})"
                raise DataError("empty value" + more, file=str(self.path), row=int(self.lines[i]),
                                column=column)
            try:
                v = float(cell.replace(",", ".") if self.decimal_comma else cell)
            except ValueError:
                raise DataError(f"'{cell}' is not a number", file=str(self.path),
                                row=int(self.lines[i]), column=column) from None
            if not math.isfinite(v):
                raise DataError(f"value '{cell}' is not finite (allowed: a finite number)",
                                file=str(self.path), row=int(self.lines[i]), column=column)
            out[i] = v
        return out


def _read_table(path: Path) -> _Table:
    """Read a delimited text file (``,``, ``;`` or tab, chosen from the header line).

    Blank lines and ``#`` comment lines are skipped (line numbers stay those of the file);
    ``# key: value`` lines above the header are kept as metadata. With ``;`` or tab as the
    delimiter a decimal comma is accepted. Quoted fields may not span lines.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror}", file=str(path)) from None
    except UnicodeDecodeError:
        raise DataError("not a UTF-8 text (CSV) file", file=str(path)) from None
    meta: dict[str, str] = {}
    data_lines: list[str] = []
    numbers: list[int] = []
    for k, line in enumerate(text.splitlines(), start=1):
        st = line.strip()
        if not st:
            continue
        if st.startswith("#"):
            if not data_lines and ":" in st:
                key, val = st[1:].split(":", 1)
                meta[key.strip().lower()] = val.strip()
            continue
        data_lines.append(line)
        numbers.append(k)
    if not data_lines:
        raise DataError("the file is empty (no header line)", file=str(path))
    delim = max((",", ";", "\t"), key=lambda d: data_lines[0].count(d))
    if data_lines[0].count(delim) == 0:
        delim = ","
    rows = list(csv.reader(data_lines, delimiter=delim))
    header = [h.strip() for h in rows[0]]
    if len(rows) < 2:
        raise DataError("no data rows below the header", file=str(path), row=numbers[0] + 1)
    return _Table(path, header, numbers[0], rows[1:], np.asarray(numbers[1:]), meta,
                  decimal_comma=delim != ",")


def _check_unit(kind: str, unit: str, table: dict) -> None:
    if unit not in table:
        raise NeumatInputError(f"{kind} unit '{unit}' unknown; use one of {', '.join(table)}")


def _convert_and_check(path, values: dict[str, np.ndarray], lines, columns: dict[str, str],
                       temperature_unit: str, stress_unit: str, strain_rate_unit: str) -> None:
    """Convert the fields present in ``values`` to internal units in place and check their
    physical ranges; the first bad value raises naming file, line and column."""
    _check_unit("temperature", temperature_unit, TEMPERATURE_UNITS)
    _check_unit("stress", stress_unit, STRESS_UNITS)
    _check_unit("strain-rate", strain_rate_unit, STRAIN_RATE_UNITS)

    def first_bad(name, mask, msg):
        bad = np.flatnonzero(mask)
        if len(bad):
            line = lines[bad[0]]
            raise DataError(msg(values[name][bad[0]]), file=str(path),
                            row=None if line is None else int(line), column=columns[name])

    if "temperature" in values:
        a, b = TEMPERATURE_UNITS[temperature_unit]
        t = np.round(values["temperature"] * a + b, 9)
        values["temperature"] = t
        first_bad("temperature", t <= ABSOLUTE_ZERO_C,
                  lambda v: f"temperature {v:g} °C is at or below absolute zero (allowed: > "
                            f"{ABSOLUTE_ZERO_C} °C, i.e. > 0 K; unit given: {temperature_unit})")
        first_bad("temperature", t > PLAUSIBLE_TEMPERATURE_C[1],
                  lambda v: f"temperature {v:g} °C is above {PLAUSIBLE_TEMPERATURE_C[1]:g} °C "
                            f"(allowed: {ABSOLUTE_ZERO_C} … {PLAUSIBLE_TEMPERATURE_C[1]:g} °C): wrong "
                            f"unit? (given: {temperature_unit}; use --temperature-unit)")
    if "strain_rate" in values:
        values["strain_rate"] = values["strain_rate"] * STRAIN_RATE_UNITS[strain_rate_unit]
        first_bad("strain_rate", values["strain_rate"] <= 0,
                  lambda v: f"strain rate {v:g} 1/s is not > 0 (allowed: > 0; give magnitudes)")
    if "strain" in values:
        first_bad("strain", values["strain"] < 0,
                  lambda v: f"true strain {v:g} is negative (allowed: >= 0; give magnitudes for "
                            f"compression)")
    if "stress" in values:
        s = values["stress"] = values["stress"] * STRESS_UNITS[stress_unit]
        first_bad("stress", s <= 0,
                  lambda v: f"stress {v:g} MPa is not > 0 (allowed: > 0 MPa; give magnitudes for "
                            f"compression)")
        med = float(np.median(s))
        if not PLAUSIBLE_STRESS_MPA[0] <= med <= PLAUSIBLE_STRESS_MPA[1]:
            i = int(np.argmax(s)) if med > PLAUSIBLE_STRESS_MPA[1] else int(np.argmin(s))
            raise DataError(f"median stress {med:g} MPa is outside the plausible {PLAUSIBLE_STRESS_MPA[0]:g} … "
                            f"{PLAUSIBLE_STRESS_MPA[1]:g} MPa: wrong unit? (given: {stress_unit}; use "
                            f"--stress-unit Pa|kPa|MPa|GPa|psi|ksi)", file=str(path),
                            row=int(lines[i]), column=columns["stress"])


def _curve_label(cond, extra_names) -> str:
    return "T{:g}_R{:g}".format(*cond[:2]) + "".join(f"_{k}{v:g}" for k, v in zip(extra_names, cond[2:]))


def load_csv(path: str | os.PathLike, columns: dict[str, str] | None = None,
             temperature_unit: str = "C", stress_unit: str = "MPa", strain_rate_unit: str = "1/s",
             extras: Sequence[str] = (), allow_replicates: bool = False,
             min_points: int = MIN_POINTS_PER_CURVE, exclude_conditions: Sequence[Sequence[float]] = ()
             ) -> FlowCurves:
    """Load a long CSV (one row per point).

    ``columns`` maps canonical fields (``temperature``, ``strain_rate``, ``strain``, ``stress``,
    optional ``curve``) to CSV headers; unmapped fields use ``DEFAULT_COLUMNS``. ``extras`` are
    further numeric columns used as features (a mapping ``name=column`` in ``columns`` also
    works); without them, the columns named in a ``# extras:`` comment line (written by
    ``FlowCurves.to_csv``) and a column ``direction`` are used. Columns left unused are listed
    in ``excluded``.

    Without a curve-id column a curve is one condition (T, rate, extras) in consecutive rows; a
    condition that comes back after other rows, or a strain that falls back to the start within
    a condition, is a second curve of the same condition: an error. With a curve-id column, two
    curves with the same condition are an error unless ``allow_replicates`` (or the file says
    ``# replicates: true``, as ``FlowCurves.to_csv`` writes for data with replicates). Every error names
    the file, the 1-based line in the file and the column.
    """
    path = Path(path)
    tab = _read_table(path)
    columns = dict(columns or {})
    extra_cols: dict[str, str] = {e: columns.pop(e, e) for e in extras}
    for k in list(columns):
        if k not in (*FIELDS, "curve"):
            extra_cols[k] = columns.pop(k)
    mapping = {k: columns.get(k, DEFAULT_COLUMNS[k]) for k in FIELDS}
    hint = " (map columns with --columns FIELD=COLUMN, e.g. strain=eps)"
    for name, col in mapping.items():
        tab.require(col, name, hint)
    for name, col in extra_cols.items():
        tab.require(col, f"extra feature {name}", " (--extras / --columns name=column)")
    if not extra_cols:
        auto = [e.strip() for e in tab.meta.get("extras", "").split(",") if e.strip()]
        auto += [e for e in AUTO_EXTRAS if e in tab.header and e not in auto]
        for e in auto:
            tab.require(e, f"extra feature {e} (named in the file's '# extras:' line)")
            extra_cols[e] = e
    if "curve" in columns:
        curve_col = columns["curve"]
        tab.require(curve_col, "the curve id")
    else:
        curve_col = DEFAULT_COLUMNS["curve"] if DEFAULT_COLUMNS["curve"] in tab.header else None
    used = {*mapping.values(), *extra_cols.values(), curve_col}
    excluded = [(f"column '{h}'", "not used (map it with --columns or --extras to use it)")
                for h in tab.header if h not in used and h]
    lines = tab.lines
    values = {k: tab.numeric(col) for k, col in mapping.items()}
    extra_vals = {k: tab.numeric(col) for k, col in extra_cols.items()}
    col_names = {**mapping, **extra_cols}
    _convert_and_check(path, values, lines, col_names, temperature_unit, stress_unit, strain_rate_unit)

    # --- identify curves ---------------------------------------------------------------------
    cond = np.column_stack([values["temperature"], values["strain_rate"], *extra_vals.values()])
    keys = [tuple(r) for r in np.round(cond, 9).tolist()]
    n = len(keys)
    curve_of_row = np.empty(n, dtype=np.int64)
    names: list[str] = []
    strain = values["strain"]
    cond_cols = ", ".join([mapping["temperature"], mapping["strain_rate"], *extra_cols.values()])
    allow_replicates = allow_replicates or tab.meta.get("replicates", "").lower().startswith("true")
    if curve_col is not None:
        ids = tab.text_column(curve_col)
        first_row: dict[str, int] = {}
        for i in range(n):
            cid = ids[i]
            if cid == "":
                raise DataError("empty curve id", file=str(path), row=int(lines[i]), column=curve_col)
            f = first_row.setdefault(cid, i)
            if f == i:
                names.append(cid)
            elif keys[i] != keys[f]:
                raise DataError(f"curve '{cid}' changes its condition here from {keys[f]} (line "
                                f"{lines[f]}) to {keys[i]} (T °C, rate 1/s, extras); one curve has "
                                f"one condition", file=str(path), row=int(lines[i]), column=cond_cols)
        index = {cid: c for c, cid in enumerate(names)}
        curve_of_row[:] = [index[cid] for cid in ids]
        if not allow_replicates:
            seen: dict = {}
            for c, cid in enumerate(names):
                f = first_row[cid]
                if keys[f] in seen:
                    raise DataError(f"curves '{seen[keys[f]]}' and '{cid}' have the same condition "
                                    f"{keys[f]} (T °C, rate 1/s, extras); replicates need "
                                    f"--allow-replicates", file=str(path), row=int(lines[f]),
                                    column=curve_col)
                seen[keys[f]] = cid
    else:
        block_of_key: dict = {}
        block_min = 0.0
        for i in range(n):
            if i == 0 or keys[i] != keys[i - 1]:
                if keys[i] in block_of_key:
                    c = block_of_key[keys[i]]
                    raise DataError(
                        f"condition {keys[i]} (T °C, rate 1/s, extras) comes back after other rows: "
                        f"a second curve '{names[c]}' with the same condition? (add a curve-id "
                        f"column, --columns curve=<column>, and --allow-replicates for replicates)",
                        file=str(path), row=int(lines[i]), column=cond_cols)
                block_of_key[keys[i]] = len(names)
                names.append(_curve_label(keys[i], extra_cols))
                block_min = strain[i]
            elif strain[i] < strain[i - 1] - 0.05 and strain[i] <= block_min + 0.02:
                raise DataError(f"strain falls back from {strain[i - 1]:g} to {strain[i]:g}: a second "
                                f"curve with the same condition {keys[i]} (T °C, rate 1/s, extras)? "
                                f"(add a curve-id column, --columns curve=<column>)",
                                file=str(path), row=int(lines[i]), column=mapping["strain"])
            block_min = min(block_min, strain[i])
            curve_of_row[i] = len(names) - 1

    # --- per-curve checks ----------------------------------------------------------------------
    counts = np.bincount(curve_of_row, minlength=len(names))
    for c in np.flatnonzero(counts < min_points):
        first = int(lines[np.flatnonzero(curve_of_row == c)[0]])
        raise DataError(f"curve '{names[c]}' has {counts[c]} points (allowed: at least {min_points})",
                        file=str(path), row=first, column=mapping["strain"])
    fc = FlowCurves(curve=curve_of_row, temperature=values["temperature"],
                    strain_rate=values["strain_rate"], strain=strain, stress=values["stress"],
                    curve_names=names, extras=extra_vals, source=str(path),
                    synthetic=tab.meta.get("synthetic", "").lower().startswith("true"),
                    excluded=excluded)
    return exclude_curves(fc, exclude_conditions)


FILENAME_PATTERN = r"T(?P<temperature>-?\d+(?:\.\d*)?)_R(?P<strain_rate>\d*\.?\d+(?:[eE][+-]?\d+)?)(?:_D(?P<direction>\d+))?$"


def _first_present(header: list[str], candidates: Sequence[str]) -> str:
    for c in candidates:
        if c in header:
            return c
    return candidates[0]


def load_folder(folder: str | os.PathLike, columns: dict[str, str] | None = None,
                manifest: str | None = "manifest.csv", name_pattern: str = FILENAME_PATTERN,
                temperature_unit: str = "C", stress_unit: str = "MPa", strain_rate_unit: str = "1/s",
                extras: Sequence[str] = (), min_points: int = MIN_POINTS_PER_CURVE,
                allow_replicates: bool = False, exclude_conditions: Sequence[Sequence[float]] = ()
                ) -> FlowCurves:
    """One CSV per curve (columns ``true_strain`` or ``strain``, ``true_stress_MPa`` or ``stress``,
    or as mapped in ``columns``).

    The condition of each file comes from ``manifest.csv`` in the folder (columns ``file``,
    ``temperature`` or ``temperature_C``, ``strain_rate`` or ``strain_rate_per_s``, plus extra
    features: those in ``extras`` and ``direction``) or, without a manifest, from the file name
    via ``name_pattern`` (default ``...T<°C>_R<1/s>[_D<direction>].csv``, e.g. ``T975_R0.1_D0.csv``).
    Units apply to the manifest and the files. Entries of the folder that are not curves
    (other files, sub-folders) and unused manifest columns are listed in ``excluded``.
    """
    folder = Path(folder)
    columns = dict(columns or {})
    if not folder.is_dir():
        raise DataError("not a folder", file=str(folder))
    entries = sorted(folder.iterdir())
    files = [p for p in entries if p.is_file() and p.suffix.lower() == ".csv" and p.name != manifest]
    excluded = [(f"'{p.name}'", "sub-folder, not searched" if p.is_dir() else "not a .csv curve file")
                for p in entries if p not in files and p.name != manifest]
    if not files:
        raise DataError("no *.csv curve files in the folder", file=str(folder))
    man_path = folder / manifest if manifest else None
    # condition of each file: {file name: ({field: value}, where)}; where = (file, line, columns)
    conds: dict[str, dict[str, float]] = {}
    where: dict[str, tuple[str, int | None, str]] = {}
    extra_names: list[str]
    if man_path is not None and man_path.is_file():
        tab = _read_table(man_path)
        tab.require("file", "the curve file name")
        tcol = columns.get("temperature") or _first_present(tab.header, ("temperature", "temperature_C"))
        rcol = columns.get("strain_rate") or _first_present(tab.header, ("strain_rate", "strain_rate_per_s"))
        tab.require(tcol, "temperature")
        tab.require(rcol, "strain rate")
        extra_cols = {e: columns.get(e, e) for e in extras}
        extra_cols.update({k: v for k, v in columns.items()
                           if k not in (*FIELDS, "curve") and k not in extra_cols})
        for e in AUTO_EXTRAS:
            if e in tab.header and e not in extra_cols:
                extra_cols[e] = e
        for e, col in extra_cols.items():
            tab.require(col, f"extra feature {e}")
        used = {"file", tcol, rcol, *extra_cols.values()}
        excluded += [(f"manifest column '{h}'", "not used as a feature (name it in --extras to use it)")
                     for h in tab.header if h not in used and h]
        vals = {"temperature": tab.numeric(tcol), "strain_rate": tab.numeric(rcol)}
        colmap = {"temperature": tcol, "strain_rate": rcol}
        _convert_and_check(man_path, vals, tab.lines, colmap, temperature_unit, stress_unit, strain_rate_unit)
        ex_vals = {e: tab.numeric(col) for e, col in extra_cols.items()}
        extra_names = list(extra_cols)
        present = {p.name for p in files}
        for i, fname in enumerate(tab.text_column("file")):
            line = int(tab.lines[i])
            if not fname:
                raise DataError("empty file name", file=str(man_path), row=line, column="file")
            if fname in conds:
                raise DataError(f"'{fname}' is listed twice (first on line {where[fname][1]})",
                                file=str(man_path), row=line, column="file")
            if fname not in present:
                raise DataError(f"curve file '{fname}' is not in the folder {folder}",
                                file=str(man_path), row=line, column="file")
            conds[fname] = {"temperature": vals["temperature"][i], "strain_rate": vals["strain_rate"][i],
                            **{e: ex_vals[e][i] for e in extra_names}}
            where[fname] = (str(man_path), line, ", ".join([tcol, rcol, *extra_cols.values()]))
        for p in files:
            if p.name not in conds:
                raise DataError(f"curve file '{p.name}' is in the folder but not in the manifest",
                                file=str(man_path), row=tab.header_line, column="file")
    else:
        rx = re.compile(name_pattern)
        for p in files:
            m = rx.search(p.stem)
            try:
                c = {k: float(v) for k, v in m.groupdict().items() if v is not None} if m else None
            except ValueError:
                c = None
            if not c or "temperature" not in c or "strain_rate" not in c:
                raise DataError(f"the file name does not give the condition (expected e.g. "
                                f"T975_R0.1_D0.csv; pattern {name_pattern}) and there is no "
                                f"{manifest or 'manifest'}", file=str(p), column="file name")
            one = {"temperature": np.array([c["temperature"]]), "strain_rate": np.array([c["strain_rate"]])}
            _convert_and_check(p, one, [None], {"temperature": "file name", "strain_rate": "file name"},
                               temperature_unit, stress_unit, strain_rate_unit)
            conds[p.name] = {**c, "temperature": float(one["temperature"][0]),
                             "strain_rate": float(one["strain_rate"][0])}
            where[p.name] = (str(p), None, "file name")
        extra_names = sorted({k for c in conds.values() for k in c} - {"temperature", "strain_rate"})
        for p in files:
            for k in extra_names:
                if k not in conds[p.name]:
                    raise DataError(f"no value of '{k}' in the file name (other files give one)",
                                    file=str(p), column="file name")
    parts = []
    for p in files:
        tab = _read_table(p)
        scol = columns.get("strain") or _first_present(tab.header, ("true_strain", "strain"))
        tcol = columns.get("stress") or _first_present(tab.header, ("true_stress_MPa", "stress"))
        tab.require(scol, "strain", " (map with --columns strain=<column>)")
        tab.require(tcol, "stress", " (map with --columns stress=<column>)")
        vals = {"strain": tab.numeric(scol), "stress": tab.numeric(tcol)}
        _convert_and_check(p, vals, tab.lines, {"strain": scol, "stress": tcol},
                           temperature_unit, stress_unit, strain_rate_unit)
        n = len(vals["strain"])
        if n < min_points:
            raise DataError(f"the curve has {n} points (allowed: at least {min_points})",
                            file=str(p), row=int(tab.lines[0]), column=scol)
        parts.append((p.name, vals, conds[p.name], n))
    seen: dict = {}
    for name, _, c, _ in parts:
        key = tuple(round(c[k], 9) for k in ("temperature", "strain_rate", *extra_names))
        if key in seen and not allow_replicates:
            f, line, cols = where[name]
            raise DataError(f"'{name}' has the same condition {key} (T °C, rate 1/s, extras) as "
                            f"'{seen[key]}'; replicates need --allow-replicates", file=f, row=line,
                            column=cols)
        seen.setdefault(key, name)
    fc = FlowCurves(
        curve=np.concatenate([np.full(n, i) for i, (*_, n) in enumerate(parts)]),
        strain=np.concatenate([v["strain"] for _, v, _, _ in parts]),
        stress=np.concatenate([v["stress"] for _, v, _, _ in parts]),
        temperature=np.concatenate([np.full(n, c["temperature"]) for _, _, c, n in parts]),
        strain_rate=np.concatenate([np.full(n, c["strain_rate"]) for _, _, c, n in parts]),
        curve_names=[name for name, *_ in parts],
        extras={k: np.concatenate([np.full(n, c[k]) for _, _, c, n in parts]) for k in extra_names},
        source=str(folder), excluded=excluded)
    return exclude_curves(fc, exclude_conditions)


def parse_heldout(text: str | None) -> list[tuple[float, ...]]:
    """``"1100:0.01,1150:5"`` (or ``T:rate:direction``) → list of condition tuples."""
    if not text:
        return []
    out = []
    for part in text.split(","):
        try:
            vals = tuple(float(x) for x in part.strip().split(":"))
        except ValueError:
            raise NeumatInputError(f"--heldout: '{part}' is not T:rate[:extra...] (numbers)") from None
        if len(vals) < 2:
            raise NeumatInputError(f"--heldout: '{part}' needs at least T:rate")
        if not all(math.isfinite(v) for v in vals):
            raise NeumatInputError(f"--heldout: '{part}' has a value that is not finite")
        out.append(vals)
    return out
