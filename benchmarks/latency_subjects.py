"""The models and the loading the latency benchmark runs (no torch here).

Two flow nets, both plain ``FlowNet`` data with seeded random weights, so the benchmark never
depends on a training run (``--model RUN`` replaces the first one by a trained model):

* ``residual_elu``  — ``4-R-8-A-4-A-R-1``: inputs strain, strain rate (1/s), temperature (°C) and
  one extra feature (direction 0/1); a residual block 8 → ELU → 4 → ELU → 8 around the first
  layer's output, exp output (the shape the project trains);
* ``sigmoid_3_15_7_1`` — ``3-15-A-7-A-1``: inputs strain, ln rate, temperature, min–max scaled,
  two sigmoid hidden layers, affine output (the published ANN flow-law architecture of
  anchors.md, Pantalé et al.).

And the Arrhenius baseline parameters (strain-compensated, polynomial order 9, like the AR model
of anchors.md), evaluated by ``constitutive.laws.arrhenius_stress``.
"""
from __future__ import annotations

import numpy as np

from constitutive.flownet import FlowNet

BOX_LO = [0.0, 1e-3, 1050.0]          # strain, 1/s, °C
BOX_HI = [0.7, 5.0, 1250.0]

MODELS = {
    "residual_elu": dict(spec="4-R-8-A-4-A-R-1", activation="elu",
                         label="4-R-8-A-4-A-R-1 ELU residual (exp output)"),
    "sigmoid_3_15_7_1": dict(spec="3-15-A-7-A-1", activation="sigmoid",
                             label="3-15-A-7-A-1 sigmoid (published ANN shape)"),
}


def _rng_layer(rng, out: int, inp: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(size=(out, inp)) / np.sqrt(inp), 0.1 * rng.normal(size=out)


def residual_elu_net(seed: int = 0) -> FlowNet:
    """The 4-R-8-A-4-A-R-1 ELU residual net with random weights and realistic scaling
    (σ roughly 20–200 MPa through the exp output)."""
    return residual_net(seed, 8, 4, "elu", MODELS["residual_elu"]["spec"])


def residual_net(seed: int, width: int, inner: int, activation: str, spec: str) -> FlowNet:
    """4-R-width-A-inner-A-R-1 residual net (``activation`` in both hidden layers) with random
    weights and the scaling of :func:`residual_elu_net`; ``spec`` is recorded in the metadata."""
    rng = np.random.default_rng(seed)
    cols = [dict(kind="identity", feature=0, power=None, shift=0.0, scale=0.7),
            dict(kind="log", feature=1, power=None, shift=float(np.log(1e-3)), scale=float(np.log(5e3))),
            dict(kind="identity", feature=2, power=dict(gamma=1250.0, beta=0.5), shift=66.0, scale=6.0),
            dict(kind="identity", feature=3, power=None, shift=0.0, scale=1.0)]
    ops = []
    W, b = _rng_layer(rng, width, 4)
    ops += [dict(op="linear", W=W, b=b), dict(op="push"), dict(op="act", fn=activation)]
    W, b = _rng_layer(rng, inner, width)
    ops += [dict(op="linear", W=W, b=b), dict(op="act", fn=activation)]
    W, b = _rng_layer(rng, width, inner)
    ops += [dict(op="linear", W=W, b=b), dict(op="add")]
    W, _ = _rng_layer(rng, 1, width)
    ops += [dict(op="linear", W=W, b=np.zeros(1))]
    return FlowNet(["strain", "strain_rate", "temperature", "direction"], ["-", "1/s", "C", "-"],
                   cols, ops, dict(kind="exp", scale=0.4, shift=4.0),
                   box_lo=BOX_LO + [0.0], box_hi=BOX_HI + [1.0], rate_floor=1e-4, box_policy="clamp",
                   meta={"spec": spec, "data_hash": "benchmark-random",
                         "version": "benchmark", "seed": seed})


def sigmoid_3_15_7_1_net(seed: int = 0) -> FlowNet:
    """3-15-A-7-A-1 with sigmoid hidden layers and an affine output in MPa; inputs strain,
    ln(rate), temperature, each min–max scaled to [0, 1] over the box (Pantalé's set-up)."""
    rng = np.random.default_rng(seed + 101)
    cols = [dict(kind="identity", feature=0, power=None, shift=BOX_LO[0], scale=BOX_HI[0] - BOX_LO[0]),
            dict(kind="log", feature=1, power=None, shift=float(np.log(BOX_LO[1])),
                 scale=float(np.log(BOX_HI[1] / BOX_LO[1]))),
            dict(kind="identity", feature=2, power=None, shift=BOX_LO[2], scale=BOX_HI[2] - BOX_LO[2])]
    ops = []
    for out, inp in ((15, 3), (7, 15)):
        W, b = _rng_layer(rng, out, inp)
        ops += [dict(op="linear", W=3.0 * W, b=b), dict(op="act", fn="sigmoid")]
    W, b = _rng_layer(rng, 1, 7)
    ops += [dict(op="linear", W=W, b=b)]
    return FlowNet(["strain", "strain_rate", "temperature"], ["-", "1/s", "C"], cols, ops,
                   dict(kind="affine", scale=60.0, shift=100.0),
                   box_lo=list(BOX_LO), box_hi=list(BOX_HI), rate_floor=1e-4, box_policy="clamp",
                   meta={"spec": MODELS["sigmoid_3_15_7_1"]["spec"], "data_hash": "benchmark-random",
                         "version": "benchmark", "seed": seed})


def build_model(name: str, seed: int = 0) -> FlowNet:
    if name == "residual_elu":
        return residual_elu_net(seed)
    if name == "sigmoid_3_15_7_1":
        return sigmoid_3_15_7_1_net(seed)
    raise KeyError(name)


def arrhenius_params() -> dict:
    """Strain-compensated Arrhenius law, polynomial order 9 in strain (10 coefficients each),
    values typical of a hot-worked low-alloy steel: α ≈ 0.012 1/MPa, n ≈ 4.8, Q ≈ 380 kJ/mol,
    ln A ≈ 32 (ln 1/s). Gives σ of roughly 30–250 MPa over the box."""
    def poly(c0, rel):
        c = np.zeros(10)
        c[0] = c0
        # gentle strain dependence: c0·(1 + rel·(ε − 0.6ε² + 0.3ε³ − …))
        c[1:] = c0 * rel * np.array([1.0, -0.6, 0.3, -0.15, 0.08, -0.04, 0.02, -0.01, 0.005])
        return c.tolist()
    return dict(alpha=poly(0.012, -0.2), n=poly(4.8, -0.15), Q=poly(380e3, -0.1), lnA=poly(32.0, -0.1),
                strain_min=0.05, strain_max=0.7)


def in_box_points(net: FlowNet, n: int, seed: int = 1) -> np.ndarray:
    """n points inside the model's box (rate log-uniform, extras 0/1), float64, C-contiguous."""
    rng = np.random.default_rng(seed)
    lo, hi = np.asarray(net.box_lo, dtype=float), np.asarray(net.box_hi, dtype=float)
    x = lo + rng.random((n, len(lo))) * (hi - lo)
    x[:, 1] = np.exp(np.log(lo[1]) + rng.random(n) * (np.log(hi[1]) - np.log(lo[1])))
    for k in range(3, len(lo)):
        x[:, k] = rng.integers(0, 2, n)
    return np.ascontiguousarray(x)


# ---- loading for the J2 update paths -------------------------------------------------------
# Hot compression along 11 with a little shear: a deviatoric strain increment (volume change is
# elastic only) of equivalent size DEPS per increment, at constant rate and temperature.
E_MPA, NU = 120e3, 0.3          # Young's modulus of steel near 1100 °C, MPa; Poisson's ratio
TEMPERATURE_C = 1100.0          # °C
STRAIN_RATE = 0.1               # 1/s
DEPS = 2e-3                     # equivalent strain per increment
DIRECTION = np.array([-1.0, 0.5, 0.5, 0.2, 0.0, 0.0])   # Voigt, engineering shear


def strain_increment(deps: float = DEPS) -> np.ndarray:
    """Voigt strain increment (engineering shear) whose von Mises equivalent is ``deps``."""
    d = DIRECTION.copy()
    dev = d[:3] - d[:3].mean()
    eq = np.sqrt(2.0 / 3.0 * (dev @ dev + 0.5 * d[3:] @ d[3:]))
    return d * (deps / eq)


def time_increment(deps: float = DEPS, rate: float = STRAIN_RATE) -> float:
    return deps / rate


def props_for(net: FlowNet) -> np.ndarray:
    """PROPS (fem_bridge.conventions): E, ν, temp_mode = 1 (CalculiX: TEMP is the end value),
    rate floor from the model (0), then the extras at 0."""
    return np.array([E_MPA, NU, 1.0, 0.0] + [0.0] * (net.n_features - 3))
