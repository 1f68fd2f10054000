"""The flow-curve table: all points of a set of tests in internal units (see ``units``).

Extra features (e.g. ``direction``: 0 = axial, 1 = radial) are dimensionless columns in
``extras``. A *condition* is (temperature, strain rate, extras...); a *curve* is one test.
Conditions are given as tuples (T °C, rate 1/s[, extras]); :func:`parse_heldout` reads them
from the command-line form ``T:rate[:extra...]``.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
import os
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
from scipy.signal import savgol_filter

from .errors import NeumatInputError
from .jsonio import write_atomic
from .units import celsius_to_kelvin

# The canonical point fields of a table (besides ``curve`` and the extras).
FIELDS = ("temperature", "strain_rate", "strain", "stress")


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
        ``allow_replicates``) and the attribution of real data. Written atomically (temporary
        file, then rename).
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
        f = io.StringIO(newline="")
        for k, v in meta:
            f.write(f"# {k}: {v}\n")
        w = csv.writer(f)
        w.writerow(header)
        for i in range(len(self)):
            w.writerow([self.curve_names[self.curve[i]], repr(float(self.temperature[i])),
                        repr(float(self.strain_rate[i])), repr(float(self.strain[i])),
                        repr(float(self.stress[i])),
                        *(repr(float(v[i])) for v in self.extras.values())])
        write_atomic(path, f.getvalue().encode("utf-8"))          # temporary file, then rename


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


MIN_DISTINCT_CONDITIONS = 2     # temperatures and strain rates a fit needs at least


def check_fit_conditions(curves: FlowCurves, what: str = "the training curves") -> None:
    """A model of σ(ε, ε̇, T) fitted on ``curves`` needs at least ``MIN_DISTINCT_CONDITIONS``
    temperatures and as many strain rates: with one, neither the laws (Q, n) nor the network
    (a zero-width input range) can learn the dependence. Raises ``NeumatInputError`` saying
    which is missing, before any fit."""
    conds = curves.conditions()
    for col, name, unit in ((0, "temperature", "°C"), (1, "strain rate", "1/s")):
        vals = np.unique(np.round(conds[:, col], 9))
        if len(vals) < MIN_DISTINCT_CONDITIONS:
            raise NeumatInputError(
                f"{what} of {curves.source or 'the data'} ({curves.n_curves} curve(s)) have a single "
                f"{name} ({', '.join(f'{v:g}' for v in vals)} {unit}): fitting a flow-stress model needs "
                f"curves at {MIN_DISTINCT_CONDITIONS} or more temperatures and {MIN_DISTINCT_CONDITIONS} "
                f"or more strain rates (add curves, or hold out fewer conditions)")


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
