"""The residual MLP of the method, built from a layer spec string, and its FlowNet form.

Spec notation (method.md): tokens joined by ``-``; numbers are widths of linear layers, ``A``
an activation, ``R`` a residual connection. The first number is the input width and is
replaced by the actual number of input columns; the last token must be ``1`` (σ is a scalar).

Residual wiring: an opening ``R`` is followed by a width w; that linear layer's output h₀ is
kept (the skip path W_s·x). The layers after it form the branch. The closing ``R`` appends a
linear layer back to width w and adds h₀. So ``4-R-8-A-4-A-R-1`` is
Linear(4,8) → [keep h₀] → A → Linear(8,4) → A → Linear(4,8) → + h₀ → Linear(8,1),
i.e. the branch learns F(x) = H(x) − W_s·x. Blocks follow each other (``R`` toggles; no nesting).

As FlowNet ops: ``linear``, ``act``, ``push`` (after the skip linear), ``add`` (after the closing
linear). Dropout (training only) follows each activation and does not appear in the ops.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from .errors import NeumatInputError
from .flownet import ACTIVATIONS, LEAKY_SLOPE


def parse_spec(spec: str, n_inputs: int | None = None) -> list[tuple]:
    """Spec string → list of ops ``("linear", n_in, n_out)``, ``("act",)``, ``("push",)``, ``("add",)``.

    ``n_inputs`` replaces the first number (the input width)."""
    toks = [t.strip().upper() for t in str(spec).split("-")]
    if len(toks) < 2 or any(t == "" for t in toks):
        raise NeumatInputError(f"layer spec '{spec}': expected numbers, A and R joined by '-', e.g. 4-R-8-A-4-A-R-1")
    for t in toks:
        if not (t in ("A", "R") or t.isdigit()):
            raise NeumatInputError(f"layer spec '{spec}': token '{t}' is not a width, A or R")
    if not toks[0].isdigit():
        raise NeumatInputError(f"layer spec '{spec}': must start with the input width")
    if toks[-1] != "1":
        raise NeumatInputError(f"layer spec '{spec}': must end with the output width 1")
    width = n_inputs if n_inputs is not None else int(toks[0])
    if width < 1:
        raise NeumatInputError(f"layer spec '{spec}': input width {width} < 1")
    ops: list[tuple] = []
    open_width = None
    i = 1
    while i < len(toks):
        t = toks[i]
        if t == "A":
            if not ops or ops[-1][0] == "act":
                raise NeumatInputError(f"layer spec '{spec}': 'A' at position {i + 1} must follow a layer")
            ops.append(("act",))
        elif t == "R":
            if open_width is None:
                if i + 1 >= len(toks) or not toks[i + 1].isdigit():
                    raise NeumatInputError(f"layer spec '{spec}': an opening R must be followed by a width")
                w = int(toks[i + 1])
                if w < 1:
                    raise NeumatInputError(f"layer spec '{spec}': width 0")
                ops.append(("linear", width, w))
                ops.append(("push",))
                width = open_width = w
                i += 1
            else:
                ops.append(("linear", width, open_width))
                ops.append(("add",))
                width, open_width = open_width, None
        else:
            w = int(t)
            if w < 1:
                raise NeumatInputError(f"layer spec '{spec}': width 0")
            ops.append(("linear", width, w))
            width = w
        i += 1
    if open_width is not None:
        raise NeumatInputError(f"layer spec '{spec}': residual block opened with R is never closed")
    if ops[-1][0] != "linear" or ops[-1][2] != 1:
        raise NeumatInputError(f"layer spec '{spec}': the last layer must be a linear layer of width 1")
    return ops


def normalise_spec(spec: str, n_inputs: int) -> str:
    """The spec with its first number set to the actual input width."""
    toks = str(spec).split("-")
    toks[0] = str(n_inputs)
    return "-".join(toks)


def _act(fn: str, h: torch.Tensor) -> torch.Tensor:
    if fn == "elu":
        return torch.nn.functional.elu(h, alpha=1.0)
    if fn == "tanh":
        return torch.tanh(h)
    if fn == "sigmoid":
        return torch.sigmoid(h)
    if fn == "relu":
        return torch.relu(h)
    if fn == "leaky_relu":
        return torch.nn.functional.leaky_relu(h, LEAKY_SLOPE)
    if fn == "softplus":
        return torch.logaddexp(h, torch.zeros_like(h))    # no threshold: equals flownet exactly
    raise NeumatInputError(f"activation '{fn}' unknown; supported: {', '.join(ACTIVATIONS)}")


class ResidualMLP(nn.Module):
    """Network z (n, C) → h (n,) following a parsed spec."""

    def __init__(self, spec: str, n_inputs: int, activation: str = "elu", dropout: float = 0.0):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise NeumatInputError(f"activation '{activation}' unknown; supported: {', '.join(ACTIVATIONS)}")
        if not 0.0 <= dropout < 1.0:
            raise NeumatInputError(f"dropout {dropout} outside [0, 1)")
        self.spec = normalise_spec(spec, n_inputs)
        self.activation = activation
        self.dropout_p = float(dropout)
        self.plan = parse_spec(spec, n_inputs)
        self.linears = nn.ModuleList([nn.Linear(o[1], o[2]) for o in self.plan if o[0] == "linear"])
        self.drop = nn.Dropout(self.dropout_p) if self.dropout_p > 0 else None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h, stack, k = z, [], 0
        for op in self.plan:
            kind = op[0]
            if kind == "linear":
                h = self.linears[k](h)
                k += 1
            elif kind == "act":
                h = _act(self.activation, h)
                if self.drop is not None:
                    h = self.drop(h)
            elif kind == "push":
                stack.append(h)
            else:
                h = h + stack.pop()
        return h[:, 0]

    def residual_closers(self) -> list[nn.Linear]:
        """The linear layers that close residual blocks (zero them to leave only the skip path)."""
        out, k = [], 0
        for j, op in enumerate(self.plan):
            if op[0] == "linear":
                if j + 1 < len(self.plan) and self.plan[j + 1][0] == "add":
                    out.append(self.linears[k])
                k += 1
        return out

    def float64_copy(self) -> "ResidualMLP":
        m = copy.deepcopy(self).double()
        m.eval()
        return m

    def flownet_ops(self) -> list[dict]:
        """FlowNet ops list (float64 weights)."""
        ops, k = [], 0
        for op in self.plan:
            if op[0] == "linear":
                lin = self.linears[k]
                ops.append({"op": "linear", "W": lin.weight.detach().double().numpy().copy(),
                            "b": lin.bias.detach().double().numpy().copy()})
                k += 1
            elif op[0] == "act":
                ops.append({"op": "act", "fn": self.activation})
            else:
                ops.append({"op": op[0]})
        return ops


def init_network(net: ResidualMLP, seed: int, zero_output: bool = False) -> None:
    """Deterministic initialisation (Xavier-uniform weights, zero biases)."""
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for lin in net.linears:
            bound = float(np.sqrt(6.0 / (lin.in_features + lin.out_features)))
            lin.weight.copy_(torch.rand(lin.weight.shape, generator=g, dtype=lin.weight.dtype) * 2 * bound - bound)
            lin.bias.zero_()
        if zero_output:
            net.linears[-1].weight.zero_()
