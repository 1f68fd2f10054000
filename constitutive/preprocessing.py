"""Input and output transforms of the network, fitted on the training curves.

Every transform that an exported model needs is written as FlowNet ``columns`` / ``output``
(see ``constitutive.flownet``), so that training, the float64 copy and the exported model use
one definition. The physical inputs are x = [strain, strain rate (1/s), temperature (°C),
extras...] (``FlowCurves.feature_names``).

Input columns (``FeatureSpec``):

- strain: identity; temperature: identity (°C) or ``inv_kelvin`` (1/K);
- strain rate: ``log`` (ln ε̇, default), ``power`` (the method's power transform of ε̇ itself)
  or ``identity``;
- extras (e.g. direction): identity;
- engineered columns on request: ``inv_t`` (1/T), ``ln_rate`` (ln ε̇), ``ln_z`` (ln Z =
  ln ε̇ + Q/(R T), Q in J/mol), ``strain_root`` (a second strain column, power-transformed with
  β = 0.25 and a small γ = 0.01 × max strain, which resolves the steep start of a flow curve).

Power transform (method.md): v = ((u + γ)^β − 1)/β per column that asks for it, β a
hyper-parameter (default 0.5), γ = max_i |u_i| of the training column (the method's γ = max x_i
for a positive feature), raised where needed so that u + γ ≥ 0.1·range(u) over the training data.

Normalisation: ``minmax`` z = (v − min)/(max − min) (default), ``mean`` z = (v − mean)/(max − min),
``zscore`` z = (v − mean)/std, ``rank`` z = empirical CDF of v (piecewise linear between the
training values). ``rank`` cannot be written as FlowNet columns: a model trained with it is
usable in Python only and cannot be exported (``InputTransform.exportable`` is False).

Output (``OutputTransform``): ``log`` (the network learns t = (ln σ − shift)/scale; FlowNet output
kind ``exp``), ``affine`` (t = (σ − shift)/scale). Hybrid models (network = correction to the
Arrhenius stress σ_A): ``multiplicative`` σ = σ_A (1 + y), ``additive`` σ = σ_A + y, with
y = scale·h + shift (shift 0, so that a zero network output is σ_A exactly).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from types import SimpleNamespace

import numpy as np

from .errors import NeumatInputError
from .flownet import FlowNet

NORMALISATIONS = ("minmax", "mean", "zscore", "rank")
RATE_KINDS = ("log", "power", "identity")
TEMPERATURE_KINDS = ("identity", "inv_kelvin")
ENGINEERED = ("inv_t", "ln_rate", "ln_z", "strain_root")
STRAIN_ROOT = {"beta": 0.25, "gamma_frac": 0.01}   # strain_root: ((ε + γ)^β − 1)/β, γ = 0.01 × max training strain
OUTPUT_KINDS = ("log", "affine")
HYBRID_MODES = ("none", "multiplicative", "additive")
DEFAULT_Q = 300e3          # J/mol, activation energy for ln Z when no Arrhenius fit gives one


@dataclass
class FeatureSpec:
    rate: str = "log"
    temperature: str = "identity"
    engineered: list[str] = field(default_factory=list)
    power: dict[str, float] = field(default_factory=dict)    # column name -> β
    normalisation: str = "minmax"
    q_ln_z: float | None = None                               # J/mol; None: Arrhenius Q or DEFAULT_Q

    def validate(self) -> None:
        for name, val, allowed in (("rate", self.rate, RATE_KINDS),
                                   ("temperature", self.temperature, TEMPERATURE_KINDS),
                                   ("normalisation", self.normalisation, NORMALISATIONS)):
            if val not in allowed:
                raise NeumatInputError(f"features.{name} = '{val}' unknown; allowed: {', '.join(allowed)}")
        for e in self.engineered:
            if e not in ENGINEERED:
                raise NeumatInputError(f"engineered column '{e}' unknown; allowed: {', '.join(ENGINEERED)}")
        for k, b in self.power.items():
            if not (0 < float(b) <= 3):
                raise NeumatInputError(f"power β for '{k}' = {b} outside (0, 3]")


def column_values(columns: list[dict], x: np.ndarray) -> np.ndarray:
    """z = columns(x) with exactly the FlowNet definition (one place for the convention)."""
    return FlowNet._columns(SimpleNamespace(columns=columns), np.asarray(x, dtype=float))[0]


def _power_gamma(u: np.ndarray) -> float:
    rng = float(u.max() - u.min())
    g = float(np.max(np.abs(u)))
    margin = 0.1 * rng if rng > 0 else 0.1 * max(g, 1.0)
    if u.min() + g < margin:
        g = margin - float(u.min())
    return g


class InputTransform:
    """Maps physical inputs x (n, F) to normalised network inputs z (n, C)."""

    def __init__(self, feature_names: list[str], spec: FeatureSpec | None = None,
                 columns: list[dict] | None = None, rank_knots: dict | None = None):
        self.feature_names = list(feature_names)
        self.spec = spec or FeatureSpec()
        self.spec.validate()
        self.columns = columns
        self.rank_knots = rank_knots or {}

    @property
    def exportable(self) -> bool:
        return self.spec.normalisation != "rank"

    @property
    def names(self) -> list[str]:
        return [c["name"] for c in self.columns]

    def _raw_columns(self, q: float) -> list[dict]:
        s = self.spec
        cols = [dict(name="strain", kind="identity", feature=0)]
        if s.rate == "log":
            cols.append(dict(name="strain_rate", kind="log", feature=1))
        else:
            cols.append(dict(name="strain_rate", kind="identity", feature=1))
        cols.append(dict(name="temperature", kind="inv_kelvin" if s.temperature == "inv_kelvin" else "identity",
                         feature=2))
        for k, name in enumerate(self.feature_names[3:]):
            cols.append(dict(name=name, kind="identity", feature=3 + k))
        for e in s.engineered:
            if e == "inv_t":
                cols.append(dict(name="inv_t", kind="inv_kelvin", feature=2))
            elif e == "ln_rate":
                cols.append(dict(name="ln_rate", kind="log", feature=1))
            elif e == "ln_z":
                cols.append(dict(name="ln_z", kind="ln_z", rate=1, temp=2, Q=float(q)))
            elif e == "strain_root":
                cols.append(dict(name="strain_root", kind="identity", feature=0))
        power = dict(s.power)
        if s.rate == "power":
            power.setdefault("strain_rate", 0.5)
        if "strain_root" in s.engineered:
            power.setdefault("strain_root", STRAIN_ROOT["beta"])
        for c in cols:
            c["power"] = {"beta": float(power[c["name"]])} if c["name"] in power else None
            c["shift"], c["scale"] = 0.0, 1.0
        return cols

    def fit(self, x: np.ndarray, q: float | None = None) -> "InputTransform":
        x = np.asarray(x, dtype=float)
        q = self.spec.q_ln_z or q or DEFAULT_Q
        cols = self._raw_columns(q)
        # power transforms: γ from the unscaled column u
        for c in cols:
            if c["power"] is not None:
                bare = dict(c, power=None)
                u = column_values([bare], x)[:, 0]
                if c["name"] == "strain_root":    # a root of strain: resolves the steep start of a curve
                    c["power"]["gamma"] = STRAIN_ROOT["gamma_frac"] * max(float(u.max()), 1e-6)
                else:
                    c["power"]["gamma"] = _power_gamma(u)
        v = column_values(cols, x)
        norm = self.spec.normalisation
        self.rank_knots = {}
        for j, c in enumerate(cols):
            vj = v[:, j]
            lo, hi = float(vj.min()), float(vj.max())
            rng = hi - lo if hi > lo else 1.0
            if norm == "minmax":
                c["shift"], c["scale"] = lo, rng
            elif norm == "mean":
                c["shift"], c["scale"] = float(vj.mean()), rng
            elif norm == "zscore":
                sd = float(vj.std())
                c["shift"], c["scale"] = float(vj.mean()), sd if sd > 0 else 1.0
            else:   # rank: unscaled columns, then the empirical CDF
                knots = np.unique(vj)
                qs = np.linspace(0.0, 1.0, len(knots)) if len(knots) > 1 else np.zeros(1)
                self.rank_knots[c["name"]] = (knots.tolist(), qs.tolist())
        self.columns = cols
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        z = column_values(self.columns, x)
        if self.spec.normalisation == "rank":
            for j, c in enumerate(self.columns):
                kx, kq = self.rank_knots[c["name"]]
                # beyond the training range: continue with the slope of the outer segments
                z[:, j] = _interp_extrapolate(z[:, j], np.asarray(kx), np.asarray(kq))
        return z

    def flownet_columns(self) -> list[dict]:
        if not self.exportable:
            raise NeumatInputError("rank normalisation is train-only: it cannot be written into an "
                                   "exportable model (choose minmax, mean or zscore)")
        out = []
        for c in self.columns:
            d = {k: v for k, v in c.items() if k != "name"}
            out.append(d)
        return out

    def to_dict(self) -> dict:
        return {"feature_names": self.feature_names, "spec": asdict(self.spec), "columns": self.columns,
                "rank_knots": self.rank_knots}

    @classmethod
    def from_dict(cls, d: dict) -> "InputTransform":
        return cls(d["feature_names"], FeatureSpec(**d["spec"]), d["columns"], d.get("rank_knots"))


def _interp_extrapolate(v, kx, kq):
    if len(kx) == 1:
        return np.zeros_like(v)
    out = np.interp(v, kx, kq)
    lo, hi = v < kx[0], v > kx[-1]
    out[lo] = kq[0] + (v[lo] - kx[0]) * (kq[1] - kq[0]) / (kx[1] - kx[0])
    out[hi] = kq[-1] + (v[hi] - kx[-1]) * (kq[-1] - kq[-2]) / (kx[-1] - kx[-2])
    return out


class OutputTransform:
    """Stress ↔ network target t. ``kind`` log|affine; ``hybrid`` none|multiplicative|additive."""

    def __init__(self, kind: str = "log", hybrid: str = "none", shift: float = 0.0, scale: float = 1.0):
        if kind not in OUTPUT_KINDS:
            raise NeumatInputError(f"output '{kind}' unknown; allowed: {', '.join(OUTPUT_KINDS)}")
        if hybrid not in HYBRID_MODES:
            raise NeumatInputError(f"hybrid '{hybrid}' unknown; allowed: {', '.join(HYBRID_MODES)}")
        self.kind, self.hybrid, self.shift, self.scale = kind, hybrid, float(shift), float(scale)

    def _raw(self, stress, sigma_a):
        stress = np.asarray(stress, dtype=float)
        if self.hybrid == "multiplicative":
            return stress / sigma_a - 1.0
        if self.hybrid == "additive":
            return stress - sigma_a
        return np.log(stress) if self.kind == "log" else stress

    def fit(self, stress, sigma_a=None) -> "OutputTransform":
        r = self._raw(stress, sigma_a)
        if self.hybrid != "none":
            self.shift, self.scale = 0.0, max(float(np.sqrt(np.mean(r**2))), 1e-3 if self.hybrid ==
                                              "multiplicative" else 0.1)
        else:
            sd = float(r.std())
            self.shift, self.scale = float(r.mean()), sd if sd > 0 else 1.0
        return self

    def target(self, stress, sigma_a=None) -> np.ndarray:
        return (self._raw(stress, sigma_a) - self.shift) / self.scale

    def inverse(self, t, sigma_a=None) -> np.ndarray:
        y = self.scale * np.asarray(t, dtype=float) + self.shift
        if self.hybrid == "multiplicative":
            return sigma_a * (1.0 + y)
        if self.hybrid == "additive":
            return sigma_a + y
        return np.exp(y) if self.kind == "log" else y

    def flownet_output(self) -> dict:
        kind = "exp" if (self.hybrid == "none" and self.kind == "log") else "affine"
        return {"kind": kind, "scale": self.scale, "shift": self.shift}

    def to_dict(self) -> dict:
        return {"kind": self.kind, "hybrid": self.hybrid, "shift": self.shift, "scale": self.scale}

    @classmethod
    def from_dict(cls, d: dict) -> "OutputTransform":
        return cls(**d)
