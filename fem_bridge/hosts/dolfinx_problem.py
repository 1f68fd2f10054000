"""The finite-element problem of the DOLFINx host: mesh, spaces, the external stress operator,
boundary conditions, and Newton on one increment. Imports DOLFINx (and MPI, PETSc, UFL, basix)
at its top, so it is imported only by ``hosts.dolfinx_compression`` inside its functions and only
runs in .venv-dolfinx.

Constitutive coupling: ``σ = FEMExternalOperator(ε_M(Δu))`` on a quadrature space with value
shape (6,) (Mandel vector, order 11, 22, 33, 12, 13, 23: ``conventions.VOIGT_INDEX``). Before each
residual assembly the strain increments at all quadrature points of the process (owned and ghost
cells) are converted to Abaqus form, ``integrate`` gives stress, DDSDDE and STATEV, and the stress
and the tangent are written, in Mandel form, into the coefficients of σ and of its derivative.
History (stress and STATEV at the last converged increment) lives in quadrature-space functions,
replaced by ``accept`` after each converged increment. Units: mm, s, MPa, N, °C.
"""
from __future__ import annotations

import time

from mpi4py import MPI                      # before dolfinx: loads libmpi
import dolfinx_solver  # noqa: F401  (sets up the wheel's shared libraries)
import basix.ufl
import dolfinx.fem.petsc
import numpy as np
import ufl
from dolfinx import fem, mesh as dmesh
from dolfinx_external_operator import FEMExternalOperator, evaluate_operands, replace_external_operators
from petsc4py import PETSc

from .. import conventions as cv
from ..j2 import Elasticity, integrate
from .compression_setup import CompressionSetup
from .cylinder_mesh import quarter_cylinder_arrays


class LinearSolveFailed(RuntimeError):
    pass


def _rigid_body_modes(V):
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


def _eps_m(u):
    """The small-strain tensor of u as a Mandel 6-vector (shear × √2)."""
    e = ufl.sym(ufl.grad(u))
    return ufl.as_vector([e[i, j] if i == j else np.sqrt(2.0) * e[i, j] for i, j in cv.VOIGT_INDEX])


class DolfinxCompression:
    """The 1/8 cylinder of ``setup`` in DOLFINx on ``comm`` (default COMM_WORLD): Q``degree``
    displacement increments Δu, the stress update of ``flow`` at the quadrature points, the
    platen, symmetry and (sticking) radial constraints, and the linear solver (``"lu"``: MUMPS;
    ``"cg"``: CG + GAMG with the rigid-body modes, relative tolerance 1e-12).
    ``timers`` sums the seconds spent in the integrate callback, assembly and linear solve."""

    def __init__(self, flow, setup: CompressionSetup, extras, degree: int, ghost_mode: str, solver: str,
                 comm=None):
        self.comm = comm or MPI.COMM_WORLD
        self.flow, self.setup, self.extras = flow, setup, extras
        self.degree = degree
        self.elastic = Elasticity(setup.E, setup.nu)
        self.timers = {"integrate": 0.0, "assembly": 0.0, "solve": 0.0}
        self._build_mesh(ghost_mode)
        self._build_forms()
        self._build_constraints()
        self._build_reaction()
        self._build_solver(solver)

    # -- set-up -------------------------------------------------------------------------------
    def _build_mesh(self, ghost_mode: str) -> None:
        """The O-grid made on rank 0 and distributed by DOLFINx."""
        comm, s = self.comm, self.setup
        R, H0 = 0.5 * s.diameter, s.height
        if comm.rank == 0:
            pts, hexes = quarter_cylinder_arrays(R, 0.5 * H0, *s.divisions)
        else:
            pts, hexes = np.zeros((0, 3)), np.zeros((0, 8), dtype=np.int64)
        partitioner = (dmesh.create_cell_partitioner(getattr(dmesh.GhostMode, ghost_mode), 2)
                       if comm.size > 1 else None)
        coord = ufl.Mesh(basix.ufl.element("Lagrange", "hexahedron", 1, shape=(3,)))
        self.domain = dmesh.create_mesh(comm, hexes, coord, pts, partitioner=partitioner)
        cmap = self.domain.topology.index_map(self.domain.topology.dim)
        self.n_cells_local, self.n_cells_all = cmap.size_local, cmap.size_local + cmap.num_ghosts
        self.n_cells = comm.allreduce(self.n_cells_local)        # owned cells over all ranks

    def _build_forms(self) -> None:
        """Spaces, σ as an external operator of ε_M(Δu), residual and Jacobian forms, history."""
        domain, degree = self.domain, self.degree
        self.V = V = fem.functionspace(domain, ("Lagrange", degree, (3,)))
        qdeg = 2 * degree                                   # Q1: 2×2×2 Gauss points, Q2: 3×3×3

        def qe(shape):
            return basix.ufl.quadrature_element(domain.basix_cell(), value_shape=shape, degree=qdeg)
        S = fem.functionspace(domain, qe((6,)))
        Z = fem.functionspace(domain, qe((cv.NSTATV,)))
        self.dx = ufl.Measure("dx", domain=domain, metadata={"quadrature_degree": qdeg, "quadrature_scheme": "default"})
        self.nq = S.element.interpolation_points.shape[0]
        n_pts = self.n_cells_all * self.nq

        self.du, v, ddu = fem.Function(V, name="du"), ufl.TestFunction(V), ufl.TrialFunction(V)
        sigma = FEMExternalOperator(_eps_m(self.du), function_space=S)
        F = ufl.inner(sigma, _eps_m(v)) * self.dx
        J = ufl.algorithms.expand_derivatives(ufl.derivative(F, self.du, ddu))
        F_rep, self.F_ops = replace_external_operators(F)
        J_rep, J_ops = replace_external_operators(J)
        self.F_form, self.J_form = fem.form(F_rep), fem.form(J_rep)
        self.sig_coef, self.tan_coef = self.F_ops[0].ref_coefficient, J_ops[0].ref_coefficient

        self.stress_n = fem.Function(S, name="stress_mandel_MPa")       # history: last converged increment
        self.statev_n = fem.Function(Z, name="statev")
        for f, w in ((self.stress_n, 6), (self.statev_n, cv.NSTATV), (self.sig_coef, 6), (self.tan_coef, 36)):
            if f.x.array.size != n_pts * w:
                raise RuntimeError(f"quadrature layout: {f.name} has {f.x.array.size} values, expected {n_pts} × {w}")

    def _build_constraints(self) -> None:
        """Dirichlet conditions on Δu (facets located once, topologically): symmetry planes 0,
        the top face moves with ``platen``, sticking: no radial motion there."""
        domain, V, s = self.domain, self.V, self.setup
        fdim = domain.topology.dim - 1
        tol = 1e-9 * max(0.5 * s.diameter, s.height)

        def facets(fn):
            return dmesh.locate_entities_boundary(domain, fdim, fn)
        f_x0 = facets(lambda x: np.abs(x[0]) < tol)
        f_y0 = facets(lambda x: np.abs(x[1]) < tol)
        f_z0 = facets(lambda x: np.abs(x[2]) < tol)
        f_top = facets(lambda x: np.abs(x[2] - 0.5 * s.height) < tol)
        self.platen = fem.Constant(domain, 0.0)
        zero = fem.Constant(domain, 0.0)

        def bc(comp, fs, value):
            return fem.dirichletbc(value, fem.locate_dofs_topological(V.sub(comp), fdim, fs), V.sub(comp))
        self.bcs = [bc(0, f_x0, zero), bc(1, f_y0, zero), bc(2, f_z0, zero), bc(2, f_top, self.platen)]
        if s.friction == "stick":
            self.bcs += [bc(0, f_top, zero), bc(1, f_top, zero)]
        n_owned = V.dofmap.index_map.size_local * V.dofmap.index_map_bs
        self.constrained = np.zeros(n_owned, dtype=bool)
        for b_ in self.bcs:
            dofs, n_own = b_.dof_indices()
            self.constrained[dofs[:n_own]] = True
        self.free = ~self.constrained

    def _build_reaction(self) -> None:
        """Force and volume forms, and the map geometry nodes ↔ displacement nodes."""
        V, domain = self.V, self.domain
        # reaction: F_z(top) = ∫ σ_n : ε(w) dx with w = e_z on the top-face nodes
        w_top = fem.Function(V)
        top_z = self.bcs[3].dof_indices()[0]
        w_top.x.array[top_z] = 1.0
        w_top.x.scatter_forward()
        self.force_form = fem.form(ufl.inner(self.stress_n, _eps_m(w_top)) * self.dx)
        self.volume_form = fem.form(fem.Constant(domain, 1.0) * self.dx)
        self.n_top_nodes = self.comm.allreduce(int(self.bcs[3].dof_indices()[1]))
        # the vertex dofs come first in every cell, in the same order as the geometry nodes
        gmap = domain.geometry.dofmaps[0]
        self.node_of_geom = np.empty(domain.geometry.x.shape[0], dtype=np.int64)
        self.node_of_geom[gmap] = V.dofmap.list[:, :gmap.shape[1]]

    def _build_solver(self, solver: str) -> None:
        V = self.V
        self.A = dolfinx.fem.petsc.create_matrix(self.J_form)
        self.b = dolfinx.fem.petsc.create_vector(V)
        self.dx_vec = dolfinx.fem.petsc.create_vector(V)
        self.ksp = ksp = PETSc.KSP().create(self.comm)
        ksp.setOperators(self.A)
        if solver == "lu":
            ksp.setType("preonly")
            ksp.getPC().setType("lu")
            ksp.getPC().setFactorSolverType("mumps")
        else:
            self.A.setNearNullSpace(_rigid_body_modes(V))
            ksp.setType("cg")
            ksp.getPC().setType("gamg")
            ksp.setTolerances(rtol=1e-12, atol=1e-30, max_it=2000)

    # -- sizes and global quantities ------------------------------------------------------------
    @property
    def X(self) -> np.ndarray:
        """The mesh nodes (n, 3) mm, moved in place to the configuration of the assembly."""
        return self.domain.geometry.x

    @property
    def n_dofs(self) -> int:
        return self.V.dofmap.index_map.size_global * self.V.dofmap.index_map_bs

    def nodal(self, u_array: np.ndarray) -> np.ndarray:
        """A displacement dof vector as (n_geometry_nodes, 3)."""
        return u_array.reshape(-1, 3)[self.node_of_geom]

    def assemble_scalar(self, form) -> float:
        return self.comm.allreduce(fem.assemble_scalar(form))

    def platen_force(self) -> float:
        """The platen force (N, compression positive) of the history stress on the current mesh."""
        return -4.0 * self.assemble_scalar(self.force_form)

    def volume(self) -> float:
        """The specimen volume (mm³, 8 × the model) on the current mesh."""
        return 8.0 * self.assemble_scalar(self.volume_form)

    def mean_plastic_strain(self, up) -> float:
        """Mean p over the owned quadrature points of all ranks."""
        p_owned = up.statev[:self.n_cells_local * self.nq, cv.SV_P]
        return self.comm.allreduce(float(p_owned.sum())) / (self.n_cells * self.nq)

    # -- one increment --------------------------------------------------------------------------
    def _update(self, dt, tangent=None):
        """Strain increments at all local quadrature points → integrate → σ and tangent coefficients.
        Returns the number of points (all ranks) whose status is not OK."""
        t0 = time.perf_counter()
        d_eps = next(iter(evaluate_operands(self.F_ops).values())).reshape(-1, 6)
        up = integrate(self.flow, cv.mandel_to_abaqus_stress(self.stress_n.x.array.reshape(-1, 6)),
                       self.statev_n.x.array.reshape(-1, cv.NSTATV), cv.mandel_to_abaqus_strain(d_eps), dt,
                       self.setup.temperature, self.elastic, extras=self.extras)
        self.sig_coef.x.array[:] = cv.abaqus_to_mandel_stress(up.stress).ravel()
        C = cv.abaqus_to_mandel_tangent(up.ddsdde)
        self.last_update, self.last_tangent = up, C
        self.tan_coef.x.array[:] = (C if tangent is None else tangent).ravel()
        self.timers["integrate"] += time.perf_counter() - t0
        return self.comm.allreduce(int(np.count_nonzero(up.status != cv.OK)))

    def _residual(self):
        """b = r(Δu) (owned entries complete); global norms of its free and constrained parts."""
        t0 = time.perf_counter()
        b, comm = self.b, self.comm
        with b.localForm() as bl:
            bl.set(0.0)
        dolfinx.fem.petsc.assemble_vector(b, self.F_form)
        b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        r = b.array_r
        rf = np.sqrt(comm.allreduce(float(np.sum(r[self.free] ** 2))))
        rc = np.sqrt(comm.allreduce(float(np.sum(r[self.constrained] ** 2))))
        self.timers["assembly"] += time.perf_counter() - t0
        return rf, rc

    def _correction(self, first):
        """Solve J δ = r with the Dirichlet rows; Δu ← Δu − δ (meets the prescribed increments)."""
        t0 = time.perf_counter()
        A, b, du, bcs = self.A, self.b, self.du, self.bcs
        A.zeroEntries()
        dolfinx.fem.petsc.assemble_matrix(A, self.J_form, bcs=bcs)
        A.assemble()
        if first:      # lifting of the prescribed increments (zero once they are met)
            lift = dolfinx.fem.petsc.create_vector(self.V)
            with lift.localForm() as ll:
                ll.set(0.0)
            dolfinx.fem.petsc.apply_lifting(lift, [self.J_form], bcs=[bcs], x0=[du.x.petsc_vec], alpha=-1.0)
            lift.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
            b.axpy(1.0, lift)
            lift.destroy()
        dolfinx.fem.petsc.set_bc(b, bcs, du.x.petsc_vec, -1.0)
        t1 = time.perf_counter()
        self.ksp.solve(b, self.dx_vec)
        if self.ksp.getConvergedReason() < 0:
            raise LinearSolveFailed(f"linear solver failed (PETSc reason {self.ksp.getConvergedReason()})")
        self.dx_vec.ghostUpdate(addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
        du.x.petsc_vec.axpy(-1.0, self.dx_vec)
        du.x.scatter_forward()
        t2 = time.perf_counter()
        self.timers["assembly"] += t1 - t0
        self.timers["solve"] += t2 - t1

    def newton(self, dt, C_prev):
        """Newton from Δu = 0 on the current configuration, platen increment ``platen.value``:
        the first correction uses ``C_prev`` (the previous converged tangent) when given.
        Returns (converged, why not, ‖r_free‖ per iteration in N)."""
        setup = self.setup
        self.du.x.array[:] = 0.0
        if self._update(dt):
            return False, "a point requested a step cut", []
        rf, rc = self._residual()
        res = [rf]
        for it in range(1, setup.max_newton + 1):
            if it == 1 and C_prev is not None:
                self.tan_coef.x.array[:] = C_prev.ravel()
            try:
                self._correction(first=(it == 1))
            except LinearSolveFailed as exc:
                return False, str(exc), res
            bad = self._update(dt)
            if bad:
                return False, f"{bad} point(s) requested a step cut", res
            rf, rc = self._residual()
            res.append(rf)
            if not np.isfinite(rf):
                return False, "non-finite residual", res
            if rf <= setup.rtol * max(rc, 1.0):
                return True, "", res
        return False, f"Newton not converged in {setup.max_newton} iterations", res

    def accept(self):
        """Make the converged increment the history; returns (its j2.Update, a copy of its tangent)."""
        up = self.last_update
        self.stress_n.x.array[:] = self.sig_coef.x.array
        self.statev_n.x.array[:] = up.statev.ravel()
        return up, self.last_tangent.copy()

    def max_over_ranks(self, x: float) -> float:
        return self.comm.allreduce(float(x), op=MPI.MAX)

    def close(self) -> None:
        self.ksp.destroy()
