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
* **Derivatives** by one reverse sweep (the flow stress is a scalar per point): the forward pass
  keeps each activation's derivative f'(h) (N, width) (a linear layer forward is one ``Gemm``,
  h Wᵀ + b); going back from the output, a linear
  layer is one ``MatMul`` with its weight matrix (gradient (N, out) @ W (out, in)), an activation
  one ``Mul`` with f'(h), a residual ``add`` passes its gradient to the matching ``push``; the
  input columns' derivative factors then give ∂σ/∂x_used (N, F). Twice the cost of the values,
  whatever F (forward-mode tangents cost F + 1 times).
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
from constitutive.jsonio import write_atomic

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
    inside = one
    if net.box_policy == "clamp":
        xu = g.op("Min", xu, chi)
        inside = g.op("Where", g.op("Greater", INPUT_NAME, chi), zero, one)
    mask = g.op("Where", g.op("Less", INPUT_NAME, clo), zero, inside)
    return xu, mask


def _columns(g: _Builder, net: FlowNet, xu: str) -> tuple[str, list[dict], list[str]]:
    """z (N, C); per column j the derivative factors {feature k: dz_j/dx_used_k}, each an (N, 1)
    tensor name or a float (a constant derivative); the F columns of x_used."""
    f = net.n_features
    cols = [g.col(xu, k) for k in range(f)]
    zs, derivs = [], []
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
        scale, shift = float(c["scale"]), float(c["shift"])
        if p:
            gam, beta = float(p["gamma"]), float(p["beta"])
            base = g.add(u, g.const(gam))
            v = g.div(g.sub(g.op("Pow", base, g.const(beta)), g.const(1.0)), g.const(beta))
            dv = g.op("Pow", base, g.const(beta - 1.0))
        else:
            v, dv = u, None
        zc = v if shift == 0.0 else g.sub(v, g.const(shift))      # x − 0 and x / 1 are exact: skipped
        zs.append(zc if scale == 1.0 else g.div(zc, g.const(scale)))
        dz = {}
        for k, d in du.items():
            fac = dv if d is None else (d if dv is None else g.mul(d, dv))
            dz[k] = (1.0 / scale) if fac is None else (fac if scale == 1.0 else g.div(fac, g.const(scale)))
        derivs.append(dz)
    return g.concat(zs, axis=1), derivs, cols


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


def _network(g: _Builder, net: FlowNet, z: str, zero_vec: str,
             out_scale: float = 1.0) -> tuple[str, str, int]:
    """h after ``net.ops`` (``out_scale`` folded into the last linear op) and, by one reverse
    sweep, ∂h[:, 0]/∂z (N, C): the values of the activations' derivatives are kept from the
    forward pass; going back, a linear op is one ``MatMul`` with W (g (N, out) @ W (out, in)), an
    activation one ``Mul``, a residual ``add`` hands its gradient to the matching ``push``."""
    h, width = z, len(net.columns)
    tape = []                                       # (kind, data) of the forward pass
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
            h = g.op("Gemm", h, g.const(np.ascontiguousarray(W.T), f"W{i}T"), g.const(b, f"b{i}"))
            tape.append(("linear", (i, W)))
            width = W.shape[0]
        elif kind == "act":
            h, d = _activation(g, op["fn"], h)
            tape.append(("act", d))
        elif kind == "push":
            stack.append((h, width))
            tape.append(("push", None))
        elif kind == "add":
            hs, ws = stack.pop()
            if ws != width:
                raise ValueError(f"op {i}: residual add of width {ws} onto width {width}")
            tape.append(("add", None))
            h = g.add(h, hs)
        else:
            raise ValueError(f"unknown op '{kind}'")
    if width != 1:
        raise ValueError(f"the network ends with width {width}; the flow stress needs width 1")
    # reverse sweep: gr is ∂h_out/∂(current tensor), (N, width) — or None: the identity (width 1)
    gr, skips = None, []
    for kind, data in reversed(tape):
        if kind == "linear":
            i, W = data
            if gr is None:                              # first step back: the row of W, on N rows
                gr = g.add(zero_vec, g.const(W[0], f"W{i}row"))
            else:
                gr = g.op("MatMul", gr, g.const(np.ascontiguousarray(W), f"W{i}"))
        elif kind == "act":
            gr = g.mul(_ones_if_none(g, gr, zero_vec), data)
        elif kind == "add":
            skips.append(gr)
        elif kind == "push":
            s = skips.pop()
            gr = s if gr is None else (gr if s is None else g.add(gr, s))
    return h, _ones_if_none(g, gr, zero_vec), width


def _chain_columns(g: _Builder, gz: str, derivs: list[dict], f: int, zero_vec: str) -> str:
    """∂h/∂x_used (N, F) = Σ_j ∂h/∂z_j · ∂z_j/∂x_k, from the reverse sweep's ∂h/∂z (N, C)."""
    ncol = len(derivs)
    gcol = [gz if ncol == 1 else g.col(gz, j) for j in range(ncol)]
    parts = []
    for k in range(f):
        terms = []
        for j, dz in enumerate(derivs):
            if k in dz:
                fac = dz[k]
                if isinstance(fac, float):
                    terms.append(gcol[j] if fac == 1.0 else g.mul(gcol[j], g.const(fac)))
                else:
                    terms.append(g.mul(gcol[j], fac))
        if not terms:
            parts.append(zero_vec)
            continue
        acc = terms[0]
        for t in terms[1:]:
            acc = g.add(acc, t)
        parts.append(acc)
    return g.concat(parts, axis=1)


def _ones_if_none(g: _Builder, gr: str | None, zero_vec: str) -> str:
    return g.add(zero_vec, g.const(1.0)) if gr is None else gr


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
    z, derivs, cols = _columns(g, net, xu)
    zero_vec = g.mul(cols[0], g.const(0.0))                                          # (N, 1) zeros
    o = net.output
    # the output scale is folded into the last linear op when there is one: onnxruntime's
    # extended optimisations would otherwise fuse "MatMul then Mul by a scalar" into a
    # FusedMatMul whose alpha is float32 (1e-8 relative error)
    fold = bool(net.ops) and net.ops[-1]["op"] == "linear"
    h, gz, width = _network(g, net, z, zero_vec, float(o["scale"]) if fold else 1.0)
    dy = _chain_columns(g, gz, derivs, f, zero_vec)                                  # (N, F)
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
    cov = net.data_coverage                     # checked here; null for a model without conditions
    values["coverage"] = None if cov is None else cov.to_dict()
    onnx.helper.set_model_props(model, {METADATA_KEYS[k]: json.dumps(v, default=str) for k, v in values.items()})
    onnx.checker.check_model(model, full_check=True)
    return model


def export_onnx(net: FlowNet, path: str | Path, opset: int = DEFAULT_OPSET, source: str | None = None) -> Path:
    """Write ``net`` as ONNX to ``path`` (parent folders created); returns the path."""
    path = Path(path)
    model = build_model(net, opset=opset, source=source)
    write_atomic(path, model.SerializeToString())        # temporary file, then rename
    return path

