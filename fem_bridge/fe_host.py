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
    three-block O-grid of the quarter disc, extruded in z; the B-bar (mean-dilatation) strain
    operator avoids volumetric locking of the plastically incompressible flow.

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

Output (``out_dir``)
    ``increment_NNNN.vtu`` per converged increment (initial coordinates; point data
    ``displacement_mm``; cell data per element, averaged over its 8 Gauss points: ``stress_MPa``
    (Voigt 11,22,33,12,13,23), ``mises_stress_MPa``, ``equivalent_plastic_strain``, and per Gauss
    point ``equivalent_plastic_strain_qp`` (n_el, 8), ``status`` (max over the points)),
    ``compression.pvd`` (ParaView time series) and ``force_displacement.csv``.
Units: mm, s, MPa, N, °C.
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp

from constitutive.errors import NeumatInputError

from . import conventions as cv

CSV_COLUMNS = ("increment", "time_s", "dt_s", "platen_displacement_mm", "height_mm", "true_strain",
               "nominal_strain", "force_N", "area_mm2", "true_stress_MPa", "mean_p", "newton_iterations",
               "cuts", "contact_nodes")


@dataclass
class CompressionSetup:
    temperature: float = 1100.0          # °C
    strain_rate: float = 0.1             # nominal strain rate ε̇_nom = v/h0, 1/s
    strain: float = 0.5                  # final logarithmic height strain ln(h0/h)
    increments: int = 25
    friction: str = "none"               # "none" (frictionless, homogeneous) or "stick"
    E: float = 150000.0                  # MPa
    nu: float = 0.3
    diameter: float = 10.0               # mm
    height: float = 15.0                 # mm
    divisions: tuple[int, int, int] = (4, 3, 6)   # O-grid core, ring, layers over the half height
    extras: dict = field(default_factory=dict)    # extra model features by name
    rtol: float = 1e-10
    max_newton: int = 25
    max_cuts: int = 8

    def check(self) -> None:
        def bad(msg):
            raise NeumatInputError(msg)
        for name in ("temperature", "strain_rate", "strain", "E", "nu", "diameter", "height"):
            if not np.isfinite(getattr(self, name)):
                bad(f"{name} must be finite, got {getattr(self, name)!r}")
        if self.strain_rate <= 0:
            bad(f"strain rate must be > 0 1/s, got {self.strain_rate}")
        if not 0 < self.strain < 3:
            bad(f"strain (logarithmic height strain) must be in (0, 3), got {self.strain}")
        if self.increments < 1:
            bad(f"increments must be >= 1, got {self.increments}")
        if self.friction not in ("none", "stick"):
            bad(f"friction must be 'none' or 'stick', got {self.friction!r}")
        if self.E <= 0 or not -1 < self.nu < 0.5:
            bad(f"need E > 0 MPa and -1 < nu < 0.5, got E={self.E}, nu={self.nu}")
        if self.diameter <= 0 or self.height <= 0:
            bad("diameter and height must be > 0 mm")
        if len(self.divisions) != 3 or min(self.divisions) < 1:
            bad(f"divisions must be three positive integers (core, ring, layers), got {self.divisions}")

    def extras_for(self, flow) -> np.ndarray | None:
        """The model's extra features (beyond strain, rate, temperature) in its order, from
        ``extras``; None when it has none. Names missing or unknown to the model: an error."""
        names = list(flow.feature_names)[3:]
        unknown = sorted(set(self.extras) - set(names))
        missing = [e for e in names if e not in self.extras]
        if unknown or missing:
            raise NeumatInputError(f"the model's extra features are {names or 'none'}; missing {missing or 'none'}, "
                                   f"unknown {unknown or 'none'} (give --extra NAME=VALUE)")
        return np.array([float(self.extras[e]) for e in names]) if names else None


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
# mesh
# ---------------------------------------------------------------------------------------------
def o_grid_blocks(radius: float, n_core: int, n_ring: int):
    """The three blocks of the quarter-disc O-grid (x, y >= 0, inside `radius`): square core
    [0, a]² (a = radius/2) and two ring blocks blended linearly from the core edges to the arc,
    as (u values, v values, map (u, v) → (x, y)) on the unit square. Shared by both FE hosts."""
    a = 0.5 * radius
    s = np.linspace(0.0, 1.0, n_core + 1)
    t = np.linspace(0.0, 1.0, n_ring + 1)

    def ring_x(u, v):              # u radial (0 core edge x = a → 1 arc), v along the edge
        th = v * np.pi / 4
        return (1 - u) * a + u * radius * np.cos(th), (1 - u) * a * v + u * radius * np.sin(th)

    def ring_y(u, v):              # u along the edge y = a, v radial
        th = np.pi / 2 - u * np.pi / 4
        return (1 - v) * a * u + v * radius * np.cos(th), (1 - v) * a + v * radius * np.sin(th)

    return [(s, s, lambda u, v: (a * u, a * v)), (t, s, ring_x), (s, t, ring_y)]


def quarter_cylinder_mesh(radius: float, half_height: float, n_core: int, n_ring: int, n_z: int):
    """MeshHex of x, y >= 0, 0 <= z <= half_height inside the cylinder of `radius`: the O-grid of
    :func:`o_grid_blocks` extruded in n_z layers."""
    from skfem import MeshHex
    z = np.linspace(0.0, 1.0, n_z + 1)

    def block(xs, ys, fmap):
        m = MeshHex.init_tensor(xs, ys, z)
        u, v, w = m.p
        x, y = fmap(u, v)
        return MeshHex(np.vstack([x, y, w * half_height]), m.t)

    b0, b1, b2 = (block(*b) for b in o_grid_blocks(radius, n_core, n_ring))
    return b0 + b1 + b2


# ---------------------------------------------------------------------------------------------
# B-bar operator and assembly
# ---------------------------------------------------------------------------------------------
class _Kinematics:
    """Gradients of the 8 shape functions at the Gauss points of the configuration ``p``."""

    def __init__(self, p: np.ndarray, t: np.ndarray, bbar: bool = True):
        from skfem import Basis, ElementHex1, MeshHex
        basis = Basis(MeshHex(p, t, validate=False), ElementHex1(), intorder=3)
        G = np.stack([basis.basis[a][0].grad for a in range(8)], axis=0)     # (8, 3, ne, nq)
        self.G = np.ascontiguousarray(G.transpose(2, 3, 0, 1))             # (ne, nq, 8, 3)
        self.w = np.asarray(basis.dx)                                       # (ne, nq)
        ne, nq = self.w.shape
        B = np.zeros((ne, nq, 6, 8, 3))
        g = self.G
        for i in range(3):
            B[:, :, i, :, i] = g[:, :, :, i]
        B[:, :, 3, :, 0], B[:, :, 3, :, 1] = g[:, :, :, 1], g[:, :, :, 0]    # γ12
        B[:, :, 4, :, 0], B[:, :, 4, :, 2] = g[:, :, :, 2], g[:, :, :, 0]    # γ13
        B[:, :, 5, :, 1], B[:, :, 5, :, 2] = g[:, :, :, 2], g[:, :, :, 1]    # γ23
        if bbar:       # replace the volumetric part by its element mean (mean dilatation)
            gbar = np.einsum("eq,eqaj->eaj", self.w, g) / self.w.sum(axis=1)[:, None, None]
            corr = (gbar[:, None] - g) / 3.0                                 # (ne, nq, 8, 3)
            for i in range(3):
                B[:, :, i] += corr
        self.B = B.reshape(ne, nq, 6, 24)
        dofs = (3 * t.T[:, :, None] + np.arange(3)).reshape(ne, 24)          # (ne, 24)
        self.dofs = dofs
        self.rows = np.repeat(dofs, 24, axis=1).ravel()
        self.cols = np.tile(dofs, (1, 24)).ravel()

    @property
    def n_points(self) -> int:
        return self.w.size

    def strain(self, u: np.ndarray) -> np.ndarray:
        """(N, 6) Voigt strain (engineering shear) of the nodal vector u, N = ne·nq."""
        return np.einsum("eqij,ej->eqi", self.B, u[self.dofs]).reshape(-1, 6)

    def internal_force(self, stress: np.ndarray, ndof: int) -> np.ndarray:
        ne, nq = self.w.shape
        fe = np.einsum("eqij,eqi,eq->ej", self.B, stress.reshape(ne, nq, 6), self.w)
        return np.bincount(self.dofs.ravel(), weights=fe.ravel(), minlength=ndof)

    def stiffness(self, ddsdde: np.ndarray, ndof: int) -> sp.csr_matrix:
        ne, nq = self.w.shape
        C = ddsdde.reshape(ne, nq, 6, 6)
        CB = np.einsum("eqkl,eqlj->eqkj", C, self.B)
        Ke = np.einsum("eqki,eqkj->eij", self.B, CB * self.w[:, :, None, None])
        return sp.coo_matrix((Ke.ravel(), (self.rows, self.cols)), shape=(ndof, ndof)).tocsr()


def _mises(s: np.ndarray) -> np.ndarray:
    return np.sqrt(0.5 * ((s[..., 0] - s[..., 1]) ** 2 + (s[..., 1] - s[..., 2]) ** 2
                          + (s[..., 2] - s[..., 0]) ** 2) + 3.0 * np.sum(s[..., 3:] ** 2, axis=-1))


# ---------------------------------------------------------------------------------------------
# Newton with a backtracking line search
# ---------------------------------------------------------------------------------------------
MAX_LINE_SEARCH = 6
MAX_CONTACT_PASSES = 6


def _newton(update, kin: _Kinematics, ndof: int, D: np.ndarray, target: np.ndarray,
            ddsdde_prev: np.ndarray | None, setup: CompressionSetup):
    """Solve r(Δu) = 0 on the free dofs with Δu[D] = target[D], starting from Δu = 0.

    The first correction carries the prescribed increments (tangent: the last converged one of
    the previous increment when there is one, else the tangent at Δu = 0); each later correction
    uses the consistent tangent of the current iterate. A correction whose residual does not
    decrease (or where a point asks for a step cut) is halved up to MAX_LINE_SEARCH times;
    near the solution the full step is always taken, so the tail is plain Newton.
    Returns (Δu, why-not, residual norms, step lengths, last update, reaction norm, converged).
    """
    from skfem import condense, solve
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
def run_compression(flow, setup: CompressionSetup | None = None, out_dir: str | Path | None = None,
                    log: Callable[[str], None] | None = print,
                    integrate_fn: Callable | None = None) -> CompressionResult:
    """Run the hot-compression simulation. ``flow``: a flow-stress backend
    (``fem_bridge.backends.load_backend``) or a path to an ONNX model. ``integrate_fn`` replaces
    ``fem_bridge.j2.integrate`` (same signature; for tests). Returns a ``CompressionResult``."""
    from .j2 import Elasticity, integrate

    setup = setup or CompressionSetup()
    setup.check()
    if isinstance(flow, (str, Path)):
        from .backends import load_backend
        flow = load_backend(flow)
    integrate_fn = integrate_fn or integrate
    extra_values = setup.extras_for(flow)
    say = log or (lambda s: None)
    t_start = time.perf_counter()

    R, H0 = 0.5 * setup.diameter, setup.height
    mesh = quarter_cylinder_mesh(R, 0.5 * H0, *setup.divisions)
    X0 = mesh.p.copy()
    t = mesh.t
    nn, ne = X0.shape[1], t.shape[1]
    ndof = 3 * nn
    tol = 1e-9 * max(R, H0)
    on_x0, on_y0 = np.abs(X0[0]) < tol, np.abs(X0[1]) < tol
    on_z0, on_top = np.abs(X0[2]) < tol, np.abs(X0[2] - 0.5 * H0) < tol
    symmetry = np.concatenate([3 * np.flatnonzero(on_x0), 3 * np.flatnonzero(on_y0) + 1,
                               3 * np.flatnonzero(on_z0) + 2])
    contact = on_top.copy()                  # nodes on the platen (the end face, later fold-over)

    def constraints(contact, landing, ds, z_platen_end, Xz):
        """Constrained dofs and their increments: symmetry 0; nodes in contact move with the
        platen (z) and, sticking, not radially; nodes landing on the platen in this increment
        are put exactly onto it (z only)."""
        c, l = np.flatnonzero(contact), np.flatnonzero(landing)
        target = np.zeros(ndof)
        target[3 * c + 2] = -0.5 * ds
        target[3 * l + 2] = z_platen_end - Xz[l]
        parts = [symmetry, 3 * c + 2, 3 * l + 2]
        if setup.friction == "stick":
            parts += [3 * c, 3 * c + 1]
        return np.unique(np.concatenate(parts)), target

    kin0 = _Kinematics(X0, t)
    N = kin0.n_points
    nq = N // ne
    volume0 = 8.0 * kin0.w.sum()             # the model is one eighth
    area0 = volume0 / H0
    elastic = Elasticity(setup.E, setup.nu)
    T = np.full(N, float(setup.temperature))
    extras = np.tile(extra_values, (N, 1)) if extra_values is not None else None

    v = setup.strain_rate * H0                               # platen closing speed, mm/s
    s_end = H0 * (1.0 - np.exp(-setup.strain))
    t_end = s_end / v
    dt_nom = t_end / setup.increments

    stress = np.zeros((N, 6))
    statev = np.zeros((N, cv.NSTATV))
    X = X0.copy()
    time_now, s_now = 0.0, 0.0
    du_prev, dt_prev = None, None
    ddsdde_prev = None
    records: list[IncrementRecord] = []
    files: list[Path] = []
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        files.append(_write_vtu(out / "increment_0000.vtu", X0, t, X - X0, stress, statev,
                                np.zeros(N, dtype=np.int32), ne, nq))
    say(f"hot compression: Ø{setup.diameter:g} × {H0:g} mm, T = {setup.temperature:g} °C, "
        f"ε̇_nom = {setup.strain_rate:g} 1/s (v = {v:g} mm/s), to ln(h0/h) = {setup.strain:g} "
        f"(platen travel {s_end:.4f} mm, {t_end:.4g} s), friction {setup.friction}; "
        f"{ne} hexahedra (1/8 model), {N} Gauss points, {ndof} dofs")

    dt = dt_nom
    cuts_in_row = 0
    completed, message = True, "completed"
    inc = 0
    while time_now < t_end * (1 - 1e-12):
        dt = min(dt, t_end - time_now)
        ds = v * dt
        z_platen_end = 0.5 * H0 - 0.5 * (s_now + ds)
        landing = np.zeros(nn, dtype=bool)
        for _pass in range(MAX_CONTACT_PASSES):
            D, target = constraints(contact, landing, ds, z_platen_end, X[2])
            # mid-increment configuration from the predicted increment
            if du_prev is None:
                e = ds / (H0 - s_now)
                du_pred = np.zeros(ndof)
                du_pred[0::3], du_pred[1::3], du_pred[2::3] = 0.5 * e * X[0], 0.5 * e * X[1], -e * X[2]
            else:
                du_pred = du_prev * (dt / dt_prev)
            du_pred[D] = target[D]
            kin = _Kinematics(X + 0.5 * du_pred.reshape(-1, 3).T, t)
            du, why, residuals, alphas, up, reac, ok = _newton(
                lambda u: integrate_fn(flow, stress, statev, kin.strain(u), dt, T, elastic, extras=extras),
                kin, ndof, D, target, ddsdde_prev, setup)
            if not ok:
                break
            # fold-over: free surface nodes that would pass the platen land on it; solve again
            through = ~contact & ~landing & (X[2] + du[2::3] > z_platen_end + tol)
            if not through.any():
                break
            landing |= through
        else:
            ok, why = False, f"contact not settled in {MAX_CONTACT_PASSES} passes"
        res_txt = " ".join(f"{x:.3e}" + (f"(α={al:g})" if al != 1 else "") for x, al in zip(residuals, alphas))
        if not ok:
            cuts_in_row += 1
            say(f"  increment {inc + 1}: dt = {dt:.4g} s failed ({why}; |r| {res_txt}); halving")
            if cuts_in_row > setup.max_cuts:
                completed = False
                message = (f"stopped at t = {time_now:.4g} s of {t_end:.4g} s: increment {inc + 1} failed "
                           f"after {setup.max_cuts} halvings ({why})")
                say(message)
                break
            dt *= 0.5
            continue
        # converged: accept
        inc += 1
        cuts = cuts_in_row
        stress, statev = np.array(up.stress), np.array(up.statev)
        X = X + du.reshape(-1, 3).T
        time_now += dt
        s_now += ds
        du_prev, dt_prev = du, dt
        ddsdde_prev = np.array(up.ddsdde)
        kin_end = _Kinematics(X, t)
        f_end = kin_end.internal_force(stress, ndof)
        contact |= landing
        force = -4.0 * float(f_end[3 * np.flatnonzero(contact) + 2].sum())
        height = H0 - s_now
        area = 8.0 * float(kin_end.w.sum()) / height
        rec = IncrementRecord(inc, time_now, dt, s_now, height, force, area, float(statev[:, cv.SV_P].mean()),
                              residuals, reac, cuts, int(contact.sum()))
        records.append(rec)
        say(f"increment {inc:3d} t = {time_now:.4g} s  s = {s_now:.4f} mm  ln(h0/h) = {np.log(H0 / height):.4f}  "
            f"F = {force / 1000:.4f} kN  contact nodes {int(contact.sum())}  Newton |r| (N): {res_txt}")
        if out is not None:
            files.append(_write_vtu(out / f"increment_{inc:04d}.vtu", X0, t, X - X0, stress, statev,
                                    np.asarray(up.status, dtype=np.int32), ne, nq))
        if cuts_in_row:
            dt = min(2 * dt, dt_nom)
        cuts_in_row = 0

    result = CompressionResult(setup, records, H0, float(volume0), float(area0), ne, N, ndof, completed,
                               message, time.perf_counter() - t_start, files, stress, statev)
    if out is not None:
        files.append(_write_pvd(out / "compression.pvd", files, [0.0] + [r.time for r in records]))
        files.append(_write_csv(out / "force_displacement.csv", result))
    say(f"{message}: {len(records)} increments in {result.seconds:.1f} s")
    return result


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------
def _write_vtu(path: Path, X0, t, U, stress, statev, status, ne, nq) -> Path:
    import meshio
    from skfem.io.meshio import HEX_MAPPING
    s = stress.reshape(ne, nq, 6)
    p = statev[:, cv.SV_P].reshape(ne, nq)
    cells = [("hexahedron", t[HEX_MAPPING[:8]].T)]
    m = meshio.Mesh(X0.T, cells, point_data={"displacement_mm": U.T.copy()},
                    cell_data={"stress_MPa": [s.mean(axis=1)], "mises_stress_MPa": [_mises(s).mean(axis=1)],
                               "equivalent_plastic_strain": [p.mean(axis=1)],
                               "equivalent_plastic_strain_qp": [p],
                               "status": [status.reshape(ne, nq).max(axis=1).astype(np.int32)]})
    meshio.write(path, m)
    return path


def _write_pvd(path: Path, vtus: list[Path], times: list[float]) -> Path:
    lines = ['<?xml version="1.0"?>', '<VTKFile type="Collection" version="0.1">', "<Collection>"]
    lines += [f'<DataSet timestep="{t:.10g}" file="{f.name}"/>' for t, f in zip(times, vtus)]
    lines += ["</Collection>", "</VTKFile>", ""]
    path.write_text("\n".join(lines))
    return path


def _write_csv(path: Path, res: CompressionResult) -> Path:
    tab = res.table()
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for i, r in enumerate(res.records):
            w.writerow([r.increment, f"{r.time:.10g}", f"{r.dt:.10g}", f"{r.platen_displacement:.10g}",
                        f"{r.height:.10g}", f"{tab['true_strain'][i]:.10g}", f"{tab['nominal_strain'][i]:.10g}",
                        f"{r.force:.10g}", f"{r.area:.10g}", f"{r.force / r.area:.10g}", f"{r.mean_p:.10g}",
                        len(r.residuals) - 1, r.cuts, r.contact_nodes])
    return path
