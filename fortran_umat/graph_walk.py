"""Walk an ONNX graph once, node by node, and write the straight-line Fortran body of the kernel.

Every node is evaluated in numpy on a sample point with N = 1 (``onnx_ops.evaluate``): that gives
the shape and type of every tensor and folds every node whose inputs are all constant. The nodes
that depend on the input ``x`` become Fortran through their rule in :data:`onnx_ops.RULES`.

* every input-dependent tensor is a local array ``t<K>(nb, size)``: the nb points of a block
  first (so element-wise code vectorises across points), then the tensor's elements in row-major
  (C) order. The same body serves nb = 1 (one point, the UMAT) and nb = NM_BLOCK (the batch);
* a local array whose tensor (and all its aliases) is no longer read is given to a later tensor
  of the same size and type;
* constants read by dynamic nodes become ``parameter`` arrays ``c<K>`` (identical ones shared),
  scalars literals.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from constitutive.errors import NeumatInputError

from .fortran_text import f_literal, f_real, parameter_lines
from .onnx_ops import RULES, Site, attrs, evaluate, refuse, tensor


@dataclass
class Var:
    """A Fortran local array holding one input-dependent tensor (per point of the block)."""
    name: str            # Fortran name
    size: int            # elements per point
    dtype: type          # np.float64 or np.bool_


class GraphWalker:
    """Declarations (``decls``), parameters (``params``) and statements (``body``) of the kernel
    for ``model``, whose one dynamic input ``input_name`` is the Fortran argument ``x``."""

    def __init__(self, model, input_name: str, sample_x: np.ndarray, opset: int):
        self.model = model
        self.input_name = input_name
        self.opset = opset
        self.sample_x = sample_x
        self.const: dict[str, np.ndarray] = {}
        self.dyn: dict[str, Var] = {}
        self.sample: dict[str, np.ndarray] = {}
        self.decls: list[str] = []
        self.params: list[str] = []
        self.body: list[str] = []
        self.n_tmp = 0
        self.n_par = 0
        self.param_cache: dict = {}
        self.op_counts: dict[str, int] = {}
        # storage reuse
        self.last_use: dict[str, float] = {}
        self.slot_last: dict[str, float] = {}      # Fortran array name -> last node reading it
        self.free: dict[tuple, list[str]] = {}
        self.var_key: dict[str, tuple] = {}
        self.node_index = 0

    # -- storage ---------------------------------------------------------------------------------
    def new_var(self, size: int, dtype, comment: str, tname: str) -> Var:
        """A local array for tensor ``tname`` (a free one of the same size and type if any)."""
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
        v = Var(name, size, dtype)
        self.dyn[tname] = v
        return v

    def alias(self, tname: str, var: Var):
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
        """A parameter array with the values in Fortran (column-major) order of ``dims``;
        ``kind`` "real", "int" or "logical"."""
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
        self.params.extend(parameter_lines(name, ftype, lits, dims))
        return name

    # -- statements ------------------------------------------------------------------------------
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

    def dtype_of(self, tname):
        if tname in self.const:
            return np.bool_ if self.const[tname].dtype == np.bool_ else np.float64
        return self.dyn[tname].dtype

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
    def run(self) -> "GraphWalker":
        g = self.model.graph
        for init in g.initializer:
            self.const[init.name] = tensor(init)
        self.dyn[self.input_name] = Var("x", self.sample_x.size, np.float64)
        self.sample[self.input_name] = self.sample_x
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
            raise refuse(node, f"operator '{node.domain}.{op}' (custom domain)")
        rule = RULES.get(op)
        if rule is None:
            raise refuse(node)
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
        outs = evaluate(node, ins, self.opset)
        dynamic = [nm for nm in node.input if nm and nm in self.dyn]
        if not dynamic or rule.always_constant:
            for nm, v in zip(node.output, outs):
                self.const[nm] = np.asarray(v)
            return
        self.op_counts[op] = self.op_counts.get(op, 0) + 1
        for nm, v in zip(node.output, outs):
            v = np.asarray(v)
            if v.dtype not in (np.float64, np.bool_):
                raise refuse(node, f"operator '{op}' producing a {v.dtype} tensor from the input")
            self.sample[nm] = v
        label = f"{op} '{node.name}'" if node.name else op
        self.body.append(f"    ! {label}")
        if rule.kind == "elementwise":
            self.elementwise(node, outs[0], rule)
        elif rule.kind == "emit":
            rule.emit(self, node, ins, outs)
        elif rule.kind == "data":
            self.data_movement(node, ins, rule)
        else:
            raise refuse(node, f"operator '{op}' applied to the input-dependent tensor")

    # -- element-wise --------------------------------------------------------------------------
    def elementwise(self, node, out: np.ndarray, rule):
        """One array statement per output element (a do loop over them): the rule's expression
        of the inputs' elements, broadcast."""
        shape = out.shape
        site = Site(node, attrs(node), [self.dtype_of(nm) if nm else None for nm in node.input], out.dtype)
        fns = [self.operand(nm, shape, as_real=rule.real_inputs) if nm else None for nm in node.input]
        v = self.new_var(out.size, out.dtype, f"{node.op_type} {tuple(shape)}", node.output[0])
        self.loop(out.size, lambda j: f"{v.name}(:, {j}) = " + rule.fortran(
            site, [f(j) if f else None for f in fns]))

    # -- data movement -------------------------------------------------------------------------
    def data_movement(self, node, ins, rule):
        """Run the rule on element codes (source j, element k) = j * 2**40 + k: each output
        element learns where it comes from; runs of consecutive elements become slice copies,
        and an output that is its source unchanged (Reshape, Identity, ...) an alias."""
        op = node.op_type
        data_idx = list(range(len(node.input))) if rule.all_inputs_data else [0]
        for j, nm in enumerate(node.input):
            if j not in data_idx and nm and nm not in self.const:
                raise refuse(node, f"{op} with an input-dependent '{nm}' (shape/index inputs must be constant)")
        coded = list(ins)
        srcs = {}
        for j in data_idx:
            nm = node.input[j]
            base = self.sample[nm] if nm in self.sample and nm not in self.const else self.const[nm]
            coded[j] = (np.int64(j) << 40) + np.arange(base.size, dtype=np.int64).reshape(base.shape)
            srcs[j] = nm
        outs = evaluate(node, coded, self.opset)
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

