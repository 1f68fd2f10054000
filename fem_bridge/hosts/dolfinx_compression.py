"""A DOLFINx 0.11 host: the Gleeble hot compression of ``hosts.skfem_compression`` in FEniCSx,
MPI-parallel, with the stress update of ``fem_bridge.j2.integrate`` entering through
``dolfinx-external-operator`` (the FE problem: ``hosts.dolfinx_problem``).

Runs in the Python 3.12 environment made by ``make dolfinx-env`` (.venv-dolfinx):

    .venv-dolfinx/bin/python -m fem_bridge.hosts.dolfinx_compression --model model.onnx --out DIR
    .venv-dolfinx/bin/mpiexec -n 2 .venv-dolfinx/bin/python -m fem_bridge.hosts.dolfinx_compression \
        --model model.onnx --out DIR

Problem: as the scikit-fem host (same ``CompressionSetup`` defaults and the same O-grid of the
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

Newton: full consistent tangent (for the first correction the converged tangent of the previous
increment), MUMPS LU (``--solver cg``: CG + GAMG), converged when ‖r_free‖ <= rtol ·
max(‖r_reaction‖, 1 N); any point with STEP_CUT/BAD_INPUT, no convergence in ``max_newton`` or a
non-finite residual halves the increment (at most ``max_cuts`` in a row).

Output on rank 0 (``out_dir``): ``force_displacement.csv`` (the columns of
``compression_setup.CSV_COLUMNS``) and ``newton.json`` (Newton iterations and residual norms per
increment, mesh size, ranks, wall times split into the integrate callback, assembly and linear
solve). Units: mm, s, MPa, N, °C.
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

from ..backends import load_backend
from .compression_setup import CSV_COLUMNS, CompressionSetup, parse_divisions

MODULE = "fem_bridge.hosts.dolfinx_compression"


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


@dataclass
class _March:
    """The outcome of the time march: CSV rows, Newton log per increment, how it ended."""
    rows: list
    newton_log: list
    completed: bool
    message: str
    increments: int


def _log(comm, say, msg):
    if say is not None and comm.rank == 0:
        say(msg)


def _check_options(setup: CompressionSetup, degree: int | None, ghost_mode: str, solver: str) -> int:
    """Checks the setup and options; returns the displacement degree (default 1, sticking 2)."""
    setup.check()
    if degree is None:
        degree = 2 if setup.friction == "stick" else 1
    if degree not in (1, 2):
        raise NeumatInputError(f"degree must be 1 or 2, got {degree}")
    if solver not in ("lu", "cg"):
        raise NeumatInputError(f"solver must be 'lu' or 'cg', got {solver!r}")
    if ghost_mode not in ("none", "shared_facet"):
        raise NeumatInputError(f"ghost mode must be 'none' or 'shared_facet', got {ghost_mode!r}")
    return degree


def run_compression_dolfinx(model, setup: CompressionSetup | None = None, out_dir=None, degree: int | None = None,
                            log=print, comm=None, ghost_mode: str = "none", solver: str = "lu") -> DolfinxResult:
    """Run the compression in DOLFINx on ``comm`` (default COMM_WORLD). ``model``: ONNX path or a
    flow-stress backend. ``degree``: displacement degree, 1 or 2 (default 1 frictionless, 2 sticking).
    ``ghost_mode``: "none" or "shared_facet" (ghost cells; integrated too, with the same inputs as on
    their owner). ``solver``: "lu" (MUMPS) or "cg" (conjugate gradients, GAMG with the rigid-body
    modes as near null space, relative tolerance 1e-12). Returns the same result on every rank; rank
    0 writes the files."""
    from .dolfinx_problem import DolfinxCompression  # optional: DOLFINx, only in .venv-dolfinx

    t_start = time.perf_counter()
    setup = setup or CompressionSetup()
    degree = _check_options(setup, degree, ghost_mode, solver)
    flow = load_backend(model) if isinstance(model, (str, Path)) else model
    problem = DolfinxCompression(flow, setup, setup.extras_for(flow), degree, ghost_mode, solver, comm=comm)
    comm = problem.comm
    n_qp_global = problem.n_cells * problem.nq
    _log(comm, log, f"DOLFINx hot compression on {comm.size} rank(s): Ø{setup.diameter:g} × {setup.height:g} mm, "
                    f"T = {setup.temperature:g} °C, ε̇_nom = {setup.strain_rate:g} 1/s, to ln(h0/h) = "
                    f"{setup.strain:g}, friction {setup.friction}; {problem.n_cells} Q{degree} "
                    f"hexahedra (1/8 model), {n_qp_global} quadrature points, {problem.n_dofs} dofs")
    volume0 = problem.volume()
    t_setup = time.perf_counter() - t_start

    march = _march(problem, setup, log)
    problem.close()

    total = time.perf_counter() - t_start
    seconds = {"total": total, "setup": t_setup, **problem.timers}
    seconds = {k: problem.max_over_ranks(x) for k, x in seconds.items()}   # slowest rank
    table = {c: np.array([r[i] for r in march.rows]) for i, c in enumerate(CSV_COLUMNS)}
    result = DolfinxResult(table, march.newton_log, march.completed, march.message, comm.size, problem.n_cells,
                           n_qp_global, problem.n_dofs,
                           comm.allreduce(problem.n_cells_all - problem.n_cells_local), seconds)
    result.volume0 = volume0
    _log(comm, log, f"{march.message}: {march.increments} increments in {total:.1f} s (integrate "
                    f"{seconds['integrate']:.1f} s, assembly {seconds['assembly']:.1f} s, solve "
                    f"{seconds['solve']:.1f} s)")
    if out_dir is not None and comm.rank == 0:
        info = {**result.summary(), "setup": asdict(setup), "degree": degree, "solver": solver,
                "ghost_mode": ghost_mode, "volume0_mm3": volume0}
        _write_outputs(Path(out_dir), march.rows, info)
    return result


def _march(problem, setup: CompressionSetup, log) -> _March:
    """The increments from t = 0 to the end of the platen travel: predictor, Newton on the
    mid-increment configuration, halving on failure, and on success the history, the mesh, the
    force and the area moved to the end of the increment."""
    comm, X, H0 = problem.comm, problem.X, setup.height
    sched = setup.schedule()
    t_end = sched.end_time
    X_n = X.copy()
    time_now, s_now, dt = 0.0, 0.0, sched.nominal_dt
    du_prev, dt_prev, C_prev = None, None, None
    rows, newton_log = [], []
    cuts_in_row, inc = 0, 0
    completed, message = True, "completed"
    while time_now < t_end * (1 - 1e-12):
        dt = min(dt, t_end - time_now)
        ds = sched.speed * dt
        problem.platen.value = -0.5 * ds
        if du_prev is None:             # homogeneous incompressible predictor
            e = ds / (H0 - s_now)
            pred = X_n * np.array([0.5 * e, 0.5 * e, -e])
        else:
            pred = problem.nodal(du_prev) * (dt / dt_prev)
        X[:] = X_n + 0.5 * pred         # mid-increment configuration
        ok, why, res = problem.newton(dt, C_prev)
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
        up, C_prev = problem.accept()
        du_prev, dt_prev = problem.du.x.array.copy(), dt
        X_n = X_n + problem.nodal(problem.du.x.array)
        X[:] = X_n                       # end-of-increment configuration
        time_now += dt
        s_now += ds
        force = problem.platen_force()
        height = H0 - s_now
        area = problem.volume() / height
        mean_p = problem.mean_plastic_strain(up)
        rows.append([inc, time_now, dt, s_now, height, np.log(H0 / height), 1 - height / H0, force, area,
                     force / area, mean_p, len(res) - 1, cuts_in_row, problem.n_top_nodes])
        newton_log.append({"increment": inc, "newton_iterations": len(res) - 1, "residuals_N": res,
                           "cuts": cuts_in_row})
        _log(comm, log, f"increment {inc:3d} t = {time_now:.4g} s  s = {s_now:.4f} mm  ln(h0/h) = "
                        f"{np.log(H0 / height):.4f}  F = {force / 1000:.4f} kN  Newton |r| (N): "
                        + " ".join(f"{x:.3e}" for x in res))
        if cuts_in_row:
            dt = min(2 * dt, sched.nominal_dt)
        cuts_in_row = 0
    return _March(rows, newton_log, completed, message, inc)


def _write_outputs(out: Path, rows: list, info: dict) -> None:
    """``force_displacement.csv`` (full precision) and ``newton.json`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "force_displacement.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for r in rows:
            w.writerow([f"{x:.17g}" if isinstance(x, float) else x for x in r])
    (out / "newton.json").write_text(json.dumps(info, indent=1))


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    d = CompressionSetup()
    p = argparse.ArgumentParser(
        prog=f"python -m {MODULE}",
        description="Hot compression of a Gleeble cylinder in DOLFINx (MPI: run under mpiexec), driven by "
                    "the J2 bridge. Rank 0 writes force_displacement.csv and newton.json into --out.")
    p.add_argument("--model", required=True, help="exported model (.onnx)")
    p.add_argument("--temperature", type=float, default=d.temperature, help="°C (default %(default)s)")
    p.add_argument("--strain-rate", type=float, default=d.strain_rate,
                   help="nominal strain rate v/h0, 1/s (default %(default)s)")
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


def _setup_from_args(args) -> CompressionSetup:
    divisions = parse_divisions(args.divisions)
    extras = {}
    for item in args.extra or []:
        name, sep, value = item.partition("=")
        try:
            extras[name.strip()] = float(value)
        except ValueError:
            raise NeumatInputError(f"--extra takes NAME=VALUE with a number, got '{item}'") from None
    return CompressionSetup(temperature=args.temperature, strain_rate=args.strain_rate, strain=args.strain,
                            increments=args.increments, friction=args.friction, E=args.E, nu=args.nu,
                            divisions=divisions, extras=extras)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        from mpi4py import MPI  # optional: DOLFINx's MPI, only in .venv-dolfinx
        from . import dolfinx_problem  # optional: DOLFINx, only in .venv-dolfinx  # noqa: F401
    except ImportError as exc:
        print(f"{MODULE}: error: DOLFINx is not installed in this Python ({exc}); run "
              f"'make dolfinx-env' and use .venv-dolfinx/bin/python", file=sys.stderr)
        return 2
    try:
        res = run_compression_dolfinx(args.model, _setup_from_args(args), out_dir=args.out, degree=args.degree,
                                      ghost_mode=args.ghost_mode, solver=args.solver,
                                      log=None if args.quiet else print)
    except NeumatInputError as exc:
        if MPI.COMM_WORLD.rank == 0:
            print(f"{MODULE}: error: {exc}", file=sys.stderr)
        return 2
    if MPI.COMM_WORLD.rank == 0:
        print(f"wrote {Path(args.out) / 'force_displacement.csv'} and {Path(args.out) / 'newton.json'}")
        if not res.completed:
            print(f"{MODULE}: {res.message}", file=sys.stderr)
    return 0 if res.completed else 1


if __name__ == "__main__":
    sys.exit(main())
