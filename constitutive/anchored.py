"""The anchored model: a fitted Arrhenius law times a BOUNDED learned correction.

    σ(x) = σ_A(x) · (1 + b · tanh(h(x))),     |σ/σ_A − 1| ≤ b  (b = ``anchor_bound``, default 0.5)

σ_A is the strain-compensated Arrhenius law fitted on the training curves (``constitutive.laws``),
h a small residual network (spec ``anchor_spec``, tanh) of the inputs strain, ln ε̇, T and
ln Z (Zener–Hollomon, Q from the fitted law), min–max normalised on the training box. Where
the data say nothing (between and beyond the tests) the correction cannot run away: the
prediction stays within ±b of the physical law, and a zero network is the law itself. The
whole model is a FlowNet with ``base = {"mode": "multiplicative", "arrhenius": ...}``: the
network spec is ``anchor_spec + "-A-1"``, its last 1 → 1 linear layer is fixed to W = b,
bias 0 (so the exported graph uses only the operators it always used).

Fit (all on the TRAINING curves handed in; held-out curves never come here):

1. base law: Arrhenius of each order in ``anchor_orders``; an order whose α(ε) or n(ε) is not
   positive over the fitted strain range, or whose σ_A is not finite and positive on a grid of
   the training box, is rejected; among the others the order with the lowest inner
   cross-validation MARE (below) is kept. No valid order: ``BaseLawError``.
2. correction: Levenberg–Marquardt (float64) on the log error r_i = ln(σ_i^pred/σ_i) (symmetric,
   unlike the relative error, whose least squares favour under-prediction), mean over the
   training points, plus κ · mean over ``VIRTUAL_POINTS`` inputs spread over the training box
   widened by 10 % of ln(1 + b tanh h)² — a prior pulling the correction to zero where there
   are no data, i.e. the prediction back to the physical law — plus a small weight decay
   ``anchor_weight_decay``·mean(θ²), plus sign constraints inside and around the box: at the
   same virtual points, hinge rows ``MONOTONE_WEIGHT``·max(0, ln σ(x) − ln σ(x + Δ ln ε̇))² and
   max(0, ln σ(x) − ln σ(x − ΔT))² (σ must rise with rate and fall with temperature; Δ = 5 %
   of the box's range); from a zero output layer (the start is the base law itself),
   ``anchor_iters`` iterations at most.
3. κ from ``anchor_strengths`` and "no correction" chosen by inner cross-validation: the training
   conditions are split into ``inner_folds`` groups (all replicates of a condition together,
   seeded); for each group the base law and the correction are refitted on the other groups and
   scored (MARE, strain ≥ ``SCORE_STRAIN``) on it. The candidate with the lowest mean wins and is
   refitted on all training curves.
"""
from __future__ import annotations

import numpy as np
import torch

from .baselines import Arrhenius
from .errors import NeumatInputError
from .flow_curves import FlowCurves
from .laws import arrhenius_stress
from .network import ResidualMLP, init_network
from .preprocessing import DEFAULT_Q, FeatureSpec, InputTransform

VIRTUAL_POINTS = 200       # points over the box (+ margin) where the correction is pulled to 0
VIRTUAL_MARGIN = 0.1       # the box widened by 10 % of each range (rate: of its log range)
SIGN_STEP = 0.05           # sign pairs: one step = 5 % of the box's ln ε̇ range and of its T range
MONOTONE_WEIGHT = 10.0     # weight of the sign hinge rows (a near-hard constraint)
SCORE_STRAIN = 0.05        # inner CV scores points with strain >= this (as the LOCO benchmark)
POOR_BASE_MARE = 15.0      # % inner-CV MARE above which the base law is reported as poor


class BaseLawError(NeumatInputError):
    """No valid Arrhenius base could be fitted on the training curves."""


def spy(curves: FlowCurves) -> None:
    """Called with every set of curves a fit of this module sees (tests replace it)."""


def anchored_spec(spec: str) -> str:
    return f"{spec}-A-1"


def _law_valid(params: dict, x_box_lo, x_box_hi) -> str | None:
    """None when the law is safe on the box, else the reason."""
    e = np.linspace(params["strain_min"], params["strain_max"], 200)
    for k in ("alpha", "n"):
        v = np.polynomial.polynomial.polyval(e, params[k])
        if not np.all(np.isfinite(v)) or np.any(v <= 0):
            return f"{k}(strain) not positive over the fitted strain range"
    g = np.meshgrid(np.linspace(max(x_box_lo[0], 0.0), x_box_hi[0], 12),
                    np.exp(np.linspace(np.log(x_box_lo[1]) - 2.4, np.log(x_box_hi[1]), 9)),
                    np.linspace(x_box_lo[2], x_box_hi[2], 9), indexing="ij")
    s = arrhenius_stress(params, g[0].ravel(), g[1].ravel(), g[2].ravel())
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        return "stress not finite and positive everywhere in the training box"
    return None


def loglinear_spec() -> FeatureSpec:
    """Columns of the log-linear base and of every correction: strain, ln ε̇, T, extras, and
    squares (power β = 2) of 1/T_K, ln Z and ln ε̇ — with the linear columns a full quadratic in
    (ln ε̇, 1/T): the curvature of the sinh law and a rate sensitivity that changes with
    temperature (Hensel–Spittel's T·ln ε̇ term) — and a root of strain (β = 0.25, the steep
    start of a flow curve)."""
    return FeatureSpec(engineered=["inv_t", "ln_z", "ln_rate", "strain_root"],
                       power={"ln_z": 2.0, "ln_rate": 2.0, "inv_t": 2.0})


def _q_of(curves: FlowCurves) -> float:
    """Mean activation energy (J/mol) of an Arrhenius fit, or the default when it fails."""
    try:
        p = Arrhenius(order=3).fit(curves).params
        q = float(np.mean(np.polynomial.polynomial.polyval(np.linspace(p["strain_min"], p["strain_max"], 50), p["Q"])))
        if np.isfinite(q) and 50e3 <= q <= 1500e3:
            return q
    except NeumatInputError:
        pass
    return DEFAULT_Q


def base_stress(base: dict, x: np.ndarray) -> np.ndarray:
    """σ (MPa) of a base law at physical inputs x (n, F)."""
    if base["kind"] == "arrhenius":
        return arrhenius_stress(base["params"], x[:, 0], x[:, 1], x[:, 2])
    z = base["in_tf"].transform(x)
    return np.exp(z @ np.asarray(base["w"]) + base["c"])


def fit_base(curves: FlowCurves, kind: str, box) -> tuple[dict | None, str | None]:
    """(base, None) or (None, reason). ``kind``: ``arrhenius:ORDER`` or ``loglinear``.

    loglinear: ln σ = c + w·z, z the min–max normalised columns of :func:`loglinear_spec`
    (fitted on the box), by least squares on ln σ over the curves' points (each curve resampled
    to at most 40 points, so every curve weighs alike) with a ridge of 1e-6."""
    spy(curves)
    x = curves.features()
    if kind.startswith("arrhenius"):
        order = int(kind.split(":")[1])
        try:
            p = Arrhenius(order=order).fit(curves).params
        except NeumatInputError as exc:
            return None, str(exc)
        why = _law_valid(p, x.min(axis=0), x.max(axis=0))
        return (None, why) if why else ({"kind": "arrhenius", "order": order, "params": p}, None)
    if kind != "loglinear":
        raise NeumatInputError(f"unknown base law '{kind}'")
    sub = _resample(curves, 40)
    xs = sub.features()
    in_tf = InputTransform(curves.feature_names, loglinear_spec()).fit(
        np.vstack([x, box[0][None, :], box[1][None, :]]), q=_q_of(curves))
    z = in_tf.transform(xs)
    A = np.column_stack([z, np.ones(len(z))])
    y = np.log(sub.stress)
    coef = np.linalg.solve(A.T @ A + 1e-6 * np.eye(A.shape[1]), A.T @ y)
    base = {"kind": "loglinear", "in_tf": in_tf, "w": coef[:-1].tolist(), "c": float(coef[-1])}
    s = base_stress(base, xs)
    if not np.all(np.isfinite(s)):
        return None, "log-linear fit not finite"
    return base, None


def _scored(curves: FlowCurves) -> np.ndarray:
    m = curves.strain >= SCORE_STRAIN
    return m if m.any() else np.ones(len(curves), bool)


def _resample(curves: FlowCurves, n: int) -> FlowCurves:
    """Each curve at ``n`` strains evenly spread over its own range (raw points, interpolated)."""
    idx = []
    for c in range(curves.n_curves):
        i = curves.curve_points(c)
        if len(i) <= n:
            idx.append(i)
        else:
            idx.append(i[np.round(np.linspace(0, len(i) - 1, n)).astype(int)])
    return curves.take(np.concatenate(idx))


class Correction:
    """The fitted bounded correction h (network) with its input transform."""

    def __init__(self, net: ResidualMLP, in_tf: InputTransform, bound: float, multiplicative: bool):
        self.net, self.in_tf, self.bound, self.multiplicative = net, in_tf, float(bound), multiplicative
        self.net64 = net.float64_copy()

    def factor(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            y = self.net64(torch.from_numpy(self.in_tf.transform(x))).numpy()
        return 1.0 + y if self.multiplicative else np.exp(y)


def make_net(spec: str, n_inputs: int, bound: float, seed: int) -> ResidualMLP:
    net = ResidualMLP(anchored_spec(spec), n_inputs, "tanh", 0.0)
    init_network(net, seed)
    last = net.linears[-1]
    prev = net.linears[-2]
    with torch.no_grad():
        prev.weight.zero_()            # h = 0 at the start: the model is the base law
        prev.bias.zero_()
        last.weight.fill_(float(bound))
        last.bias.zero_()
    last.weight.requires_grad_(False)
    last.bias.requires_grad_(False)
    return net


def _forward(plan, layers, z):
    """Network output y (n,) and the cache for :func:`_jacobian` (numpy, float64)."""
    h, stack, cache, k = z, [], [], 0
    for op in plan:
        if op[0] == "linear":
            W, b = layers[k]
            cache.append(("linear", k, h))
            h = h @ W.T + b
            k += 1
        elif op[0] == "act":
            t = torch.tanh(h)
            cache.append(("act", 1.0 - t * t))
            h = t
        elif op[0] == "push":
            cache.append(("push",))
            stack.append(h)
        else:
            cache.append(("add",))
            h = h + stack.pop()
    return h[:, 0], cache


def _jacobian(layers, cache, n_train: int) -> torch.Tensor:
    """dy/dθ (n, P) for the first ``n_train`` linear layers, θ = [W₀.ravel(), b₀, W₁ ...]."""
    n = cache[0][2].shape[0]
    g = torch.ones((n, 1), dtype=torch.float64)
    skip = []
    parts: dict[int, torch.Tensor] = {}
    for entry in reversed(cache):
        kind = entry[0]
        if kind == "linear":
            _, k, h_in = entry
            W = layers[k][0]
            if k < n_train:
                parts[k] = torch.cat([(g[:, :, None] * h_in[:, None, :]).reshape(n, -1), g], dim=1)
            g = g @ W
        elif kind == "act":
            g = g * entry[1]
        elif kind == "add":
            skip.append(g)
        else:
            g = g + skip.pop()
    return torch.cat([parts[k] for k in range(n_train)], dim=1)


def virtual_points(curves: FlowCurves, box, n: int, margin: float, seed: int) -> np.ndarray:
    """``n`` inputs spread over the training box widened by ``margin`` (rate in log), seeded."""
    rng = np.random.default_rng([int(seed), 11])
    lo, hi = np.asarray(box[0], float), np.asarray(box[1], float)
    span = hi - lo
    e = rng.uniform(lo[0], hi[0], n)
    llo, lhi = np.log(lo[1]), np.log(hi[1])
    r = np.exp(rng.uniform(llo - margin * (lhi - llo), lhi + margin * (lhi - llo), n))
    t = rng.uniform(lo[2] - margin * span[2], hi[2] + margin * span[2], n)
    cols = [e, r, t]
    x = curves.features()
    for k in range(3, x.shape[1]):
        vals = np.unique(x[:, k])
        cols.append(vals[rng.integers(0, len(vals), n)])
    return np.column_stack(cols)


def fit_correction(curves: FlowCurves, base: dict, cfg, seed: int, kappa: float,
                   box: tuple[np.ndarray, np.ndarray]) -> Correction:
    """LM fit of the correction on ``curves`` against the base law ``base`` (see module doc)."""
    spy(curves)
    tr = _resample(curves, cfg.anchor_points)
    x = tr.features()
    sa = base_stress(base, x)
    if base["kind"] == "loglinear":
        in_tf = base["in_tf"]
    else:
        in_tf = InputTransform(curves.feature_names, loglinear_spec()).fit(
            np.vstack([curves.features(), box[0][None, :], box[1][None, :]]), q=base_q(base))
    mult = base["kind"] == "arrhenius"        # σ_A (1 + y); the log-linear base: σ_b exp(y)
    net = make_net(cfg.anchor_spec, len(in_tf.columns), cfg.anchor_bound, seed)
    # the linear algebra runs in torch (float64) so that it obeys torch.set_num_threads: numpy's
    # BLAS may start a thread per core, which on a busy machine is 20-50 times slower here
    layers = [(lin.weight.detach().double().clone(), lin.bias.detach().double().clone()) for lin in net.linears]
    n_train = len(layers) - 1                       # the last (bound) layer is fixed
    shapes = [(W.shape, b.shape) for W, b in layers[:n_train]]

    def flat(ls):
        return torch.cat([torch.cat([W.reshape(-1), b]) for W, b in ls[:n_train]])

    def unflat(th):
        out, k = [], 0
        for (sw, sb) in shapes:
            nw, nb = int(np.prod(sw)), sb[0]
            out.append((th[k:k + nw].reshape(sw), th[k + nw:k + nw + nb]))
            k += nw + nb
        return out + layers[n_train:]

    xv = virtual_points(curves, box, VIRTUAL_POINTS, VIRTUAL_MARGIN, seed)
    # sign pairs: the same virtual points one step up in ln ε̇ and one step down in T, where the
    # stress must not be lower (hinge rows, weight MONOTONE_WEIGHT)
    lo, hi = np.asarray(box[0], float), np.asarray(box[1], float)
    xr, xt = xv.copy(), xv.copy()
    xr[:, 1] *= np.exp(SIGN_STEP * np.log(hi[1] / lo[1]))
    xt[:, 2] -= SIGN_STEP * (hi[2] - lo[2])
    n_pts, n_v = len(x), len(xv)
    z = torch.from_numpy(np.vstack([in_tf.transform(v) for v in (x, xv, xr, xt)]))
    lb = [torch.from_numpy(np.log(base_stress(base, v))) for v in (xv, xr, xt)]
    la = torch.from_numpy(np.log(sa / tr.stress))
    theta = flat(layers)
    n_par = len(theta)
    w_fit = torch.cat([torch.full((n_pts,), 1.0 / np.sqrt(n_pts), dtype=torch.float64),
                       torch.full((n_v,), float(np.sqrt(kappa / n_v)), dtype=torch.float64)])
    off = torch.cat([la, torch.zeros(n_v, dtype=torch.float64)])
    w_sign = float(np.sqrt(MONOTONE_WEIGHT / n_v))
    wp = float(np.sqrt(cfg.anchor_weight_decay / n_par))
    n_fit = n_pts + n_v

    def logf(y):
        return torch.log1p(y) if mult else y

    def resid(th):
        y, cache = _forward(net.plan, unflat(th), z)
        f_v = lb[0] + logf(y[n_pts:n_fit])
        d_r = f_v - (lb[1] + logf(y[n_fit:n_fit + n_v]))          # > 0: σ falls with rate
        d_t = f_v - (lb[2] + logf(y[n_fit + n_v:]))               # > 0: σ rises with T
        r = torch.cat([(off + logf(y[:n_fit])) * w_fit, w_sign * torch.relu(d_r), w_sign * torch.relu(d_t),
                       wp * th])
        return r, y, (cache, d_r > 0, d_t > 0)

    r, y, cache = resid(theta)
    f = float(r @ r)
    mu = 1e-2
    for _ in range(int(cfg.anchor_iters)):
        cch, act_r, act_t = cache
        Jy = _jacobian(unflat(theta), cch, n_train)
        if mult:
            Jy = Jy / (1.0 + y)[:, None]                     # d log-factor / dθ
        Jv = Jy[n_pts:n_fit]
        Jd = torch.cat([Jy[:n_fit] * w_fit[:, None],
                        w_sign * act_r[:, None] * (Jv - Jy[n_fit:n_fit + n_v]),
                        w_sign * act_t[:, None] * (Jv - Jy[n_fit + n_v:])])
        n_rows = len(Jd)
        A = Jd.T @ Jd + wp * wp * torch.eye(n_par, dtype=torch.float64)
        g = Jd.T @ r[:n_rows] + wp * r[n_rows:]
        dA = torch.diag(A).clamp_min(1e-12)
        accepted, rel = False, 0.0
        for _ in range(10):
            try:
                step = torch.linalg.solve(A + mu * torch.diag(dA), -g)
            except RuntimeError:
                mu *= 4
                continue
            r_new, y_new, c_new = resid(theta + step)
            f_new = float(r_new @ r_new)
            if np.isfinite(f_new) and f_new < f:
                rel = (f - f_new) / max(f, 1e-300)
                theta, r, f, cache, y = theta + step, r_new, f_new, c_new, y_new
                mu = max(mu / 3, 1e-9)
                accepted = True
                break
            mu *= 4
        if not accepted or rel < 1e-7:
            break
    with torch.no_grad():
        for lin, (W, b) in zip(net.linears, unflat(theta)):
            lin.weight.copy_(W)
            lin.bias.copy_(b)
    return Correction(net, in_tf, cfg.anchor_bound, mult)


def base_q(base: dict) -> float:
    if base["kind"] == "arrhenius":
        p = base["params"]
        return float(np.mean(np.polynomial.polynomial.polyval(np.linspace(p["strain_min"], p["strain_max"], 50), p["Q"])))
    return float(next(c["Q"] for c in base["in_tf"].columns if c["kind"] == "ln_z"))


def predict(base: dict, corr: Correction | None, x: np.ndarray) -> np.ndarray:
    sa = base_stress(base, x)
    return sa if corr is None else sa * corr.factor(x)


def inner_groups(curves: FlowCurves, k: int, seed: int) -> list[np.ndarray]:
    """Curve indices of ``k`` inner folds: whole conditions (replicates together), seeded."""
    groups = curves.condition_groups()
    order = np.random.default_rng([int(seed), 7]).permutation(len(groups))
    k = max(2, min(int(k), len(groups)))
    return [np.sort(np.concatenate([groups[g] for g in order[j::k]])) for j in range(k)]


def _mare(pred, exp) -> float:
    pred = np.asarray(pred, float)
    if not np.all(np.isfinite(pred)):
        return float("inf")
    return float(np.mean(np.abs(pred - exp) / np.abs(exp)) * 100.0)


def select_and_fit(curves: FlowCurves, cfg, seed: int, box, log=None) -> dict:
    """Inner CV over base order and correction strength, then the final fit (module doc)."""
    say = log or (lambda *a: None)
    if curves.n_curves < 3 or len(curves.condition_groups()) < 3:
        raise NeumatInputError("the anchored model needs at least 3 training conditions")
    folds = inner_groups(curves, cfg.inner_folds, seed)
    splits = []
    for test_idx in folds:
        rest = np.setdiff1d(np.arange(curves.n_curves), test_idx)
        splits.append((curves.subset(rest), curves.subset(test_idx)))

    # 1. base law (Arrhenius orders, log-linear), each refitted per inner fold
    kinds = [f"arrhenius:{int(o)}" for o in cfg.anchor_orders] + (["loglinear"] if cfg.anchor_loglinear else [])
    order_cv, rejected = {}, {}
    fold_bases = {}
    for kind in kinds:
        full, why = fit_base(curves, kind, box)
        if full is None:
            rejected[kind] = why
            continue
        errs, bases = [], []
        for tr, te in splits:
            p, _ = fit_base(tr, kind, box)
            bases.append(p)
            m = _scored(te)
            errs.append(_mare(predict(p, None, te.features()[m]), te.stress[m]) if p is not None else float("inf"))
        order_cv[kind] = float(np.mean(errs))
        fold_bases[kind] = (full, bases)
    if not order_cv:
        raise BaseLawError("no valid base law: " + "; ".join(f"{k}: {v}" for k, v in rejected.items()))
    finite = {k: v for k, v in order_cv.items() if np.isfinite(v)}
    order = min(finite, key=finite.get) if finite else next(iter(order_cv))
    base, bases = fold_bases[order]

    # 2. correction strength (None = the base law alone)
    cand_cv = {"none": order_cv[order]}
    for lam in cfg.anchor_strengths:
        errs = []
        for (tr, te), p in zip(splits, bases):
            if p is None:
                errs.append(float("inf"))
                continue
            c = fit_correction(tr, p, cfg, seed, float(lam), box)
            m = _scored(te)
            errs.append(_mare(predict(p, c, te.features()[m]), te.stress[m]))
        cand_cv[repr(float(lam))] = float(np.mean(errs))
    best = min(cand_cv, key=cand_cv.get)
    corr = None if best == "none" else fit_correction(curves, base, cfg, seed, float(best), box)
    x = curves.features()
    m = _scored(curves)
    base_train = _mare(predict(base, None, x[m]), curves.stress[m])
    quality = "poor" if order_cv[order] > POOR_BASE_MARE else "ok"
    info = {"base_law": order, "base_order": base.get("order"), "base_inner_cv_mare_pct": order_cv,
            "base_rejected_orders": rejected, "base_train_mare_pct": base_train, "base_quality": quality,
            "inner_folds": len(folds), "inner_cv_mare_pct": cand_cv,
            "chosen": "base law only" if corr is None else f"correction, strength {best}",
            "strength": None if corr is None else float(best), "bound": float(cfg.anchor_bound)}
    say(f"  anchored: base law {order} (inner-CV MARE {order_cv[order]:.3g} %, {quality}); "
        f"correction by inner CV over {len(folds)} folds: {info['chosen']} "
        f"(inner-CV MARE {cand_cv[best]:.3g} %)")
    if quality == "poor":
        say(f"  warning: the base law is poor on these curves (inner-CV MARE {order_cv[order]:.3g} % "
            f"> {POOR_BASE_MARE:g} %); the correction is bounded to ±{cfg.anchor_bound:g} of it")
    return {"base": base, "correction": corr, "info": info}
