"""Torch-eager reference path: the FlowNet's recipe rebuilt as a torch module (float64), σ and
dσ/dx by autograd. Reference only — torch is imported here and nowhere else in the benchmark."""
from __future__ import annotations

import numpy as np
import torch

from constitutive.flownet import GAS_CONSTANT, KELVIN, LEAKY_SLOPE, FlowNet

_ACT = {
    "elu": torch.nn.functional.elu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "leaky_relu": lambda h: torch.nn.functional.leaky_relu(h, LEAKY_SLOPE),
    "softplus": torch.nn.functional.softplus,
}


def _poly(c, e):
    v = torch.zeros_like(e)
    for coef in reversed(c):
        v = v * e + float(coef)
    return v


class TorchFlow(torch.nn.Module):
    """σ(x) of a FlowNet, same input policy, columns, ops, output and base."""

    def __init__(self, net: FlowNet):
        super().__init__()
        self.net = net
        self.lin = torch.nn.ModuleList()
        for op in net.ops:
            if op["op"] == "linear":
                W = np.asarray(op["W"], dtype=float)
                layer = torch.nn.Linear(W.shape[1], W.shape[0], dtype=torch.float64)
                with torch.no_grad():
                    layer.weight.copy_(torch.from_numpy(W))
                    layer.bias.copy_(torch.from_numpy(np.asarray(op["b"], dtype=float)))
                layer.requires_grad_(False)
                self.lin.append(layer)
        self.lo = torch.tensor(net.box_lo, dtype=torch.float64)
        self.hi = torch.tensor(net.box_hi, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        rate = torch.clamp(x[:, 1], min=net.rate_floor)
        x = torch.cat([x[:, :1], rate[:, None], x[:, 2:]], dim=1)
        if net.box_policy == "clamp":
            x = torch.clamp(x, min=self.lo, max=self.hi)
        cols = []
        for c in net.columns:
            kind = c["kind"]
            if kind == "identity":
                u = x[:, c["feature"]]
            elif kind == "log":
                u = torch.log(x[:, c["feature"]])
            elif kind == "inv_kelvin":
                u = 1.0 / (x[:, c["feature"]] + KELVIN)
            elif kind == "ln_z":
                u = torch.log(x[:, c["rate"]]) + c["Q"] / (GAS_CONSTANT * (x[:, c["temp"]] + KELVIN))
            else:
                raise ValueError(f"unknown column kind '{kind}'")
            p = c.get("power")
            if p:
                u = ((u + p["gamma"]) ** p["beta"] - 1.0) / p["beta"]
            cols.append((u - c["shift"]) / c["scale"])
        h = torch.stack(cols, dim=1)
        stack, k = [], 0
        for op in net.ops:
            kind = op["op"]
            if kind == "linear":
                h = self.lin[k](h)
                k += 1
            elif kind == "act":
                h = _ACT[op["fn"]](h)
            elif kind == "push":
                stack.append(h)
            elif kind == "add":
                h = h + stack.pop()
        o = net.output
        y = o["scale"] * h[:, 0] + o["shift"]
        if o["kind"] == "exp":
            y = torch.exp(y)
        if net.base is None:
            return y
        p = net.base["arrhenius"]
        e = torch.clamp(x[:, 0], min=p.get("strain_min", -np.inf), max=p.get("strain_max", np.inf))
        tk = x[:, 2] + KELVIN
        n = _poly(p["n"], e)
        lnx = (torch.log(x[:, 1]) + _poly(p["Q"], e) / (GAS_CONSTANT * tk) - _poly(p["lnA"], e)) / n
        sa = torch.asinh(torch.exp(lnx)) / _poly(p["alpha"], e)
        return sa + y if net.base["mode"] == "additive" else sa * (1.0 + y)


class TorchEagerPath:
    """evaluate(x) -> (σ, dσ/dx) as numpy arrays; threads via torch.set_num_threads."""

    def __init__(self, net: FlowNet, threads: int = 1):
        torch.set_num_threads(threads)
        self.module = TorchFlow(net)

    def evaluate(self, x: np.ndarray):
        xt = torch.from_numpy(x).requires_grad_(True)
        s = self.module(xt)
        (g,) = torch.autograd.grad(s.sum(), xt)
        return s.detach().numpy(), g.numpy()


def torch_version() -> str:
    return torch.__version__
