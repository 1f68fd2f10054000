"""A scikit-fem host: hot compression of a Gleeble cylinder driven by ``fem_bridge.j2.integrate``.

Specimen and process
    Cylinder Ø ``diameter`` × ``height`` mm (default 10 × 15), isothermal at ``temperature`` °C,
    compressed between two platens that close at the constant speed v = ε̇_nom · h0 (mm/s), so
    the *nominal* strain rate is constant and the true rate grows as ε̇_nom · h0/h. The run ends
    when the logarithmic height strain ln(h0/h) reaches ``strain`` (default 0.5), i.e. after the
    platen travel s = h0 (1 − e^(−strain)), in ``increments`` equal time steps.

Model
    One eighth of the cylinder (x ≥ 0, y ≥ 0, 0 ≤ z ≤ h0/2) with symmetry planes x = 0, y = 0 and
    the mid-height plane z = 0; the top face is the platen contact and moves by −s/2.
    ``friction="none"``: the contact face slides freely (u_z prescribed only) — the solution is
    homogeneous uniaxial compression. ``friction="stick"``: the contact face nodes do not move
    radially (u_x = u_y = 0 there) — the specimen barrels. Fold-over: a free-surface node that
    would pass the platen within an increment is put onto it (z prescribed, the increment solved
    again) and sticks from then on; being node-based, fold-over starts only when a whole element
    edge has rotated onto the platen, so it is mesh dependent. With the default mesh no node folds
    over before ln(h0/h) = 0.5; the contact area then stays the initial end face while the mean
    cross-section grows by e^ε, and the sticking force, higher than the frictionless one at first
    (friction hill, +1.8 % at ε = 0.03, +0.6 % at 0.25 for the test model), falls below it
    beyond ε ≈ 0.28 (−7 % at 0.5). Mesh: 8-node hexahedra (``ElementHex1``, 2×2×2 Gauss points) on a
    three-block O-grid of the quarter disc, extruded in z (``hosts.cylinder_mesh``); the B-bar (mean-dilatation) strain
    operator (``hosts.skfem_bbar``) avoids volumetric locking of the plastically incompressible flow.

Kinematics (the honest statement)
    Incremental small strain on an updated mesh. Within an increment the problem is geometrically
    linear: the strain increment Δε = B̄ Δu is measured on one configuration, the mid-increment
    configuration X_n + Δu*/2 with Δu* the predicted increment (the previous converged
    increment scaled to the step; for the first one the homogeneous incompressible field), and
    equilibrium is imposed on that configuration. After convergence the mesh moves by Δu. Stress
    is the Cauchy stress, updated additively (no objective-rate rotation correction: acceptable
    for this nearly rotation-free upsetting; exact for the frictionless case).
    Consequences for comparing with the flow curve: the axial strain increment in the homogeneous
    case is Δh/h_mid = 2 (h_n − h_(n+1))/(h_n + h_(n+1)), the logarithmic increment to third order
    (summed error < 1e-5 at 25 increments), so the accumulated axial strain is ln(h0/h), the plastic
    strain p is the logarithmic plastic strain and its rate Δp/Δt; the stress is the true stress.
    The platen force is the reaction of the internal-force vector assembled with the converged
    stress on the *end-of-increment* mesh, F = −4 Σ f_z(top face) in N (compression positive);
    for the homogeneous case F = |σ_zz| A with A the current cross-section. The reported area is
    A = V/h (current meshed volume over current height: the cross-section in the homogeneous case,
    the mean cross-section of a barrelled one), and true stress = F/A.

Newton
    Per increment, starting from Δu = 0: the prescribed platen (and symmetry/sticking) increments
    enter through the first correction, K δ = −r solved with ``skfem.condense``/``skfem.solve``; K
    is assembled from the consistent tangent DDSDDE of ``integrate`` (hand-vectorised B̄ᵀ C B̄
    einsum, COO); converged when ‖r_free‖ <= ``rtol`` · max(‖r_reaction‖, 1 N). The residual norms
    of each iteration are printed and kept. If any point reports STEP_CUT or BAD_INPUT, Newton
    fails to converge in ``max_newton`` iterations or produces a non-finite value, the increment is
    halved and retried from the last converged state (at most ``max_cuts`` halvings in a row); the
    step grows back by 2× after each success, up to the nominal step.

Output (``out_dir``, written by ``hosts.skfem_output``)
    ``increment_NNNN.vtu`` per converged increment (initial coordinates; point data
    ``displacement_mm``; cell data per element, averaged over its 8 Gauss points: ``stress_MPa``
    (Voigt 11,22,33,12,13,23), ``mises_stress_MPa``, ``equivalent_plastic_strain``, and per Gauss
    point ``equivalent_plastic_strain_qp`` (n_el, 8), ``status`` (max over the points)),
    ``compression.pvd`` (ParaView time series) and ``force_displacement.csv``.
Units: mm, s, MPa, N, °C.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from .. import conventions as cv
from ..backends import load_backend
from ..j2 import Elasticity, integrate
from .compression_setup import CompressionSetup
from .cylinder_mesh import quarter_cylinder_mesh
from .skfem_bbar import BBarKinematics
from .skfem_output import write_csv, write_increment_vtu, write_pvd


@dataclass
class IncrementRecord:
    increment: int
    time: float
    dt: float
    platen_displacement: float           # mm, closing of the platens
    height: float                        # mm
    force: float                         # N, compression positive
    area: float                          # mm², V/h
    mean_p: float
    residuals: list[float]               # ‖r_free‖ per Newton iteration (N), iteration 0 at Δu = 0
    reaction_norm: float                 # ‖r_reaction‖ at convergence (N), the scale of rtol
    cuts: int                            # halvings before this increment converged
    contact_nodes: int = 0               # nodes of the 1/8 model on the platen


@dataclass
class CompressionResult:
    setup: CompressionSetup
    records: list[IncrementRecord]
    height0: float
    volume0: float
    area0: float
    n_elements: int
    n_points: int
    n_dofs: int
    completed: bool
    message: str
    seconds: float
    files: list[Path]
    final_stress: np.ndarray             # (N, 6) at the Gauss points
    final_statev: np.ndarray             # (N, NSTATV)

    def table(self) -> dict[str, np.ndarray]:
        r = self.records
        h = np.array([x.height for x in r])
        return {"time_s": np.array([x.time for x in r]), "dt_s": np.array([x.dt for x in r]),
                "platen_displacement_mm": np.array([x.platen_displacement for x in r]), "height_mm": h,
                "true_strain": np.log(self.height0 / h), "nominal_strain": 1 - h / self.height0,
                "force_N": np.array([x.force for x in r]), "area_mm2": np.array([x.area for x in r]),
                "true_stress_MPa": np.array([x.force / x.area for x in r]),
                "mean_p": np.array([x.mean_p for x in r])}


# ---------------------------------------------------------------------------------------------
# the specimen: mesh, boundary node sets and the constraints of an increment
# ---------------------------------------------------------------------------------------------
class _Specimen:
    """The 1/8 model of ``setup``: initial nodes X0 (3, nn) mm, hexahedra t (8, ne), the symmetry
    dofs and the nodes of the end face."""

    def __init__(self, setup: CompressionSetup):
        R, H0 = 0.5 * setup.diameter, setup.height
        mesh = quarter_cylinder_mesh(R, 0.5 * H0, *setup.divisions)
        self.X0 = mesh.p.copy()
        self.t = mesh.t
        self.nn, self.ne = self.X0.shape[1], self.t.shape[1]
        self.ndof = 3 * self.nn
        self.tol = 1e-9 * max(R, H0)
        self.stick = setup.friction == "stick"
        X0, tol = self.X0, self.tol
        on_x0, on_y0 = np.abs(X0[0]) < tol, np.abs(X0[1]) < tol
        on_z0, self.on_top = np.abs(X0[2]) < tol, np.abs(X0[2] - 0.5 * H0) < tol
        self.symmetry = np.concatenate([3 * np.flatnonzero(on_x0), 3 * np.flatnonzero(on_y0) + 1,
                                        3 * np.flatnonzero(on_z0) + 2])

    def constraints(self, contact, landing, ds, z_platen_end, Xz):
        """Constrained dofs and their increments: symmetry 0; nodes in contact move with the
        platen (z) and, sticking, not radially; nodes landing on the platen in this increment
        are put exactly onto it (z only)."""
        c, l = np.flatnonzero(contact), np.flatnonzero(landing)
        target = np.zeros(self.ndof)
        target[3 * c + 2] = -0.5 * ds
        target[3 * l + 2] = z_platen_end - Xz[l]
        parts = [self.symmetry, 3 * c + 2, 3 * l + 2]
        if self.stick:
            parts += [3 * c, 3 * c + 1]
        return np.unique(np.concatenate(parts)), target


@dataclass
class _March:
    """The converged state after the last accepted increment."""
    stress: np.ndarray                   # (N, 6) MPa at the Gauss points
    statev: np.ndarray                   # (N, NSTATV)
    X: np.ndarray                        # (3, nn) current nodes, mm
    contact: np.ndarray                  # (nn,) nodes on the platen
    time: float = 0.0                    # s
    s: float = 0.0                       # platen travel, mm
    du_prev: np.ndarray | None = None    # last converged increment (the predictor) and its dt
    dt_prev: float | None = None
    ddsdde_prev: np.ndarray | None = None


class _Attempt(NamedTuple):
    ok: bool
    why: str
    du: np.ndarray
    residuals: list
    alphas: list
    update: object                       # the j2.Update of the last iterate
    reaction: float
    landing: np.ndarray


# ---------------------------------------------------------------------------------------------
# Newton with a backtracking line search
# ---------------------------------------------------------------------------------------------
MAX_LINE_SEARCH = 6
MAX_CONTACT_PASSES = 6


def _newton(update, kin: BBarKinematics, ndof: int, D: np.ndarray, target: np.ndarray,
            ddsdde_prev: np.ndarray | None, setup: CompressionSetup):
    """Solve r(Δu) = 0 on the free dofs with Δu[D] = target[D], starting from Δu = 0.

    The first correction carries the prescribed increments (tangent: the last converged one of
    the previous increment when there is one, else the tangent at Δu = 0); each later correction
    uses the consistent tangent of the current iterate. A correction whose residual does not
    decrease (or where a point asks for a step cut) is halved up to MAX_LINE_SEARCH times;
    near the solution the full step is always taken, so the tail is plain Newton.
    Returns (Δu, why-not, residual norms, step lengths, last update, reaction norm, converged).
    """
    from skfem import condense, solve  # optional: scikit-fem (the fem extra)
    free = np.ones(ndof, dtype=bool)
    free[D] = False

    def evaluate(u):
        up = update(u)
        st = np.asarray(up.status)
        if np.any(st != cv.OK):
            return up, None, np.inf, 0.0, (f"{int(np.sum(st == cv.STEP_CUT))} point(s) requested a step cut, "
                                           f"{int(np.sum(st == cv.BAD_INPUT))} bad input")
        r = kin.internal_force(up.stress, ndof)
        rn = float(np.linalg.norm(r[free]))
        if not np.isfinite(rn):
            return up, None, np.inf, 0.0, "non-finite residual"
        return up, r, rn, float(np.linalg.norm(r[D])), ""

    du = np.zeros(ndof)
    up, r, rn, reac, why = evaluate(du)
    if r is None:
        return du, why, [], [], up, 0.0, False
    residuals, alphas = [rn], [1.0]
    for it in range(1, setup.max_newton + 1):
        C = ddsdde_prev if (it == 1 and ddsdde_prev is not None) else up.ddsdde
        K = kin.stiffness(C, ndof)
        x = np.zeros(ndof)
        x[D] = target[D] - du[D]
        delta = solve(*condense(K, -r, x=x, D=D))
        alpha, best = 1.0, None
        for _ in range(MAX_LINE_SEARCH + 1):
            trial = evaluate(du + alpha * delta)
            if trial[1] is not None:
                if best is None or trial[2] < best[1][2]:
                    best = (alpha, trial)
                # the first correction changes the boundary values: its residual is not
                # comparable with the one before, accept it as it is
                if it == 1 or trial[2] <= (1.0 - 1e-4 * alpha) * rn:
                    break
            else:
                why = trial[4]
            alpha *= 0.5
        if best is None:
            return du, why, residuals, alphas, up, reac, False
        alpha, (up, r, rn, reac, _) = best
        du = du + alpha * delta
        residuals.append(rn)
        alphas.append(alpha)
        bc_met = np.allclose(du[D], target[D], rtol=1e-12, atol=1e-14 * (1.0 + np.abs(target).max()))
        if bc_met and rn <= setup.rtol * max(reac, 1.0):
            return du, "", residuals, alphas, up, reac, True
    return du, f"Newton not converged in {setup.max_newton} iterations", residuals, alphas, up, reac, False



# ---------------------------------------------------------------------------------------------
# the simulation
# ---------------------------------------------------------------------------------------------
def _solve_increment(spec: _Specimen, st: _March, dt: float, ds: float, material, setup: CompressionSetup) -> _Attempt:
    """Newton on one increment (time dt s, platen travel ds mm) from the state ``st``, on the
    mid-increment configuration of the predicted increment; free-surface nodes that would pass
    the platen land on it and the increment is solved again (fold-over passes).
    ``material(dstran, dt)``: the stress update from ``st``."""
    H0 = setup.height
    z_platen_end = 0.5 * H0 - 0.5 * (st.s + ds)
    landing = np.zeros(spec.nn, dtype=bool)
    for _pass in range(MAX_CONTACT_PASSES):
        D, target = spec.constraints(st.contact, landing, ds, z_platen_end, st.X[2])
        # mid-increment configuration from the predicted increment
        if st.du_prev is None:
            e = ds / (H0 - st.s)
            du_pred = np.zeros(spec.ndof)
            du_pred[0::3], du_pred[1::3], du_pred[2::3] = 0.5 * e * st.X[0], 0.5 * e * st.X[1], -e * st.X[2]
        else:
            du_pred = st.du_prev * (dt / st.dt_prev)
        du_pred[D] = target[D]
        kin = BBarKinematics(st.X + 0.5 * du_pred.reshape(-1, 3).T, spec.t)
        du, why, residuals, alphas, up, reac, ok = _newton(
            lambda u: material(kin.strain(u), dt), kin, spec.ndof, D, target, st.ddsdde_prev, setup)
        if not ok:
            break
        # fold-over: free surface nodes that would pass the platen land on it; solve again
        through = ~st.contact & ~landing & (st.X[2] + du[2::3] > z_platen_end + spec.tol)
        if not through.any():
            break
        landing |= through
    else:
        ok, why = False, f"contact not settled in {MAX_CONTACT_PASSES} passes"
    return _Attempt(ok, why, du, residuals, alphas, up, reac, landing)


def _accept(spec: _Specimen, st: _March, a: _Attempt, dt: float, ds: float, inc: int, cuts: int,
            H0: float) -> IncrementRecord:
    """Move ``st`` to the end of the converged increment; the platen force (the reaction on the
    end-of-increment mesh, ×4 for the full end face) and area V/h there."""
    st.stress, st.statev = np.array(a.update.stress), np.array(a.update.statev)
    st.X = st.X + a.du.reshape(-1, 3).T
    st.time += dt
    st.s += ds
    st.du_prev, st.dt_prev = a.du, dt
    st.ddsdde_prev = np.array(a.update.ddsdde)
    kin_end = BBarKinematics(st.X, spec.t)
    f_end = kin_end.internal_force(st.stress, spec.ndof)
    st.contact |= a.landing
    force = -4.0 * float(f_end[3 * np.flatnonzero(st.contact) + 2].sum())
    height = H0 - st.s
    area = 8.0 * float(kin_end.w.sum()) / height
    return IncrementRecord(inc, st.time, dt, st.s, height, force, area, float(st.statev[:, cv.SV_P].mean()),
                           a.residuals, a.reaction, cuts, int(st.contact.sum()))


def run_compression(flow, setup: CompressionSetup | None = None, out_dir: str | Path | None = None,
                    log: Callable[[str], None] | None = print,
                    integrate_fn: Callable | None = None) -> CompressionResult:
    """Run the hot-compression simulation. ``flow``: a flow-stress backend
    (``fem_bridge.backends.load_backend``) or a path to an ONNX model. ``integrate_fn`` replaces
    ``fem_bridge.j2.integrate`` (same signature; for tests). Returns a ``CompressionResult``."""
    setup = setup or CompressionSetup()
    setup.check()
    if isinstance(flow, (str, Path)):
        flow = load_backend(flow)
    integrate_fn = integrate_fn or integrate
    extra_values = setup.extras_for(flow)
    say = log or (lambda s: None)
    t_start = time.perf_counter()

    H0 = setup.height
    spec = _Specimen(setup)
    X0, t, ne, ndof = spec.X0, spec.t, spec.ne, spec.ndof
    kin0 = BBarKinematics(X0, t)
    N = kin0.n_points
    nq = N // ne
    volume0 = 8.0 * kin0.w.sum()             # the model is one eighth
    area0 = volume0 / H0
    elastic = Elasticity(setup.E, setup.nu)
    T = np.full(N, float(setup.temperature))
    extras = np.tile(extra_values, (N, 1)) if extra_values is not None else None
    sched = setup.schedule()
    st = _March(np.zeros((N, 6)), np.zeros((N, cv.NSTATV)), X0.copy(), spec.on_top.copy())

    def material(dstran, dt):
        return integrate_fn(flow, st.stress, st.statev, dstran, dt, T, elastic, extras=extras)

    records: list[IncrementRecord] = []
    files: list[Path] = []
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        files.append(write_increment_vtu(out / "increment_0000.vtu", X0, t, st.X - X0, st.stress, st.statev,
                                         np.zeros(N, dtype=np.int32), ne, nq))
    say(f"hot compression: Ø{setup.diameter:g} × {H0:g} mm, T = {setup.temperature:g} °C, "
        f"ε̇_nom = {setup.strain_rate:g} 1/s (v = {sched.speed:g} mm/s), to ln(h0/h) = {setup.strain:g} "
        f"(platen travel {sched.travel:.4f} mm, {sched.end_time:.4g} s), friction {setup.friction}; "
        f"{ne} hexahedra (1/8 model), {N} Gauss points, {ndof} dofs")

    dt = sched.nominal_dt
    cuts_in_row = 0
    completed, message = True, "completed"
    inc = 0
    while st.time < sched.end_time * (1 - 1e-12):
        dt = min(dt, sched.end_time - st.time)
        ds = sched.speed * dt
        a = _solve_increment(spec, st, dt, ds, material, setup)
        res_txt = " ".join(f"{x:.3e}" + (f"(α={al:g})" if al != 1 else "") for x, al in zip(a.residuals, a.alphas))
        if not a.ok:
            cuts_in_row += 1
            say(f"  increment {inc + 1}: dt = {dt:.4g} s failed ({a.why}; |r| {res_txt}); halving")
            if cuts_in_row > setup.max_cuts:
                completed = False
                message = (f"stopped at t = {st.time:.4g} s of {sched.end_time:.4g} s: increment {inc + 1} failed "
                           f"after {setup.max_cuts} halvings ({a.why})")
                say(message)
                break
            dt *= 0.5
            continue
        inc += 1
        rec = _accept(spec, st, a, dt, ds, inc, cuts_in_row, H0)
        records.append(rec)
        say(f"increment {inc:3d} t = {st.time:.4g} s  s = {st.s:.4f} mm  ln(h0/h) = {np.log(H0 / rec.height):.4f}  "
            f"F = {rec.force / 1000:.4f} kN  contact nodes {rec.contact_nodes}  Newton |r| (N): {res_txt}")
        if out is not None:
            files.append(write_increment_vtu(out / f"increment_{inc:04d}.vtu", X0, t, st.X - X0, st.stress,
                                             st.statev, np.asarray(a.update.status, dtype=np.int32), ne, nq))
        if cuts_in_row:
            dt = min(2 * dt, sched.nominal_dt)
        cuts_in_row = 0

    result = CompressionResult(setup, records, H0, float(volume0), float(area0), ne, N, ndof, completed,
                               message, time.perf_counter() - t_start, files, st.stress, st.statev)
    if out is not None:
        files.append(write_pvd(out / "compression.pvd", files, [0.0] + [r.time for r in records]))
        files.append(write_csv(out / "force_displacement.csv", result))
    say(f"{message}: {len(records)} increments in {result.seconds:.1f} s")
    return result
