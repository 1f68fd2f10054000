"""ONNX graph → Fortran 2008, one integration point at a time.

The translator reads the ONNX file alone (graph, initializers, ``metadata_props``; no torch, no
model JSON). Every node of the graph is evaluated once in numpy on a sample point with N = 1;
that gives the shape and type of every tensor and folds every node whose inputs are all
constant (shape arithmetic, weight transposes, ...). The remaining nodes — those that depend on
the input ``x`` — become straight-line Fortran:

* every dynamic tensor is a fixed-size local array ``tK(size)`` holding the tensor in row-major
  (C) order, which is also the memory order of the Fortran array with the dimensions reversed;
* constants used by dynamic nodes become ``parameter`` arrays (weights inlined), scalars literals;
* element-wise ops use array syntax with broadcasting resolved at translation time,
  MatMul/Gemm use the ``matmul`` intrinsic, data movement (Reshape, Slice, Gather, Concat,
  Transpose, ...) becomes slice assignments, reductions become ``sum``/``maxval``/``minval``.

Anything outside the supported operator set is refused with a :class:`NeumatInputError` that
names the operator and the node. The generated module has no mutable module state: only
``parameter`` constants and pure procedures.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path

import numpy as np

from constitutive.errors import NeumatInputError

# ----------------------------------------------------------------------------------------------
# numpy reference semantics of the supported operators (shape inference and constant folding)
# ----------------------------------------------------------------------------------------------

_ONNX_TO_NP = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64,
               9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softplus(x):
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


_UNARY = {
    "Abs": np.abs, "Neg": np.negative, "Exp": np.exp, "Log": np.log, "Sqrt": np.sqrt,
    "Reciprocal": lambda x: 1.0 / x, "Tanh": np.tanh, "Sigmoid": _sigmoid, "Softplus": _softplus,
    "Softsign": lambda x: x / (1.0 + np.abs(x)), "Sign": np.sign, "Sin": np.sin, "Cos": np.cos,
    "Sinh": np.sinh, "Cosh": np.cosh, "Asinh": np.arcsinh, "Floor": np.floor, "Ceil": np.ceil,
    "Relu": lambda x: np.maximum(x, 0.0), "Not": np.logical_not, "IsNaN": np.isnan,
}
_BINARY = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Pow": np.power,
    "Less": np.less, "Greater": np.greater, "LessOrEqual": np.less_equal,
    "GreaterOrEqual": np.greater_equal, "Equal": np.equal, "And": np.logical_and,
    "Or": np.logical_or, "Xor": np.logical_xor,
}
_VARIADIC = {"Max": np.maximum, "Min": np.minimum, "Sum": np.add}
_DATA_MOVEMENT = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Slice",
                  "Gather", "Expand", "Concat", "Split", "Tile"}
_REDUCE = {"ReduceSum": np.sum, "ReduceMean": np.mean, "ReduceMax": np.max, "ReduceMin": np.min}
_SHAPE_ONLY = {"Shape", "Size", "ConstantOfShape", "Constant", "Range"}
_ELEMENTWISE = set(_UNARY) | set(_BINARY) | set(_VARIADIC) | {
    "Mean", "Where", "Clip", "Cast", "Elu", "LeakyRelu", "Erf", "IsInf"}
SUPPORTED_OPS = tuple(sorted(_ELEMENTWISE | _DATA_MOVEMENT | set(_REDUCE) | _SHAPE_ONLY
                             | {"MatMul", "Gemm"}))


def _attrs(node) -> dict:
    import onnx
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _tensor(t) -> np.ndarray:
    import onnx.numpy_helper
    return np.asarray(onnx.numpy_helper.to_array(t))


def _ints(v) -> list[int]:
    return [int(i) for i in np.asarray(v).ravel()]


def _reduce_axes(op, ins, at, ndim):
    axes = at.get("axes")
    if axes is None and len(ins) > 1 and ins[1] is not None and np.asarray(ins[1]).size:
        axes = _ints(ins[1])
    if axes is None or len(axes) == 0:
        if at.get("noop_with_empty_axes", 0):
            return ()
        return tuple(range(ndim))
    return tuple(sorted(a % ndim for a in axes))


def np_eval(node, ins: list, opset: int) -> list[np.ndarray]:
    """Evaluate one node in numpy (float64 semantics of onnxruntime's CPU kernels)."""
    op, at = node.op_type, _attrs(node)
    with np.errstate(all="ignore"):
        if op in _UNARY:
            return [np.asarray(_UNARY[op](ins[0]))]
        if op == "Erf":
            from scipy.special import erf
            return [erf(ins[0])]
        if op == "IsInf":
            x = ins[0]
            return [(np.isposinf(x) & bool(at.get("detect_positive", 1)))
                    | (np.isneginf(x) & bool(at.get("detect_negative", 1)))]
        if op in _BINARY:
            return [np.asarray(_BINARY[op](ins[0], ins[1]))]
        if op in _VARIADIC:
            return [reduce(_VARIADIC[op], ins)]
        if op == "Mean":
            return [reduce(np.add, ins) / len(ins)]
        if op == "Elu":
            a = at.get("alpha", 1.0)
            return [np.where(ins[0] > 0, ins[0], a * (np.exp(ins[0]) - 1.0))]
        if op == "LeakyRelu":
            a = at.get("alpha", 0.01)
            return [np.where(ins[0] >= 0, ins[0], a * ins[0])]
        if op == "Where":
            return [np.where(ins[0], ins[1], ins[2])]
        if op == "Clip":
            lo = ins[1] if len(ins) > 1 and ins[1] is not None else at.get("min")
            hi = ins[2] if len(ins) > 2 and ins[2] is not None else at.get("max")
            y = ins[0]
            if lo is not None:
                y = np.maximum(y, lo)
            if hi is not None:
                y = np.minimum(y, hi)
            return [np.asarray(y, dtype=ins[0].dtype)]
        if op == "Cast":
            return [np.asarray(ins[0]).astype(_ONNX_TO_NP[at["to"]])]
        if op == "MatMul":
            return [np.matmul(ins[0], ins[1])]
        if op == "Gemm":
            a = ins[0].T if at.get("transA", 0) else ins[0]
            b = ins[1].T if at.get("transB", 0) else ins[1]
            y = at.get("alpha", 1.0) * (a @ b)
            if len(ins) > 2 and ins[2] is not None:
                y = y + at.get("beta", 1.0) * ins[2]
            return [y]
        if op in _REDUCE:
            axes = _reduce_axes(op, ins, at, ins[0].ndim)
            if not axes:
                return [ins[0]]
            return [_REDUCE[op](ins[0], axis=axes, keepdims=bool(at.get("keepdims", 1)))]
        if op == "Identity":
            return [ins[0]]
        if op == "Reshape":
            shape = _ints(ins[1])
            if not at.get("allowzero", 0):
                shape = [ins[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
            return [ins[0].reshape(shape)]
        if op == "Flatten":
            ax = at.get("axis", 1) % (ins[0].ndim + 1) if ins[0].ndim else 0
            return [ins[0].reshape(int(np.prod(ins[0].shape[:ax])), -1)]
        if op == "Squeeze":
            axes = at.get("axes") if "axes" in at else (_ints(ins[1]) if len(ins) > 1 and ins[1] is not None else None)
            if axes is None:
                return [np.squeeze(ins[0])]
            return [np.squeeze(ins[0], axis=tuple(a % ins[0].ndim for a in axes))]
        if op == "Unsqueeze":
            axes = at.get("axes") if "axes" in at else _ints(ins[1])
            nd = ins[0].ndim + len(axes)
            y = ins[0]
            for a in sorted(a % nd for a in axes):
                y = np.expand_dims(y, a)
            return [y]
        if op == "Transpose":
            perm = at.get("perm")
            return [np.transpose(ins[0], perm if perm is None else list(perm))]
        if op == "Slice":
            if opset < 10:
                starts, ends, axes, steps = at["starts"], at["ends"], at.get("axes"), None
            else:
                starts, ends = _ints(ins[1]), _ints(ins[2])
                axes = _ints(ins[3]) if len(ins) > 3 and ins[3] is not None else None
                steps = _ints(ins[4]) if len(ins) > 4 and ins[4] is not None else None
            axes = list(range(len(starts))) if axes is None else axes
            steps = [1] * len(starts) if steps is None else steps
            sl = [slice(None)] * ins[0].ndim
            for s, e, a, st in zip(starts, ends, axes, steps):
                sl[a % ins[0].ndim] = slice(s, e, st)
            return [ins[0][tuple(sl)]]
        if op == "Gather":
            return [np.take(ins[0], np.asarray(ins[1], dtype=np.int64), axis=at.get("axis", 0))]
        if op == "Expand":
            shape = np.broadcast_shapes(ins[0].shape, tuple(_ints(ins[1])))
            return [np.broadcast_to(ins[0], shape).copy()]
        if op == "Tile":
            return [np.tile(ins[0], _ints(ins[1]))]
        if op == "Concat":
            return [np.concatenate([np.asarray(i) for i in ins], axis=at["axis"])]
        if op == "Split":
            ax = at.get("axis", 0) % ins[0].ndim
            split = at.get("split")
            if split is None and len(ins) > 1 and ins[1] is not None:
                split = _ints(ins[1])
            if split is None:
                k = at.get("num_outputs", len(node.output))
                n = ins[0].shape[ax]
                size = -(-n // k)
                split = [min(size, n - i * size) for i in range(k)]
            return list(np.split(ins[0], np.cumsum(split)[:-1], axis=ax))
        if op == "Shape":
            s = np.asarray(ins[0].shape, dtype=np.int64)
            return [s[at.get("start", 0):at.get("end", None)]]
        if op == "Size":
            return [np.asarray(ins[0].size, dtype=np.int64)]
        if op == "ConstantOfShape":
            v = _tensor(at["value"]) if "value" in at else np.zeros(1)
            return [np.full(_ints(ins[0]), v.ravel()[0], dtype=v.dtype)]
        if op == "Constant":
            if "value" in at:
                return [_tensor(at["value"])]
            for k, dt in (("value_float", np.float32), ("value_floats", np.float32),
                          ("value_int", np.int64), ("value_ints", np.int64)):
                if k in at:
                    return [np.asarray(at[k], dtype=dt)]
            raise _refuse(node, "Constant with a sparse/string value")
        if op == "Range":
            return [np.arange(ins[0], ins[1], ins[2]).astype(np.asarray(ins[0]).dtype)]
    raise _refuse(node)


def _refuse(node, what: str | None = None) -> NeumatInputError:
    name = node.name or "(unnamed)"
    what = what or f"operator '{node.op_type}'"
    return NeumatInputError(
        f"cannot translate ONNX {what} (node '{name}', op {node.op_type}) to Fortran; the "
        f"translator supports: {', '.join(SUPPORTED_OPS)}")


# ----------------------------------------------------------------------------------------------
# Fortran formatting helpers
# ----------------------------------------------------------------------------------------------

def f_real(v: float) -> str:
    """A double-precision literal that reads back to exactly ``v`` (round trip)."""
    v = float(v)
    if not np.isfinite(v):
        bits = int(np.asarray(v, dtype=np.float64).view(np.int64))
        return f"transfer({bits}_c_int64_t, 1.0_c_double)"
    s = repr(v)
    if "e" in s:
        m, e = s.split("e")
        if "." not in m:
            m += ".0"
        return f"{m}d{int(e)}"
    return s + "d0" if "." in s else s + ".0d0"


def f_literal(v, dtype) -> str:
    """A literal usable inside an expression (negative values parenthesised)."""
    if dtype == np.bool_:
        return ".true." if bool(v) else ".false."
    s = f_real(v)
    return f"({s})" if s.startswith("-") else s


def _wrap_list(items: list[str], indent: str = "      ", per_line: int = 4) -> str:
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return (", &\n" + indent).join(lines)


BLOCK_MAX = 32                 # points per block of the batch kernel ...
BLOCK_BYTES = 256 * 1024       # ... fewer when a block's local arrays would exceed this (stack)
CHUNK = 800      # values per parameter chunk: at 4 a line, 200 continuation lines (< 255, F2008)


@dataclass
class _Var:
    name: str            # Fortran name (dynamic) — None for constants
    size: int
    dtype: type


@dataclass
class Translation:
    """The Fortran module text and what a consumer needs to know about the model."""
    module: str                      # Fortran module name
    flow_source: str                 # module text (parameters + neumat_flow + neumat_flow_batch)
    n_features: int
    metadata: dict                   # metadata_props, JSON values decoded
    sha256: str
    op_counts: dict = field(default_factory=dict)


def read_metadata(model) -> dict:
    """``metadata_props`` as a dict, values decoded from JSON where they are JSON."""
    out = {}
    for p in model.metadata_props:
        try:
            out[p.key] = json.loads(p.value)
        except (ValueError, TypeError):
            out[p.key] = p.value
    return out


def load_onnx(path) -> tuple:
    """(ModelProto, sha256 hex of the file). Clear errors for missing / non-ONNX files."""
    import onnx
    p = Path(path)
    if not p.is_file():
        raise NeumatInputError(f"ONNX file {p} not found")
    data = p.read_bytes()
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:        # protobuf raises DecodeError and others
        raise NeumatInputError(f"{p}: not an ONNX model ({type(exc).__name__}: {exc})") from None
    if not model.graph.node:
        raise NeumatInputError(f"{p}: not an ONNX model (empty graph)")
    return model, hashlib.sha256(data).hexdigest()


class _Translator:
    def __init__(self, model, sample_x: np.ndarray):
        self.model = model
        self.opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)
        self.sample_x = sample_x
        self.const: dict[str, np.ndarray] = {}
        self.dyn: dict[str, _Var] = {}
        self.sample: dict[str, np.ndarray] = {}
        self.decls: list[str] = []
        self.params: list[str] = []
        self.body: list[str] = []
        self.n_tmp = 0
        self.n_par = 0
        self.param_cache: dict = {}
        self.op_counts: dict[str, int] = {}
        # storage reuse: a local array whose tensor (and all its aliases) is no longer read
        # is given to a later tensor of the same size and type
        self.last_use: dict[str, float] = {}
        self.slot_last: dict[str, float] = {}      # Fortran array name -> last node reading it
        self.free: dict[tuple, list[str]] = {}
        self.var_key: dict[str, tuple] = {}
        self.node_index = 0

    # -- naming and declarations -------------------------------------------------------------
    # Every input-dependent tensor is a local array t<K>(nb, size): nb points of a block first
    # (so element-wise code vectorises across points), then the tensor's elements in row-major
    # order. The same body serves nb = 1 (one point, the UMAT) and nb = NM_BLOCK (the batch).
    def new_var(self, size: int, dtype, comment: str, tname: str) -> _Var:
        key = (int(size), np.dtype(dtype).str)
        if self.free.get(key):
            name = self.free[key].pop()
        else:
            self.n_tmp += 1
            name = f"t{self.n_tmp}"
            ftype = "logical" if dtype == np.bool_ else "real(c_double)"
            self.decls.append(f"    {ftype} :: {name}(nb, {size})")
            self.var_key[name] = key
        self.slot_last[name] = self.last_use.get(tname, self.node_index)
        v = _Var(name, size, dtype)
        self.dyn[tname] = v
        return v

    def alias(self, tname: str, var: _Var):
        """``tname`` has exactly the data of ``var``: no copy, the storage lives as long as both."""
        self.dyn[tname] = var
        if var.name in self.slot_last:
            self.slot_last[var.name] = max(self.slot_last[var.name], self.last_use.get(tname, self.node_index))

    def release_dead(self):
        for name, last in list(self.slot_last.items()):
            if last < self.node_index:
                del self.slot_last[name]
                self.free.setdefault(self.var_key[name], []).append(name)

    def new_param(self, values: np.ndarray, dims: tuple[int, ...] | None = None, kind: str = "real") -> str:
        """A parameter array with the values in Fortran (column-major) order of ``dims``."""
        flat = np.asarray(values).ravel()
        dims = dims or (flat.size,)
        key = (kind, dims, flat.tobytes())
        if key in self.param_cache:            # identical constants share one parameter
            return self.param_cache[key]
        self.n_par += 1
        name = f"c{self.n_par}"
        self.param_cache[key] = name
        if kind == "int":
            ftype, lits = "integer", [str(int(v)) for v in flat]
        elif kind == "logical":
            ftype, lits = "logical", [f_literal(v, np.bool_) for v in flat]
        else:
            ftype, lits = "real(c_double)", [f_real(v) for v in flat]
        shape = ",".join(str(d) for d in dims)
        chunks = [lits[i:i + CHUNK] for i in range(0, len(lits), CHUNK)]
        if len(chunks) == 1:
            init = "[" + _wrap_list(chunks[0]) + "]"
        else:
            parts = []
            for k, ch in enumerate(chunks):
                pn = f"{name}_p{k + 1}"
                self.params.append(f"  {ftype}, parameter :: {pn}({len(ch)}) = [ &\n      "
                                   + _wrap_list(ch) + "]")
                parts.append(pn)
            init = "[" + ", ".join(parts) + "]"
        if len(dims) > 1:
            init = f"reshape({init}, [{shape}])"
        self.params.append(f"  {ftype}, parameter :: {name}({shape}) = &\n      {init}")
        return name

    def emit(self, line: str):
        self.body.append("    " + line)

    def loop(self, n: int, stmt):
        """``stmt(j)`` for j = 1..n, as a do loop over the index variable j (or once)."""
        if n == 1:
            self.emit(stmt("1"))
        else:
            self.emit(f"do j = 1, {n}")
            self.emit("  " + stmt("j"))
            self.emit("end do")

    # -- operand access with broadcasting ------------------------------------------------------
    def operand(self, tname: str, out_shape: tuple, as_real: bool = False):
        """A function j -> Fortran expression of tensor ``tname`` broadcast to ``out_shape``,
        at output element j (1-based), for all points of the block."""
        out_size = int(np.prod(out_shape, dtype=np.int64))
        if tname in self.const:
            v = self.const[tname]
            if as_real and v.dtype != np.bool_:
                v = v.astype(np.float64)
            dtype = np.bool_ if v.dtype == np.bool_ else np.float64
            full = np.broadcast_to(v, out_shape)
            first = full.ravel()[0] if full.size else 0
            if v.size == 1 or (np.all(full == first) and not (dtype != np.bool_ and np.isnan(first))):
                lit = f_literal(first, dtype)
                return lambda j: lit
            par = self.new_param(full.astype(dtype), kind="logical" if dtype == np.bool_ else "real")
            return lambda j: f"{par}({j})"
        var = self.dyn[tname]
        shape = self.sample[tname].shape
        if var.size == 1:
            return lambda j: f"{var.name}(:, 1)"
        idx = np.broadcast_to(np.arange(var.size).reshape(shape), out_shape).ravel()
        if idx.size == var.size and np.array_equal(idx, np.arange(var.size)):
            return lambda j: f"{var.name}(:, {j})"
        if idx.size != out_size:
            raise AssertionError("broadcast size mismatch")
        par = self.new_param(idx + 1, kind="int")
        return lambda j: f"{var.name}(:, {par}({j}))"

    # -- main loop ---------------------------------------------------------------------------
    def run(self):
        g = self.model.graph
        for init in g.initializer:
            self.const[init.name] = _tensor(init)
        inputs = [i for i in g.input if i.name not in self.const]
        if len(inputs) != 1:
            raise NeumatInputError(f"the graph must have exactly one input 'x' (N, F); it has "
                                   f"{[i.name for i in inputs]}")
        xin = inputs[0]
        if xin.type.tensor_type.elem_type != 11:
            raise NeumatInputError(f"graph input '{xin.name}' is not float64 (double)")
        self.dyn[xin.name] = _Var("x", self.sample_x.size, np.float64)
        self.sample[xin.name] = self.sample_x
        for i, node in enumerate(g.node):
            for nm in node.input:
                self.last_use[nm] = i
        for o in g.output:
            self.last_use[o.name] = float("inf")
        for i, node in enumerate(g.node):
            self.node_index = i
            self.release_dead()
            self.node(node)
        return self

    def node(self, node):
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            raise _refuse(node, f"operator '{node.domain}.{op}' (custom domain)")
        if op not in SUPPORTED_OPS:
            raise _refuse(node)
        ins = []
        for nm in node.input:
            if nm == "":
                ins.append(None)
            elif nm in self.const:
                ins.append(self.const[nm])
            elif nm in self.sample:
                ins.append(self.sample[nm])
            else:
                raise NeumatInputError(f"node '{node.name}' ({op}) reads '{nm}', which no earlier node makes")
        outs = np_eval(node, ins, self.opset)
        dynamic = [nm for nm in node.input if nm and nm in self.dyn]
        if not dynamic or op in ("Shape", "Size"):
            for nm, v in zip(node.output, outs):
                self.const[nm] = np.asarray(v)
            return
        self.op_counts[op] = self.op_counts.get(op, 0) + 1
        for nm, v in zip(node.output, outs):
            v = np.asarray(v)
            if v.dtype not in (np.float64, np.bool_):
                raise _refuse(node, f"operator '{op}' producing a {v.dtype} tensor from the input")
            self.sample[nm] = v
        label = f"{op} '{node.name}'" if node.name else op
        self.body.append(f"    ! {label}")
        if op in _ELEMENTWISE:
            self.elementwise(node, outs[0])
        elif op in ("MatMul", "Gemm"):
            self.matmul(node, outs[0])
        elif op in _DATA_MOVEMENT:
            self.data_movement(node, ins)
        elif op in _REDUCE:
            self.reduction(node, ins)
        else:
            raise _refuse(node, f"operator '{op}' applied to the input-dependent tensor")

    # -- element-wise --------------------------------------------------------------------------
    def elementwise(self, node, out: np.ndarray):
        op, at = node.op_type, _attrs(node)
        shape = out.shape
        real_in = op not in ("Where", "Not", "And", "Or", "Xor", "Cast")
        fns = [self.operand(nm, shape, as_real=real_in) if nm else None for nm in node.input]
        v = self.new_var(out.size, out.dtype, f"{node.op_type} {tuple(shape)}", node.output[0])
        self.loop(out.size, lambda j: f"{v.name}(:, {j}) = " + self._ew_expr(
            node, op, at, out, [f(j) if f else None for f in fns]))

    def _ew_expr(self, node, op, at, out, args) -> str:
        a = args[0]
        r = lambda v: f_literal(v, np.float64)
        unary = {
            "Abs": f"abs({a})", "Neg": f"(-{a})", "Exp": f"exp({a})", "Log": f"log({a})",
            "Sqrt": f"sqrt({a})", "Reciprocal": f"(1.0d0 / {a})", "Tanh": f"tanh({a})",
            "Sigmoid": f"nm_sigmoid({a})", "Softplus": f"nm_softplus({a})",
            "Softsign": f"({a} / (1.0d0 + abs({a})))", "Sign": f"nm_sign({a})", "Sin": f"sin({a})",
            "Cos": f"cos({a})", "Sinh": f"sinh({a})", "Cosh": f"cosh({a})", "Asinh": f"asinh({a})",
            "Floor": f"real(floor({a}), c_double)", "Ceil": f"real(ceiling({a}), c_double)",
            "Relu": f"nm_max({a}, 0.0d0)", "Not": f"(.not. {a})", "IsNaN": f"ieee_is_nan({a})",
            "Erf": f"erf({a})",
        }
        if op in unary:
            expr = unary[op]
        elif op in ("Elu", "LeakyRelu"):
            alpha = at.get("alpha", 1.0 if op == "Elu" else 0.01)
            fn = "nm_elu" if op == "Elu" else "nm_leaky"
            expr = f"{fn}({a}, {r(alpha)})"
        elif op == "IsInf":
            pos, neg = at.get("detect_positive", 1), at.get("detect_negative", 1)
            parts = ([f"({a} > huge(1.0d0))"] if pos else []) + ([f"({a} < -huge(1.0d0))"] if neg else [])
            expr = " .or. ".join(parts) if parts else ".false."
        elif op in _BINARY:
            b = args[1]
            sym = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/", "Pow": "**", "Less": "<",
                   "Greater": ">", "LessOrEqual": "<=", "GreaterOrEqual": ">=", "And": ".and.",
                   "Or": ".or.", "Xor": ".neqv."}
            if op == "Equal":
                logical = self._dtype(node.input[0]) == np.bool_
                expr = f"({a} {'.eqv.' if logical else '=='} {b})"
            else:
                expr = f"({a} {sym[op]} {b})"
        elif op in ("Max", "Min"):
            fn = "nm_max" if op == "Max" else "nm_min"        # NaN-propagating, as onnxruntime
            expr = args[0]
            for b in args[1:]:
                expr = f"{fn}({expr}, {b})"
        elif op in ("Sum", "Mean"):
            expr = "(" + " + ".join(args) + ")"
            if op == "Mean":
                expr = f"({expr} / {r(len(args))})"
        elif op == "Where":
            expr = f"merge({args[1]}, {args[2]}, {args[0]})"
        elif op == "Clip":
            lo = args[1] if len(args) > 1 and args[1] else (r(at["min"]) if "min" in at else None)
            hi = args[2] if len(args) > 2 and args[2] else (r(at["max"]) if "max" in at else None)
            expr = a
            if lo is not None:
                expr = f"nm_max({expr}, {lo})"
            if hi is not None:
                expr = f"nm_min({expr}, {hi})"
        elif op == "Cast":
            src = self._dtype(node.input[0])
            dst = out.dtype
            if dst == np.float64:
                expr = f"merge(1.0d0, 0.0d0, {a})" if src == np.bool_ else f"({a})"
            elif dst == np.bool_:
                expr = f"({a})" if src == np.bool_ else f"({a} /= 0.0d0)"
            else:
                raise _refuse(node, f"Cast to {dst}")
        else:
            raise _refuse(node)
        return expr

    def _dtype(self, tname):
        if tname in self.const:
            return np.bool_ if self.const[tname].dtype == np.bool_ else np.float64
        return self.dyn[tname].dtype

    # -- matrix products -----------------------------------------------------------------------
    def _mat_element(self, tname, rows: int, cols: int, trans: bool):
        """A function (r, c) -> Fortran expression of element (r, c) (0-based, may be Fortran
        expressions) of the row-major matrix op(T), shape (rows, cols), for all block points."""
        if tname in self.const:
            m = np.asarray(self.const[tname], dtype=np.float64)
            m = m.reshape(cols, rows).T if trans else m.reshape(rows, cols)
            par = self.new_param(m.ravel(order="C"), dims=(cols, rows))   # par(c+1, r+1) = op(T)[r, c]
            return lambda r, c: f"{par}({c} + 1, {r} + 1)"
        name = self.dyn[tname].name
        if trans:                                # stored (cols, rows) row-major
            return lambda r, c: f"{name}(:, {c} * {rows} + {r} + 1)"
        return lambda r, c: f"{name}(:, {r} * {cols} + {c} + 1)"

    def matmul(self, node, out: np.ndarray):
        at = _attrs(node)
        A, B = (self.sample[n] if n in self.sample else self.const[n] for n in node.input[:2])
        if not (A.ndim in (1, 2) and B.ndim in (1, 2)) or (node.op_type == "Gemm" and (A.ndim, B.ndim) != (2, 2)):
            raise _refuse(node, f"{node.op_type} of {A.ndim}-D x {B.ndim}-D tensors (only 1-D/2-D supported)")
        ta = bool(at.get("transA", 0)) if node.op_type == "Gemm" else False
        tb = bool(at.get("transB", 0)) if node.op_type == "Gemm" else False
        a2 = A.reshape(1, -1) if A.ndim == 1 else A
        b2 = B.reshape(-1, 1) if B.ndim == 1 else B
        M, K = (a2.shape[1], a2.shape[0]) if ta else a2.shape
        N = b2.shape[0] if tb else b2.shape[1]
        ea = self._mat_element(node.input[0], M, K, ta)
        eb = self._mat_element(node.input[1], K, N, tb)
        v = self.new_var(out.size, np.float64, f"{node.op_type} {tuple(out.shape)}", node.output[0])
        # C[m, n] = sum_k A[m, k] B[k, n], summed in k order; vectorised over the block's points
        mv = "m" if M > 1 else "0"
        if M > 1:
            self.emit(f"do m = 0, {M - 1}")
        acc = f"{v.name}(:, {mv} * {N} + n + 1) = {v.name}(:, {mv} * {N} + n + 1) + {eb('k', 'n')} * {ea(mv, 'k')}"
        # same sums in the same k order both ways; the loop order suits the layout: one point
        # -> the n loop innermost (contiguous, vectorised), a block -> the points innermost
        self.emit("  if (nb == 1) then")
        self.emit(f"    {v.name}(:, {mv} * {N} + 1:{mv} * {N} + {N}) = 0.0d0")
        self.emit(f"    do k = 0, {K - 1}")
        self.emit(f"      do n = 0, {N - 1}")
        self.emit(f"        {acc}")
        self.emit("      end do")
        self.emit("    end do")
        self.emit("  else")
        self.emit(f"    do n = 0, {N - 1}")
        self.emit(f"      {v.name}(:, {mv} * {N} + n + 1) = 0.0d0")
        self.emit(f"      do k = 0, {K - 1}")
        self.emit(f"        {acc}")
        self.emit("      end do")
        self.emit("    end do")
        self.emit("  end if")
        if M > 1:
            self.emit("end do")
        if node.op_type == "Gemm":
            alpha, beta = at.get("alpha", 1.0), at.get("beta", 1.0)
            cfn = self.operand(node.input[2], out.shape, as_real=True) if len(node.input) > 2 and node.input[2] else None
            if alpha != 1.0 or cfn is not None:
                def stmt(j):
                    e = f"{v.name}(:, {j})"
                    if alpha != 1.0:
                        e = f"{f_literal(alpha, np.float64)} * {e}"
                    if cfn is not None:
                        c = cfn(j)
                        e = f"{e} + {c}" if beta == 1.0 else f"{e} + {f_literal(beta, np.float64)} * {c}"
                    return f"{v.name}(:, {j}) = {e}"
                self.loop(out.size, stmt)

    # -- data movement -------------------------------------------------------------------------
    def data_movement(self, node, ins):
        op = node.op_type
        data_idx = list(range(len(node.input))) if op == "Concat" else [0]
        for j, nm in enumerate(node.input):
            if j not in data_idx and nm and nm not in self.const:
                raise _refuse(node, f"{op} with an input-dependent '{nm}' (shape/index inputs must be constant)")
        # encode (source j, element k) as j * 2**40 + k, run the op on the codes
        coded = list(ins)
        srcs = {}
        for j in data_idx:
            nm = node.input[j]
            base = self.sample[nm] if nm in self.sample and nm not in self.const else self.const[nm]
            coded[j] = (np.int64(j) << 40) + np.arange(base.size, dtype=np.int64).reshape(base.shape)
            srcs[j] = nm
        outs = np_eval(node, coded, self.opset)
        for oname, code in zip(node.output, outs):
            code = np.asarray(code).ravel()
            sample = self.sample[oname]
            js, ks = code >> 40, code & ((1 << 40) - 1)
            src0 = srcs[int(js[0])] if code.size else None
            if (src0 is not None and src0 not in self.const and np.all(js == js[0])
                    and code.size == self.dyn[src0].size and np.array_equal(ks, np.arange(code.size))):
                self.alias(oname, self.dyn[src0])          # Reshape/Identity/...: same data
                self.emit(f"! {oname} is {self.dyn[src0].name} (same data)")
                continue
            v = self.new_var(sample.size, sample.dtype, f"{op} {tuple(sample.shape)}", oname)
            # runs of consecutive outputs coming from consecutive elements of one source
            i = 0
            while i < code.size:
                e = i + 1
                while e < code.size and js[e] == js[i] and ks[e] == ks[e - 1] + 1:
                    e += 1
                nm = srcs[int(js[i])]
                k0, k1 = int(ks[i]), int(ks[e - 1])
                if nm in self.const:
                    vals = self.const[nm].ravel()[k0:k1 + 1]
                    dt = np.bool_ if vals.dtype == np.bool_ else np.float64
                    if np.all(vals == vals[0]) and not (dt != np.bool_ and np.isnan(vals[0])):
                        self.emit(f"{v.name}(:, {i + 1}:{e}) = {f_literal(vals[0], dt)}")
                    else:
                        par = self.new_param(vals.astype(dt), kind="logical" if dt == np.bool_ else "real")
                        self.loop(e - i, lambda j: f"{v.name}(:, {i} + {j}) = {par}({j})")
                else:
                    src = self.dyn[nm]
                    self.emit(f"{v.name}(:, {i + 1}:{e}) = {src.name}(:, {k0 + 1}:{k1 + 1})")
                i = e

    # -- reductions ----------------------------------------------------------------------------
    def reduction(self, node, ins):
        op, at = node.op_type, _attrs(node)
        if len(node.input) > 1 and node.input[1] and node.input[1] not in self.const:
            raise _refuse(node, f"{op} with input-dependent axes")
        x = self.sample[node.input[0]]
        src = self.dyn[node.input[0]]
        axes = _reduce_axes(op, ins, at, x.ndim)
        out = self.sample[node.output[0]]
        if not axes:
            self.alias(node.output[0], src)
            return
        v = self.new_var(out.size, np.float64, f"{op} {tuple(out.shape)}", node.output[0])
        keep = [d for d in range(x.ndim) if d not in axes]
        idx = np.transpose(np.arange(x.size).reshape(x.shape), keep + list(axes)).reshape(out.size, -1) + 1
        comb = {"ReduceSum": "{a} + {b}", "ReduceMean": "{a} + {b}",
                "ReduceMax": "nm_max({a}, {b})", "ReduceMin": "nm_min({a}, {b})"}[op]
        par = self.new_param(idx, dims=(idx.shape[1], idx.shape[0]), kind="int")   # par(k, i): k-th source of output i
        self.emit(f"do j = 1, {out.size}")
        self.emit(f"  {v.name}(:, j) = {src.name}(:, {par}(1, j))")
        if idx.shape[1] > 1:
            self.emit(f"  do k = 2, {idx.shape[1]}")
            self.emit(f"    {v.name}(:, j) = " + comb.format(a=f"{v.name}(:, j)", b=f"{src.name}(:, {par}(k, j))"))
            self.emit("  end do")
        if op == "ReduceMean":
            self.emit(f"  {v.name}(:, j) = {v.name}(:, j) / {f_real(idx.shape[1])}")
        self.emit("end do")


# ----------------------------------------------------------------------------------------------
# module assembly
# ----------------------------------------------------------------------------------------------

_HELPERS = """\
  elemental real(c_double) function nm_max(a, b)
    ! max with NaN propagation (Fortran's MAX may return the non-NaN argument)
    real(c_double), intent(in) :: a, b
    if (ieee_is_nan(a) .or. ieee_is_nan(b)) then
      nm_max = a + b
    else
      nm_max = max(a, b)
    end if
  end function nm_max

  elemental real(c_double) function nm_min(a, b)
    real(c_double), intent(in) :: a, b
    if (ieee_is_nan(a) .or. ieee_is_nan(b)) then
      nm_min = a + b
    else
      nm_min = min(a, b)
    end if
  end function nm_min

  elemental real(c_double) function nm_sigmoid(x)
    real(c_double), intent(in) :: x
    real(c_double) :: e
    e = exp(-abs(x))
    if (x >= 0.0d0) then
      nm_sigmoid = 1.0d0 / (1.0d0 + e)
    else
      nm_sigmoid = e / (1.0d0 + e)
    end if
  end function nm_sigmoid

  elemental real(c_double) function nm_softplus(x)
    real(c_double), intent(in) :: x
    nm_softplus = nm_max(x, 0.0d0) + nm_log1p(exp(-abs(x)))
  end function nm_softplus

  elemental real(c_double) function nm_elu(x, alpha)
    real(c_double), intent(in) :: x, alpha
    if (x > 0.0d0) then
      nm_elu = x
    else
      nm_elu = alpha * (exp(x) - 1.0d0)
    end if
  end function nm_elu

  elemental real(c_double) function nm_leaky(x, alpha)
    real(c_double), intent(in) :: x, alpha
    if (x >= 0.0d0) then
      nm_leaky = x
    else
      nm_leaky = alpha * x
    end if
  end function nm_leaky

  elemental real(c_double) function nm_sign(x)
    real(c_double), intent(in) :: x
    if (x > 0.0d0) then
      nm_sign = 1.0d0
    else if (x < 0.0d0) then
      nm_sign = -1.0d0
    else
      nm_sign = 0.0d0
    end if
  end function nm_sign

  elemental real(c_double) function nm_log1p(x)
    ! log(1 + x) without cancellation for small x (Fortran 2008 has no log1p intrinsic)
    real(c_double), intent(in) :: x
    real(c_double) :: u
    u = 1.0d0 + x
    if (u == 1.0d0) then
      nm_log1p = x
    else
      nm_log1p = log(u) * (x / (u - 1.0d0))
    end if
  end function nm_log1p
"""


def _meta_list(meta: dict, keys: tuple[str, ...], n: int, what: str, path) -> list[float] | None:
    for k in keys:
        if k in meta:
            v = meta[k]
            if isinstance(v, str):
                v = json.loads(v)
            v = [float(t) for t in v]
            if len(v) != n:
                raise NeumatInputError(f"{path}: metadata '{k}' has {len(v)} values, the input has {n} columns")
            return v
    return None


def model_info(model, path="model.onnx") -> dict:
    """Feature names, box, rate floor and policy from ``metadata_props`` (with the input width)."""
    raw = read_metadata(model)
    # the exporter writes keys "neumat.<name>"; accept bare "<name>" too
    meta = {k[len("neumat."):] if k.startswith("neumat.") else k: v for k, v in raw.items()}
    g = model.graph
    inits = {i.name for i in g.initializer}
    xin = [i for i in g.input if i.name not in inits]
    if len(xin) != 1:
        raise NeumatInputError(f"{path}: the graph must have one input x (N, F), found {[i.name for i in xin]}")
    dims = xin[0].type.tensor_type.shape.dim
    if len(dims) != 2 or not dims[1].dim_value:
        raise NeumatInputError(f"{path}: input '{xin[0].name}' must be (N, F) with a fixed F")
    F = int(dims[1].dim_value)
    outs = [o.name for o in g.output]
    if outs[:2] != ["sigma", "dsigma_dx"]:
        raise NeumatInputError(f"{path}: outputs must be 'sigma' (N,) and 'dsigma_dx' (N, F); found {outs}")
    names = meta.get("feature_names")
    if isinstance(names, str):
        names = json.loads(names) if names.startswith("[") else names.split(",")
    names = list(names) if names else ["strain", "strain_rate", "temperature"] + [f"extra{k}" for k in range(F - 3)]
    if len(names) != F:
        raise NeumatInputError(f"{path}: metadata feature_names has {len(names)} names, the input has {F} columns")
    lo = _meta_list(meta, ("box_lo", "training_box_lo"), F, "box_lo", path)
    hi = _meta_list(meta, ("box_hi", "training_box_hi"), F, "box_hi", path)
    if (lo is None or hi is None) and isinstance(meta.get("box"), (dict, list)):
        box = meta["box"]
        if isinstance(box, dict):
            lo, hi = [float(t) for t in box["lo"]], [float(t) for t in box["hi"]]
        else:
            lo, hi = [float(t[0]) for t in box], [float(t[1]) for t in box]
    if lo is None or hi is None:
        raise NeumatInputError(f"{path}: metadata_props lack the training box (box_lo/box_hi)")
    rf = meta.get("rate_floor")
    if rf is None:
        raise NeumatInputError(f"{path}: metadata_props lack 'rate_floor'")
    policy = str(meta.get("box_policy", meta.get("policy", "clamp")))
    if policy not in ("clamp", "extrapolate"):
        raise NeumatInputError(f"{path}: box_policy '{policy}' is not clamp or extrapolate")
    units = meta.get("feature_units")
    return dict(feature_names=names, feature_units=units, box_lo=lo, box_hi=hi,
                rate_floor=float(rf), box_policy=policy, n_features=F, metadata=meta)


def translate(path, module: str | None = None) -> tuple[Translation, dict]:
    """Translate the ONNX file at ``path``; returns (Translation, model_info)."""
    model, sha = load_onnx(path)
    info = model_info(model, path)
    F = info["n_features"]
    lo, hi = np.asarray(info["box_lo"]), np.asarray(info["box_hi"])
    sample = (0.5 * (lo + hi)).reshape(1, F)
    tr = _Translator(model, sample).run()
    module = module or f"neumat_{sha[:10]}"
    sig, dsig = (o.name for o in model.graph.output[:2])
    outs = []
    for oname, target, size in ((sig, "sig", 1), (dsig, "dsig", F)):
        if oname in tr.const:
            val = np.broadcast_to(np.asarray(tr.const[oname], dtype=np.float64).ravel(), (size,))
            outs += [f"    {target}(:{', ' + str(i + 1) if target == 'dsig' else ''}) = {f_literal(v, np.float64)}"
                     for i, v in enumerate(val)]
        else:
            var = tr.dyn[oname]
            if var.size != size:
                raise NeumatInputError(f"{path}: output '{oname}' has {var.size} values per point, expected {size}")
            outs.append(f"    {target} = {var.name}(:, 1)" if target == "sig" else f"    {target} = {var.name}")
    body = "\n".join(tr.decls + tr.body + outs)
    per_point = sum(int(d.split("(nb, ")[1].split(")")[0]) for d in tr.decls) + 2 * F + 1
    block = max(4, min(BLOCK_MAX, BLOCK_BYTES // (8 * per_point) // 4 * 4))

    def kernel(name: str, nb: str, what: str) -> str:
        return f"""\
  pure subroutine {name}(x, sig, dsig)
    ! {what}: flow stress sig (MPa) and d sig / d x of nb points x (physical units)
    integer, parameter :: nb = {nb}
    real(c_double), intent(in) :: x(nb, NM_NF)
    real(c_double), intent(out) :: sig(nb), dsig(nb, NM_NF)
    integer :: j, k, m, n
{body}
  end subroutine {name}
"""

    lits = lambda v: "[" + ", ".join(f_real(t) for t in v) + "]"
    policy = 1 if info["box_policy"] == "clamp" else 0
    src = f"""\
! Generated by neumat (fortran_umat.translate) from an ONNX flow-stress model. Do not edit.
! ONNX file sha256: {sha}
! Features (x columns, physical units): {', '.join(info['feature_names'])}
! Output: flow stress sigma (MPa) and d sigma / d x, with the model's input policy
! (rate floor {info['rate_floor']!r} 1/s, box policy '{info['box_policy']}') applied inside, as in the graph.
! Thread safety: the module holds named constants (parameters) only; every procedure keeps its
! data in arguments and locals. Build with -frecursive (or -fopenmp) so that gfortran keeps all
! locals, large arrays included, on the stack instead of static memory.
module {module}
  use, intrinsic :: iso_c_binding, only: c_double, c_int64_t
  use, intrinsic :: ieee_arithmetic, only: ieee_is_nan, ieee_is_finite
  implicit none
  private
  public :: neumat_flow, neumat_flow_c, neumat_flow_batch, nm_out_of_box
  public :: NM_NF, NM_NEXTRA, NM_RATE_FLOOR, NM_BOX_LO, NM_BOX_HI, NM_CLAMP

  ! Only named constants at module level: no mutable state (the UMAT runs in many threads).
  integer, parameter :: NM_NF = {F}                 ! number of inputs (strain, rate, T, extras)
  integer, parameter :: NM_NEXTRA = {F - 3}         ! extra features after strain, rate, temperature
  real(c_double), parameter :: NM_RATE_FLOOR = {f_real(info['rate_floor'])}   ! 1/s
  real(c_double), parameter :: NM_BOX_LO({F}) = {lits(lo)}
  real(c_double), parameter :: NM_BOX_HI({F}) = {lits(hi)}
  logical, parameter :: NM_CLAMP = {'.true.' if policy else '.false.'}   ! box policy: clamp (else extrapolate)
  integer, parameter :: NM_BLOCK = {block}              ! points per block in neumat_flow_batch

  ! ---- weights and other constants of the graph ----
{chr(10).join(tr.params)}
!@@J2_SPEC@@

contains

{_HELPERS}
  pure logical function nm_out_of_box(x)
    ! any input outside the training box (a rate below the floor is not counted)
    real(c_double), intent(in) :: x(NM_NF)
    real(c_double) :: y(NM_NF)
    y = x
    y(2) = max(y(2), NM_RATE_FLOOR)
    nm_out_of_box = any(y < NM_BOX_LO .or. y > NM_BOX_HI)
  end function nm_out_of_box

{kernel("nm_kernel_1", "1", "one point")}
{kernel("nm_kernel_block", "NM_BLOCK", "a block of NM_BLOCK points")}
  pure subroutine neumat_flow(x, sigma, dsig)
    ! flow stress sigma (MPa) and d sigma / d x at one point x (physical units)
    real(c_double), intent(in) :: x(NM_NF)
    real(c_double), intent(out) :: sigma, dsig(NM_NF)
    real(c_double) :: xb(1, NM_NF), sb(1), db(1, NM_NF)
    xb(1, :) = x
    call nm_kernel_1(xb, sb, db)
    sigma = sb(1)
    dsig = db(1, :)
  end subroutine neumat_flow

  subroutine neumat_flow_c(x, sigma, dsig) bind(C, name="neumat_flow")
    ! one point from C: x (NM_NF), sigma, dsig (NM_NF) — the kernel the UMAT uses
    real(c_double), intent(in) :: x(NM_NF)
    real(c_double), intent(out) :: sigma, dsig(NM_NF)
    call neumat_flow(x, sigma, dsig)
  end subroutine neumat_flow_c

  subroutine neumat_flow_batch(n, x, sigma, dsig) bind(C, name="neumat_flow_batch")
    ! n points; from C/numpy: x (n, NM_NF) row-major, sigma (n), dsig (n, NM_NF) row-major.
    ! Blocks of NM_BLOCK points; every operation of the kernel is a loop over the block's points
    ! (vectorised; gfortran then calls glibc's vector exp/log/pow/tanh, which may differ from the
    ! scalar ones of neumat_flow in the last bit or two).
    integer(c_int64_t), value, intent(in) :: n
    real(c_double), intent(in) :: x(NM_NF, n)
    real(c_double), intent(out) :: sigma(n), dsig(NM_NF, n)
    real(c_double) :: xb(NM_BLOCK, NM_NF), sb(NM_BLOCK), db(NM_BLOCK, NM_NF)
    integer(c_int64_t) :: i0, i, m
    do i0 = 1, n, NM_BLOCK
      m = min(int(NM_BLOCK, c_int64_t), n - i0 + 1)
      xb(1:m, :) = transpose(x(:, i0:i0 + m - 1))
      do i = m + 1, NM_BLOCK
        xb(i, :) = xb(1, :)              ! pad a partial block with a valid point
      end do
      call nm_kernel_block(xb, sb, db)
      sigma(i0:i0 + m - 1) = sb(1:m)
      dsig(:, i0:i0 + m - 1) = transpose(db(1:m, :))
    end do
  end subroutine neumat_flow_batch
!@@J2_CONTAINS@@
end module {module}
!@@J2_EXTERNAL@@
"""
    return Translation(module, src, F, info["metadata"], sha, tr.op_counts), info
