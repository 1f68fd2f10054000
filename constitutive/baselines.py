"""Phenomenological flow laws fitted to flow curves: the baselines every network is judged by.

Three models with one API::

    model = Arrhenius(order=9).fit(curves)          # curves: constitutive.flow_curves.FlowCurves
    sigma = model.predict(strain, strain_rate, temperature_c)     # vectorised, MPa
    model.save("arrhenius.json"); model = Baseline.load("arrhenius.json")

Units everywhere: true strain (–), strain rate 1/s, temperature °C, stress MPa. None of the three
laws takes extra features (e.g. ``direction``): extra columns of the data are ignored by the
fit and by ``predict_curves``.

``evaluate_protocol`` fits all three on the training curves of a protocol (all curves, or all
but some held-out conditions) and scores them on train / held-out / all points; it produces the
dict written by ``neumat baselines --json`` and reused by the accuracy benchmark.
"""
from __future__ import annotations

import json
import os
from typing import Iterable, Sequence

import numpy as np
from scipy.optimize import least_squares, minimize_scalar

from .errors import NeumatInputError
from .flow_curves import FlowCurves
from .jsonio import to_jsonable, write_json
from .laws import GAS_CONSTANT, arrhenius_stress
from .metrics import mare_pct, scores
from .units import KELVIN_OFFSET

FORMAT_VERSION = 1


def _domain(curves: FlowCurves) -> dict:
    """The box the model was fitted on (recorded in the JSON; predictions outside it extrapolate)."""
    return {"source": curves.source, "n_curves": int(curves.n_curves), "n_points": int(len(curves)),
            "temperature_c": [float(curves.temperature.min()), float(curves.temperature.max())],
            "strain_rate_per_s": [float(curves.strain_rate.min()), float(curves.strain_rate.max())],
            "strain": [float(curves.strain.min()), float(curves.strain.max())]}


class Baseline:
    """Common part: options, parameters, JSON round trip, prediction on a FlowCurves table."""

    name = "baseline"

    def __init__(self):
        self.params: dict | None = None
        self.fitted_on: dict | None = None

    # -- to implement ----------------------------------------------------------------------
    def options(self) -> dict:
        raise NotImplementedError

    def fit(self, curves: FlowCurves) -> "Baseline":
        raise NotImplementedError

    def _predict(self, strain, rate, temperature_c) -> np.ndarray:
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------
    def predict(self, strain, strain_rate, temperature_c) -> np.ndarray:
        """σ in MPa at true strain, strain rate (1/s), temperature (°C); inputs broadcast."""
        if self.params is None:
            raise RuntimeError(f"{type(self).__name__}: fit() or load() first")
        e, r, t = np.broadcast_arrays(np.asarray(strain, dtype=float), np.asarray(strain_rate, dtype=float),
                                      np.asarray(temperature_c, dtype=float))
        return np.asarray(self._predict(e, r, t), dtype=float)

    def predict_curves(self, curves: FlowCurves) -> np.ndarray:
        """σ (MPa) at every point of ``curves`` (extra features ignored)."""
        return self.predict(curves.strain, curves.strain_rate, curves.temperature)

    def to_dict(self) -> dict:
        if self.params is None:
            raise RuntimeError(f"{type(self).__name__}: nothing fitted to save")
        return to_jsonable({"model": self.name, "format": FORMAT_VERSION,
                           "units": {"strain": "-", "strain_rate": "1/s", "temperature": "C",
                                     "stress": "MPa"},
                           "options": self.options(), "params": self.params,
                           "fitted_on": self.fitted_on})

    @classmethod
    def from_dict(cls, d: dict) -> "Baseline":
        name = d.get("model")
        if cls is Baseline:
            if name not in BASELINES:
                raise NeumatInputError(f"unknown baseline model '{name}'; known: {', '.join(BASELINES)}")
            cls = BASELINES[name]
        elif name != cls.name:
            raise NeumatInputError(f"this file holds a '{name}' model, not '{cls.name}'")
        if d.get("format", FORMAT_VERSION) > FORMAT_VERSION:
            raise NeumatInputError(f"baseline file format {d.get('format')} is newer than this neumat "
                                   f"reads ({FORMAT_VERSION})")
        obj = cls(**d.get("options", {}))
        obj.params = {k: (list(v) if isinstance(v, list) else v) for k, v in d["params"].items()}
        obj.fitted_on = d.get("fitted_on")
        return obj

    def save(self, path: str | os.PathLike) -> None:
        """JSON at ``path``, written atomically (temporary file, then rename)."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Baseline":
        try:
            with open(path) as f:
                d = json.load(f)
        except OSError as exc:
            raise NeumatInputError(f"cannot read baseline model {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise NeumatInputError(f"{path}: not a JSON file ({exc.msg}, line {exc.lineno})") from None
        return cls.from_dict(d)

    def __repr__(self) -> str:
        state = "fitted" if self.params is not None else "not fitted"
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options().items())}; {state})"


def _check_curves(curves: FlowCurves, what: str) -> None:
    if len(curves) == 0:
        raise NeumatInputError(f"{what}: no points to fit")
    if np.any(curves.stress <= 0) or np.any(curves.strain_rate <= 0):
        raise NeumatInputError(f"{what}: stress and strain rate must be > 0")


# ---------------------------------------------------------------------------------------------
# Strain-compensated Arrhenius (Sellars–Tegart)
# ---------------------------------------------------------------------------------------------
def _log_sinh(x):
    """ln sinh(x) for x > 0 without overflow."""
    x = np.asarray(x, dtype=float)
    return x + np.log1p(-np.exp(-2.0 * x)) - np.log(2.0)


def _slope(x, y) -> float:
    return float(np.polyfit(x, y, 1)[0])


def _groups(key: np.ndarray, other: np.ndarray) -> list[np.ndarray]:
    """Indices sharing ``key`` (rounded) that span at least two distinct values of ``other``."""
    k = np.round(key, 9)
    out = []
    for v in np.unique(k):
        g = np.flatnonzero(k == v)
        if len(np.unique(np.round(other[g], 12))) >= 2:
            out.append(g)
    return out


def arrhenius_constants(stress, strain_rate, temperature_c) -> dict:
    """α, n, Q (J/mol), ln A at one strain level by the standard regression procedure.

    Points are (σ MPa, ε̇ 1/s, T °C), one per curve at that strain. Per temperature (lines over
    the strain rates): n₁ = 1 / slope(ln σ vs ln ε̇), β = 1 / slope(σ vs ln ε̇), each averaged
    over the temperatures; α = β / n₁; n = 1 / slope(ln sinh(ασ) vs ln ε̇) averaged the same
    way. Per strain rate (lines over the temperatures): S = slope(ln sinh(ασ) vs 1/T), averaged;
    Q = R·n·S. ln A is the intercept of ln Z = ln A + n·ln sinh(ασ) with n fixed, i.e. the mean
    of ln ε̇ + Q/(R T) − n·ln sinh(ασ). The measured σ is regressed on the controlled ε̇ and T
    (and the slope inverted) because the scatter is in σ.
    """
    s = np.asarray(stress, dtype=float)
    lnr = np.log(np.asarray(strain_rate, dtype=float))
    tk = np.asarray(temperature_c, dtype=float) + KELVIN_OFFSET
    by_t = _groups(tk, lnr)
    by_r = _groups(lnr, tk)
    if not by_t or not by_r:
        raise NeumatInputError("the Arrhenius fit needs at least two strain rates at one temperature "
                               "and two temperatures at one strain rate")
    n1 = np.mean([1.0 / _slope(lnr[g], np.log(s[g])) for g in by_t])
    beta = np.mean([1.0 / _slope(lnr[g], s[g]) for g in by_t])
    alpha = beta / n1
    if not np.isfinite(alpha) or alpha <= 0:
        raise NeumatInputError("the Arrhenius fit failed: stress does not rise with strain rate in the data "
                               f"(α = {alpha:g})")
    ls = _log_sinh(alpha * s)
    n = np.mean([1.0 / _slope(lnr[g], ls[g]) for g in by_t])
    q = GAS_CONSTANT * n * np.mean([_slope(1.0 / tk[g], ls[g]) for g in by_r])
    lna = float(np.mean(lnr + q / (GAS_CONSTANT * tk) - n * ls))
    return {"alpha": float(alpha), "n": float(n), "Q": float(q), "lnA": lna}


def arrhenius_constants_fitted(stress, strain_rate, temperature_c) -> dict:
    """α, n, Q, ln A at one strain level with α chosen by fit, not by β/n₁.

    β/n₁ is exact only in the power-law (small ασ) and exponential (large ασ) limits of the sinh
    law; in between it is an approximation, so the standard procedure does not give back the
    constants of data made by the law itself. Here, for a trial α, ln sinh(ασ) is regressed
    jointly on ln ε̇ and 1/T (slopes 1/n and Q/(nR), intercept −ln A/n), and α minimises the
    squared relative stress error of that regression (bounded search around the standard α).
    """
    s = np.asarray(stress, dtype=float)
    lnr = np.log(np.asarray(strain_rate, dtype=float))
    tk = np.asarray(temperature_c, dtype=float) + KELVIN_OFFSET
    a0 = arrhenius_constants(s, strain_rate, temperature_c)["alpha"]
    X = np.column_stack([lnr, 1.0 / tk, np.ones_like(lnr)])

    def solve(log_alpha):
        a = np.exp(log_alpha)
        coef, *_ = np.linalg.lstsq(X, _log_sinh(a * s), rcond=None)
        return a, coef

    def objective(log_alpha):
        a, coef = solve(log_alpha)
        pred = np.arcsinh(np.exp(X @ coef)) / a
        return float(np.sum((pred / s - 1.0) ** 2))

    res = minimize_scalar(objective, bounds=(np.log(a0) - 3.0, np.log(a0) + 3.0), method="bounded",
                          options={"xatol": 1e-10})
    a, coef = solve(res.x)
    n = 1.0 / coef[0]
    return {"alpha": float(a), "n": float(n), "Q": float(GAS_CONSTANT * n * coef[1]),
            "lnA": float(-n * coef[2])}


class Arrhenius(Baseline):
    """Strain-compensated Sellars–Tegart law (method.md), evaluated by ``laws.arrhenius_stress``.

    Fit: the curves are smoothed (Savitzky–Golay, ``smooth_window`` points, order
    ``smooth_order``; the Arrhenius fit only), interpolated at ``n_levels`` strain levels evenly
    spaced from ``strain_start`` to the largest strain of the data (strain 0 and the first
    elastic rise are avoided: the law has no meaning there), the constants α, n, Q, ln A are
    found at each level by ``arrhenius_constants`` from the curves that reach it, and each
    constant is fitted by a polynomial in strain of order ``order`` (1…9; 9 as in the reference
    study). ``params`` is the dict format of ``constitutive.laws`` (coefficients lowest order
    first, ``strain_min``/``strain_max`` = first/last level: outside, the strain is clamped).
    ``alpha_method="fit"`` replaces α = β/n₁ by a fitted α (``arrhenius_constants_fitted``),
    which gives back the exact constants of data made by the law; the default is the standard
    procedure of the reference study.

    The law has no place for extra features (e.g. direction): they are ignored, so a data set
    mixing directions or regimes gets one compromise law. Temperatures in °C, Q in J/mol.
    """

    name = "arrhenius"

    def __init__(self, order: int = 9, n_levels: int = 60, strain_start: float = 0.01,
                 smooth_window: int = 31, smooth_order: int = 3, alpha_method: str = "standard"):
        super().__init__()
        if alpha_method not in ("standard", "fit"):
            raise NeumatInputError(f"Arrhenius alpha_method '{alpha_method}' unknown; use standard or fit")
        self.alpha_method = alpha_method
        if not 1 <= int(order) <= 9:
            raise NeumatInputError(f"Arrhenius polynomial order {order} outside 1…9")
        if int(n_levels) < int(order) + 1:
            raise NeumatInputError(f"Arrhenius: {n_levels} strain levels cannot fix a polynomial of "
                                   f"order {order} (need at least {int(order) + 1})")
        if not strain_start > 0:
            raise NeumatInputError(f"Arrhenius: strain_start must be > 0 (got {strain_start})")
        self.order, self.n_levels, self.strain_start = int(order), int(n_levels), float(strain_start)
        self.smooth_window, self.smooth_order = int(smooth_window), int(smooth_order)
        self.levels: dict | None = None     # per-level constants of the last fit (not saved)

    def options(self) -> dict:
        return {"order": self.order, "n_levels": self.n_levels, "strain_start": self.strain_start,
                "smooth_window": self.smooth_window, "smooth_order": self.smooth_order,
                "alpha_method": self.alpha_method}

    def fit(self, curves: FlowCurves) -> "Arrhenius":
        _check_curves(curves, "Arrhenius")
        sm = curves.smoothed(self.smooth_window, self.smooth_order)
        e_hi = float(sm.strain.max())
        if e_hi <= self.strain_start:
            raise NeumatInputError(f"Arrhenius: the data reach strain {e_hi:g} only, not beyond "
                                   f"strain_start = {self.strain_start:g}")
        grid = np.linspace(self.strain_start, e_hi, self.n_levels)
        res = sm.resample(grid)
        conds = sm.conditions()
        solve = arrhenius_constants if self.alpha_method == "standard" else arrhenius_constants_fitted
        used, consts, last_error = [], [], None
        for e in grid:
            idx = np.flatnonzero(np.isclose(res.strain, e, rtol=0, atol=1e-12))
            if len(idx) < 3:
                continue
            c = res.curve[idx]
            try:
                k = solve(res.stress[idx], conds[c, 1], conds[c, 0])
            except NeumatInputError as exc:
                last_error = exc
                continue
            if all(np.isfinite(v) for v in k.values()):
                used.append(e)
                consts.append(k)
        if not used and last_error is not None:
            raise NeumatInputError(f"Arrhenius: {last_error}")
        if len(used) < self.order + 1:
            raise NeumatInputError(
                f"Arrhenius: the constants could be found at {len(used)} strain levels only, a polynomial "
                f"of order {self.order} needs {self.order + 1} (too few conditions, or strain rate and "
                f"temperature not crossed in the data)")
        used = np.asarray(used)
        self.levels = {"strain": used.tolist(), **{k: [c[k] for c in consts] for k in consts[0]}}
        poly = np.polynomial.polynomial.polyfit
        self.params = {k: poly(used, np.asarray(self.levels[k]), self.order).tolist()
                       for k in ("alpha", "n", "Q", "lnA")}
        self.params["strain_min"], self.params["strain_max"] = float(used[0]), float(used[-1])
        self.fitted_on = _domain(curves)
        return self

    def _predict(self, strain, rate, temperature_c):
        return arrhenius_stress(self.params, strain, rate, temperature_c)


# ---------------------------------------------------------------------------------------------
# Hensel–Spittel
# ---------------------------------------------------------------------------------------------
HS_PARAMS = ("lnA", "m1", "m2", "m3", "m4", "m5", "m7", "m8", "m9")


class HenselSpittel(Baseline):
    """Hensel–Spittel law, 9 parameters, T in °C (> 0):

        σ = A·e^{m1 T}·ε^{m2}·ε̇^{m3}·e^{m4/ε}·(1+ε)^{m5 T}·e^{m7 ε}·ε̇^{m8 T}·T^{m9}

    ln σ is linear in (ln A, m1…m9), so the fit starts from linear least squares in log space
    (columns scaled), then refines with ``scipy.optimize.least_squares`` according to
    ``objective``:

    - ``"relative"`` (default): on the relative stress error σ_pred/σ_exp − 1 (plain and soft-L1
      loss); of these and the log-space start, the one with the lowest MARE on the fitted
      curves is kept;
    - ``"absolute"``: on the stress error σ_pred − σ_exp in MPa (the reference study's objective;
      lower RMSE, higher MARE, weights the high-stress curves more);
    - ``"log"``: the log-space linear least squares only.

    The strain is clamped to ≥ ``strain_floor`` (default 1e-3) in fit and prediction, because
    ε^{m2} and e^{m4/ε} are singular at ε = 0.
    """

    name = "hensel_spittel"

    OBJECTIVES = ("relative", "absolute", "log")

    def __init__(self, strain_floor: float = 1e-3, objective: str = "relative"):
        super().__init__()
        if not strain_floor > 0:
            raise NeumatInputError(f"Hensel–Spittel: strain_floor must be > 0 (got {strain_floor})")
        if objective not in self.OBJECTIVES:
            raise NeumatInputError(f"Hensel–Spittel objective '{objective}' unknown; use "
                                   f"{', '.join(self.OBJECTIVES)}")
        self.strain_floor, self.objective = float(strain_floor), objective

    def options(self) -> dict:
        return {"strain_floor": self.strain_floor, "objective": self.objective}

    def _design(self, strain, rate, temperature_c) -> np.ndarray:
        e = np.maximum(np.asarray(strain, dtype=float), self.strain_floor)
        t = np.asarray(temperature_c, dtype=float)
        lr = np.log(np.asarray(rate, dtype=float))
        with np.errstate(divide="ignore", invalid="ignore"):
            lt = np.log(t)
        return np.stack([np.ones_like(e), t, np.log(e), lr, 1.0 / e, t * np.log1p(e), e, t * lr, lt], axis=-1)

    def fit(self, curves: FlowCurves) -> "HenselSpittel":
        _check_curves(curves, "Hensel–Spittel")
        if np.any(curves.temperature <= 0):
            raise NeumatInputError("Hensel–Spittel uses ln T with T in °C: all temperatures must be > 0 °C "
                                   f"(lowest in the data: {curves.temperature.min():g} °C)")
        X = self._design(curves.strain, curves.strain_rate, curves.temperature)
        y = np.log(curves.stress)
        scale = np.abs(X).max(axis=0)
        scale[scale == 0] = 1.0
        Xs = X / scale
        ps, *_ = np.linalg.lstsq(Xs, y, rcond=None)
        sig = curves.stress
        if self.objective == "absolute":
            r = least_squares(lambda p: np.exp(Xs @ p) - sig, ps, jac=lambda p: np.exp(Xs @ p)[:, None] * Xs,
                              x_scale="jac", method="trf", max_nfev=400)
            best = (r.x if np.all(np.isfinite(r.x)) else ps) / scale
        else:
            cands = [ps / scale]
            if self.objective == "relative":
                def resid(p):
                    return np.exp(Xs @ p) / sig - 1.0

                def jac(p):
                    return (np.exp(Xs @ p) / sig)[:, None] * Xs

                for loss in ("linear", "soft_l1"):
                    r = least_squares(resid, ps, jac=jac, loss=loss, f_scale=0.05, x_scale="jac",
                                      method="trf", max_nfev=200)
                    if np.all(np.isfinite(r.x)):
                        cands.append(r.x / scale)
            errs = [mare_pct(np.exp(X @ p), sig) for p in cands]
            best = cands[int(np.nanargmin(errs))]
        self.params = dict(zip(HS_PARAMS, (float(v) for v in best)))
        self.fitted_on = _domain(curves)
        return self

    def _predict(self, strain, rate, temperature_c):
        p = np.array([self.params[k] for k in HS_PARAMS])
        return np.exp(self._design(strain, rate, temperature_c) @ p)


# ---------------------------------------------------------------------------------------------
# Johnson–Cook
# ---------------------------------------------------------------------------------------------
JC_PARAMS = ("A", "B", "n", "C", "m")


class JohnsonCook(Baseline):
    """Johnson–Cook law σ = (A + B εⁿ)(1 + C ln(ε̇/ε̇₀))(1 − T*^m), T* = (T − T_ref)/(T_melt − T_ref).

    Choices: ε̇₀ = ``reference_rate`` (default: the lowest strain rate of the fitted data, 1/s);
    T_ref = ``reference_temperature`` (default: the lowest test temperature, °C); T_melt =
    ``melting_temperature`` (default 1460 °C, the value used for this medium-carbon steel by the
    reference study). Outside the fitted box: T* is clamped to [0, 1], the strain to ≥ 0, and
    the rate factor to ≥ 1e-3 (so σ stays positive below ε̇₀).

    Fit: least squares on the relative stress error σ_pred/σ_exp − 1 (plain and soft-L1 loss,
    several starting points; bounds A, B ≥ 0, 0.01 ≤ n ≤ 3, 0 ≤ C ≤ 5, 0.01 ≤ m ≤ 20); the
    candidate with the lowest MARE on the fitted curves is kept. Extra features are ignored.
    """

    name = "johnson_cook"

    def __init__(self, reference_rate: float | None = None, reference_temperature: float | None = None,
                 melting_temperature: float = 1460.0):
        super().__init__()
        if reference_rate is not None and not reference_rate > 0:
            raise NeumatInputError(f"Johnson–Cook: reference_rate must be > 0 1/s (got {reference_rate})")
        self.reference_rate = None if reference_rate is None else float(reference_rate)
        self.reference_temperature = None if reference_temperature is None else float(reference_temperature)
        self.melting_temperature = float(melting_temperature)

    def options(self) -> dict:
        return {"reference_rate": self.reference_rate, "reference_temperature": self.reference_temperature,
                "melting_temperature": self.melting_temperature}

    @staticmethod
    def _law(p, strain, rate, temperature_c, rate0, t_ref, t_melt):
        a, b, n, c, m = p
        e = np.maximum(strain, 0.0)
        ts = np.clip((temperature_c - t_ref) / (t_melt - t_ref), 0.0, 1.0)
        rate_f = np.maximum(1.0 + c * np.log(rate / rate0), 1e-3)
        return (a + b * e ** n) * rate_f * (1.0 - ts ** m)

    def fit(self, curves: FlowCurves) -> "JohnsonCook":
        _check_curves(curves, "Johnson–Cook")
        rate0 = self.reference_rate or float(curves.strain_rate.min())
        t_ref = self.reference_temperature if self.reference_temperature is not None \
            else float(curves.temperature.min())
        if not self.melting_temperature > curves.temperature.max():
            raise NeumatInputError(f"Johnson–Cook: melting temperature {self.melting_temperature:g} °C must "
                                   f"exceed the highest test temperature {curves.temperature.max():g} °C")
        if not self.melting_temperature > t_ref:
            raise NeumatInputError("Johnson–Cook: melting temperature must exceed the reference temperature")
        e, r, t, s = curves.strain, curves.strain_rate, curves.temperature, curves.stress
        args = (rate0, t_ref, self.melting_temperature)

        def resid(p):
            return self._law(p, e, r, t, *args) / s - 1.0

        lo = [0.0, 0.0, 0.01, 0.0, 0.01]
        hi = [np.inf, np.inf, 3.0, 5.0, 20.0]
        smin = float(np.percentile(s, 5))
        spread = float(np.percentile(s, 95)) - smin
        starts = [[0.5 * smin, spread, 0.3, 0.1, 1.0], [smin, 0.5 * spread, 0.5, 0.2, 0.5],
                  [0.1 * smin, 2 * spread, 0.2, 0.3, 2.0]]
        cands = []
        for x0 in starts:
            x0 = np.clip(x0, np.array(lo) + 1e-9, np.array(hi) - 1e-9)
            for loss in ("linear", "soft_l1"):
                sol = least_squares(resid, x0, bounds=(lo, hi), loss=loss, f_scale=0.05,
                                    x_scale="jac", method="trf", max_nfev=400)
                if np.all(np.isfinite(sol.x)):
                    cands.append(sol.x)
        errs = [mare_pct(self._law(p, e, r, t, *args), s) for p in cands]
        best = cands[int(np.nanargmin(errs))]
        self.params = {**dict(zip(JC_PARAMS, (float(v) for v in best))),
                       "reference_rate": rate0, "reference_temperature": t_ref,
                       "melting_temperature": self.melting_temperature}
        self.fitted_on = _domain(curves)
        return self

    def _predict(self, strain, rate, temperature_c):
        p = [self.params[k] for k in JC_PARAMS]
        return self._law(p, strain, rate, temperature_c, self.params["reference_rate"],
                         self.params["reference_temperature"], self.params["melting_temperature"])


BASELINES: dict[str, type[Baseline]] = {"arrhenius": Arrhenius, "hensel_spittel": HenselSpittel,
                                        "johnson_cook": JohnsonCook}


# ---------------------------------------------------------------------------------------------
# Protocols
# ---------------------------------------------------------------------------------------------
def without_zero_strain(curves: FlowCurves) -> FlowCurves:
    """The points with strain > 0 only; the dropped ones are listed in ``excluded``.

    At ε = 0 a measured curve holds the stress of the first, elastic data point, which can be
    almost anything (0.03 MPa in one gleeble_3cr2mo curve); a relative error there dominates the
    MARE of the whole set. The reference study drops that first point of every curve before
    fitting and scoring; so do we, by default, to compare like with like.
    """
    keep = curves.strain > 0
    if keep.all():
        return curves
    out = curves.take(np.flatnonzero(keep))
    out.excluded = list(curves.excluded) + [
        (f"{int((~keep).sum())} points at strain 0 (the first point of each curve)",
         "the flow laws are not defined there and the reference study drops them too")]
    return out


def make_model(name: str, **options) -> Baseline:
    if name not in BASELINES:
        raise NeumatInputError(f"unknown baseline '{name}'; known: {', '.join(BASELINES)}")
    return BASELINES[name](**options)


def evaluate_protocol(curves: FlowCurves, heldout_conditions: Sequence[Sequence[float]] = (),
                      models: Iterable[str] | dict[str, dict] = tuple(BASELINES),
                      dataset: str | None = None, protocol: str | None = None,
                      drop_zero_strain: bool = True, return_models: bool = False):
    """Fit each model on the curves not held out, score on train / held-out / all points.

    ``heldout_conditions``: (T °C, rate 1/s[, extras]) tuples naming whole curves (see
    ``FlowCurves.split_heldout``); empty = fit and score on all curves (``heldout`` scores are
    then None and ``train`` equals ``all``). ``models``: names, or a dict name → constructor
    options (e.g. ``{"arrhenius": {"order": 6}}``). Returns::

        {"dataset", "protocol", "heldout": [[T, rate, ...], ...],
         "models": {name: {"train": scores, "heldout": scores | None, "all": scores}}}

    with scores ``{"mare_pct", "rmse_mpa", "r2"}`` (``constitutive.metrics``; a non-finite value,
    e.g. R² of a constant stress, is written as None so the dict stays valid JSON); with
    ``return_models`` also the fitted models, ``(result, {name: model})``.
    """
    if drop_zero_strain:
        curves = without_zero_strain(curves)
    specs = dict(models) if isinstance(models, dict) else {m: {} for m in models}
    heldout_conditions = [tuple(float(x) for x in c) for c in heldout_conditions]
    if heldout_conditions:
        train, held = curves.split_heldout(heldout_conditions)
        if train.n_curves == 0:
            raise NeumatInputError("the held-out conditions take every curve: nothing is left to fit")
        held_conds = [[float(x) for x in c] for c in held.conditions()]
    else:
        train, held, held_conds = curves, None, []
    result = {"dataset": dataset if dataset is not None else curves.source,
              "protocol": protocol if protocol is not None else ("heldout" if held_conds else "full"),
              "heldout": held_conds, "models": {}}
    def _scores(model, part):
        if part is None:
            return None
        return {k: (None if not np.isfinite(v) else v) for k, v in scores(model.predict_curves(part), part.stress).items()}

    fitted = {}
    for name, opts in specs.items():
        model = make_model(name, **(opts or {})).fit(train)
        fitted[name] = model
        entry = {"train": _scores(model, train), "heldout": _scores(model, held), "all": _scores(model, curves)}
        result["models"][name] = entry
    return (result, fitted) if return_models else result
