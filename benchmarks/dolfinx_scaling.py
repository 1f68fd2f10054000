"""``neumat benchmark dolfinx-scaling``: run time of the DOLFINx host
(fem_bridge.hosts.dolfinx_compression) serial against ``mpiexec -n 2`` on a mesh of >= 10⁵
quadrature points, a few increments of the frictionless Gleeble compression. Runs from the main
environment and drives .venv-dolfinx (made by ``make dolfinx-env``) through subprocesses; writes
benchmarks/results/dolfinx_scaling.json.

Per rank count: process wall time (start-up, imports and form compilation included) and the
host's own split (slowest rank): setup (mesh, spaces, forms), integrate callback (strain at the
quadrature points, ``j2.integrate``, Mandel conversion, coefficient update), assembly (residual,
Jacobian, lifting) and solve (MUMPS LU); Newton iterations per increment and the force curve,
which must agree between the rank counts.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from constitutive.errors import NeumatInputError
from constitutive.jsonio import write_json
from export.onnx_export import export_onnx

from .latency_subjects import residual_elu_net
from .machine import git_state, load_now, machine_info

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DX_BIN = ROOT / ".venv-dolfinx" / "bin"
RESULTS = HERE / "results"


def add_arguments(p) -> None:
    p.add_argument("--divisions", default="10,8,50",
                   help="O-grid core, ring, layers (default 10,8,50: 13 000 hexahedra, 104 000 quadrature points)")
    p.add_argument("--increments", type=int, default=3, help="increments (default 3)")
    p.add_argument("--strain", type=float, default=0.1, help="final ln(h0/h) (default 0.1)")
    p.add_argument("--ranks", default="1,2", help="MPI rank counts to run (default 1,2)")
    p.add_argument("--solvers", default="lu,cg", help="linear solvers of the host to run (default lu,cg)")
    p.add_argument("--out", default=str(RESULTS / "dolfinx_scaling.json"), help="JSON path")


def _host(model: Path, out: Path, ranks: int, solver: str, args) -> tuple[float, dict, np.ndarray]:
    cmd = [str(DX_BIN / "python"), "-m", "fem_bridge.hosts.dolfinx_compression", "--model", str(model),
           "--out", str(out), "--quiet", "--extra", "direction=0", "--divisions", args.divisions,
           "--increments", str(args.increments), "--strain", str(args.strain), "--solver", solver]
    if ranks > 1:
        cmd = [str(DX_BIN / "mpiexec"), "-n", str(ranks)] + cmd
    t0 = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}     # one core per rank
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise NeumatInputError(f"the DOLFINx host failed on {ranks} rank(s):\n{p.stderr.strip()[-2000:]}")
    info = json.loads((out / "newton.json").read_text())
    table = np.genfromtxt(out / "force_displacement.csv", delimiter=",", names=True)
    return wall, info, table


def _serial(runs, r):
    return next(x for x in runs if x["solver"] == r["solver"])


def run(args) -> int:
    if not (DX_BIN / "mpiexec").is_file():
        raise NeumatInputError(".venv-dolfinx not found: run 'make dolfinx-env' first")
    try:
        ranks = [int(r) for r in args.ranks.split(",")]
    except ValueError:
        raise NeumatInputError(f"--ranks takes integers like 1,2, got '{args.ranks}'") from None
    solvers = [x.strip() for x in args.solvers.split(",")]
    if not set(solvers) <= {"lu", "cg"}:
        raise NeumatInputError(f"--solvers takes lu and/or cg, got '{args.solvers}'")
    runs, tables = [], []
    load_start = load_now()
    with tempfile.TemporaryDirectory() as tmp:
        model = export_onnx(residual_elu_net(0), Path(tmp) / "model.onnx")
        for solver, n in [(sv, n) for sv in solvers for n in ranks]:
            load_before = round(os.getloadavg()[0], 2)      # the machine may be shared: record its load
            wall, info, table = _host(model, Path(tmp) / f"{solver}{n}", n, solver, args)
            tables.append(table)
            its = [r["newton_iterations"] for r in info["newton"]]
            runs.append({"solver": solver, "ranks": n, "loadavg_1min_before": load_before, "process_wall_s": wall, "host_seconds": info["seconds"],
                         "newton_iterations": its, "force_N": table["force_N"].tolist(),
                         "completed": info["completed"]})
            s = info["seconds"]
            print(f"{solver}, {n} rank(s): {wall:.1f} s process, host {s['total']:.1f} s (setup {s['setup']:.1f}, "
                  f"integrate {s['integrate']:.1f}, assembly {s['assembly']:.1f}, solve {s['solve']:.1f}); "
                  f"Newton {its}")
    f0 = tables[0]["force_N"]
    doc = {
        "format": 1, "date": _dt.datetime.now().isoformat(timespec="seconds"), "machine": machine_info(),
        "git": git_state(), "load_at_start": load_start, "load_at_end": load_now(),
        "problem": {"case": "frictionless Gleeble compression, 1/8 cylinder Ø10 × 15 mm, Q1 hexahedra",
                    "model": "benchmarks.latency_subjects.residual_elu_net(0), direction=0",
                    "divisions": args.divisions, "increments": args.increments, "strain": args.strain,
                    "hexahedra": info["n_cells"], "quadrature_points": info["n_quadrature_points"],
                    "dofs": info["n_dofs"], "linear_solvers": {"lu": "MUMPS LU", "cg": "CG + GAMG (rigid-body near "
                                                               "null space), rtol 1e-12"},
                    "threads_per_rank": 1},
        "runs": runs,
        "speedup_host_total": {f"{r['solver']}, {r['ranks']} ranks": _serial(runs, r)["host_seconds"]["total"]
                               / r["host_seconds"]["total"] for r in runs},
        "max_rel_force_difference_vs_first": float(max(np.max(np.abs(t["force_N"] / f0 - 1)) for t in tables)),
        "same_newton_iterations_across_ranks": all(r["newton_iterations"] == _serial(runs, r)["newton_iterations"]
                                                   for r in runs),
    }
    out = write_json(args.out, doc)
    print(f"wrote {out}")
    return 0
