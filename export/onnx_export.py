"""Export a :class:`constitutive.flownet.FlowNet` to an ONNX graph that returns the flow stress
*and* its input derivatives, both computed inside the graph, in float64.

The names, metadata keys and operator set of the file are the contract of
:mod:`export.contract` (which also reads and checks a file for every consumer). How this
exporter fills that contract:

* **Input** ``x``: float64, shape ``(N, F)``, physical units, columns in this order:
  equivalent plastic strain (–), strain rate (1/s), temperature (°C), then the extra features in
  ``FlowNet.feature_names`` order (their names/units are in the metadata).
* **Outputs** ``sigma``: float64 ``(N,)``, flow stress in MPa; ``dsigma_dx``: float64 ``(N, F)``,
  ∂σ/∂x_k in MPa per unit of input k (MPa, MPa·s, MPa/°C, …).
* **Input policy inside the graph** (identical to ``FlowNet.apply_policy``): a strain rate below
  ``rate_floor`` is evaluated at the floor (its derivative is then 0); with ``box_policy ==
  "clamp"`` every input is clamped to ``[box_lo, box_hi]`` and the derivative with respect to a
  clamped input is 0; with ``"extrapolate"`` only the rate floor applies.
* **Derivatives** by forward-mode propagation: the Jacobian of the hidden row with respect to
  the F inputs is carried as ONE 2-D tensor of shape ``(N·F, width)`` whose row ``n·F + k`` is
  ∂h[n, :]/∂x_k, so every linear layer is one 2-D ``MatMul`` for the values and one for the
  tangents; element-wise derivative factors are applied by reshaping the tangent to
  ``(N, F, width)`` and multiplying with the factor reshaped to ``(N, 1, width)``.
* **Operators**: only those in ``contract.EMITTED_OPS`` (all in the default ONNX domain, opset
  ``contract.DEFAULT_OPSET`` or later); constants are graph initializers (no ``Constant`` nodes).
  Scalars are 0-d initializers; ``Slice`` takes int64 initializers ``starts, ends, axes``;
  ``Reshape`` takes an int64 initializer shape containing −1 for the batch dimension.
  ELU is written as ``Where(h > 0, h, Exp(Min(h, 0)) − 1)``, softplus as
  ``Max(h, 0) + Log(1 + Exp(Min(h, −h)))``, asinh (hybrid base) as ``Log(x + Sqrt(x² + 1))``
  for x >= 1e-3 and its 3-term series below.
* **Metadata** (``model.metadata_props``): every value is a JSON string; the keys are the
  values of ``contract.METADATA_KEYS`` (e.g. ``neumat.feature_names`` → ``["strain", ...]``).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from constitutive.flownet import GAS_CONSTANT, KELVIN, LEAKY_SLOPE, MODEL_FORMAT, FlowNet

from .contract import (DEFAULT_OPSET, EMITTED_OPS, INPUT_NAME, METADATA_KEYS, ONNX_FORMAT, OUTPUT_GRAD,
                       OUTPUT_SIGMA, STRESS_UNIT)

_BIG = float(np.finfo(np.float64).max)
_ASINH_SERIES_BELOW = 1e-3


def model_hash(net: FlowNet) -> str:
    """sha256 of the model's canonical JSON (independent of file formatting)."""
    return hashlib.sha256(json.dumps(net.to_dict(), sort_keys=True).encode()).hexdigest()


class _Builder:
    """Tiny helper that appends nodes and initializers with unique names."""

    def __init__(self):
        self.nodes: list = []
        self.inits: list = []
        self._n = 0
        self._scalars: dict[float, str] = {}

    def _name(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def const(self, value, base: str = "c") -> str:
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim == 0:
            key = float(arr)
            if key in self._scalars:
                return self._scalars[key]
        name = self._name(base)
        self.inits.append(numpy_helper.from_array(arr, name))
        if arr.ndim == 0:
            self._scalars[float(arr)] = name
        return name

    def ints(self, values, base: str = "i") -> str:
        name = self._name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        assert op_type in EMITTED_OPS, op_type
        out = out or self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    # shorthands
    def add(self, a, b): return self.op("Add", a, b)
    def sub(self, a, b): return self.op("Sub", a, b)
    def mul(self, a, b): return self.op("Mul", a, b)
    def div(self, a, b): return self.op("Div", a, b)

    def col(self, x: str, k: int) -> str:
        """x[:, k:k+1]"""
        return self.op("Slice", x, self.ints([k]), self.ints([k + 1]), self.ints([1]))

    def reshape(self, x: str, shape) -> str:
        return self.op("Reshape", x, self.ints(shape))

    def concat(self, parts: list[str], axis: int) -> str:
        return parts[0] if len(parts) == 1 else self.op("Concat", *parts, axis=axis)


def _policy(g: _Builder, net: FlowNet) -> tuple[str, str]:
    """x_used (N, F) and the 0/1 derivative mask (N, F)."""
    f = net.n_features
    lo = np.full(f, -_BIG)
    lo[1] = net.rate_floor
    hi = np.full(f, _BIG)
    if net.box_policy == "clamp":
        lo = np.maximum(lo, np.asarray(net.box_lo, dtype=float))
        hi = np.asarray(net.box_hi, dtype=float)
    elif net.box_policy != "extrapolate":
        raise ValueError(f"unknown box_policy '{net.box_policy}' (clamp or extrapolate)")
    one, zero = g.const(1.0), g.const(0.0)
    clo, chi = g.const(lo, "box_lo"), g.const(hi, "box_hi")
    xu = g.op("Max", INPUT_NAME, clo)
    mask = g.op("Where", g.op("Less", INPUT_NAME, clo), zero, one)
    if net.box_policy == "clamp":
        xu = g.op("Min", xu, chi)
        mask = g.mul(mask, g.op("Where", g.op("Greater", INPUT_NAME, chi), zero, one))
    return xu, mask


def _columns(g: _Builder, net: FlowNet, xu: str) -> tuple[str, str]:
    """z (N, C) and the initial tangent dz/dx_used stacked as (N·F, C)."""
    f, ncol = net.n_features, len(net.columns)
    cols = [g.col(xu, k) for k in range(f)]
    zero_vec = g.mul(cols[0], g.const(0.0))           # (N, 1) zeros
    zs, derivs = [], []                                # derivs[j] = {feature: (N,1) dz_j/dx_k}
    for c in net.columns:
        kind = c["kind"]
        if kind == "identity":
            k = c["feature"]
            u, du = cols[k], {k: None}                 # None: derivative 1
        elif kind == "log":
            k = c["feature"]
            u, du = g.op("Log", cols[k]), {k: g.div(g.const(1.0), cols[k])}
        elif kind == "inv_kelvin":
            k = c["feature"]
            tk = g.add(cols[k], g.const(KELVIN))
            u = g.div(g.const(1.0), tk)
            du = {k: g.op("Neg", g.div(g.const(1.0), g.mul(tk, tk)))}
        elif kind == "ln_z":
            kr, kt, q = c["rate"], c["temp"], float(c["Q"])
            tk = g.add(cols[kt], g.const(KELVIN))
            u = g.add(g.op("Log", cols[kr]), g.div(g.const(q / GAS_CONSTANT), tk))
            du = {kr: g.div(g.const(1.0), cols[kr]),
                  kt: g.op("Neg", g.div(g.const(q / GAS_CONSTANT), g.mul(tk, tk)))}
        else:
            raise ValueError(f"unknown column kind '{kind}'")
        p = c.get("power")
        scale = float(c["scale"])
        if p:
            gam, beta = float(p["gamma"]), float(p["beta"])
            base = g.add(u, g.const(gam))
            v = g.div(g.sub(g.op("Pow", base, g.const(beta)), g.const(1.0)), g.const(beta))
            dv = g.op("Pow", base, g.const(beta - 1.0))
        else:
            v, dv = u, None
        zs.append(g.div(g.sub(v, g.const(float(c["shift"]))), g.const(scale)))
        dz = {}
        for k, d in du.items():
            fac = dv if d is None else (d if dv is None else g.mul(d, dv))
            if fac is None:                            # constant derivative 1/scale
                dz[k] = g.add(zero_vec, g.const(1.0 / scale))
            else:
                dz[k] = g.div(fac, g.const(scale))
        derivs.append(dz)
    z = g.concat(zs, axis=1)
    parts = [derivs[j].get(k, zero_vec) for k in range(f) for j in range(ncol)]
    tangent = g.reshape(g.concat(parts, axis=1), [-1, ncol])   # (N, F·C) → (N·F, C)
    return z, tangent


def _activation(g: _Builder, fn: str, h: str) -> tuple[str, str]:
    """(f(h), f'(h)), element-wise."""
    zero, one, half = g.const(0.0), g.const(1.0), g.const(0.5)
    pos = g.op("Greater", h, zero)
    if fn == "elu":
        e = g.op("Exp", g.op("Min", h, zero))
        return g.op("Where", pos, h, g.sub(e, one)), g.op("Where", pos, one, e)
    if fn == "tanh":
        t = g.op("Tanh", h)
        return t, g.sub(one, g.mul(t, t))
    if fn == "sigmoid":
        s = g.mul(half, g.add(one, g.op("Tanh", g.mul(half, h))))
        return s, g.mul(s, g.sub(one, s))
    if fn == "relu":
        return g.op("Max", h, zero), g.op("Where", pos, one, zero)
    if fn == "leaky_relu":
        slope = g.const(LEAKY_SLOPE)
        return g.op("Where", pos, h, g.mul(slope, h)), g.op("Where", pos, one, slope)
    if fn == "softplus":
        s = g.mul(half, g.add(one, g.op("Tanh", g.mul(half, h))))
        tail = g.op("Log", g.add(one, g.op("Exp", g.op("Min", h, g.op("Neg", h)))))
        return g.add(g.op("Max", h, zero), tail), s
    raise ValueError(f"unknown activation '{fn}'")


def _network(g: _Builder, net: FlowNet, z: str, tangent: str,
             out_scale: float = 1.0) -> tuple[str, str, int]:
    """h and its tangent after ``net.ops``; ``out_scale`` is folded into the last linear op."""
    f = net.n_features
    h, t, width = z, tangent, len(net.columns)
    stack = []
    for i, op in enumerate(net.ops):
        kind = op["op"]
        if kind == "linear":
            W = np.asarray(op["W"], dtype=float)
            b = np.asarray(op["b"], dtype=float)
            if i == len(net.ops) - 1:
                W, b = W * out_scale, b * out_scale
            if W.ndim != 2 or W.shape[1] != width or b.shape != (W.shape[0],):
                raise ValueError(f"op {i}: W {W.shape} / b {b.shape} do not fit width {width}")
            wt = g.const(np.ascontiguousarray(W.T), f"W{i}T")
            h = g.add(g.op("MatMul", h, wt), g.const(b, f"b{i}"))
            t = g.op("MatMul", t, wt)
            width = W.shape[0]
        elif kind == "act":
            h, d = _activation(g, op["fn"], h)
            t3 = g.reshape(t, [-1, f, width])
            t = g.reshape(g.mul(t3, g.reshape(d, [-1, 1, width])), [-1, width])
        elif kind == "push":
            stack.append((h, t, width))
        elif kind == "add":
            hs, ts, ws = stack.pop()
            if ws != width:
                raise ValueError(f"op {i}: residual add of width {ws} onto width {width}")
            h, t = g.add(h, hs), g.add(t, ts)
        else:
            raise ValueError(f"unknown op '{kind}'")
    return h, t, width


def _poly(g: _Builder, coeffs, e: str) -> tuple[str, str]:
    """Polynomial (lowest order first) and its derivative by Horner, (N, 1)."""
    c = [float(v) for v in np.atleast_1d(np.asarray(coeffs, dtype=float))]
    zero_like = g.mul(e, g.const(0.0))
    val = g.add(zero_like, g.const(c[-1]))
    for a in reversed(c[:-1]):
        val = g.add(g.mul(val, e), g.const(a))
    dc = [k * c[k] for k in range(1, len(c))]
    if not dc:
        return val, zero_like
    dval = g.add(zero_like, g.const(dc[-1]))
    for a in reversed(dc[:-1]):
        dval = g.add(g.mul(dval, e), g.const(a))
    return val, dval


def _arrhenius(g: _Builder, net: FlowNet, xu: str) -> tuple[str, str]:
    """σ_A (N, 1) and ∂σ_A/∂x_used (N, F) of the strain-compensated Arrhenius law."""
    prm = net.base["arrhenius"]
    strain, rate, temp = g.col(xu, 0), g.col(xu, 1), g.col(xu, 2)
    zero, one = g.const(0.0), g.const(1.0)
    lo, hi = float(prm.get("strain_min", -np.inf)), float(prm.get("strain_max", np.inf))
    e, inside = strain, None
    if np.isfinite(lo):
        e = g.op("Max", e, g.const(lo))
        inside = g.op("Where", g.op("Less", strain, g.const(lo)), zero, one)
    if np.isfinite(hi):
        e = g.op("Min", e, g.const(hi))
        out_hi = g.op("Where", g.op("Greater", strain, g.const(hi)), zero, one)
        inside = out_hi if inside is None else g.mul(inside, out_hi)
    alpha, da = _poly(g, prm["alpha"], e)
    n, dn = _poly(g, prm["n"], e)
    q, dq = _poly(g, prm["Q"], e)
    lna, dlna = _poly(g, prm["lnA"], e)
    tk = g.add(temp, g.const(KELVIN))
    rtk = g.mul(g.const(GAS_CONSTANT), tk)
    lnx = g.div(g.sub(g.add(g.op("Log", rate), g.div(q, rtk)), lna), n)
    x = g.op("Exp", lnx)
    # asinh(x), x > 0: log form, series below 1e-3 (relative error < 1e-19 there)
    x2 = g.mul(x, x)
    big = g.op("Log", g.add(x, g.op("Sqrt", g.add(x2, one))))
    series = g.mul(x, g.add(one, g.mul(x2, g.add(g.const(-1.0 / 6.0), g.mul(x2, g.const(3.0 / 40.0))))))
    asinh = g.op("Where", g.op("Less", x, g.const(_ASINH_SERIES_BELOW)), series, big)
    sigma = g.div(asinh, alpha)
    dsig_dlnx = g.div(one, g.mul(alpha, g.op("Sqrt", g.add(one, g.op("Exp", g.mul(g.const(-2.0), lnx))))))
    dlnx_de = g.div(g.sub(g.add(g.op("Neg", g.mul(lnx, dn)), g.div(dq, rtk)), dlna), n)
    d_strain = g.add(g.op("Neg", g.mul(g.div(sigma, alpha), da)), g.mul(dsig_dlnx, dlnx_de))
    if inside is not None:
        d_strain = g.mul(d_strain, inside)
    d_rate = g.div(dsig_dlnx, g.mul(n, rate))
    d_temp = g.mul(dsig_dlnx, g.op("Neg", g.div(q, g.mul(g.mul(rtk, tk), n))))
    parts = [d_strain, d_rate, d_temp] + [g.mul(strain, zero)] * (net.n_features - 3)
    return sigma, g.concat(parts, axis=1)


def build_model(net: FlowNet, opset: int = DEFAULT_OPSET, source: str | None = None) -> onnx.ModelProto:
    """The ONNX model for ``net`` (see the module docstring for its interface)."""
    if opset < DEFAULT_OPSET:
        raise ValueError(f"opset {opset} < {DEFAULT_OPSET}")
    f = net.n_features
    if f < 3 or len(net.box_lo) != f or len(net.box_hi) != f:
        raise ValueError(f"model has {f} features and box sizes {len(net.box_lo)}/{len(net.box_hi)}; "
                         "need >= 3 features (strain, strain rate, temperature) and one bound each")
    g = _Builder()
    xu, mask = _policy(g, net)
    z, tangent = _columns(g, net, xu)
    o = net.output
    # the output scale is folded into the last linear op when there is one: onnxruntime's
    # extended optimisations would otherwise fuse "MatMul then Mul by a scalar" into a
    # FusedMatMul whose alpha is float32 (1e-8 relative error)
    fold = bool(net.ops) and net.ops[-1]["op"] == "linear"
    h, t, width = _network(g, net, z, tangent, float(o["scale"]) if fold else 1.0)
    if width != 1:
        h, t = g.col(h, 0), g.col(t, 0)
    dy = g.reshape(t, [-1, f])                                                       # (N, F)
    if not fold:
        h = g.mul(h, g.const(float(o["scale"])))
        dy = g.mul(dy, g.const(float(o["scale"])))
    y = g.add(h, g.const(float(o["shift"])))                                         # (N, 1)
    if o["kind"] == "exp":
        y = g.op("Exp", y)
        dy = g.mul(dy, y)
    elif o["kind"] != "affine":
        raise ValueError(f"unknown output kind '{o['kind']}'")
    sigma, grad = y, dy
    if net.base is not None:
        sa, dsa = _arrhenius(g, net, xu)
        mode = net.base["mode"]
        if mode == "additive":
            sigma, grad = g.add(sa, y), g.add(dsa, dy)
        elif mode == "multiplicative":
            onep = g.add(g.const(1.0), y)
            sigma = g.mul(sa, onep)
            grad = g.add(g.mul(dsa, onep), g.mul(sa, dy))
        else:
            raise ValueError(f"unknown base mode '{mode}'")
    g.op("Reshape", sigma, g.ints([-1]), out=OUTPUT_SIGMA)
    g.op("Mul", grad, mask, out=OUTPUT_GRAD)

    used = {i for n in g.nodes for i in n.input}
    inits = [t for t in g.inits if t.name in used]          # drop constants no op ended up using
    graph = helper.make_graph(
        g.nodes, "neumat_flow_stress",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.DOUBLE, ["N", f])],
        [helper.make_tensor_value_info(OUTPUT_SIGMA, TensorProto.DOUBLE, ["N"]),
         helper.make_tensor_value_info(OUTPUT_GRAD, TensorProto.DOUBLE, ["N", f])],
        initializer=inits)
    model = helper.make_model(graph, producer_name="neumat", producer_version=ONNX_FORMAT,
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 9)      # readable by onnxruntime >= 1.17
    meta = net.meta or {}
    values = {
        "format": ONNX_FORMAT,
        "feature_names": list(net.feature_names),
        "feature_units": list(net.feature_units),
        "box_lo": [float(v) for v in net.box_lo],
        "box_hi": [float(v) for v in net.box_hi],
        "rate_floor": float(net.rate_floor),
        "box_policy": net.box_policy,
        "stress_unit": STRESS_UNIT,
        "model_format": MODEL_FORMAT,
        "model_version": meta.get("version"),
        "model_hash": model_hash(net),
        "data_hash": meta.get("data_hash"),
        "spec": meta.get("spec"),
        "source": source,
        "base": net.base["mode"] if net.base else None,
        "meta": meta,
    }
    onnx.helper.set_model_props(model, {METADATA_KEYS[k]: json.dumps(v, default=str) for k, v in values.items()})
    onnx.checker.check_model(model, full_check=True)
    return model


def export_onnx(net: FlowNet, path: str | Path, opset: int = DEFAULT_OPSET, source: str | None = None) -> Path:
    """Write ``net`` as ONNX to ``path`` (parent folders created); returns the path."""
    path = Path(path)
    model = build_model(net, opset=opset, source=source)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path

