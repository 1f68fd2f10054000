"""``neumat bench`` (latency, :mod:`benchmarks.latency`) and ``neumat benchmark NAME`` (accuracy,
dolfinx-scaling, dask). Each benchmark module exposes ``add_arguments(parser)`` and ``run(args)``;
``register(subparsers)`` is the ``neumat.commands`` entry point that adds them to the shell."""
from __future__ import annotations

from . import accuracy, dask_throughput, dolfinx_scaling, latency, loco, solver


def _add(sub, name: str, module, help: str, description: str | None = None, example: str | None = None):
    p = sub.add_parser(name, help=help, description=description or help,
                       epilog=f"example:\n  {example}" if example else None)
    module.add_arguments(p)
    p.set_defaults(func=module.run)
    return p


def register(sub) -> None:
    _add(sub, "bench", latency,
         "latency and throughput of every evaluation path (writes benchmarks/results/latency.json)",
         "Time σ and dσ/dx per point (batch sizes 1 … 10⁶, 1 and 2 threads) for onnxruntime, the compiled "
         "Fortran kernel and torch, the J2 return mapping per point-step, the Python UMAT callback and the "
         "Fortran UMAT per call, with peak memory per point; writes latency.json, a plot and the latency "
         "section of benchmarks/README.md. Units: seconds per call or per point (shown as ns/µs/ms).",
         "neumat bench --quick --out /tmp/lat      # seconds; the full run takes about 15 minutes")
    bench = sub.add_parser("benchmark", help="named benchmarks: accuracy, loco, dolfinx-scaling, dask, solver")
    bsub = bench.add_subparsers(dest="benchmark", metavar="NAME", required=True)
    _add(bsub, "accuracy", accuracy,
         "accuracy on gleeble_3cr2mo against the published table (writes benchmarks/results/accuracy.json)",
         "Train the networks on the real gleeble_3cr2mo curves under the full / interp (1 1/s held out) / "
         "extrap (5 1/s held out) protocols over several seeds and compare MARE (%) with the published "
         "table in ../shared/reference/anchors.md; also the learning curve.",
         "neumat benchmark accuracy --quick --out /tmp/accuracy.json      # the full run takes about 5 minutes")
    _add(bsub, "loco", loco,
         "leave-one-condition-out on every real data set and a SYNTHETIC campaign family "
         "(writes benchmarks/results/loco.json)",
         "Hold out each condition of gleeble_3cr2mo, bst_freiberg (replicates together), ti64_babu2013 and six "
         "SYNTHETIC small campaigns in turn; fit Arrhenius, Hensel-Spittel, Johnson-Cook, the plain MLP, the "
         "default model and the seed method on the rest; MARE (%) on the held-out curves (strain >= 0.05), "
         "summaries against the best classical law of each fold, interior and edge folds apart; plot and the "
         "loco section of benchmarks/README.md.",
         "neumat benchmark loco --quick --datasets synthetic --out /tmp/loco.json   # the full run 23 minutes on 2 cores")
    _add(bsub, "dolfinx-scaling", dolfinx_scaling,
         "DOLFINx host serial vs mpiexec -n 2 on >= 1e5 quadrature points "
         "(needs make dolfinx-env; writes benchmarks/results/dolfinx_scaling.json)",
         "Frictionless Gleeble compression in the DOLFINx host (fem_bridge.hosts.dolfinx_compression) "
         "run serial and "
         "under .venv-dolfinx/bin/mpiexec -n 2: wall times (process; host split into setup, integrate "
         "callback, assembly, MUMPS solve), Newton iterations, force curves compared between rank counts.",
         "neumat benchmark dolfinx-scaling --divisions 4,3,6 --out /tmp/dx.json   # seconds; default mesh about 2 minutes")
    _add(bsub, "dask", dask_throughput,
         "neumat mesh single process vs --dask local:2 on 10^7 points "
         "(writes benchmarks/results/dask_throughput.json)",
         "Evaluate the residual_elu ONNX model on every point of a 10^7-point XDMF mesh, once in one "
         "process and once on a Dask LocalCluster (--workers one-thread processes): evaluation time and "
         "points/s, read/write/cluster-start times in s, peak RSS of driver and workers in bytes, "
         "outputs compared bit for bit, and 'neumat mesh' end to end.",
         "neumat benchmark dask --points 300000 --out /tmp/dask.json   # seconds; 10^7 points about 5 minutes")
    _add(bsub, "solver", solver,
         "CalculiX with the generated UMAT vs *PLASTIC holding a table of the same network "
         "(needs make ccx; writes benchmarks/results/solver.json)",
         "Solve the same decks with ccx 2.20 twice — the generated UMAT, and ccx's *PLASTIC with a "
         "200-row hardening table of the same network — alternating, at 1 and 2 threads: the homogeneous "
         "cube (8000 C3D8) and a cylinder between sticking platens (2400 C3D8). Wall times (s), their "
         "ratio, Newton iterations, UMAT calls per integration point and iteration, time inside the UMAT "
         "and perf's split of the ccx process.",
         "neumat benchmark solver --quick --out /tmp/solver   # seconds; the full run about 30 minutes")
