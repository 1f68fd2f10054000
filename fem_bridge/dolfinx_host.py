"""A DOLFINx 0.11 host: the Gleeble hot compression of ``fem_bridge.fe_host`` in FEniCSx, MPI-parallel,
with the stress update of ``fem_bridge.j2.integrate`` entering through ``dolfinx-external-operator``.

Runs in the Python 3.12 environment made by ``make dolfinx-env`` (.venv-dolfinx):

    .venv-dolfinx/bin/python -m fem_bridge.dolfinx_host --model model.onnx --out DIR
    .venv-dolfinx/bin/mpiexec -n 2 .venv-dolfinx/bin/python -m fem_bridge.dolfinx_host --model model.onnx --out DIR

Problem: as ``fem_bridge.fe_host`` (same ``CompressionSetup`` defaults and the same O-grid of the
1/8 cylinder, 8-node hexahedra): symmetry planes x = 0, y = 0, z = 0, the top face moves with the
platen by −s/2; ``friction="none"`` (frictionless, homogeneous) or ``"stick"`` (no radial motion of
the end face; no fold-over handling: nodes of the free surface are not put onto the platen).
Same kinematics: incremental small strain on the updated mesh, the strain increment measured and
equilibrium imposed on the mid-increment configuration X_n + Δu*/2 (Δu* the previous increment
scaled to the step; for the first one the homogeneous incompressible field), the mesh moved by Δu
after convergence, the force the reaction on the end-of-increment mesh (F = −4 ∫ σ_n : ε(w) dx,
w = e_z on the top face nodes), the area V/h. Differences: the standard displacement formulation
(no B-bar; exact for the homogeneous frictionless case; for sticking Q1 locks under plastic
incompressibility — use ``--degree 2``) and no line search (an increment that fails is halved).

Constitutive coupling: ``σ = FEMExternalOperator(ε_M(Δu))`` on a quadrature space with value shape
(6,) (Mandel vector, order 11, 22, 33, 12, 13, 23: ``conventions.VOIGT_INDEX``). Before each residual
assembly the strain increments at all quadrature points of the process (owned and ghost cells) are
converted to Abaqus form, ``integrate`` gives stress, DDSDDE and STATEV, and the stress and the
tangent are written, in Mandel form, into the coefficients of σ and of its derivative. History
(stress and STATEV at the last converged increment) lives in quadrature-space functions, replaced
after each converged increment. Newton: full consistent tangent (for the first correction the
converged tangent of the previous increment), MUMPS LU (``--solver cg``: CG + GAMG), converged when ‖r_free‖ <= rtol ·
max(‖r_reaction‖, 1 N); any point with STEP_CUT/BAD_INPUT, no convergence in ``max_newton`` or a
non-finite residual halves the increment (at most ``max_cuts`` in a row).

Output on rank 0 (``out_dir``): ``force_displacement.csv`` (the columns of ``fe_host.CSV_COLUMNS``)
and ``newton.json`` (Newton iterations and residual norms per increment, mesh size, ranks, wall
times split into the integrate callback, assembly and linear solve). Units: mm, s, MPa, N, °C.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from constitutive.errors import NeumatInputError

from . import conventions as cv
from .fe_host import CSV_COLUMNS, CompressionSetup, o_grid_blocks


# ---------------------------------------------------------------------------------------------
# mesh: the O-grid of fe_host.quarter_cylinder_mesh as plain arrays (DOLFINx hexahedron order)
# ---------------------------------------------------------------------------------------------
def quarter_cylinder_arrays(radius: float, half_height: float, n_core: int, n_ring: int, n_z: int):
    """Points (n, 3) and hexahedra (m, 8) (DOLFINx/basix tensor-product vertex order) of the 1/8
    cylinder x, y >= 0, 0 <= z <= half_height: the O-grid of ``fe_host.o_grid_blocks`` extruded in
    n_z layers."""
    z = np.linspace(0.0, 1.0, n_z + 1)

    def block(us, vs, fmap):
        U, V, W = np.meshgrid(us, vs, z, indexing="ij")
        x, y = fmap(U.ravel(), V.ravel())
        pts = np.column_stack([x, y, W.ravel() * half_height])
        nu, nv, nw = len(us), len(vs), len(z)
        idx = np.arange(nu * nv * nw).reshape(nu, nv, nw)
        c = [idx[i:nu - 1 + i, j:nv - 1 + j, k:nw - 1 + k].ravel()
             for k in (0, 1) for j in (0, 1) for i in (0, 1)]
        return pts, np.column_stack(c)

    blocks = [block(*b) for b in o_grid_blocks(radius, n_core, n_ring)]
    pts, cells, off = [], [], 0
    for p, c in blocks:
        pts.append(p)
        cells.append(c + off)
        off += len(p)
    pts, cells = np.vstack(pts), np.vstack(cells)
    key = np.round(pts / (1e-9 * max(radius, half_height))).astype(np.int64)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return pts[first], inverse.ravel()[cells].astype(np.int64)


# ---------------------------------------------------------------------------------------------
@dataclass
class DolfinxResult:
    table: dict                    # columns of CSV_COLUMNS (rank 0 and all ranks alike)
    newton: list                   # per increment: {"increment", "newton_iterations", "residuals", "cuts"}
    completed: bool
    message: str
    n_ranks: int
    n_cells: int
    n_quadrature_points: int
    n_dofs: int
    n_ghost_cells: int             # summed over the ranks
    seconds: dict = field(default_factory=dict)   # total, setup, integrate, assembly, solve

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("table")
        return d


class _LinearSolveFailed(RuntimeError):
    pass


def _rigid_body_modes(V, PETSc):
    """The six rigid-body displacement fields of V, orthonormal, as a PETSc near null space."""
    x = V.tabulate_dof_coordinates()
    n = V.dofmap.index_map.size_local
    vecs = []
    for k in range(6):
        f = np.zeros((x.shape[0], 3))
        if k < 3:
            f[:, k] = 1.0
        else:
            i, j = [(0, 1), (1, 2), (2, 0)][k - 3]
            f[:, i], f[:, j] = -x[:, j], x[:, i]
        vec = PETSc.Vec().createWithArray(f[:n].ravel().copy(), bsize=3, comm=V.mesh.comm)
        for w in vecs:
            vec.axpy(-vec.dot(w), w)
        vec.normalize()
        vecs.append(vec)
    return PETSc.NullSpace().create(vectors=vecs, comm=V.mesh.comm)


def _log(comm, say, msg):
    if say is not None and comm.rank == 0:
        say(msg)


def run_compression_dolfinx(model, setup: CompressionSetup | None = None, out_dir=None, degree: int | None = None,
                            log=print, comm=None, ghost_mode: str = "none", solver: str = "lu") -> DolfinxResult:
    """Run the compression in DOLFINx on ``comm`` (default COMM_WORLD). ``model``: ONNX path or a
    flow-stress backend. ``degree``: displacement degree, 1 or 2 (default 1 frictionless, 2 sticking).
    ``ghost_mode``: "none" or "shared_facet" (ghost cells; integrated too, with the same inputs as on
    their owner). ``solver``: "lu" (MUMPS) or "cg" (conjugate gradients, GAMG with the rigid-body
    modes as near null space, relative tolerance 1e-12). Returns the same result on every rank; rank
    0 writes the files."""
    from mpi4py import MPI                      # before dolfinx: loads libmpi
    import dolfinx_solver  # noqa: F401  (sets up the wheel's shared libraries)
    import basix.ufl
    import dolfinx.fem.petsc
    import ufl
    from dolfinx import fem, mesh as dmesh
    from dolfinx_external_operator import (FEMExternalOperator, evaluate_operands,
                                           replace_external_operators)
    from petsc4py import PETSc

    from .backends import load_backend
    from .j2 import Elasticity, integrate

    t_start = time.perf_counter()
    comm = comm or MPI.COMM_WORLD
    setup = setup or CompressionSetup()
    setup.check()
    if degree is None:
        degree = 2 if setup.friction == "stick" else 1
    if degree not in (1, 2):
        raise NeumatInputError(f"degree must be 1 or 2, got {degree}")
    if solver not in ("lu", "cg"):
        raise NeumatInputError(f"solver must be 'lu' or 'cg', got {solver!r}")
    if ghost_mode not in ("none", "shared_facet"):
        raise NeumatInputError(f"ghost mode must be 'none' or 'shared_facet', got {ghost_mode!r}")
    flow = load_backend(model) if isinstance(model, (str, Path)) else model
    extras = setup.extras_for(flow)

    # mesh on rank 0, distributed by DOLFINx
    R, H0 = 0.5 * setup.diameter, setup.height
    if comm.rank == 0:
        pts, hexes = quarter_cylinder_arrays(R, 0.5 * H0, *setup.divisions)
    else:
        pts, hexes = np.zeros((0, 3)), np.zeros((0, 8), dtype=np.int64)
    partitioner = dmesh.create_cell_partitioner(getattr(dmesh.GhostMode, ghost_mode), 2) if comm.size > 1 else None
    domain = dmesh.create_mesh(comm, hexes, ufl.Mesh(basix.ufl.element("Lagrange", "hexahedron", 1, shape=(3,))),
                               pts, partitioner=partitioner)
    tdim = domain.topology.dim
    cmap = domain.topology.index_map(tdim)
    n_cells_local, n_cells_all = cmap.size_local, cmap.size_local + cmap.num_ghosts

    V = fem.functionspace(domain, ("Lagrange", degree, (3,)))
    qdeg = 2 * degree                                   # Q1: 2×2×2 Gauss points, Q2: 3×3×3
    qe = lambda shape: basix.ufl.quadrature_element(domain.basix_cell(), value_shape=shape, degree=qdeg)
    S = fem.functionspace(domain, qe((6,)))
    Z = fem.functionspace(domain, qe((cv.NSTATV,)))
    dx = ufl.Measure("dx", domain=domain, metadata={"quadrature_degree": qdeg, "quadrature_scheme": "default"})
    nq = S.element.interpolation_points.shape[0]
    n_pts = n_cells_all * nq

    def eps_m(u):
        e = ufl.sym(ufl.grad(u))
        return ufl.as_vector([e[i, j] if i == j else np.sqrt(2.0) * e[i, j] for i, j in cv.VOIGT_INDEX])

    du, v, ddu = fem.Function(V, name="du"), ufl.TestFunction(V), ufl.TrialFunction(V)
    sigma = FEMExternalOperator(eps_m(du), function_space=S)
    F = ufl.inner(sigma, eps_m(v)) * dx
    J = ufl.algorithms.expand_derivatives(ufl.derivative(F, du, ddu))
    F_rep, F_ops = replace_external_operators(F)
    J_rep, J_ops = replace_external_operators(J)
    F_form, J_form = fem.form(F_rep), fem.form(J_rep)
    sig_coef, tan_coef = F_ops[0].ref_coefficient, J_ops[0].ref_coefficient

    stress_n = fem.Function(S, name="stress_mandel_MPa")       # history: last converged increment
    statev_n = fem.Function(Z, name="statev")
    for f, w in ((stress_n, 6), (statev_n, cv.NSTATV), (sig_coef, 6), (tan_coef, 36)):
        if f.x.array.size != n_pts * w:
            raise RuntimeError(f"quadrature layout: {f.name} has {f.x.array.size} values, expected {n_pts} × {w}")

    # boundary conditions on the increment Δu (facets located once, topologically)
    fdim = tdim - 1
    tol = 1e-9 * max(R, H0)
    facets = lambda fn: dmesh.locate_entities_boundary(domain, fdim, fn)
    f_x0 = facets(lambda x: np.abs(x[0]) < tol)
    f_y0 = facets(lambda x: np.abs(x[1]) < tol)
    f_z0 = facets(lambda x: np.abs(x[2]) < tol)
    f_top = facets(lambda x: np.abs(x[2] - 0.5 * H0) < tol)
    platen = fem.Constant(domain, 0.0)
    zero = fem.Constant(domain, 0.0)

    def bc(comp, fs, value):
        return fem.dirichletbc(value, fem.locate_dofs_topological(V.sub(comp), fdim, fs), V.sub(comp))
    bcs = [bc(0, f_x0, zero), bc(1, f_y0, zero), bc(2, f_z0, zero), bc(2, f_top, platen)]
    if setup.friction == "stick":
        bcs += [bc(0, f_top, zero), bc(1, f_top, zero)]
    n_owned = V.dofmap.index_map.size_local * V.dofmap.index_map_bs
    constrained = np.zeros(n_owned, dtype=bool)
    for b_ in bcs:
        dofs, n_own = b_.dof_indices()
        constrained[dofs[:n_own]] = True
    free = ~constrained

    # reaction: F_z(top) = ∫ σ_n : ε(w) dx with w = e_z on the top-face nodes
    w_top = fem.Function(V)
    top_z = bcs[3].dof_indices()[0]
    w_top.x.array[top_z] = 1.0
    w_top.x.scatter_forward()
    force_form = fem.form(ufl.inner(stress_n, eps_m(w_top)) * dx)
    volume_form = fem.form(fem.Constant(domain, 1.0) * dx)
    n_top_nodes = comm.allreduce(int(bcs[3].dof_indices()[1]))

    # geometry nodes ↔ displacement nodes (the vertex dofs come first in every cell, same order)
    gmap = domain.geometry.dofmaps[0]
    node_of_geom = np.empty(domain.geometry.x.shape[0], dtype=np.int64)
    node_of_geom[gmap] = V.dofmap.list[:, :gmap.shape[1]]

    def nodal(u_array):
        return u_array.reshape(-1, 3)[node_of_geom]

    A = dolfinx.fem.petsc.create_matrix(J_form)
    b = dolfinx.fem.petsc.create_vector(V)
    dx_vec = dolfinx.fem.petsc.create_vector(V)
    ksp = PETSc.KSP().create(comm)
    ksp.setOperators(A)
    if solver == "lu":
        ksp.setType("preonly")
        ksp.getPC().setType("lu")
        ksp.getPC().setFactorSolverType("mumps")
    else:
        A.setNearNullSpace(_rigid_body_modes(V, PETSc))
        ksp.setType("cg")
        ksp.getPC().setType("gamg")
        ksp.setTolerances(rtol=1e-12, atol=1e-30, max_it=2000)

    elastic = Elasticity(setup.E, setup.nu)
    timers = {"integrate": 0.0, "assembly": 0.0, "solve": 0.0}
    state = {}

    def update(dt, tangent=None):
        """Strain increments at all local quadrature points → integrate → σ and tangent coefficients.
        Returns the number of points (all ranks) whose status is not OK."""
        t0 = time.perf_counter()
        d_eps = next(iter(evaluate_operands(F_ops).values())).reshape(-1, 6)
        up = integrate(flow, cv.mandel_to_abaqus_stress(stress_n.x.array.reshape(-1, 6)),
                       statev_n.x.array.reshape(-1, cv.NSTATV), cv.mandel_to_abaqus_strain(d_eps), dt,
                       setup.temperature, elastic, extras=extras)
        sig_coef.x.array[:] = cv.abaqus_to_mandel_stress(up.stress).ravel()
        C = cv.abaqus_to_mandel_tangent(up.ddsdde)
        state["up"], state["C"] = up, C
        tan_coef.x.array[:] = (C if tangent is None else tangent).ravel()
        timers["integrate"] += time.perf_counter() - t0
        return comm.allreduce(int(np.count_nonzero(up.status != cv.OK)))

    def residual():
        """b = r(Δu) (owned entries complete); global norms of its free and constrained parts."""
        t0 = time.perf_counter()
        with b.localForm() as bl:
            bl.set(0.0)
        dolfinx.fem.petsc.assemble_vector(b, F_form)
        b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        r = b.array_r
        rf = np.sqrt(comm.allreduce(float(np.sum(r[free] ** 2))))
        rc = np.sqrt(comm.allreduce(float(np.sum(r[constrained] ** 2))))
        timers["assembly"] += time.perf_counter() - t0
        return rf, rc

    def correction(first):
        """Solve J δ = r with the Dirichlet rows; Δu ← Δu − δ (meets the prescribed increments)."""
        t0 = time.perf_counter()
        A.zeroEntries()
        dolfinx.fem.petsc.assemble_matrix(A, J_form, bcs=bcs)
        A.assemble()
        if first:      # lifting of the prescribed increments (zero once they are met)
            lift = dolfinx.fem.petsc.create_vector(V)
            with lift.localForm() as ll:
                ll.set(0.0)
            dolfinx.fem.petsc.apply_lifting(lift, [J_form], bcs=[bcs], x0=[du.x.petsc_vec], alpha=-1.0)
            lift.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
            b.axpy(1.0, lift)
            lift.destroy()
        dolfinx.fem.petsc.set_bc(b, bcs, du.x.petsc_vec, -1.0)
        t1 = time.perf_counter()
        ksp.solve(b, dx_vec)
        if ksp.getConvergedReason() < 0:
            raise _LinearSolveFailed(f"linear solver failed (PETSc reason {ksp.getConvergedReason()})")
        dx_vec.ghostUpdate(addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
        du.x.petsc_vec.axpy(-1.0, dx_vec)
        du.x.scatter_forward()
        t2 = time.perf_counter()
        timers["assembly"] += t1 - t0
        timers["solve"] += t2 - t1

    def newton(dt, C_prev):
        du.x.array[:] = 0.0
        if update(dt):
            return False, "a point requested a step cut", []
        rf, rc = residual()
        res = [rf]
        for it in range(1, setup.max_newton + 1):
            if it == 1 and C_prev is not None:
                tan_coef.x.array[:] = C_prev.ravel()
            try:
                correction(first=(it == 1))
            except _LinearSolveFailed as exc:
                return False, str(exc), res
            bad = update(dt)
            if bad:
                return False, f"{bad} point(s) requested a step cut", res
            rf, rc = residual()
            res.append(rf)
            if not np.isfinite(rf):
                return False, "non-finite residual", res
            if rf <= setup.rtol * max(rc, 1.0):
                return True, "", res
        return False, f"Newton not converged in {setup.max_newton} iterations", res

    def assemble_scalar(form):
        return comm.allreduce(fem.assemble_scalar(form))

    v_speed = setup.strain_rate * H0
    s_end = H0 * (1.0 - np.exp(-setup.strain))
    t_end = s_end / v_speed
    dt_nom = t_end / setup.increments
    n_dofs = V.dofmap.index_map.size_global * V.dofmap.index_map_bs
    n_qp_global = comm.allreduce(n_cells_local) * nq
    _log(comm, log, f"DOLFINx hot compression on {comm.size} rank(s): Ø{setup.diameter:g} × {H0:g} mm, "
                    f"T = {setup.temperature:g} °C, ε̇_nom = {setup.strain_rate:g} 1/s, to ln(h0/h) = "
                    f"{setup.strain:g}, friction {setup.friction}; {comm.allreduce(n_cells_local)} Q{degree} "
                    f"hexahedra (1/8 model), {n_qp_global} quadrature points, {n_dofs} dofs")
    volume0 = 8.0 * assemble_scalar(volume_form)
    t_setup = time.perf_counter() - t_start

    X = domain.geometry.x
    X_n = X.copy()
    time_now, s_now, dt = 0.0, 0.0, dt_nom
    du_prev, dt_prev, C_prev = None, None, None
    rows, newton_log = [], []
    cuts_in_row, inc = 0, 0
    completed, message = True, "completed"
    while time_now < t_end * (1 - 1e-12):
        dt = min(dt, t_end - time_now)
        ds = v_speed * dt
        platen.value = -0.5 * ds
        if du_prev is None:             # homogeneous incompressible predictor
            e = ds / (H0 - s_now)
            pred = X_n * np.array([0.5 * e, 0.5 * e, -e])
        else:
            pred = nodal(du_prev) * (dt / dt_prev)
        X[:] = X_n + 0.5 * pred         # mid-increment configuration
        ok, why, res = newton(dt, C_prev)
        if not ok:
            X[:] = X_n
            cuts_in_row += 1
            _log(comm, log, f"  increment {inc + 1}: dt = {dt:.4g} s failed ({why}); halving")
            if cuts_in_row > setup.max_cuts:
                completed = False
                message = (f"stopped at t = {time_now:.4g} s of {t_end:.4g} s: increment {inc + 1} failed "
                           f"after {setup.max_cuts} halvings ({why})")
                break
            dt *= 0.5
            continue
        inc += 1
        up = state["up"]
        stress_n.x.array[:] = sig_coef.x.array
        statev_n.x.array[:] = up.statev.ravel()
        C_prev = state["C"].copy()
        du_prev, dt_prev = du.x.array.copy(), dt
        X_n = X_n + nodal(du.x.array)
        X[:] = X_n                       # end-of-increment configuration
        time_now += dt
        s_now += ds
        force = -4.0 * assemble_scalar(force_form)
        height = H0 - s_now
        area = 8.0 * assemble_scalar(volume_form) / height
        p_owned = up.statev[:n_cells_local * nq, cv.SV_P]
        mean_p = comm.allreduce(float(p_owned.sum())) / n_qp_global
        rows.append([inc, time_now, dt, s_now, height, np.log(H0 / height), 1 - height / H0, force, area,
                     force / area, mean_p, len(res) - 1, cuts_in_row, n_top_nodes])
        newton_log.append({"increment": inc, "newton_iterations": len(res) - 1, "residuals_N": res,
                           "cuts": cuts_in_row})
        _log(comm, log, f"increment {inc:3d} t = {time_now:.4g} s  s = {s_now:.4f} mm  ln(h0/h) = "
                        f"{np.log(H0 / height):.4f}  F = {force / 1000:.4f} kN  Newton |r| (N): "
                        + " ".join(f"{x:.3e}" for x in res))
        if cuts_in_row:
            dt = min(2 * dt, dt_nom)
        cuts_in_row = 0
    ksp.destroy()

    total = time.perf_counter() - t_start
    seconds = {"total": total, "setup": t_setup, **timers}
    seconds = {k: comm.allreduce(float(x), op=MPI.MAX) for k, x in seconds.items()}   # slowest rank
    table = {c: np.array([r[i] for r in rows]) for i, c in enumerate(CSV_COLUMNS)}
    result = DolfinxResult(table, newton_log, completed, message, comm.size, comm.allreduce(n_cells_local),
                           n_qp_global, n_dofs, comm.allreduce(n_cells_all - n_cells_local), seconds)
    result.volume0 = volume0
    _log(comm, log, f"{message}: {inc} increments in {total:.1f} s (integrate {seconds['integrate']:.1f} s, "
                    f"assembly {seconds['assembly']:.1f} s, solve {seconds['solve']:.1f} s)")
    if out_dir is not None and comm.rank == 0:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "force_displacement.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(CSV_COLUMNS)
            for r in rows:
                w.writerow([f"{x:.17g}" if isinstance(x, float) else x for x in r])
        info = {**result.summary(), "setup": asdict(setup), "degree": degree, "solver": solver,
                "ghost_mode": ghost_mode, "volume0_mm3": volume0}
        (out / "newton.json").write_text(json.dumps(info, indent=1))
    return result


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    d = CompressionSetup()
    p = argparse.ArgumentParser(
        prog="python -m fem_bridge.dolfinx_host",
        description="Hot compression of a Gleeble cylinder in DOLFINx (MPI: run under mpiexec), driven by "
                    "the J2 bridge. Rank 0 writes force_displacement.csv and newton.json into --out.")
    p.add_argument("--model", required=True, help="exported model (.onnx)")
    p.add_argument("--temperature", type=float, default=d.temperature, help="°C (default %(default)s)")
    p.add_argument("--strain-rate", type=float, default=d.strain_rate, help="nominal strain rate v/h0, 1/s (default %(default)s)")
    p.add_argument("--strain", type=float, default=d.strain, help="final ln(h0/h) (default %(default)s)")
    p.add_argument("--increments", type=int, default=d.increments, help="time increments (default %(default)s)")
    p.add_argument("--friction", choices=["none", "stick"], default="none")
    p.add_argument("--E", type=float, default=d.E, help="Young's modulus, MPa (default %(default)s)")
    p.add_argument("--nu", type=float, default=d.nu, help="Poisson's ratio (default %(default)s)")
    p.add_argument("--extra", action="append", metavar="NAME=VALUE", help="value of an extra model feature")
    p.add_argument("--divisions", default=",".join(map(str, d.divisions)),
                   help="mesh: O-grid core, ring and layers over the half height (default %(default)s)")
    p.add_argument("--degree", type=int, default=None, choices=[1, 2],
                   help="displacement degree (default 1 frictionless, 2 sticking: Q1 locks when sticking)")
    p.add_argument("--solver", choices=["lu", "cg"], default="lu",
                   help="linear solver: lu (MUMPS, default) or cg (GAMG-preconditioned conjugate gradients)")
    p.add_argument("--ghost-mode", choices=["none", "shared_facet"], default="none",
                   help="MPI ghost cells of the mesh (default none)")
    p.add_argument("--out", default="dolfinx_out", help="output folder (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no per-increment log")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        from mpi4py import MPI
        import dolfinx_solver  # noqa: F401
    except ImportError as exc:
        print(f"fem_bridge.dolfinx_host: error: DOLFINx is not installed in this Python ({exc}); run "
              f"'make dolfinx-env' and use .venv-dolfinx/bin/python", file=sys.stderr)
        return 2
    try:
        try:
            div = tuple(int(x) for x in args.divisions.split(","))
        except ValueError:
            raise NeumatInputError(f"--divisions takes three integers like 4,3,6, got '{args.divisions}'") from None
        extras = {}
        for item in args.extra or []:
            name, sep, value = item.partition("=")
            try:
                extras[name.strip()] = float(value)
            except ValueError:
                raise NeumatInputError(f"--extra takes NAME=VALUE with a number, got '{item}'") from None
        setup = CompressionSetup(temperature=args.temperature, strain_rate=args.strain_rate, strain=args.strain,
                                 increments=args.increments, friction=args.friction, E=args.E, nu=args.nu,
                                 divisions=div, extras=extras)
        res = run_compression_dolfinx(args.model, setup, out_dir=args.out, degree=args.degree,
                                      ghost_mode=args.ghost_mode, solver=args.solver, log=None if args.quiet else print)
    except NeumatInputError as exc:
        if MPI.COMM_WORLD.rank == 0:
            print(f"fem_bridge.dolfinx_host: error: {exc}", file=sys.stderr)
        return 2
    if MPI.COMM_WORLD.rank == 0:
        print(f"wrote {Path(args.out) / 'force_displacement.csv'} and {Path(args.out) / 'newton.json'}")
        if not res.completed:
            print(f"fem_bridge.dolfinx_host: {res.message}", file=sys.stderr)
    return 0 if res.completed else 1


if __name__ == "__main__":
    sys.exit(main())
