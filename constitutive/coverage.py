"""Data coverage: where the measured flow curves are, and whether an evaluation lies near them.

A model trained on flow curves knows σ_y only near the measured *conditions* (temperature,
strain rate and extra features of each curve) and up to the last strain of each curve. The
rectangle spanned by the data (the "training box") counts the gaps between conditions as inside
and plastic strain below the first measured point as outside; this module replaces it.

**Normalised condition space.** A condition is u = (T in °C, log10 ε̇ with ε̇ in 1/s, extras...).
Each coordinate k is divided by the *typical grid spacing* s_k of the measured conditions: the
median of the positive gaps between the sorted distinct values of that coordinate (a coordinate
with a single measured value uses :data:`DEFAULT_SPACING`: 50 °C, 1 decade, 1 unit of an extra).
On a regular test matrix one grid step is then one unit in every direction.

**Inside the data** (all of):

* the nearest measured condition c with distance ‖(u − u_c)/s‖₂ <= :data:`DEFAULT_THRESHOLD`
  (= 1 grid spacing: the centre of a cell of a complete grid of up to 4 dimensions is inside,
  the middle of a gap where one or more temperatures are missing is outside), **and**
* 0 <= p <= the largest last strain of the curves of those conditions (those within the
  threshold). Plastic strain between 0 and the first measured point is inside: every plastic
  path starts there.

The strain rate is raised to the model's rate floor first (as the model evaluates it) and then
to the lowest measured rate: at the onset of plastic flow ṗ rises from 0 through these rates as
p does through the first strains. Anything else counts as *outside the data*.

**Fallback (models without coverage, e.g. ONNX files written before it existed):** the training
box, except that plastic strain from 0 up to the box's upper strain counts as inside; the rate is
raised to the floor first (a rate below the lowest measured one is outside, as before).

The same rule is implemented in ``fem_bridge.backends`` (all backends), the generated Fortran
UMAT (``fortran_umat.flow_module``: the conditions are parameters of the generated module) and
everything built on them (STATEV 9 of the UMAT, ``out_of_box`` on meshes, Dask).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import NeumatInputError

COVERAGE_FORMAT = "neumat-coverage/1"
DEFAULT_THRESHOLD = 1.0                          # normalised distance (grid spacings)
DEFAULT_SPACING = {"temperature": 50.0, "log10_strain_rate": 1.0, "extra": 1.0}


def _spacing(values: np.ndarray, default: float) -> float:
    """Median positive gap between the sorted distinct values (``default`` for one value)."""
    v = np.unique(np.round(np.asarray(values, dtype=float), 12))
    gaps = np.diff(v)
    gaps = gaps[gaps > 1e-9 * max(1.0, float(np.max(np.abs(v))) if v.size else 1.0)]
    return float(np.median(gaps)) if gaps.size else float(default)


@dataclass(frozen=True)
class Coverage:
    """The measured conditions of a model and the rule that says whether a point is near them.

    conditions  (M, 2 + E): temperature °C, strain rate 1/s, extras, one row per distinct condition
    strain_max  (M,): the last (largest) strain measured at that condition
    spacing     (2 + E,): normalisation of (T, log10 ε̇, extras), see the module docstring
    threshold   normalised distance beyond which a point is outside the data
    """
    conditions: np.ndarray
    strain_max: np.ndarray
    spacing: np.ndarray
    threshold: float = DEFAULT_THRESHOLD

    # ---- construction and (de)serialisation ----------------------------------------------
    @classmethod
    def from_points(cls, conditions, strain, curve, threshold: float = DEFAULT_THRESHOLD) -> "Coverage":
        """From per-point data: ``conditions`` (n, 2 + E) = T °C, rate 1/s, extras of each point,
        ``strain`` (n,), ``curve`` (n,) the curve index of each point. Curves at the same
        condition are merged (the largest last strain kept)."""
        c = np.asarray(conditions, dtype=float)
        strain = np.asarray(strain, dtype=float)
        curve = np.asarray(curve)
        if c.ndim != 2 or c.shape[1] < 2 or c.shape[0] != strain.shape[0] or curve.shape != strain.shape:
            raise NeumatInputError(f"coverage: conditions {c.shape}, strain {strain.shape} and curve "
                                   f"{curve.shape} do not fit")
        rows, smax = {}, {}
        for k in np.unique(curve):
            idx = np.flatnonzero(curve == k)
            cond = tuple(float(v) for v in np.median(c[idx], axis=0))
            key = tuple(round(v, 9) for v in cond)
            rows.setdefault(key, cond)
            smax[key] = max(smax.get(key, -np.inf), float(np.max(strain[idx])))
        keys = sorted(rows)
        cond = np.array([rows[k] for k in keys])
        if np.any(cond[:, 1] <= 0):
            raise NeumatInputError("coverage: strain rates must be > 0 1/s")
        u = cls._raw_u(cond)
        defaults = [DEFAULT_SPACING["temperature"], DEFAULT_SPACING["log10_strain_rate"]]
        defaults += [DEFAULT_SPACING["extra"]] * (cond.shape[1] - 2)
        spacing = np.array([_spacing(u[:, k], defaults[k]) for k in range(u.shape[1])])
        return cls(cond, np.array([smax[k] for k in keys]), spacing, float(threshold))

    @classmethod
    def from_curves(cls, curves, threshold: float = DEFAULT_THRESHOLD) -> "Coverage":
        """From a ``constitutive.flow_curves.FlowCurves``."""
        cond = np.column_stack([curves.temperature, curves.strain_rate, *curves.extras.values()])
        return cls.from_points(cond, curves.strain, curves.curve, threshold)

    def to_dict(self) -> dict:
        return {"format": COVERAGE_FORMAT,
                "columns": ["temperature_C", "strain_rate_1_per_s", "extras..."],
                "conditions": self.conditions.tolist(), "strain_max": self.strain_max.tolist(),
                "spacing": self.spacing.tolist(), "threshold": float(self.threshold),
                "normalisation": "u = (T, log10 rate, extras) / spacing; inside when the distance to a "
                                 "condition <= threshold and 0 <= strain <= its strain_max"}

    @classmethod
    def from_dict(cls, d: dict, n_features: int | None = None) -> "Coverage":
        """Check and read :meth:`to_dict`'s output (``n_features``: the model's F, to check widths)."""
        try:
            if d.get("format") != COVERAGE_FORMAT:
                raise ValueError(f"format {d.get('format')!r} is not {COVERAGE_FORMAT}")
            cond = np.asarray(d["conditions"], dtype=float)
            smax = np.asarray(d["strain_max"], dtype=float)
            spacing = np.asarray(d["spacing"], dtype=float)
            thr = float(d["threshold"])
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise NeumatInputError(f"coverage: unreadable ({exc})") from None
        width = None if n_features is None else n_features - 1
        if (cond.ndim != 2 or cond.shape[0] < 1 or cond.shape[1] < 2 or smax.shape != (cond.shape[0],)
                or spacing.shape != (cond.shape[1],) or (width is not None and cond.shape[1] != width)):
            raise NeumatInputError(f"coverage: conditions {cond.shape}, strain_max {smax.shape}, spacing "
                                   f"{spacing.shape} do not fit a model of {n_features} features")
        if not (np.all(np.isfinite(cond)) and np.all(cond[:, 1] > 0) and np.all(np.isfinite(smax))
                and np.all(spacing > 0) and np.all(np.isfinite(spacing)) and np.isfinite(thr) and thr > 0):
            raise NeumatInputError("coverage: conditions, strain_max, spacing and threshold must be finite "
                                   "(rates, spacings and threshold > 0)")
        return cls(cond, smax, spacing, thr)

    # ---- the rule ------------------------------------------------------------------------
    @staticmethod
    def _raw_u(cond: np.ndarray) -> np.ndarray:
        u = np.array(cond, dtype=float, copy=True)
        u[:, 1] = np.log10(u[:, 1])
        return u

    @property
    def rate_min(self) -> float:
        return float(np.min(self.conditions[:, 1]))

    @property
    def scaled_conditions(self) -> np.ndarray:
        """(M, 2 + E): the conditions in normalised coordinates u / spacing."""
        return self._raw_u(self.conditions) / self.spacing

    def distances(self, x, rate_floor: float) -> np.ndarray:
        """(N, M) normalised distance of each model input row x = (p, ε̇, T, extras) to each condition."""
        return np.sqrt(self._squared_distances(x, rate_floor))

    @property
    def threshold_squared(self) -> float:
        return float(self.threshold) * float(self.threshold)

    def _squared_distances(self, x, rate_floor: float) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        u = np.empty((x.shape[0], x.shape[1] - 1))
        u[:, 0] = x[:, 2] / self.spacing[0]
        u[:, 1] = np.log10(np.maximum(np.maximum(x[:, 1], rate_floor), self.rate_min)) / self.spacing[1]
        u[:, 2:] = x[:, 3:] / self.spacing[2:]
        c = self.scaled_conditions
        d2 = np.zeros((x.shape[0], c.shape[0]))
        for k in range(c.shape[1]):          # the same order of sums as the Fortran
            d2 += (u[:, k, None] - c[None, :, k]) ** 2
        return d2

    def outside(self, x, rate_floor: float) -> np.ndarray:
        """Boolean per row of x (N, F): the evaluation lies outside the data (non-finite rows too)."""
        x = np.asarray(x, dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            d2 = self._squared_distances(x, rate_floor)
            p = x[:, 0]
            near = d2 <= self.threshold_squared          # as the Fortran: no square root
            covered = np.any(near & (p[:, None] <= self.strain_max[None, :]), axis=1)
            return ~(covered & (p >= 0.0))

    def temperature_outside(self, temperature) -> np.ndarray:
        """Boolean per value (°C): farther than the threshold from every measured temperature."""
        t = np.asarray(temperature, dtype=float).reshape(-1) / self.spacing[0]
        c = np.unique(self.conditions[:, 0]) / self.spacing[0]
        with np.errstate(invalid="ignore"):
            return ~(np.min(np.abs(t[:, None] - c[None, :]), axis=1) <= self.threshold)

    def describe(self) -> str:
        temps = ", ".join(f"{v:g}" for v in np.unique(self.conditions[:, 0]))
        rates = ", ".join(f"{v:g}" for v in np.unique(self.conditions[:, 1]))
        return (f"{self.conditions.shape[0]} measured conditions (T {temps} °C; rates {rates} 1/s); "
                f"outside the data beyond {self.threshold:g} grid spacings (T {self.spacing[0]:g} °C, "
                f"rate {self.spacing[1]:g} decades) or past the curves' last strain")


def box_outside(x, box_lo, box_hi, rate_floor: float) -> np.ndarray:
    """The fallback rule for models without coverage: outside the training box (rate raised to the
    floor first), plastic strain from 0 to the box's upper strain inside."""
    x = np.array(x, dtype=float, copy=True)
    lo = np.array(box_lo, dtype=float, copy=True)
    lo[0] = min(0.0, lo[0])
    x[:, 1] = np.maximum(x[:, 1], rate_floor)
    with np.errstate(invalid="ignore"):
        return ~np.all((x >= lo) & (x <= np.asarray(box_hi, dtype=float)), axis=1)


def outside_data(x, coverage: "Coverage | None", box_lo, box_hi, rate_floor: float) -> np.ndarray:
    """The one rule every consumer uses: coverage when the model has it, else the box fallback."""
    if coverage is None:
        return box_outside(x, box_lo, box_hi, rate_floor)
    return coverage.outside(x, rate_floor)
