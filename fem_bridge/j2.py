"""Small-strain J2 (von Mises) return mapping with the neural flow stress, vectorised over N
integration points in numpy — the algorithm of :mod:`fem_bridge.conventions`, step by step.

Units: stress and moduli MPa, temperature °C, time s, strain rate 1/s. Voigt order 11, 22, 33,
12, 13, 23; strain increments and plastic strain with engineering shear (γ = 2ε).

    upd = integrate(flow, stress, statev, dstran, dt, temperature, Elasticity(E, nu), extras)
    upd.stress (N, 6), upd.ddsdde (N, 6, 6), upd.statev (N, NSTATV), upd.status, upd.pnewdt

The elastic trial is incremental (σ_trial = σ_n + C(T_end) Δε), so a temperature-dependent
modulus acts on the increment only (hypoelastic form, as in a UMAT that receives no total
elastic strain).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from constitutive.errors import NeumatInputError

from . import conventions as cv
from .backends import as_backend

_DEV = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
_SHEAR_W = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])      # s:s = Σ w_i s_i²


@dataclass
class Elasticity:
    """Isotropic elastic constants: E (MPa) and ν, constant or tabulated in temperature (°C,
    linear interpolation, held constant beyond the table ends)."""
    E: float | np.ndarray
    nu: float | np.ndarray
    temps: np.ndarray | None = None

    @classmethod
    def table(cls, temps, E, nu) -> "Elasticity":
        t = np.asarray(temps, dtype=float)
        e = np.asarray(E, dtype=float)
        n = np.broadcast_to(np.asarray(nu, dtype=float), t.shape).copy()
        if t.ndim != 1 or t.size < 1 or e.shape != t.shape:
            raise NeumatInputError(f"elastic table: temps {t.shape} and E {e.shape} must be 1-D of the same length")
        if not (np.all(np.isfinite(t)) and np.all(np.diff(t) > 0)):
            raise NeumatInputError("elastic table: temperatures (°C) must be finite and strictly increasing")
        return cls(e, n, t)

    def at(self, temperature: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """E (N,) and ν (N,) at the given temperatures (°C)."""
        temperature = np.asarray(temperature, dtype=float)
        if self.temps is None:
            return (np.broadcast_to(np.asarray(self.E, dtype=float), temperature.shape).copy(),
                    np.broadcast_to(np.asarray(self.nu, dtype=float), temperature.shape).copy())
        with np.errstate(invalid="ignore"):
            return (np.interp(temperature, self.temps, self.E), np.interp(temperature, self.temps, self.nu))


@dataclass
class Update:
    """Result of :func:`integrate` for N points."""
    stress: np.ndarray      # (N, 6) MPa, end of increment
    ddsdde: np.ndarray      # (N, 6, 6) MPa, ∂Δσ/∂Δε (engineering shear)
    statev: np.ndarray      # (N, NSTATV) (or the caller's wider state; extra columns untouched)
    status: np.ndarray      # (N,) int: conventions.OK / STEP_CUT / BAD_INPUT
    pnewdt: np.ndarray      # (N,) suggested time-step ratio: 1 when OK, PNEWDT_CUT otherwise
    iterations: np.ndarray  # (N,) flow-stress evaluations of a plastic step (guess and yield check included; 0 when elastic)

    @property
    def ok(self) -> np.ndarray:
        return self.status == cv.OK


def _array(name, value, shape_desc, n=None, cols=None):
    a = np.asarray(value, dtype=float)
    if cols is not None:
        if a.ndim != 2 or a.shape[1] != cols or (n is not None and a.shape[0] != n):
            raise NeumatInputError(f"{name} has shape {a.shape}; expected {shape_desc}")
    return a


def _per_point(name, value, n):
    """scalar or (N,) → (N,)"""
    a = np.asarray(value, dtype=float)
    if a.ndim == 0:
        return np.full(n, float(a))
    if a.shape != (n,):
        raise NeumatInputError(f"{name} has shape {a.shape}; expected a scalar or ({n},)")
    return a.astype(float, copy=True)


def _elastic_parts(E, nu):
    G = E / (2.0 * (1.0 + nu))
    K = E / (3.0 * (1.0 - 2.0 * nu))
    return G, K


def integrate(flow, stress, statev, dstran, dt, temperature, elastic: Elasticity, extras=None,
              rate_floor=None, temperature_unit: str = "C") -> Update:
    """Stress update of N points over one increment (backward Euler, radial return).

    flow         a flow-stress backend (``fem_bridge.backends``), a FlowNet or a model path
    stress       (N, 6) MPa at the start of the increment
    statev       (N, m >= NSTATV) state at the start (layout ``conventions.STATEV``)
    dstran       (N, 6) strain increment, engineering shear
    dt           time increment, s: scalar or (N,)
    temperature  temperature at the END of the increment, in ``temperature_unit`` (default °C;
                 "K" and "F" are converted to °C first): scalar or (N,)
    elastic      :class:`Elasticity` (constants or a table in temperature)
    extras       the model's extra features: (N, n_extras) or (n_extras,); None when it has none
    rate_floor   optional strain-rate floor override, 1/s: scalar or (N,); values <= 0 (or None)
                 use the model's floor (the model's own floor always applies inside it)

    A bad point (non-finite input, dt <= 0, E <= 0, ν outside (−1, 0.5), T below absolute zero,
    p < 0 in STATEV, a strain-increment component beyond ``conventions.MAX_DSTRAN``) gets status BAD_INPUT,
    its stress and state unchanged and an elastic (finite) tangent; a point whose Newton loop
    does not converge gets STEP_CUT likewise. Neither affects the other points. Wrong array
    shapes for the whole call raise NeumatInputError.

    With a backend that has the compiled N-point return mapping (``has_j2_update``: the
    ``compiled`` kind), the valid points go to Fortran in one call (the UMAT's algorithm, OpenMP
    over the points with the backend's ``threads``); otherwise numpy runs it here (the reference,
    and the path of onnxruntime and numpy backends). Both give the same statuses, iteration
    counts and outputs (to 1e-9 relative; tests/test_compiled_integrate.py).
    """
    flow = as_backend(flow)
    nf = int(flow.n_features)
    ne = nf - 3
    stress = _array("stress", stress, "(N, 6)", cols=cv.NTENS)
    n = stress.shape[0]
    statev = np.asarray(statev, dtype=float)
    if statev.ndim != 2 or statev.shape[0] != n or statev.shape[1] < cv.NSTATV:
        raise NeumatInputError(f"statev has shape {statev.shape}; expected ({n}, >= {cv.NSTATV}) "
                               f"(columns {', '.join(cv.STATEV)})")
    dstran = _array("dstran", dstran, f"({n}, 6)", n=n, cols=cv.NTENS)
    dt = _per_point("dt", dt, n)
    temp = cv.to_celsius(_per_point("temperature", temperature, n), temperature_unit)
    if ne > 0:
        if extras is None:
            raise NeumatInputError(f"the model has {ne} extra feature(s) ({', '.join(flow.feature_names[3:])}); "
                                   f"pass extras of shape ({n}, {ne}) or ({ne},)")
        ex = np.asarray(extras, dtype=float)
        if ex.shape == (ne,):
            ex = np.broadcast_to(ex, (n, ne)).copy()
        elif ex.shape != (n, ne):
            raise NeumatInputError(f"extras has shape {ex.shape}; expected ({n}, {ne}) or ({ne},) "
                                   f"for {', '.join(flow.feature_names[3:])}")
    else:
        if extras is not None and np.asarray(extras).size:
            raise NeumatInputError("extras given but the model has no extra features")
        ex = np.zeros((n, 0))
    if not isinstance(elastic, Elasticity):
        raise NeumatInputError(f"elastic must be an Elasticity (E in MPa, nu), not {type(elastic).__name__}")
    model_floor = float(flow.rate_floor)
    if rate_floor is None:
        floor = np.full(n, model_floor)
        floor_bad = np.zeros(n, bool)
    else:
        floor = _per_point("rate_floor", rate_floor, n)
        floor_bad = ~np.isfinite(floor)
        floor = np.where(floor > 0, floor, model_floor)

    E, nu = elastic.at(temp)
    with np.errstate(invalid="ignore"):
        elastic_ok = np.isfinite(E) & np.isfinite(nu) & (E > 0) & (nu > -1.0) & (nu < 0.5)
        finite = (np.all(np.isfinite(stress), axis=1) & np.all(np.isfinite(statev[:, :cv.NSTATV]), axis=1)
                  & np.all(np.isfinite(dstran), axis=1) & np.isfinite(dt) & np.isfinite(temp)
                  & np.all(np.isfinite(ex), axis=1) & ~floor_bad)
        good = (elastic_ok & finite & (dt > 0) & (temp >= cv.ABSOLUTE_ZERO_C) & (statev[:, cv.SV_P] >= 0)
                & np.all(np.abs(dstran) <= cv.MAX_DSTRAN, axis=1))

    # outputs start as "unchanged, elastic tangent"; identity (MPa) where E, ν are unusable
    out_stress = stress.copy()
    out_statev = statev.copy()
    ddsdde = np.broadcast_to(np.eye(cv.NTENS), (n, cv.NTENS, cv.NTENS)).copy()
    ddsdde[elastic_ok] = cv.elastic_stiffness(E[elastic_ok], nu[elastic_ok])
    status = np.where(good, cv.OK, cv.BAD_INPUT).astype(int)
    iters = np.zeros(n, dtype=int)

    idx = np.flatnonzero(good)
    if idx.size:
        with np.errstate(all="ignore"):
            if getattr(flow, "has_j2_update", False):       # the compiled backend: one call into Fortran
                _update_compiled(flow, idx, stress, statev, dstran, dt, temp, ex, floor, E, nu, ddsdde,
                                 out_stress, out_statev, status, iters)
            else:
                _update(flow, idx, stress, statev, dstran, dt, temp, ex, floor, E, nu, ddsdde,
                        out_stress, out_statev, status, iters)
    pnewdt = np.where(status == cv.OK, 1.0, cv.PNEWDT_CUT)
    return Update(out_stress, ddsdde, out_statev, status, pnewdt, iters)


def _flow(flow, p, pdot, temp, ex, floor):
    """σ_y and (∂σ_y/∂p, ∂σ_y/∂ṗ) with the rate floor; derivative in ṗ 0 below the floor."""
    x = np.column_stack([p, np.maximum(pdot, floor), temp, ex])
    sy, g = flow.evaluate(x)
    return sy, g[:, 0], np.where(pdot < floor, 0.0, g[:, 1]), x


def _update_compiled(flow, idx, stress, statev, dstran, dt, temp, ex, floor, E, nu, ddsdde,
                     out_stress, out_statev, status, iters):
    """The points ``idx`` (all inputs valid) through the backend's Fortran return mapping
    (``j2_update``: the same algorithm as :func:`_update`, OpenMP over the points): PROPS per
    point with E, ν at T_end, the CalculiX temperature mode (T_end given) and the floor."""
    props = np.empty((idx.size, cv.N_FIXED_PROPS + ex.shape[1]))
    props[:, cv.PROP_E], props[:, cv.PROP_NU] = E[idx], nu[idx]
    props[:, cv.PROP_TEMP_MODE] = cv.TEMP_MODE_CALCULIX
    props[:, cv.PROP_RATE_FLOOR] = floor[idx]
    props[:, cv.N_FIXED_PROPS:] = ex[idx]
    s, sv, D, st, it = flow.j2_update(props, stress[idx], statev[idx, :cv.NSTATV], dstran[idx], dt[idx], temp[idx])
    out_stress[idx] = s
    out_statev[idx, :cv.NSTATV] = sv
    ddsdde[idx] = D
    status[idx] = st
    iters[idx] = it


def _update(flow, idx, stress, statev, dstran, dt, temp, ex, floor, E, nu, ddsdde,
            out_stress, out_statev, status, iters):
    """The return mapping for the points ``idx`` (all inputs valid); writes the outputs."""
    E, nu, dt, temp, ex, floor = E[idx], nu[idx], dt[idx], temp[idx], ex[idx], floor[idx]
    G, K = _elastic_parts(E, nu)
    C = ddsdde[idx]
    trial = stress[idx] + np.einsum("nij,nj->ni", C, dstran[idx])
    mean = (trial[:, 0] + trial[:, 1] + trial[:, 2]) / 3.0
    s = trial - mean[:, None] * _DEV
    q = np.sqrt(1.5 * (s * s) @ _SHEAR_W)
    p_n = statev[idx, cv.SV_P]

    # warm start (conventions, step 4): the previous increment's rate gives the guess g = ṗ_n Δt;
    # r(g) > 0 proves the step plastic (r decreases in Δp), so the yield check is skipped
    npt = idx.size
    b0 = q / (3.0 * G)
    guess = statev[idx, cv.SV_PDOT] * dt
    warm = (guess > 0.0) & (guess < b0)
    r_g, h_g = np.full(npt, np.nan), np.full(npt, np.nan)
    x_g = np.full((npt, 3 + ex.shape[1]), np.nan)
    w = np.flatnonzero(warm)
    if w.size:
        sy_w, hp_w, hr_w, x_g[w] = _flow(flow, p_n[w] + guess[w], guess[w] / dt[w], temp[w], ex[w], floor[w])
        r_g[w] = q[w] - 3.0 * G[w] * guess[w] - sy_w
        h_g[w] = hp_w + hr_w / dt[w]
    usable = warm & np.isfinite(r_g) & np.isfinite(h_g)
    proven = usable & ((r_g > 0.0) | (np.abs(r_g) <= cv.RTOL * q))        # plastic without the check
    check = ~proven                                                       # cold, or r(g) < 0, or unusable
    # yield check at (p_n, ṗ = 0 → floor, T_end); for a cold start also the Newton start Δp = 0
    sy0, hp0, hr0 = np.full(npt, np.nan), np.full(npt, np.nan), np.full(npt, np.nan)
    c = np.flatnonzero(check)
    if c.size:
        sy0[c], hp0[c], hr0[c], _ = _flow(flow, p_n[c], np.zeros(c.size), temp[c], ex[c], floor[c])
    fail = check & ~np.isfinite(sy0)
    elastic = check & ~fail & ~(q > sy0)
    plastic = proven | (check & ~fail & (q > sy0))

    # elastic points
    e = idx[elastic]
    out_stress[e] = trial[elastic]
    out_statev[e, cv.SV_PDOT] = 0.0

    # safeguarded Newton on Δp in the bracket [lo, hi] (conventions, step 5)
    m = np.flatnonzero(plastic)                    # positions within idx
    if m.size == 0:
        status[idx[fail]] = cv.STEP_CUT
        return
    q_m, G_m, dt_m = q[m], G[m], dt[m]
    from_guess = usable[m]                         # start at g (r(g) known), else at 0 (the check)
    checked = check[m]
    lo = np.where(from_guess & ~checked, guess[m], 0.0)
    hi = np.where(from_guess & checked, guess[m], b0[m])
    dp = np.where(from_guess, guess[m], 0.0)
    r = np.where(from_guess, r_g[m], q_m - sy0[m])
    h = np.where(from_guess, h_g[m], hp0[m] + hr0[m] / dt_m)
    dp_conv = np.full(m.size, np.nan)
    h_conv = np.full(m.size, np.nan)
    x_conv = np.where(from_guess[:, None], x_g[m], np.nan)
    cold = ~from_guess
    x_conv[cold, 0], x_conv[cold, 1], x_conv[cold, 2] = p_n[m][cold], np.maximum(0.0, floor[m][cold]), temp[m][cold]
    x_conv[cold, 3:] = ex[m][cold]
    niter = 1 + (from_guess & checked)             # flow evaluations so far
    active = np.arange(m.size)                     # positions within m
    failed = np.zeros(m.size, bool)
    for it in range(1, cv.MAX_ITER + 1):
        if it > 1:
            a = active
            pdot = dp[a] / dt_m[a]
            sy_a, hp_a, hr_a, x_a = _flow(flow, p_n[m[a]] + dp[a], pdot, temp[m[a]], ex[m[a]], floor[m[a]])
            r[a] = q_m[a] - 3.0 * G_m[a] * dp[a] - sy_a
            h[a] = hp_a + hr_a / dt_m[a]
            x_conv[a] = x_a
            niter[a] += 1
        a = active
        bad = ~(np.isfinite(r[a]) & np.isfinite(h[a]))
        conv = ~bad & (np.abs(r[a]) <= cv.RTOL * q_m[a])
        pos = r[a] > 0
        lo[a] = np.where(~bad & ~conv & pos, dp[a], lo[a])
        hi[a] = np.where(~bad & ~conv & ~pos, dp[a], hi[a])
        new = dp[a] - r[a] / (-3.0 * G_m[a] - h[a])
        inside = (new > lo[a]) & (new < hi[a])
        new = np.where(inside, new, 0.5 * (lo[a] + hi[a]))
        # the bracket cannot shrink any further: Δp is known to rounding, r is the model's noise
        stuck = ~bad & ~conv & ((hi[a] - lo[a] <= cv.BRACKET_RTOL * hi[a]) | (new == dp[a]))
        done = conv | stuck
        failed[a[bad]] = True
        dp_conv[a[done]] = dp[a[done]]
        h_conv[a[done]] = h[a[done]]
        keep = ~bad & ~done
        dp[a[keep]] = new[keep]
        active = a[keep]
        if active.size == 0:
            break
    failed[active] = True                          # no convergence within MAX_ITER

    ok = ~failed
    k = m[ok]                                      # positions within idx
    pts = idx[k]
    dp, h, x_c = dp_conv[ok], h_conv[ok], x_conv[ok]
    qk, Gk, Kk = q[k], G[k], K[k]
    theta = 1.0 - 3.0 * Gk * dp / qk
    sk = s[k]
    new_stress = mean[k][:, None] * _DEV + theta[:, None] * sk
    deps_p = (1.5 * dp / qk)[:, None] * sk * _SHEAR_W                 # engineering shear
    nrm = sk / (np.sqrt(2.0 / 3.0) * qk)[:, None]                       # unit deviatoric direction
    thetab = 1.0 / (1.0 + h / (3.0 * Gk)) - (1.0 - theta)
    D = -2.0 * (Gk * thetab)[:, None, None] * nrm[:, :, None] * nrm[:, None, :]
    D[:, :3, :3] += (Kk - 2.0 * Gk * theta / 3.0)[:, None, None]
    for i in range(3):
        D[:, i, i] += 2.0 * Gk * theta
        D[:, 3 + i, 3 + i] += Gk * theta
    sv = out_statev[pts]
    sv[:, cv.SV_P] = statev[pts, cv.SV_P] + dp
    sv[:, cv.SV_EPS_P] = statev[pts, cv.SV_EPS_P] + deps_p
    sv[:, cv.SV_PDOT] = dp / dt[k]
    sv[:, cv.SV_NOUT] = statev[pts, cv.SV_NOUT] + flow.out_of_box(x_c)
    # a converged point whose results are not finite (degenerate model output) is a step cut
    fin = np.all(np.isfinite(new_stress), axis=1) & np.all(np.isfinite(D), axis=(1, 2)) & np.all(np.isfinite(sv), axis=1)
    out_stress[pts[fin]] = new_stress[fin]
    out_statev[pts[fin]] = sv[fin]
    ddsdde[pts[fin]] = D[fin]
    iters[idx[m]] = niter
    status[pts[~fin]] = cv.STEP_CUT
    status[idx[m[failed]]] = cv.STEP_CUT
    status[idx[fail]] = cv.STEP_CUT
