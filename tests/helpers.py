"""Small model factories for tests that must not depend on training."""
from __future__ import annotations

import numpy as np

from constitutive.coverage import Coverage
from constitutive.flownet import FlowNet


def random_flownet(seed: int = 0, n_extras: int = 0, activation: str = "elu", residual: bool = True,
                   base: dict | None = None, box_policy: str = "clamp") -> FlowNet:
    """A 4-R-8-A-4-A-R-1-shaped net with random weights and realistic input scaling
    (strain 0–0.7, rate 1e-3–5 1/s, 1050–1250 °C), output ≈ 20–200 MPa, exp output."""
    rng = np.random.default_rng(seed)
    cols = [dict(kind="identity", feature=0, power=None, shift=0.0, scale=0.7),
            dict(kind="log", feature=1, power=None, shift=np.log(1e-3), scale=np.log(5e3)),
            dict(kind="identity", feature=2, power=dict(gamma=1250.0, beta=0.5), shift=66.0, scale=6.0)]
    cols += [dict(kind="identity", feature=3 + k, power=None, shift=0.0, scale=1.0) for k in range(n_extras)]
    c = len(cols)
    W = lambda o, i: rng.normal(size=(o, i)) / np.sqrt(i)
    ops = [dict(op="linear", W=W(8, c), b=0.1 * rng.normal(size=8))]
    if residual:
        ops.append(dict(op="push"))
    ops += [dict(op="act", fn=activation), dict(op="linear", W=W(4, 8), b=0.1 * rng.normal(size=4)),
            dict(op="act", fn=activation), dict(op="linear", W=W(8, 4), b=0.1 * rng.normal(size=8))]
    if residual:
        ops.append(dict(op="add"))
    ops.append(dict(op="linear", W=W(1, 8), b=np.zeros(1)))
    names = ["strain", "strain_rate", "temperature"] + [f"extra{k}" for k in range(n_extras)]
    units = ["-", "1/s", "C"] + ["-"] * n_extras
    return FlowNet(names, units, cols, ops, dict(kind="exp", scale=0.4, shift=4.0),
                   box_lo=[0.0, 1e-3, 1050.0] + [0.0] * n_extras,
                   box_hi=[0.7, 5.0, 1250.0] + [1.0] * n_extras,
                   rate_floor=1e-4, box_policy=box_policy, base=base,
                   meta={"spec": "3-R-8-A-4-A-R-1", "data_hash": "test", "version": "test"})


def in_box_points(net: FlowNet, n: int, seed: int = 1) -> np.ndarray:
    """Random points inside the training box (rate log-uniform, extras at 0/1)."""
    rng = np.random.default_rng(seed)
    lo, hi = np.asarray(net.box_lo), np.asarray(net.box_hi)
    x = lo + rng.random((n, len(lo))) * (hi - lo)
    x[:, 1] = np.exp(np.log(lo[1]) + rng.random(n) * (np.log(hi[1]) - np.log(lo[1])))
    for k in range(3, len(lo)):
        x[:, k] = rng.integers(0, 2, n)
    return x


GAP_TEMPS = (20.0, 650.0, 750.0, 850.0, 950.0, 1050.0)      # °C: a 630 °C gap above room temperature
GAP_RATES = (0.01, 0.1, 1.0)                                # 1/s


def gap_flownet(seed: int = 0, n_extras: int = 0, box_policy: str = "clamp",
                first_strain: float = 0.002, last_strain: float = 0.6) -> FlowNet:
    """``random_flownet`` trained (by hand) on a test matrix with a 630 °C gap: curves at every
    temperature of GAP_TEMPS × GAP_RATES (× extras 0/1), measured from ``first_strain`` to
    ``last_strain`` (0.4 at 20 °C); the measured conditions in ``coverage``."""
    net = random_flownet(seed=seed, n_extras=n_extras, box_policy=box_policy)
    rows, strain, curve = [], [], []
    grid = [(t, r) for t in GAP_TEMPS for r in GAP_RATES]
    extras = [()] if n_extras == 0 else [(float(e),) * n_extras for e in (0, 1)]
    k = 0
    for t, r in grid:
        for ex in extras:
            top = 0.4 if t == GAP_TEMPS[0] else last_strain
            for e in np.linspace(first_strain, top, 5):
                rows.append((t, r, *ex))
                strain.append(e)
                curve.append(k)
            k += 1
    cov = Coverage.from_points(np.array(rows), np.array(strain), np.array(curve))
    net.coverage = cov.to_dict()
    net.box_lo = [first_strain, GAP_RATES[0], GAP_TEMPS[0]] + [0.0] * n_extras
    net.box_hi = [last_strain, GAP_RATES[-1], GAP_TEMPS[-1]] + [1.0] * n_extras
    net.rate_floor = 0.1 * GAP_RATES[0]
    return net
