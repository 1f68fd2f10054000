"""Training of the small-sample networks. ``fit(curves, config, seed)`` runs the config's method:

- ``ensemble`` (the default, ``_fit_ensemble``): ``ensemble_members`` networks, each trained by
  the pipeline below with its own seed, averaged in ln σ and distilled into one network
  (``constitutive.ensemble``); the student is fitted with the sign constraints of
  ``SignPoints`` (σ falls with temperature and rises with strain rate over the box and a margin
  around it) at weight ``distil_sign_penalty``;
- ``network`` (the seed method of method.md): the pipeline below, residual network with
  transfer learning from the fitted Arrhenius law, optionally hybrid (network = correction to
  Arrhenius) and with sign constraints (``sign_penalty``);
- ``anchored``: ``constitutive.anchored``.

Pipeline of one network (curves = the training curves; held-out curves never enter):

1. points at strain 0 are dropped (as for the baselines: the laws are undefined there);
2. validation curves: ``val_fraction`` of the curves, WHOLE curves, chosen by the seed among
   interior conditions where possible (not at an extreme temperature or rate);
3. each curve is resampled at ``points_per_curve`` strains (linear interpolation of the raw
   curve) — the network learns from raw (not smoothed) curves; only Arrhenius uses smoothing;
4. input / output transforms fitted on the training curves (``constitutive.preprocessing``);
5. optional outlier comparison, SMOTE and noise (``constitutive.augment``);
6. optional transfer: pre-training on points drawn from the fitted Arrhenius law over the
   training box (strain and temperature uniform, strain rate log-uniform, extras from the
   observed values), stopped when the network's MARE on the experimental training curves is
   ≤ ``transfer_factor`` × Arrhenius's own MARE there (or after ``transfer_max_steps``);
7. fine-tuning on the experimental points: AdamW, RMSE loss on the normalised target, MARE
   logged, exponential learning-rate decay from ``lr`` to ``lr_final``, early stopping on the
   validation curves' MARE with ``patience`` steps; the best checkpoint is kept;
8. optional Levenberg–Marquardt polish (``lm_steps``, on by default): the same least-squares
   objective plus weight_decay·|θ|², in float64, early-stopped on the validation MARE. It reaches
   in seconds what Adam reaches in tens of thousands of steps on these tiny networks (measured on
   all 30 gleeble_3cr2mo curves, 3-15-A-7-A-1 sigmoid: Adam 30 000 steps → 0.68 % MARE;
   Adam 2 000 steps + 150 LM iterations → 0.51 %).

Training runs in float32 on the CPU (``torch.set_num_threads(threads)``) and is deterministic for
a seed; predictions and the exported model use a float64 copy.
"""
from __future__ import annotations

import copy
import json
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call, jacrev, vmap

from . import anchored, ensemble
from .augment import add_noise, flag_outliers, smote
from .baselines import Arrhenius, without_zero_strain
from .coverage import Coverage
from .errors import NeumatInputError
from .flow_curves import FlowCurves
from .flownet import FlowNet
from .jsonio import to_jsonable
from .laws import arrhenius_stress
from .metrics import mare_pct, scores
from .network import ResidualMLP, init_network
from .preprocessing import FeatureSpec, InputTransform, OutputTransform

FEATURE_UNITS = {"strain": "-", "strain_rate": "1/s", "temperature": "C"}
RATE_FLOOR_FACTOR = 0.1     # rate_floor = 0.1 × the smallest training strain rate (1/s)


METHODS = ("ensemble", "anchored", "network")
# settings of the network method alone: a config without ``method`` that sets one of them (the
# config.json of a run made before the ensemble existed, or a file written for that method) is
# read as ``network``; without any of them it is read as the default method
NETWORK_ONLY = ("spec", "activation", "hybrid", "transfer", "transfer_factor", "transfer_max_steps", "transfer_lr",
                "smote_ratio", "smote_across", "dropout")


class TrainingFailedError(RuntimeError):
    """The trained model's own fit is absurd (non-finite, non-positive or far off its training
    curves): it must not be saved or exported (``neumat train`` exits with code 1)."""


@dataclass
class TrainConfig:
    """All hyper-parameters of one training (JSON-able; ``neumat train --config`` reads it).

    ``method``:

    - ``ensemble`` (default): ``ensemble_members`` networks with the settings of this config
      overridden by ``ensemble_member`` (the plain 3-15-A-7-A-1 sigmoid MLP), each with its own
      seed, averaged in ln σ and distilled into one network of the member structure
      (``constitutive.ensemble``; the ``distil_*`` settings; the student's Adam and LM use
      ``weight_decay``, ``eval_every``, ``lm_patience`` of this config);
    - ``network``: the seed method, residual network with transfer from Arrhenius, early
      stopping on validation curves (the settings below ``inner_folds``);
    - ``anchored``: a base law (Arrhenius or a log-linear Zener–Hollomon law) times a bounded
      correction, both chosen by inner cross-validation (``constitutive.anchored``; the
      ``anchor_*`` and ``inner_folds`` settings).

    The default is the method with the lowest leave-one-condition-out error over the data sets
    of ``neumat benchmark loco`` (benchmarks/results/loco.json). A config dict without
    ``method`` is read as ``network`` when it sets a setting of that method alone
    (``NETWORK_ONLY``: files written before the ensemble existed), else as the default."""
    method: str = "ensemble"
    ensemble_members: int = 5
    ensemble_member: dict = field(default_factory=lambda: dict(ensemble.DEFAULT_MEMBER))
    distil_points: int = 4096            # drawn inputs over the widened box (plus the training points)
    distil_margin: float = 0.25          # box widening, fraction of the rate (log) and temperature ranges
    distil_steps: int = 1500             # Adam steps of the student
    distil_lm_steps: int = 100           # Levenberg–Marquardt iterations of the student
    distil_sign_penalty: float = 30.0    # sign constraints on the student (sign_points, sign_margin; 0 = off)
    anchor_spec: str = "4-R-8-A-4-A-R-1"  # correction network (the fixed bound layer -A-1 is appended)
    anchor_bound: float = 0.5            # |σ/σ_A − 1| ≤ bound
    anchor_strengths: list = field(default_factory=lambda: [0.1, 1.0])   # κ, pull to the law
    anchor_weight_decay: float = 1e-5
    anchor_orders: list = field(default_factory=lambda: [5, 9])
    anchor_loglinear: bool = True        # the log-linear Zener–Hollomon base is a candidate too
    anchor_iters: int = 80               # Levenberg–Marquardt iterations per fit
    anchor_points: int = 30              # points per curve for the correction fit
    inner_folds: int = 4                 # inner cross-validation folds (whole conditions)
    spec: str = "4-R-16-A-8-A-R-1"
    activation: str = "tanh"
    dropout: float = 0.0
    lr: float = 1e-2
    lr_final: float = 1e-3
    weight_decay: float = 1e-6
    batch_size: int = 0                  # 0: full batch
    max_steps: int = 1500
    patience: int = 1000                 # steps without a better validation MARE
    lm_steps: int = 300                  # Levenberg–Marquardt polish after Adam (0 = off)
    lm_patience: int = 30                # LM iterations without a better validation MARE
    eval_every: int = 50
    points_per_curve: int = 60
    strain_grid: str = "uniform"         # uniform | dense_start (ε = lo + (hi − lo)·u², finer at small strain)
    val_fraction: float = 0.15           # fraction of the training curves used for early stopping
    smote_ratio: float = 0.0             # synthetic points per real point
    smote_k: int = 5
    smote_across: bool = False           # neighbours from other curves only
    noise: float = 0.0                   # relative Gaussian noise on stress
    outliers: str = "keep"               # keep | drop | compare
    outlier_threshold: float = 5.0
    transfer: bool = True
    transfer_factor: float = 1.1
    transfer_max_steps: int = 1500
    transfer_lr: float = 1e-2
    transfer_points: int = 16384
    transfer_batch: int = 1024
    transfer_margin: float = 0.0         # widen the sampling box by this fraction of each range
    hybrid: str = "none"                 # none | multiplicative | additive
    output: str = "log"                  # log | affine
    arrhenius_order: int = 9
    features: dict = field(default_factory=dict)    # FeatureSpec fields
    box_policy: str = "clamp"
    sign_penalty: float = 0.0            # weight of the sign constraints (σ falls with T, rises with rate)
    sign_points: int = 512               # inputs where they are imposed: the box widened by sign_margin
    sign_margin: float = 0.25
    threads: int = 1

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        d = dict(d)
        d.pop("_comment", None)
        d = d.get("config", d) if "config" in d and isinstance(d["config"], dict) else d
        unknown = sorted(set(d) - known)
        if unknown:
            raise NeumatInputError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        if "method" not in d:
            d["method"] = "network" if set(d) & set(NETWORK_ONLY) else cls.method
        cfg = cls(**d)
        cfg.validate(source)
        return cfg

    @classmethod
    def load(cls, path) -> "TrainConfig":
        p = Path(path)
        try:
            d = json.loads(p.read_text())
        except OSError as exc:
            raise NeumatInputError(f"cannot read config {p}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise NeumatInputError(f"{p}: not JSON ({exc.msg}, line {exc.lineno})") from None
        if not isinstance(d, dict):
            raise NeumatInputError(f"{p}: expected a JSON object of settings")
        return cls.from_dict(d, str(p))

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self, source: str = "config") -> None:
        def need(ok, msg):
            if not ok:
                raise NeumatInputError(f"{source}: {msg}")
        need(self.method in METHODS, f"method must be one of {', '.join(METHODS)}")
        need(0 < self.anchor_bound < 1, "anchor_bound must be in (0, 1)")
        need((len(self.anchor_orders) > 0 or self.anchor_loglinear) and all(1 <= int(o) <= 9 for o in self.anchor_orders),
             "anchor_orders must list Arrhenius orders 1…9 (it may be empty only with anchor_loglinear)")
        need(all(float(v) >= 0 for v in self.anchor_strengths) and self.anchor_weight_decay >= 0,
             "anchor_strengths and anchor_weight_decay must be >= 0")
        need(self.inner_folds >= 2, "inner_folds must be >= 2")
        need(self.ensemble_members >= 1, "ensemble_members must be >= 1")
        need(isinstance(self.ensemble_member, dict), "ensemble_member must be an object of TrainConfig settings")
        try:
            ensemble.member_overrides(self)
        except ValueError as exc:
            need(False, str(exc))
        need(self.distil_points >= 100 and self.distil_steps >= 1 and self.distil_lm_steps >= 0,
             "distil_points >= 100, distil_steps >= 1, distil_lm_steps >= 0")
        need(0 <= self.distil_margin <= 1, "distil_margin must be in [0, 1]")
        need(self.sign_penalty >= 0 and self.distil_sign_penalty >= 0 and self.sign_points >= 10 and 0 <= self.sign_margin <= 1,
             "sign_penalty >= 0, sign_points >= 10, sign_margin in [0, 1]")
        need(self.anchor_iters >= 1 and self.anchor_points >= 5, "anchor_iters >= 1, anchor_points >= 5")
        need(self.lr > 0 and self.lr_final > 0, "lr and lr_final must be > 0")
        need(self.weight_decay >= 0, "weight_decay must be >= 0")
        need(self.max_steps >= 1, "max_steps must be >= 1")
        need(self.points_per_curve >= 5, "points_per_curve must be >= 5")
        need(0 <= self.val_fraction < 1, "val_fraction must be in [0, 1)")
        need(self.outliers in ("keep", "drop", "compare"), "outliers must be keep, drop or compare")
        need(self.hybrid in ("none", "multiplicative", "additive"), "hybrid must be none, multiplicative or additive")
        need(self.output in ("log", "affine"), "output must be log or affine")
        need(self.transfer_factor >= 1.0, "transfer_factor must be >= 1")
        need(self.box_policy in ("clamp", "extrapolate"), "box_policy must be clamp or extrapolate")
        need(self.batch_size >= 0, "batch_size must be >= 0")
        need(self.strain_grid in ("uniform", "dense_start"), "strain_grid must be uniform or dense_start")
        FeatureSpec(**self.features).validate()

    @classmethod
    def quick(cls, **kw) -> "TrainConfig":
        """Small and fast (seconds): for tests and the demo."""
        base = dict(max_steps=500, patience=300, transfer_max_steps=400, points_per_curve=25,
                    eval_every=25, transfer_points=4096, transfer_batch=512, lm_steps=20, lm_patience=10,
                    anchor_iters=15, anchor_points=15, anchor_strengths=[0.03], anchor_orders=[5], inner_folds=3,
                    ensemble_members=3, distil_points=1024, distil_steps=300, distil_lm_steps=20)
        base.update(kw)
        return cls(**base)


# ---------------------------------------------------------------------------------------------
class TrainedModel:
    """A trained network with its transforms; float64 predictions; FlowNet conversion."""

    def __init__(self, net: ResidualMLP, in_tf: InputTransform, out_tf: OutputTransform,
                 config: TrainConfig, feature_names: list[str], box_lo, box_hi, rate_floor: float,
                 arrhenius: dict | None = None, history: list | None = None, info: dict | None = None,
                 anchor: dict | None = None):
        self.net = net
        # anchor: the log-linear base of the anchored model, ln σ = c + w·z + net(z) (net bounded)
        self.anchor = anchor
        self.net64 = net.float64_copy()
        self.in_tf, self.out_tf, self.config = in_tf, out_tf, config
        self.feature_names = list(feature_names)
        self.box_lo = [float(v) for v in box_lo]
        self.box_hi = [float(v) for v in box_hi]
        self.rate_floor = float(rate_floor)
        self.arrhenius = arrhenius
        self.history = history or []
        self.info = info or {}

    @property
    def exportable(self) -> bool:
        return self.in_tf.exportable

    def base_stress(self, x: np.ndarray) -> np.ndarray | None:
        if self.out_tf.hybrid == "none":
            return None
        return arrhenius_stress(self.arrhenius, x[:, 0], x[:, 1], x[:, 2])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """σ (MPa) at physical inputs x (n, F), float64, no box policy (extrapolates)."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        z = self.in_tf.transform(x)
        with torch.no_grad():
            h = self.net64(torch.from_numpy(z)).numpy()
        if self.anchor is not None:
            h = h + z @ np.asarray(self.anchor["w"]) + self.anchor["c"]
        return self.out_tf.inverse(h, self.base_stress(x))

    def predict_curves(self, curves: FlowCurves) -> np.ndarray:
        return self.predict(curves.features())

    def to_flownet(self, meta: dict | None = None) -> FlowNet:
        cols = self.in_tf.flownet_columns()
        base = None
        if self.out_tf.hybrid != "none":
            base = {"mode": self.out_tf.hybrid, "arrhenius": self.arrhenius}
        units = [FEATURE_UNITS.get(n, "-") for n in self.feature_names]
        m = {"spec": self.net.spec, "activation": self.net.activation, **self.info, **(meta or {})}
        ops = self.net64.flownet_ops() if self.anchor is None else self._anchor_ops()
        return FlowNet(self.feature_names, units, cols, ops, self.out_tf.flownet_output(),
                       box_lo=self.box_lo, box_hi=self.box_hi, rate_floor=self.rate_floor,
                       box_policy=self.config.box_policy, base=base, meta=to_jsonable(m))

    def _anchor_ops(self) -> list[dict]:
        """FlowNet ops of ln σ = c + w·z + net(z): h = [z; c + w·z] is kept (push), the network
        reads z (a zero column for the base slot), its last 1 → 1 layer (the bound) writes into
        the base slot, the residual add sums, and a last linear layer picks the slot."""
        w = np.asarray(self.anchor["w"], dtype=float)
        c_in = len(w)
        W0 = np.vstack([np.eye(c_in), w[None, :]])
        b0 = np.concatenate([np.zeros(c_in), [float(self.anchor["c"])]])
        ops = [{"op": "linear", "W": W0, "b": b0}, {"op": "push"}]
        inner = self.net64.flownet_ops()
        first = next(i for i, o in enumerate(inner) if o["op"] == "linear")
        last = max(i for i, o in enumerate(inner) if o["op"] == "linear")
        for i, o in enumerate(inner):
            o = dict(o)
            if i == first:
                o["W"] = np.hstack([o["W"], np.zeros((o["W"].shape[0], 1))])
            if i == last:
                o["W"] = np.vstack([np.zeros((c_in, 1)), o["W"]])
                o["b"] = np.concatenate([np.zeros(c_in), o["b"]])
            ops.append(o)
        ops += [{"op": "add"}, {"op": "linear", "W": np.concatenate([np.zeros(c_in), [1.0]])[None, :],
                                "b": np.zeros(1)}]
        return ops

    def state(self) -> dict:
        return {"config": self.config.to_dict(), "feature_names": self.feature_names,
                "in_transform": self.in_tf.to_dict(), "out_transform": self.out_tf.to_dict(),
                "box_lo": self.box_lo, "box_hi": self.box_hi, "rate_floor": self.rate_floor,
                "arrhenius": self.arrhenius, "anchor": self.anchor, "info": to_jsonable(self.info),
                "net_spec": self.net.spec,
                "net_activation": self.net.activation}

    def save(self, folder) -> None:
        """weights.pt (torch state dict) + transforms.json (everything needed to rebuild it)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), folder / "weights.pt")
        (folder / "transforms.json").write_text(json.dumps(to_jsonable(self.state()), indent=1))

    @classmethod
    def load(cls, folder) -> "TrainedModel":
        folder = Path(folder)
        st = json.loads((folder / "transforms.json").read_text())
        cfg = TrainConfig.from_dict(st["config"])
        in_tf = InputTransform.from_dict(st["in_transform"])
        net = ResidualMLP(st.get("net_spec", cfg.spec), len(in_tf.columns), st.get("net_activation", cfg.activation),
                          cfg.dropout)
        net.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
        return cls(net, in_tf, OutputTransform.from_dict(st["out_transform"]), cfg, st["feature_names"],
                   st["box_lo"], st["box_hi"], st["rate_floor"], st["arrhenius"], info=st["info"],
                   anchor=st.get("anchor"))


# ---------------------------------------------------------------------------------------------
def choose_validation_curves(curves: FlowCurves, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of whole validation curves: interior conditions first (neither the lowest/highest
    temperature nor the lowest/highest rate), then non-corner ones, chosen at random."""
    n = curves.n_curves
    n_val = int(round(fraction * n))
    if fraction > 0:
        n_val = max(1, n_val)
    if n_val == 0 or n < 3:
        return np.zeros(0, dtype=np.int64)
    n_val = min(n_val, n - 2)
    conds = curves.conditions()
    t, r = conds[:, 0], conds[:, 1]
    t_edge = np.isclose(t, t.min()) | np.isclose(t, t.max())
    r_edge = np.isclose(r, r.min()) | np.isclose(r, r.max())
    interior = np.flatnonzero(~t_edge & ~r_edge)
    side = np.flatnonzero(t_edge ^ r_edge)
    corner = np.flatnonzero(t_edge & r_edge)
    order = np.concatenate([rng.permutation(interior), rng.permutation(side), rng.permutation(corner)])
    return np.sort(order[:n_val])


def strain_grid(curves: FlowCurves, n: int, kind: str = "uniform") -> np.ndarray:
    """The strains at which every training curve is resampled."""
    lo, hi = float(curves.strain.min()), float(curves.strain.max())
    u = np.linspace(0.0, 1.0, int(n))
    if kind == "dense_start":
        u = u**2
    return lo + (hi - lo) * u


def resample_jittered(curves: FlowCurves, grid: np.ndarray, rng: np.random.Generator) -> FlowCurves:
    """Each curve linearly interpolated at ``grid`` shifted by its own random fraction of the grid
    step (so that the curves do not share the same strains: the network cannot fit a comb of
    strain values and be wild in between). Points beyond a curve's strain range are dropped."""
    step = float(np.min(np.diff(grid))) if len(grid) > 1 else 0.0
    parts = []
    for c in range(curves.n_curves):
        sub = curves.subset([c])
        e, s = sub.strain, sub.stress
        o = np.argsort(e, kind="stable")
        g = grid + rng.uniform(0.0, 1.0) * step
        g = g[(g >= e[o][0]) & (g <= e[o][-1])]
        if len(g) == 0:
            continue
        parts.append((c, g, np.interp(g, e[o], s[o])))
    idx0 = np.array([curves.curve_points(c)[0] for c, _, _ in parts])
    n = [len(g) for _, g, _ in parts]
    rep = np.repeat(idx0, n)
    return FlowCurves(curve=np.repeat([c for c, _, _ in parts], n), temperature=curves.temperature[rep],
                      strain_rate=curves.strain_rate[rep], strain=np.concatenate([g for _, g, _ in parts]),
                      stress=np.concatenate([v for _, _, v in parts]), curve_names=list(curves.curve_names),
                      extras={k: v[rep] for k, v in curves.extras.items()}, source=curves.source,
                      synthetic=curves.synthetic)


def fit_arrhenius(curves: FlowCurves, order: int = 9) -> dict:
    """Arrhenius parameters (``constitutive.laws`` format) fitted on ``curves``."""
    return Arrhenius(order=order).fit(curves).params


def _to_t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float32)


class _Progress:
    def __init__(self, total: int, desc: str, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm  # optional: the train extra; only for progress bars
            self.bar = tqdm(total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int, **post):
        if self.bar is not None:
            self.bar.update(n)
            if post:
                self.bar.set_postfix({k: f"{v:.3g}" for k, v in post.items()}, refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class SignPoints:
    """Where the sign constraints are imposed: inputs ``x`` over the training box widened by
    ``sign_margin`` and their neighbours a step ``H`` (fraction of the box) up in temperature and
    in ln(rate), all in network coordinates. ``violation(net)`` is, per input, the network's
    slope (target units per box width) in the wrong direction: rising with temperature,
    falling with strain rate; zero where the signs hold."""
    H = 0.02

    def __init__(self, curves: FlowCurves, in_tf, box, cfg, seed: int):
        lo, hi = np.asarray(box[0], float), np.asarray(box[1], float)
        x = anchored.virtual_points(curves, box, cfg.sign_points, cfg.sign_margin, seed + 104729)
        xt, xr = x.copy(), x.copy()
        xt[:, 2] += self.H * (hi[2] - lo[2])
        xr[:, 1] *= np.exp(self.H * np.log(hi[1] / lo[1]))
        self.z0, self.zt, self.zr = (_to_t(in_tf.transform(v)) for v in (x, xt, xr))
        self.weight = float(cfg.sign_penalty)

    def violation(self, net, z0=None, zt=None, zr=None) -> torch.Tensor:
        f0, ft, fr = net(self.z0 if z0 is None else z0), net(self.zt if zt is None else zt), net(self.zr if zr is None else zr)
        return torch.cat([torch.relu(ft - f0), torch.relu(f0 - fr)]) / self.H

    def loss(self, net) -> torch.Tensor:
        return self.weight * torch.sqrt(torch.mean(self.violation(net) ** 2) + 1e-30)


def _train_loop(net, z, t, cfg: TrainConfig, gen: torch.Generator, evaluate, *, steps: int, lr: float,
                lr_final: float, batch: int, patience: int | None, stop=None, phase: str,
                history: list, progress: bool, resample=None, signs: SignPoints | None = None):
    """Adam(W) on RMSE (+ the sign-constraint term of ``signs``); ``evaluate(net) -> dict`` every
    ``eval_every`` steps with key ``crit`` (lower is better) for the best checkpoint;
    ``stop(metrics) -> bool`` ends the phase."""
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    gamma = (lr_final / lr) ** (1.0 / max(steps, 1))
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
    n = len(t)
    best = (np.inf, copy.deepcopy(net.state_dict()), 0)
    bar = _Progress(steps, phase, progress)
    stopped = "max_steps"
    last_eval = 0
    for step in range(1, steps + 1):
        net.train()
        if resample is not None:
            zb, tb = resample(step)
        elif batch and batch < n:
            idx = torch.randint(0, n, (batch,), generator=gen)
            zb, tb = z[idx], t[idx]
        else:
            zb, tb = z, t
        loss = torch.sqrt(torch.mean((net(zb) - tb) ** 2))
        if signs is not None:
            loss = loss + signs.loss(net)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % cfg.eval_every == 0 or step == steps:
            net.eval()
            m = evaluate(net)
            m.update(phase=phase, step=step, loss=float(loss.detach()))
            history.append(m)
            bar.update(step - last_eval, loss=float(loss.detach()), mare=m.get("val_mare_pct", m.get("train_mare_pct", 0)))
            last_eval = step
            if m["crit"] < best[0]:
                best = (m["crit"], copy.deepcopy(net.state_dict()), step)
            if stop is not None and stop(m):
                stopped = "criterion"
                break
            if patience is not None and step - best[2] > patience:
                stopped = "early_stopping"
                break
    bar.close()
    net.eval()
    return best, stopped, step


def fit(curves: FlowCurves, config: TrainConfig | None = None, seed: int = 0, progress: bool = False,
        arrhenius: dict | None = None, log=None) -> TrainedModel:
    """Train one model on ``curves`` (the held-out curves must already be removed). The model
    carries the measured conditions (``info["coverage"]``, constitutive.coverage): every consumer
    of the exported file flags evaluations away from them."""
    model = _fit(curves, config, seed, progress, arrhenius, log)
    model.info["coverage"] = Coverage.from_curves(curves).to_dict()
    return model


def _fit(curves: FlowCurves, config: TrainConfig | None, seed: int, progress: bool,
         arrhenius: dict | None, log) -> TrainedModel:
    cfg = config or TrainConfig()
    cfg.validate()
    if cfg.method == "anchored":
        return _fit_anchored(curves, cfg, seed, log)
    if cfg.method == "ensemble":
        return _fit_ensemble(curves, cfg, seed, progress, log)
    say = log or (lambda *a: None)
    torch.set_num_threads(max(1, int(cfg.threads)))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(int(seed))

    curves = without_zero_strain(curves)
    if curves.n_curves < 2:
        raise NeumatInputError(f"training needs at least 2 curves, got {curves.n_curves}")
    names = curves.feature_names
    x_all = curves.features()
    box_lo, box_hi = x_all.min(axis=0), x_all.max(axis=0)
    rate_floor = RATE_FLOOR_FACTOR * float(box_lo[1])

    need_arr = cfg.transfer or cfg.hybrid != "none" or "ln_z" in cfg.features.get("engineered", [])
    info: dict = {"seed": int(seed), "transfer": None}
    if need_arr and arrhenius is None:
        try:
            arrhenius = fit_arrhenius(curves, cfg.arrhenius_order)
        except NeumatInputError as exc:
            if cfg.hybrid != "none":
                raise NeumatInputError(f"hybrid model needs an Arrhenius fit, which failed: {exc}") from None
            say(f"warning: Arrhenius fit failed ({exc}); training without transfer")
            arrhenius = None
    q_mean = None
    if arrhenius is not None:
        e = np.linspace(arrhenius["strain_min"], arrhenius["strain_max"], 50)
        q_mean = float(np.mean(np.polynomial.polynomial.polyval(e, arrhenius["Q"])))

    # --- split, outliers, resampling ---------------------------------------------------------
    val_idx = choose_validation_curves(curves, cfg.val_fraction, rng)
    tr_idx = np.setdiff1d(np.arange(curves.n_curves), val_idx)
    info["validation_curves"] = [curves.curve_names[i] for i in val_idx]
    tr_full = curves.subset(tr_idx)
    va_full = curves.subset(val_idx) if len(val_idx) else None
    flags = flag_outliers(tr_full, cfg.outlier_threshold) if cfg.outliers != "keep" else np.zeros(len(tr_full), bool)
    info["outliers_flagged"] = int(flags.sum())

    def run(tr_curves: FlowCurves, tag: str) -> TrainedModel:
        grid = strain_grid(curves, cfg.points_per_curve, cfg.strain_grid)
        tr = resample_jittered(tr_curves, grid, rng)
        va = va_full
        in_tf = InputTransform(names, FeatureSpec(**cfg.features)).fit(x_all, q=q_mean)
        x_tr = tr.features()
        base = lambda x: (arrhenius_stress(arrhenius, x[:, 0], x[:, 1], x[:, 2])
                          if cfg.hybrid != "none" else None)
        sa_tr = base(x_tr)
        out_tf = OutputTransform(cfg.output, cfg.hybrid).fit(tr.stress, sa_tr)
        stress_tr = add_noise(tr.stress, cfg.noise, rng)
        z_tr = in_tf.transform(x_tr)
        t_tr = out_tf.target(stress_tr, sa_tr)
        if cfg.smote_ratio > 0:
            z_s, t_s, _ = smote(z_tr, t_tr, cfg.smote_ratio, cfg.smote_k, rng, groups=tr.curve,
                                across_groups=cfg.smote_across)
            z_fit, t_fit = np.vstack([z_tr, z_s]), np.concatenate([t_tr, t_s])
        else:
            z_fit, t_fit = z_tr, t_tr
        zt, tt = _to_t(z_fit), _to_t(t_fit)

        # evaluation sets (float32 net; scores in MPa on the resampled points)
        # scores on ALL points of the curves (not only the resampled ones): a net that is wild
        # between the training strains is caught by the best-checkpoint criterion
        x_trv = tr_curves.features()
        z_trv, sa_trv = _to_t(in_tf.transform(x_trv)), base(x_trv)
        if va is not None:
            x_va = va.features()
            z_va, sa_va, s_va = _to_t(in_tf.transform(x_va)), base(x_va), va.stress

        def pred(net, z, sa):
            with torch.no_grad():
                return out_tf.inverse(net(z).double().numpy(), sa)

        def evaluate(net):
            m = {"train_mare_pct": mare_pct(pred(net, z_trv, sa_trv), tr_curves.stress)}
            if va is not None:
                m["val_mare_pct"] = mare_pct(pred(net, z_va, sa_va), s_va)
                m["crit"] = m["val_mare_pct"]
            else:
                m["crit"] = m["train_mare_pct"]
            return m

        net = ResidualMLP(cfg.spec, z_tr.shape[1], cfg.activation, cfg.dropout)
        init_network(net, seed, zero_output=cfg.hybrid != "none")
        signs = None
        if cfg.sign_penalty > 0:
            if cfg.hybrid != "none" or cfg.output != "log":
                raise NeumatInputError("sign_penalty needs output 'log' and hybrid 'none'")
            signs = SignPoints(curves, in_tf, (box_lo, box_hi), cfg, seed)
        history: list = []
        tinfo = None
        if cfg.transfer and arrhenius is not None and cfg.hybrid == "none":
            tinfo = _pretrain(net, cfg, arrhenius, in_tf, out_tf, x_all, tr_curves, evaluate, rng, gen, history,
                              progress)
            say(f"  transfer ({tag}): {tinfo['stopped']} after {tinfo['steps']} steps, train MARE "
                f"{tinfo['train_mare_pct']:.3g} % (Arrhenius {tinfo['arrhenius_train_mare_pct']:.3g} %)")
        best, stopped, steps = _train_loop(
            net, zt, tt, cfg, gen, evaluate, steps=cfg.max_steps, lr=cfg.lr, lr_final=cfg.lr_final,
            batch=cfg.batch_size, patience=cfg.patience if va is not None else None, phase="fine-tune",
            history=history, progress=progress, signs=signs)
        net.load_state_dict(best[1])
        fin = {"stopped": stopped, "steps": steps, "best_step": best[2], "best_crit_mare_pct": float(best[0]),
               "criterion": "validation MARE" if va is not None else "training MARE"}
        if cfg.lm_steps > 0:
            lm = _lm_polish(net, zt, tt, cfg, evaluate, history, best[0], signs)
            fin["lm"] = lm
            fin["best_crit_mare_pct"] = lm["best_crit_mare_pct"]
        inf = dict(info, transfer=tinfo, fine_tune=fin, variant=tag)
        return TrainedModel(net, in_tf, out_tf, cfg, names, box_lo, box_hi, rate_floor, arrhenius,
                            history, inf)

    if cfg.outliers == "drop":
        return run(tr_full.take(np.flatnonzero(~flags)), "outliers dropped")
    if cfg.outliers == "compare" and flags.any() and va_full is not None:
        keep = run(tr_full, "outliers kept")
        drop = run(tr_full.take(np.flatnonzero(~flags)), "outliers dropped")
        ck, cd = keep.info["fine_tune"]["best_crit_mare_pct"], drop.info["fine_tune"]["best_crit_mare_pct"]
        win = keep if ck <= cd else drop
        win.info["outlier_comparison"] = {"flagged_points": int(flags.sum()), "val_mare_pct_kept": ck,
                                          "val_mare_pct_dropped": cd, "chosen": win.info["variant"]}
        say(f"  outliers: {int(flags.sum())} flagged; validation MARE kept {ck:.3g} %, dropped {cd:.3g} % "
            f"→ {win.info['variant']}")
        return win
    return run(tr_full, "all points")


def _fit_anchored(curves: FlowCurves, cfg: TrainConfig, seed: int, log=None) -> TrainedModel:
    """The anchored model (``constitutive.anchored``) as a TrainedModel (hybrid multiplicative)."""
    torch.set_num_threads(max(1, int(cfg.threads)))
    torch.manual_seed(seed)
    curves = without_zero_strain(curves)
    if curves.n_curves < 2:
        raise NeumatInputError(f"training needs at least 2 curves, got {curves.n_curves}")
    x_all = curves.features()
    box_lo, box_hi = x_all.min(axis=0), x_all.max(axis=0)
    rate_floor = RATE_FLOOR_FACTOR * float(box_lo[1])
    res = anchored.select_and_fit(curves, cfg, seed, (box_lo, box_hi), log=log)
    corr, base = res["correction"], res["base"]
    if corr is None:     # the base law alone: a network whose output is exactly 0
        if base["kind"] == "loglinear":
            in_tf = base["in_tf"]
        else:
            in_tf = InputTransform(curves.feature_names, anchored.loglinear_spec()).fit(x_all, q=anchored.base_q(base))
        net = anchored.make_net(cfg.anchor_spec, len(in_tf.columns), cfg.anchor_bound, seed)
    else:
        net, in_tf = corr.net, corr.in_tf
    info = {"seed": int(seed), "method": "anchored", "anchored": res["info"], "transfer": None,
            "validation_curves": []}
    if base["kind"] == "arrhenius":
        out_tf = OutputTransform("affine", "multiplicative", 0.0, 1.0)
        return TrainedModel(net, in_tf, out_tf, cfg, curves.feature_names, box_lo, box_hi, rate_floor,
                            base["params"], [], info)
    out_tf = OutputTransform("log", "none", 0.0, 1.0)
    anchor = {"kind": "loglinear", "w": list(base["w"]), "c": float(base["c"])}
    return TrainedModel(net, in_tf, out_tf, cfg, curves.feature_names, box_lo, box_hi, rate_floor,
                        None, [], info, anchor=anchor)


def _fit_ensemble(curves: FlowCurves, cfg: TrainConfig, seed: int, progress: bool, log=None) -> TrainedModel:
    """The ensemble method (``constitutive.ensemble``): members, teacher, distilled student."""
    say = log or (lambda *a: None)
    curves = without_zero_strain(curves)
    if curves.n_curves < 2:
        raise NeumatInputError(f"training needs at least 2 curves, got {curves.n_curves}")
    mcfg = replace(cfg, **ensemble.member_overrides(cfg))
    seeds = ensemble.member_seeds(seed, cfg.ensemble_members)
    members = []
    for k, s in enumerate(seeds):
        members.append(_fit(curves, mcfg, s, progress, None, None))
        ft = members[-1].info.get("fine_tune") or {}
        say(f"  member {k + 1}/{len(seeds)} (seed {s}): best {ft.get('criterion', 'MARE')} "
            f"{ft.get('best_crit_mare_pct', float('nan')):.3g} %")
    torch.set_num_threads(max(1, int(cfg.threads)))
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(int(seed))
    x_all = curves.features()
    box = (x_all.min(axis=0), x_all.max(axis=0))
    rng = np.random.default_rng([int(seed), 23])
    grid = strain_grid(curves, cfg.points_per_curve, cfg.strain_grid)
    x_cur = resample_jittered(curves, grid, rng).features()      # the training curves, resampled
    x_fit = np.vstack([x_cur, anchored.virtual_points(curves, box, cfg.distil_points, cfg.distil_margin, seed)])
    x_chk = np.vstack([x_all, anchored.virtual_points(curves, box, cfg.distil_points, cfg.distil_margin,
                                                      seed + 7919)])
    ls_fit, ls_chk = ensemble.member_log_stress(members, x_fit), ensemble.member_log_stress(members, x_chk)
    s_fit, s_chk = ensemble.teacher_stress(ls_fit), ensemble.teacher_stress(ls_chk)
    in_tf = members[0].in_tf
    out_tf = OutputTransform("log", "none").fit(curves.stress)
    zt, tt = _to_t(in_tf.transform(x_fit)), _to_t(out_tf.target(s_fit))
    z_chk = _to_t(in_tf.transform(x_chk))

    signs = None
    if cfg.distil_sign_penalty > 0:
        signs = SignPoints(curves, in_tf, box, replace(cfg, sign_penalty=cfg.distil_sign_penalty), seed)

    def evaluate(net):
        """Criterion: MARE (%) from the teacher plus the sign term, in % of ln σ (what is minimised)."""
        with torch.no_grad():
            p = out_tf.inverse(net(z_chk).double().numpy())
            pen = 0.0 if signs is None else 100.0 * out_tf.scale * float(signs.loss(net))
        m = {"train_mare_pct": mare_pct(p[:len(x_all)], curves.stress), "teacher_mare_pct": mare_pct(p, s_chk)}
        return {**m, "sign_term_pct": pen, "crit": m["teacher_mare_pct"] + pen}

    net = ResidualMLP(mcfg.spec, zt.shape[1], mcfg.activation, mcfg.dropout)
    init_network(net, seed)
    history: list = []
    best, stopped, steps = _train_loop(net, zt, tt, cfg, gen, evaluate, steps=cfg.distil_steps, lr=mcfg.lr,
                                       lr_final=mcfg.lr_final, batch=0, patience=None, phase="distil",
                                       history=history, progress=progress, signs=signs)
    net.load_state_dict(best[1])
    lm = None
    if cfg.distil_lm_steps > 0:
        lm = _lm_polish(net, zt, tt, replace(cfg, lm_steps=cfg.distil_lm_steps), evaluate, history, best[0],
                        signs)
    fid = evaluate(net)
    m_scores = [mare_pct(m.predict(x_all), curves.stress) for m in members]
    info = {"seed": int(seed), "method": "ensemble", "transfer": None, "validation_curves": [],
            "ensemble": {"members": len(members), "member_seeds": seeds, "member_spec": mcfg.spec,
                         "member_activation": mcfg.activation,
                         "member_validation_curves": [m.info.get("validation_curves", []) for m in members],
                         "member_train_mare_pct": m_scores,
                         "teacher_train_mare_pct": mare_pct(s_chk[:len(x_all)], curves.stress),
                         "student_train_mare_pct": fid["train_mare_pct"],
                         "student_vs_teacher_mare_pct": fid["teacher_mare_pct"],
                         "spread_pct": ensemble.spread_pct(ls_chk[:, len(x_all):]),
                         "distil": {"points": int(len(x_fit)), "margin": cfg.distil_margin, "adam_steps": steps,
                                    "adam_stopped": stopped, "lm": lm}}}
    say(f"  student: {fid['teacher_mare_pct']:.3g} % MARE from the teacher, {fid['train_mare_pct']:.3g} % on the "
        f"training curves (members {min(m_scores):.3g}–{max(m_scores):.3g} %)")
    student = TrainedModel(net, in_tf, out_tf, cfg, curves.feature_names, box[0], box[1],
                           RATE_FLOOR_FACTOR * float(box[0][1]), None, history, info)
    student.member_models = [(mcfg, s, m) for s, m in zip(seeds, members)]    # in memory only, not saved
    return student


def check_trained(model: TrainedModel, curves: FlowCurves, max_mare_pct: float = 50.0) -> dict:
    """Raise ``TrainingFailedError`` when the model's fit of its OWN training curves is absurd:
    a non-finite or non-positive stress on the training points or on a grid of the training box,
    or a training MARE above ``max_mare_pct`` % and above 3 × the Arrhenius base's. Returns the
    training scores."""
    c = without_zero_strain(curves)
    pred = model.predict_curves(c)
    bad = ~np.isfinite(pred) | (pred <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TrainingFailedError(
            f"the trained model predicts {pred[i]:.4g} MPa on its own training curve {c.curve_names[c.curve[i]]} "
            f"at strain {c.strain[i]:.4g} ({int(bad.sum())} of {len(pred)} training points non-finite or <= 0); "
            "the model is not saved; try --method anchored or another seed")
    lo, hi = np.asarray(model.box_lo), np.asarray(model.box_hi)
    g = np.meshgrid(np.linspace(lo[0], hi[0], 9), np.exp(np.linspace(np.log(lo[1]), np.log(hi[1]), 7)),
                    np.linspace(lo[2], hi[2], 7), indexing="ij")
    xg = np.column_stack([v.ravel() for v in g] + [np.full(g[0].size, 0.5 * (a + b)) for a, b in zip(lo[3:], hi[3:])])
    pg = model.predict(xg)
    badg = ~np.isfinite(pg) | (pg <= 0)
    if badg.any():
        j = int(np.flatnonzero(badg)[0])
        raise TrainingFailedError(
            f"the trained model predicts {pg[j]:.4g} MPa inside its training box at strain {xg[j, 0]:.3g}, "
            f"rate {xg[j, 1]:.3g} 1/s, T {xg[j, 2]:.4g} °C; the model is not saved")
    s = scores(pred, c.stress)
    ref = None
    if model.arrhenius is not None:
        sa = arrhenius_stress(model.arrhenius, c.strain, c.strain_rate, c.temperature)
        if np.all(np.isfinite(sa)):
            ref = mare_pct(sa, c.stress)
    if s["mare_pct"] > max_mare_pct and (ref is None or s["mare_pct"] > 3.0 * ref):
        raise TrainingFailedError(
            f"the trained model misses its own training curves by {s['mare_pct']:.4g} % MARE"
            + (f" (its Arrhenius base: {ref:.4g} %)" if ref is not None else "") + "; the model is not saved")
    return s


def _lm_polish(net, z, t, cfg: TrainConfig, evaluate, history, crit0: float, signs: SignPoints | None = None) -> dict:
    """Levenberg–Marquardt on the same least-squares objective (+ weight_decay·|θ|², + the sign
    constraints of ``signs`` as extra residuals, weighted as in Adam's loss), in float64, with
    the validation MARE as early-stopping criterion; the best iterate is kept."""
    net64 = copy.deepcopy(net).double().eval()
    names = [k for k, _ in net64.named_parameters()]
    shapes = [p.shape for _, p in net64.named_parameters()]
    sizes = [p.numel() for _, p in net64.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for _, p in net64.named_parameters()])
    z64, t64 = z.double(), t.double()
    lam = float(cfg.weight_decay)

    def unflat(th):
        out, k = {}, 0
        for nme, shp, sz in zip(names, shapes, sizes):
            out[nme] = th[k:k + sz].reshape(shp)
            k += sz
        return out

    if signs is not None:
        s0, st, sr = signs.z0.double(), signs.zt.double(), signs.zr.double()
        c = signs.weight * np.sqrt(len(t64) / (2 * len(s0)))     # r·r/n + w²·v·v/n_v, times n

    def resid(th):
        r = functional_call(net64, unflat(th), (z64,)) - t64
        if signs is None:
            return r
        f = lambda zz: functional_call(net64, unflat(th), (zz,))
        f0 = f(s0)
        v = torch.cat([torch.relu(f(st) - f0), torch.relu(f0 - f(sr))]) / SignPoints.H
        return torch.cat([r, c * v])

    def obj(r, th):
        return float(r @ r + lam * th @ th)

    def set_net(th):
        with torch.no_grad():
            for (nme, p), v in zip(net.named_parameters(), unflat(th).values()):
                p.copy_(v.to(p.dtype))

    def single(th, zi):
        return functional_call(net64, unflat(th), (zi[None, :],))[0]

    per_point = vmap(jacrev(single), in_dims=(None, 0))    # (n, p): one gradient per point

    def jac(th):
        J = per_point(th, z64)
        if signs is None:
            return J
        f = lambda zz: functional_call(net64, unflat(th), (zz,))
        f0, ft, fr = f(s0), f(st), f(sr)
        J0, Jt, Jr = per_point(th, s0), per_point(th, st), per_point(th, sr)
        Jv = torch.cat([(ft > f0).to(J.dtype)[:, None] * (Jt - J0), (f0 > fr).to(J.dtype)[:, None] * (J0 - Jr)])
        return torch.cat([J, c * Jv / SignPoints.H])
    mu = 1e-3
    best_crit, best_theta, best_it = crit0, theta.clone(), 0
    r = resid(theta).detach()
    f = obj(r, theta)
    it = 0
    for it in range(1, cfg.lm_steps + 1):
        J = jac(theta).detach()
        A = J.T @ J + lam * torch.eye(len(theta), dtype=J.dtype)
        g = J.T @ r + lam * theta
        dA = torch.diag(A).clamp_min(1e-12)
        accepted = False
        for _ in range(12):
            try:
                step = torch.linalg.solve(A + mu * torch.diag(dA), -g)
            except RuntimeError:
                mu *= 4
                continue
            th_new = theta + step
            r_new = resid(th_new).detach()
            f_new = obj(r_new, th_new)
            if np.isfinite(f_new) and f_new < f:
                theta, r, f = th_new, r_new, f_new
                mu = max(mu / 3, 1e-9)
                accepted = True
                break
            mu *= 4
        if not accepted:
            break
        set_net(theta)
        m = evaluate(net)
        m.update(phase="lm", step=it, loss=float(np.sqrt(f / len(r))))
        history.append(m)
        if m["crit"] < best_crit:
            best_crit, best_theta, best_it = m["crit"], theta.clone(), it
        elif it - best_it > cfg.lm_patience:
            break
    set_net(best_theta)
    return {"iterations": it, "best_iteration": best_it, "best_crit_mare_pct": float(best_crit)}


def _pretrain(net, cfg: TrainConfig, arrhenius: dict, in_tf, out_tf, x_all, tr: FlowCurves, evaluate,
              rng, gen, history, progress) -> dict:
    """Transfer: train on Arrhenius points until train MARE ≤ factor × Arrhenius's train MARE."""
    lo, hi = x_all.min(axis=0), x_all.max(axis=0)
    span = hi - lo
    m = cfg.transfer_margin
    n = cfg.transfer_points
    e = rng.uniform(lo[0] - m * span[0], hi[0] + m * span[0], n)
    e = np.maximum(e, 0.0)
    lr_lo, lr_hi = np.log(lo[1]), np.log(hi[1])
    lr_span = lr_hi - lr_lo
    rate = np.exp(rng.uniform(lr_lo - m * lr_span, lr_hi + m * lr_span, n))
    temp = rng.uniform(lo[2] - m * span[2], hi[2] + m * span[2], n)
    cols = [e, rate, temp]
    for k in range(3, x_all.shape[1]):
        vals = np.unique(x_all[:, k])
        cols.append(vals[rng.integers(0, len(vals), n)])
    xs = np.column_stack(cols)
    ss = arrhenius_stress(arrhenius, xs[:, 0], xs[:, 1], xs[:, 2])
    ok = np.isfinite(ss) & (ss > 0)
    zs, ts = _to_t(in_tf.transform(xs[ok])), _to_t(out_tf.target(ss[ok]))
    a_mare = mare_pct(arrhenius_stress(arrhenius, tr.strain, tr.strain_rate, tr.temperature), tr.stress)
    target = cfg.transfer_factor * a_mare
    nb = min(cfg.transfer_batch, len(ts))

    def resample(step):
        idx = torch.randint(0, len(ts), (nb,), generator=gen)
        return zs[idx], ts[idx]

    def stop(mt):
        return mt["train_mare_pct"] <= target

    h0 = len(history)
    best, stopped, steps = _train_loop(net, zs, ts, cfg, gen, evaluate, steps=cfg.transfer_max_steps,
                                       lr=cfg.transfer_lr, lr_final=cfg.transfer_lr * 0.1, batch=nb,
                                       patience=None, stop=stop, phase="transfer", history=history,
                                       progress=progress, resample=resample)
    last = history[-1] if len(history) > h0 else {"train_mare_pct": float("nan")}
    return {"stopped": stopped, "steps": steps, "train_mare_pct": last["train_mare_pct"],
            "arrhenius_train_mare_pct": a_mare, "target_mare_pct": target, "factor": cfg.transfer_factor,
            "source_points": int(ok.sum())}


def score_model(model, curves: FlowCurves) -> dict:
    """Scores on all points of ``curves`` with strain > 0 (``model.predict_curves``)."""
    c = without_zero_strain(curves)
    return scores(model.predict_curves(c), c.stress)
