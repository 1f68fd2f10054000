"""The trained flow-stress model as plain data, evaluated in float64 numpy with its input gradient.

This is the contract between training (which writes ``model.json``), the ONNX exporter (which
turns the same description into a graph) and every test that checks them. No torch here.

σ(x), x = [strain, strain rate (1/s), temperature (°C), extras...] in physical units:

1. *Columns* ``u_j = g_j(x)`` — ``kind`` one of
   ``identity`` (u = x_k), ``log`` (u = ln x_k), ``inv_kelvin`` (u = 1/(x_k + 273.15)),
   ``ln_z`` (u = ln x_rate + Q/(R (x_temp + 273.15)), Zener–Hollomon).
2. *Power transform* (optional, method.md): v = ((u + γ)^β − 1)/β.
3. *Affine scaling*: z = (v − shift) / scale  (min–max, mean or z-score normalisation).
4. *Network* ops on the row vector h (start h = z): ``linear`` (h ← h Wᵀ + b, W of shape
   (out, in)), ``act`` (fn: elu, tanh, sigmoid, relu, leaky_relu, softplus), ``push`` (save a
   copy of h on a stack), ``add`` (h ← h + popped copy).
5. *Output*: y = out_scale · h + out_shift; ``affine``: σ_net = y, ``exp``: σ_net = exp(y).
6. *Base* (optional hybrid): σ = σ_A(x) + σ_net (``additive``) or σ_A(x) · (1 + σ_net)
   (``multiplicative``), σ_A the strain-compensated Arrhenius law of ``constitutive.laws``.

Before all of it, the *input policy*: strain rate below ``rate_floor`` is raised to the floor;
with ``box_policy == "clamp"`` every input is clamped to the training box ``box_lo … box_hi``
(the derivative with respect to a clamped input is then 0).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .coverage import Coverage, outside_data
from .errors import NeumatInputError
from .jsonio import write_atomic
from .laws import arrhenius_stress

GAS_CONSTANT = 8.314      # J/(mol K)
KELVIN = 273.15
MODEL_FORMAT = "neumat-flownet/1"
ACTIVATIONS = ("elu", "tanh", "sigmoid", "relu", "leaky_relu", "softplus")
LEAKY_SLOPE = 0.01


def activation(fn: str, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(f(h), f'(h)) for the supported activations (ELU with α = 1)."""
    if fn == "elu":
        e = np.exp(np.minimum(h, 0.0))
        return np.where(h > 0, h, e - 1.0), np.where(h > 0, 1.0, e)
    if fn == "tanh":
        t = np.tanh(h)
        return t, 1.0 - t * t
    if fn == "sigmoid":
        s = 0.5 * (1.0 + np.tanh(0.5 * h))
        return s, s * (1.0 - s)
    if fn == "relu":
        return np.maximum(h, 0.0), (h > 0).astype(float)
    if fn == "leaky_relu":
        return np.where(h > 0, h, LEAKY_SLOPE * h), np.where(h > 0, 1.0, LEAKY_SLOPE)
    if fn == "softplus":
        s = 0.5 * (1.0 + np.tanh(0.5 * h))
        return np.logaddexp(0.0, h), s
    raise ValueError(f"unknown activation '{fn}'; supported: {', '.join(ACTIVATIONS)}")


@dataclass
class FlowNet:
    feature_names: list[str]                 # physical inputs, fixed order
    feature_units: list[str]
    columns: list[dict]                      # {"kind", "feature" | "rate","temp","Q", "power": {"gamma","beta"} | None, "shift", "scale"}
    ops: list[dict]                          # {"op": "linear", "W", "b"} | {"op": "act", "fn"} | {"op": "push"} | {"op": "add"}
    output: dict                             # {"kind": "affine"|"exp", "scale", "shift"}
    box_lo: list[float]
    box_hi: list[float]
    rate_floor: float = 1e-6
    box_policy: str = "clamp"                # or "extrapolate"
    base: dict | None = None                 # {"mode": "additive"|"multiplicative", "arrhenius": params}
    meta: dict = field(default_factory=dict)  # spec, data hash, dataset, version, ...
    coverage: dict | None = None             # the measured conditions (constitutive.coverage.Coverage.to_dict)

    # ---- I/O ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["format"] = MODEL_FORMAT
        if d["coverage"] is None:
            del d["coverage"]             # older models: the same content (and hash) as before
        for op in d["ops"]:
            for k in ("W", "b"):
                if k in op:
                    op[k] = np.asarray(op[k], dtype=float).tolist()
        return d

    def save(self, path: str | Path) -> None:
        """JSON at ``path``, written atomically (temporary file, then rename)."""
        write_atomic(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def from_dict(cls, d: dict) -> "FlowNet":
        d = dict(d)
        fmt = d.pop("format", MODEL_FORMAT)
        if fmt != MODEL_FORMAT:
            raise ValueError(f"model format '{fmt}' is not {MODEL_FORMAT}")
        d["ops"] = [{k: (np.asarray(v, dtype=float) if k in ("W", "b") else v) for k, v in op.items()}
                    for op in d["ops"]]
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> "FlowNet":
        p = Path(path)
        if p.is_dir():
            p = p / "model.json"
        if not p.is_file():
            raise NeumatInputError(f"model file {p} not found (expected a run folder with model.json)")
        try:
            return cls.from_dict(json.loads(p.read_text()))
        except (ValueError, TypeError, KeyError) as exc:
            raise NeumatInputError(f"{p}: not a neumat model ({exc})") from None

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def data_coverage(self) -> Coverage | None:
        """The measured conditions (``coverage``, or ``meta["coverage"]`` as training records it);
        None for a model without them (then the training box is the fallback)."""
        d = self.coverage if self.coverage is not None else self.meta.get("coverage")
        return None if d is None else Coverage.from_dict(d, self.n_features)

    # ---- evaluation -----------------------------------------------------------------------
    def apply_policy(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x after rate floor and box policy, d x_used / d x as a 0/1 mask)."""
        x = np.array(x, dtype=float, copy=True)
        mask = np.ones_like(x)
        low = x[:, 1] < self.rate_floor
        x[low, 1] = self.rate_floor
        mask[low, 1] = 0.0
        if self.box_policy == "clamp":
            lo, hi = np.asarray(self.box_lo), np.asarray(self.box_hi)
            out = (x < lo) | (x > hi)
            x = np.clip(x, lo, hi)
            mask[out] = 0.0
        return x, mask

    def out_of_box(self, x: np.ndarray) -> np.ndarray:
        """Boolean per row: the evaluation lies outside the data (``constitutive.coverage``: by
        distance from the measured conditions and strain beyond the curves' end; the training box,
        strain from 0 inside, for a model without coverage). The rate is raised to the floor first."""
        return outside_data(np.atleast_2d(np.asarray(x, dtype=float)), self.data_coverage,
                            self.box_lo, self.box_hi, self.rate_floor)

    def _columns(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """z (n, C) and dz/dx (n, C, F)."""
        n, f = x.shape
        z = np.empty((n, len(self.columns)))
        dz = np.zeros((n, len(self.columns), f))
        for j, c in enumerate(self.columns):
            kind = c["kind"]
            if kind == "identity":
                k = c["feature"]
                u, du = x[:, k], {k: np.ones(n)}
            elif kind == "log":
                k = c["feature"]
                u, du = np.log(x[:, k]), {k: 1.0 / x[:, k]}
            elif kind == "inv_kelvin":
                k = c["feature"]
                tk = x[:, k] + KELVIN
                u, du = 1.0 / tk, {k: -1.0 / tk**2}
            elif kind == "ln_z":
                kr, kt, q = c["rate"], c["temp"], c["Q"]
                tk = x[:, kt] + KELVIN
                u = np.log(x[:, kr]) + q / (GAS_CONSTANT * tk)
                du = {kr: 1.0 / x[:, kr], kt: -q / (GAS_CONSTANT * tk**2)}
            else:
                raise ValueError(f"unknown column kind '{kind}'")
            p = c.get("power")
            if p:
                g, b = p["gamma"], p["beta"]
                base = u + g
                v = (base**b - 1.0) / b
                dv = base ** (b - 1.0)
            else:
                v, dv = u, 1.0
            z[:, j] = (v - c["shift"]) / c["scale"]
            for k, d in du.items():
                dz[:, j, k] = d * dv / c["scale"]
        return z, dz

    def _net(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """y (n,) and dy/dz (n, C) by forward-mode propagation of the Jacobian."""
        n, c = z.shape
        h = z
        J = np.broadcast_to(np.eye(c), (n, c, c)).copy()    # dh/dz, (n, width, C)
        stack: list[tuple[np.ndarray, np.ndarray]] = []
        for op in self.ops:
            kind = op["op"]
            if kind == "linear":
                W, b = np.asarray(op["W"]), np.asarray(op["b"])
                h = h @ W.T + b
                J = np.einsum("ow,nwc->noc", W, J)
            elif kind == "act":
                h, d = activation(op["fn"], h)
                J = J * d[:, :, None]
            elif kind == "push":
                stack.append((h.copy(), J.copy()))
            elif kind == "add":
                hs, Js = stack.pop()
                h, J = h + hs, J + Js
            else:
                raise ValueError(f"unknown op '{kind}'")
        o = self.output
        y = o["scale"] * h[:, 0] + o["shift"]
        dy = o["scale"] * J[:, 0, :]
        if o["kind"] == "exp":
            e = np.exp(y)
            return e, e[:, None] * dy
        if o["kind"] != "affine":
            raise ValueError(f"unknown output kind '{o['kind']}'")
        return y, dy

    def evaluate(self, x: np.ndarray, policy: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """σ (n,) in MPa and dσ/dx (n, F) in MPa per unit of each input."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        if x.shape[1] != self.n_features:
            raise ValueError(f"x has {x.shape[1]} columns, the model takes {self.n_features}: "
                             f"{', '.join(self.feature_names)}")
        if policy:
            xu, mask = self.apply_policy(x)
        else:
            xu, mask = x, np.ones_like(x)
        z, dz = self._columns(xu)
        y, dy = self._net(z)
        grad = np.einsum("nc,ncf->nf", dy, dz)
        if self.base is not None:
            sa, dsa = arrhenius_stress(self.base["arrhenius"], xu[:, 0], xu[:, 1], xu[:, 2], grad=True)
            dsa_full = np.zeros_like(grad)
            dsa_full[:, :3] = dsa
            if self.base["mode"] == "additive":
                sigma, grad = sa + y, dsa_full + grad
            elif self.base["mode"] == "multiplicative":
                sigma, grad = sa * (1.0 + y), dsa_full * (1.0 + y)[:, None] + sa[:, None] * grad
            else:
                raise ValueError(f"unknown base mode '{self.base['mode']}'")
        else:
            sigma = y
        return sigma, grad * mask

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.evaluate(x)[0]
