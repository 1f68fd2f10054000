"""The ONNX operators the translator knows: one rule per operator, its numpy semantics beside
its Fortran.

A rule (:class:`OpRule`) is registered by name in :data:`RULES`. Its ``evaluate`` is the float64
numpy semantics of onnxruntime's CPU kernel: the translator runs every node once on a sample
point, which gives the shape and type of every tensor and folds the nodes whose inputs are all
constant. Its ``kind`` says how a node that reads the input ``x`` becomes Fortran:

* ``"elementwise"``: ``fortran(site, args)`` is the Fortran expression of one output element
  from the expressions ``args`` of its inputs (broadcasting is resolved by the walker);
* ``"data"``: data movement; the walker runs ``evaluate`` on element indices and copies slices,
  so the numpy semantics alone define the Fortran;
* ``"emit"``: ``emit(walker, node, ins, outs)`` writes the statements itself (MatMul, Gemm,
  reductions), through the walker's ``new_var``/``new_param``/``emit``/``operand``;
* ``"shape"``: only ever folded to a constant (shape arithmetic); ``always_constant`` rules
  (Shape, Size) are folded even when their input depends on ``x``.

To add an operator: write its numpy function and its Fortran (an expression, or an ``emit``
function) here and register both under one name; a Fortran helper it calls goes to
``templates/flow_helpers.f90``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Callable

import numpy as np
import onnx
import onnx.numpy_helper
from scipy.special import erf

from constitutive.errors import NeumatInputError

from .fortran_text import f_literal, f_real

KINDS = ("elementwise", "data", "emit", "shape")


@dataclass(frozen=True)
class OpRule:
    name: str
    kind: str                          # one of KINDS
    evaluate: Callable                 # (ins, attrs, node, opset) -> list of np.ndarray
    fortran: Callable | None = None    # elementwise: (Site, args: list[str | None]) -> str
    emit: Callable | None = None       # "emit": (walker, node, ins, outs) -> None
    real_inputs: bool = True           # elementwise: constant operands enter as real(c_double)
    all_inputs_data: bool = False      # data: every input is moved (Concat), else input 0 only
    always_constant: bool = False      # shape: folded even with an input-dependent argument


@dataclass(frozen=True)
class Site:
    """What an element-wise Fortran expression may need beyond its arguments."""
    node: object                       # the onnx NodeProto
    attrs: dict
    in_dtypes: list                    # np.float64 / np.bool_ per input (None: absent input)
    out_dtype: object


RULES: dict[str, OpRule] = {}


def register(rule: OpRule) -> OpRule:
    if rule.kind not in KINDS:
        raise ValueError(f"rule {rule.name}: kind {rule.kind!r} not in {KINDS}")
    RULES[rule.name] = rule
    return rule


def rule(name: str, kind: str, **kw):
    """Decorator: register the decorated numpy function as ``evaluate`` of operator ``name``."""
    def deco(fn):
        register(OpRule(name, kind, fn, **kw))
        return fn
    return deco


# ---- ONNX node helpers ------------------------------------------------------------------------

_ONNX_TO_NP = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64,
               9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}


def attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def tensor(t) -> np.ndarray:
    return np.asarray(onnx.numpy_helper.to_array(t))


def ints(v) -> list[int]:
    return [int(i) for i in np.asarray(v).ravel()]


def supported_ops() -> tuple[str, ...]:
    return tuple(sorted(RULES))


def refuse(node, what: str | None = None) -> NeumatInputError:
    """The error for a node the translator cannot turn into Fortran."""
    name = node.name or "(unnamed)"
    what = what or f"operator '{node.op_type}'"
    return NeumatInputError(
        f"cannot translate ONNX {what} (node '{name}', op {node.op_type}) to Fortran; the "
        f"translator supports: {', '.join(supported_ops())}")


def evaluate(node, ins: list, opset: int) -> list[np.ndarray]:
    """Evaluate one node in numpy (float64 semantics of onnxruntime's CPU kernels)."""
    r = RULES.get(node.op_type)
    if r is None:
        raise refuse(node)
    with np.errstate(all="ignore"):
        return r.evaluate(ins, attrs(node), node, opset)


# ---- element-wise: one line per operator, numpy function and Fortran expression ---------------

def _real(v) -> str:
    return f_literal(v, np.float64)


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softplus(x):
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def unary(name: str, fn, fortran: str, real_inputs: bool = True) -> OpRule:
    """An element-wise operator of one input; ``fortran`` formats ``{a}``."""
    return register(OpRule(name, "elementwise", lambda ins, at, node, opset: [np.asarray(fn(ins[0]))],
                           fortran=lambda site, a: fortran.format(a=a[0]), real_inputs=real_inputs))


def binary(name: str, fn, symbol: str, real_inputs: bool = True) -> OpRule:
    """An element-wise infix operator of two inputs, ``(a <symbol> b)`` in Fortran."""
    return register(OpRule(name, "elementwise", lambda ins, at, node, opset: [np.asarray(fn(ins[0], ins[1]))],
                           fortran=lambda site, a: f"({a[0]} {symbol} {a[1]})", real_inputs=real_inputs))


unary("Abs", np.abs, "abs({a})")
unary("Neg", np.negative, "(-{a})")
unary("Exp", np.exp, "exp({a})")
unary("Log", np.log, "log({a})")
unary("Sqrt", np.sqrt, "sqrt({a})")
unary("Reciprocal", lambda x: 1.0 / x, "(1.0d0 / {a})")
unary("Tanh", np.tanh, "tanh({a})")
unary("Sigmoid", _sigmoid, "nm_sigmoid({a})")
unary("Softplus", _softplus, "nm_softplus({a})")
unary("Softsign", lambda x: x / (1.0 + np.abs(x)), "({a} / (1.0d0 + abs({a})))")
unary("Sign", np.sign, "nm_sign({a})")
unary("Sin", np.sin, "sin({a})")
unary("Cos", np.cos, "cos({a})")
unary("Sinh", np.sinh, "sinh({a})")
unary("Cosh", np.cosh, "cosh({a})")
unary("Asinh", np.arcsinh, "asinh({a})")
unary("Floor", np.floor, "real(floor({a}), c_double)")
unary("Ceil", np.ceil, "real(ceiling({a}), c_double)")
unary("Relu", lambda x: np.maximum(x, 0.0), "nm_max({a}, 0.0d0)")
unary("Not", np.logical_not, "(.not. {a})", real_inputs=False)
unary("IsNaN", np.isnan, "ieee_is_nan({a})")
unary("Erf", erf, "erf({a})")

binary("Add", np.add, "+")
binary("Sub", np.subtract, "-")
binary("Mul", np.multiply, "*")
binary("Div", np.divide, "/")
binary("Pow", np.power, "**")
binary("Less", np.less, "<")
binary("Greater", np.greater, ">")
binary("LessOrEqual", np.less_equal, "<=")
binary("GreaterOrEqual", np.greater_equal, ">=")
binary("And", np.logical_and, ".and.", real_inputs=False)
binary("Or", np.logical_or, ".or.", real_inputs=False)
binary("Xor", np.logical_xor, ".neqv.", real_inputs=False)


def _equal_fortran(site, a):
    return f"({a[0]} {'.eqv.' if site.in_dtypes[0] == np.bool_ else '=='} {a[1]})"


register(OpRule("Equal", "elementwise", lambda ins, at, node, opset: [np.asarray(np.equal(ins[0], ins[1]))],
                fortran=_equal_fortran))


def _is_inf_fortran(site, a):
    pos, neg = site.attrs.get("detect_positive", 1), site.attrs.get("detect_negative", 1)
    parts = ([f"({a[0]} > huge(1.0d0))"] if pos else []) + ([f"({a[0]} < -huge(1.0d0))"] if neg else [])
    return " .or. ".join(parts) if parts else ".false."


@rule("IsInf", "elementwise", fortran=_is_inf_fortran)
def _is_inf(ins, at, node, opset):
    x = ins[0]
    return [(np.isposinf(x) & bool(at.get("detect_positive", 1)))
            | (np.isneginf(x) & bool(at.get("detect_negative", 1)))]


def _alpha_fortran(helper: str, default: float):
    return lambda site, a: f"{helper}({a[0]}, {_real(site.attrs.get('alpha', default))})"


@rule("Elu", "elementwise", fortran=_alpha_fortran("nm_elu", 1.0))
def _elu(ins, at, node, opset):
    a = at.get("alpha", 1.0)
    return [np.where(ins[0] > 0, ins[0], a * (np.exp(ins[0]) - 1.0))]


@rule("LeakyRelu", "elementwise", fortran=_alpha_fortran("nm_leaky", 0.01))
def _leaky_relu(ins, at, node, opset):
    a = at.get("alpha", 0.01)
    return [np.where(ins[0] >= 0, ins[0], a * ins[0])]


def _nested(helper: str):
    """Max/Min of any number of inputs: nested NaN-propagating helpers, as onnxruntime."""
    def fortran(site, a):
        expr = a[0]
        for b in a[1:]:
            expr = f"{helper}({expr}, {b})"
        return expr
    return fortran


@rule("Max", "elementwise", fortran=_nested("nm_max"))
def _max(ins, at, node, opset):
    return [reduce(np.maximum, ins)]


@rule("Min", "elementwise", fortran=_nested("nm_min"))
def _min(ins, at, node, opset):
    return [reduce(np.minimum, ins)]


@rule("Sum", "elementwise", fortran=lambda site, a: "(" + " + ".join(a) + ")")
def _sum(ins, at, node, opset):
    return [reduce(np.add, ins)]


@rule("Mean", "elementwise", fortran=lambda site, a: f"({'(' + ' + '.join(a) + ')'} / {_real(len(a))})")
def _mean(ins, at, node, opset):
    return [reduce(np.add, ins) / len(ins)]


@rule("Where", "elementwise", real_inputs=False, fortran=lambda site, a: f"merge({a[1]}, {a[2]}, {a[0]})")
def _where(ins, at, node, opset):
    return [np.where(ins[0], ins[1], ins[2])]


def _clip_fortran(site, a):
    at = site.attrs
    lo = a[1] if len(a) > 1 and a[1] else (_real(at["min"]) if "min" in at else None)
    hi = a[2] if len(a) > 2 and a[2] else (_real(at["max"]) if "max" in at else None)
    expr = a[0]
    if lo is not None:
        expr = f"nm_max({expr}, {lo})"
    if hi is not None:
        expr = f"nm_min({expr}, {hi})"
    return expr


@rule("Clip", "elementwise", fortran=_clip_fortran)
def _clip(ins, at, node, opset):
    lo = ins[1] if len(ins) > 1 and ins[1] is not None else at.get("min")
    hi = ins[2] if len(ins) > 2 and ins[2] is not None else at.get("max")
    y = ins[0]
    if lo is not None:
        y = np.maximum(y, lo)
    if hi is not None:
        y = np.minimum(y, hi)
    return [np.asarray(y, dtype=ins[0].dtype)]


def _cast_fortran(site, a):
    src, dst = site.in_dtypes[0], site.out_dtype
    if dst == np.float64:
        return f"merge(1.0d0, 0.0d0, {a[0]})" if src == np.bool_ else f"({a[0]})"
    if dst == np.bool_:
        return f"({a[0]})" if src == np.bool_ else f"({a[0]} /= 0.0d0)"
    raise refuse(site.node, f"Cast to {dst}")


@rule("Cast", "elementwise", real_inputs=False, fortran=_cast_fortran)
def _cast(ins, at, node, opset):
    return [np.asarray(ins[0]).astype(_ONNX_TO_NP[at["to"]])]


# ---- matrix products --------------------------------------------------------------------------

def _mat_element(w, tname, rows: int, cols: int, trans: bool):
    """A function (r, c) -> Fortran expression of element (r, c) (0-based, may be Fortran
    expressions) of the row-major matrix op(T), shape (rows, cols), for all block points."""
    if tname in w.const:
        m = np.asarray(w.const[tname], dtype=np.float64)
        m = m.reshape(cols, rows).T if trans else m.reshape(rows, cols)
        par = w.new_param(m.ravel(order="C"), dims=(cols, rows))   # par(c+1, r+1) = op(T)[r, c]
        return lambda r, c: f"{par}({c} + 1, {r} + 1)"
    name = w.dyn[tname].name
    if trans:                                # stored (cols, rows) row-major
        return lambda r, c: f"{name}(:, {c} * {rows} + {r} + 1)"
    return lambda r, c: f"{name}(:, {r} * {cols} + {c} + 1)"


def emit_matmul(w, node, ins, outs):
    """C = op(A) op(B) (+ beta C for Gemm) of 1-D/2-D tensors as loops over the block's points."""
    out = outs[0]
    at = attrs(node)
    A, B = (w.sample[n] if n in w.sample else w.const[n] for n in node.input[:2])
    if not (A.ndim in (1, 2) and B.ndim in (1, 2)) or (node.op_type == "Gemm" and (A.ndim, B.ndim) != (2, 2)):
        raise refuse(node, f"{node.op_type} of {A.ndim}-D x {B.ndim}-D tensors (only 1-D/2-D supported)")
    ta = bool(at.get("transA", 0)) if node.op_type == "Gemm" else False
    tb = bool(at.get("transB", 0)) if node.op_type == "Gemm" else False
    a2 = A.reshape(1, -1) if A.ndim == 1 else A
    b2 = B.reshape(-1, 1) if B.ndim == 1 else B
    M, K = (a2.shape[1], a2.shape[0]) if ta else a2.shape
    N = b2.shape[0] if tb else b2.shape[1]
    ea = _mat_element(w, node.input[0], M, K, ta)
    eb = _mat_element(w, node.input[1], K, N, tb)
    v = w.new_var(out.size, np.float64, f"{node.op_type} {tuple(out.shape)}", node.output[0])
    # C[m, n] = sum_k A[m, k] B[k, n], summed in k order; vectorised over the block's points
    mv = "m" if M > 1 else "0"
    if M > 1:
        w.emit(f"do m = 0, {M - 1}")
    acc = f"{v.name}(:, {mv} * {N} + n + 1) = {v.name}(:, {mv} * {N} + n + 1) + {eb('k', 'n')} * {ea(mv, 'k')}"
    # same sums in the same k order both ways; the loop order suits the layout: one point
    # -> the n loop innermost (contiguous, vectorised), a block -> the points innermost
    w.emit("  if (nb == 1) then")
    w.emit(f"    {v.name}(:, {mv} * {N} + 1:{mv} * {N} + {N}) = 0.0d0")
    w.emit(f"    do k = 0, {K - 1}")
    w.emit(f"      do n = 0, {N - 1}")
    w.emit(f"        {acc}")
    w.emit("      end do")
    w.emit("    end do")
    w.emit("  else")
    w.emit(f"    do n = 0, {N - 1}")
    w.emit(f"      {v.name}(:, {mv} * {N} + n + 1) = 0.0d0")
    w.emit(f"      do k = 0, {K - 1}")
    w.emit(f"        {acc}")
    w.emit("      end do")
    w.emit("    end do")
    w.emit("  end if")
    if M > 1:
        w.emit("end do")
    if node.op_type == "Gemm":
        alpha, beta = at.get("alpha", 1.0), at.get("beta", 1.0)
        cfn = w.operand(node.input[2], out.shape, as_real=True) if len(node.input) > 2 and node.input[2] else None
        if alpha != 1.0 or cfn is not None:
            def stmt(j):
                e = f"{v.name}(:, {j})"
                if alpha != 1.0:
                    e = f"{_real(alpha)} * {e}"
                if cfn is not None:
                    c = cfn(j)
                    e = f"{e} + {c}" if beta == 1.0 else f"{e} + {_real(beta)} * {c}"
                return f"{v.name}(:, {j}) = {e}"
            w.loop(out.size, stmt)


@rule("MatMul", "emit", emit=emit_matmul)
def _matmul(ins, at, node, opset):
    return [np.matmul(ins[0], ins[1])]


@rule("Gemm", "emit", emit=emit_matmul)
def _gemm(ins, at, node, opset):
    a = ins[0].T if at.get("transA", 0) else ins[0]
    b = ins[1].T if at.get("transB", 0) else ins[1]
    y = at.get("alpha", 1.0) * (a @ b)
    if len(ins) > 2 and ins[2] is not None:
        y = y + at.get("beta", 1.0) * ins[2]
    return [y]


# ---- reductions -------------------------------------------------------------------------------

def reduce_axes(ins, at, ndim) -> tuple[int, ...]:
    """The reduced axes (attribute before opset 18, second input from 18), sorted, >= 0."""
    axes = at.get("axes")
    if axes is None and len(ins) > 1 and ins[1] is not None and np.asarray(ins[1]).size:
        axes = ints(ins[1])
    if axes is None or len(axes) == 0:
        if at.get("noop_with_empty_axes", 0):
            return ()
        return tuple(range(ndim))
    return tuple(sorted(a % ndim for a in axes))


_COMBINE = {"ReduceSum": "{a} + {b}", "ReduceMean": "{a} + {b}",
            "ReduceMax": "nm_max({a}, {b})", "ReduceMin": "nm_min({a}, {b})"}


def emit_reduction(w, node, ins, outs):
    """Each output element combines its sources one after the other (index table as a parameter)."""
    op, at = node.op_type, attrs(node)
    if len(node.input) > 1 and node.input[1] and node.input[1] not in w.const:
        raise refuse(node, f"{op} with input-dependent axes")
    x = w.sample[node.input[0]]
    src = w.dyn[node.input[0]]
    axes = reduce_axes(ins, at, x.ndim)
    out = w.sample[node.output[0]]
    if not axes:
        w.alias(node.output[0], src)
        return
    v = w.new_var(out.size, np.float64, f"{op} {tuple(out.shape)}", node.output[0])
    keep = [d for d in range(x.ndim) if d not in axes]
    idx = np.transpose(np.arange(x.size).reshape(x.shape), keep + list(axes)).reshape(out.size, -1) + 1
    comb = _COMBINE[op]
    par = w.new_param(idx, dims=(idx.shape[1], idx.shape[0]), kind="int")   # par(k, i): k-th source of output i
    w.emit(f"do j = 1, {out.size}")
    w.emit(f"  {v.name}(:, j) = {src.name}(:, {par}(1, j))")
    if idx.shape[1] > 1:
        w.emit(f"  do k = 2, {idx.shape[1]}")
        w.emit(f"    {v.name}(:, j) = " + comb.format(a=f"{v.name}(:, j)", b=f"{src.name}(:, {par}(k, j))"))
        w.emit("  end do")
    if op == "ReduceMean":
        w.emit(f"  {v.name}(:, j) = {v.name}(:, j) / {f_real(idx.shape[1])}")
    w.emit("end do")


def _reducer(name: str, fn) -> OpRule:
    def evaluate(ins, at, node, opset):
        axes = reduce_axes(ins, at, ins[0].ndim)
        if not axes:
            return [ins[0]]
        return [fn(ins[0], axis=axes, keepdims=bool(at.get("keepdims", 1)))]
    return register(OpRule(name, "emit", evaluate, emit=emit_reduction))


_reducer("ReduceSum", np.sum)
_reducer("ReduceMean", np.mean)
_reducer("ReduceMax", np.max)
_reducer("ReduceMin", np.min)


# ---- data movement (the walker runs these on element indices) ---------------------------------

@rule("Identity", "data")
def _identity(ins, at, node, opset):
    return [ins[0]]


@rule("Reshape", "data")
def _reshape(ins, at, node, opset):
    shape = ints(ins[1])
    if not at.get("allowzero", 0):
        shape = [ins[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return [ins[0].reshape(shape)]


@rule("Flatten", "data")
def _flatten(ins, at, node, opset):
    ax = at.get("axis", 1) % (ins[0].ndim + 1) if ins[0].ndim else 0
    return [ins[0].reshape(int(np.prod(ins[0].shape[:ax])), -1)]


@rule("Squeeze", "data")
def _squeeze(ins, at, node, opset):
    axes = at.get("axes") if "axes" in at else (ints(ins[1]) if len(ins) > 1 and ins[1] is not None else None)
    if axes is None:
        return [np.squeeze(ins[0])]
    return [np.squeeze(ins[0], axis=tuple(a % ins[0].ndim for a in axes))]


@rule("Unsqueeze", "data")
def _unsqueeze(ins, at, node, opset):
    axes = at.get("axes") if "axes" in at else ints(ins[1])
    nd = ins[0].ndim + len(axes)
    y = ins[0]
    for a in sorted(a % nd for a in axes):
        y = np.expand_dims(y, a)
    return [y]


@rule("Transpose", "data")
def _transpose(ins, at, node, opset):
    perm = at.get("perm")
    return [np.transpose(ins[0], perm if perm is None else list(perm))]


@rule("Slice", "data")
def _slice(ins, at, node, opset):
    if opset < 10:
        starts, ends, axes, steps = at["starts"], at["ends"], at.get("axes"), None
    else:
        starts, ends = ints(ins[1]), ints(ins[2])
        axes = ints(ins[3]) if len(ins) > 3 and ins[3] is not None else None
        steps = ints(ins[4]) if len(ins) > 4 and ins[4] is not None else None
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    sl = [slice(None)] * ins[0].ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        sl[a % ins[0].ndim] = slice(s, e, st)
    return [ins[0][tuple(sl)]]


@rule("Gather", "data")
def _gather(ins, at, node, opset):
    return [np.take(ins[0], np.asarray(ins[1], dtype=np.int64), axis=at.get("axis", 0))]


@rule("Expand", "data")
def _expand(ins, at, node, opset):
    shape = np.broadcast_shapes(ins[0].shape, tuple(ints(ins[1])))
    return [np.broadcast_to(ins[0], shape).copy()]


@rule("Tile", "data")
def _tile(ins, at, node, opset):
    return [np.tile(ins[0], ints(ins[1]))]


@rule("Concat", "data", all_inputs_data=True)
def _concat(ins, at, node, opset):
    return [np.concatenate([np.asarray(i) for i in ins], axis=at["axis"])]


@rule("Split", "data")
def _split(ins, at, node, opset):
    ax = at.get("axis", 0) % ins[0].ndim
    split = at.get("split")
    if split is None and len(ins) > 1 and ins[1] is not None:
        split = ints(ins[1])
    if split is None:
        k = at.get("num_outputs", len(node.output))
        n = ins[0].shape[ax]
        size = -(-n // k)
        split = [min(size, n - i * size) for i in range(k)]
    return list(np.split(ins[0], np.cumsum(split)[:-1], axis=ax))


# ---- shape arithmetic (always constant in the Fortran) ----------------------------------------

@rule("Shape", "shape", always_constant=True)
def _shape(ins, at, node, opset):
    s = np.asarray(ins[0].shape, dtype=np.int64)
    return [s[at.get("start", 0):at.get("end", None)]]


@rule("Size", "shape", always_constant=True)
def _size(ins, at, node, opset):
    return [np.asarray(ins[0].size, dtype=np.int64)]


@rule("ConstantOfShape", "shape")
def _constant_of_shape(ins, at, node, opset):
    v = tensor(at["value"]) if "value" in at else np.zeros(1)
    return [np.full(ints(ins[0]), v.ravel()[0], dtype=v.dtype)]


@rule("Constant", "shape")
def _constant(ins, at, node, opset):
    if "value" in at:
        return [tensor(at["value"])]
    for k, dt in (("value_float", np.float32), ("value_floats", np.float32),
                  ("value_int", np.int64), ("value_ints", np.int64)):
        if k in at:
            return [np.asarray(at[k], dtype=dt)]
    raise refuse(node, "Constant with a sparse/string value")


@rule("Range", "shape")
def _range(ins, at, node, opset):
    return [np.arange(ins[0], ins[1], ins[2]).astype(np.asarray(ins[0]).dtype)]


SUPPORTED_OPS = supported_ops()
