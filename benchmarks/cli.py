"""``neumat bench`` (latency, benchmarks.latency) and ``neumat benchmark accuracy``
(benchmarks.accuracy). Each benchmark module exposes ``add_arguments(parser)`` and ``run(args)``;
it is imported only when its command runs."""
from __future__ import annotations

import importlib


def _lazy(module: str):
    def run(args):
        return importlib.import_module(module).run(args)
    return run


def _add(sub, name: str, module: str, help: str, description: str | None = None, example: str | None = None):
    p = sub.add_parser(name, help=help, description=description or help,
                       epilog=f"example:\n  {example}" if example else None)
    try:
        importlib.import_module(module).add_arguments(p)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
    p.set_defaults(func=_lazy(module))
    return p


def register(sub) -> None:
    _add(sub, "bench", "benchmarks.latency",
         "latency and throughput of every evaluation path (writes benchmarks/results/latency.json)",
         "Time σ and dσ/dx per point (batch sizes 1 … 10⁶, 1 and 2 threads) for onnxruntime, the compiled "
         "Fortran kernel and torch, the J2 return mapping per point-step, the Python UMAT callback and the "
         "Fortran UMAT per call, with peak memory per point; writes latency.json, a plot and the latency "
         "section of benchmarks/README.md. Units: seconds per call or per point (shown as ns/µs/ms).",
         "neumat bench --quick --out /tmp/lat      # seconds; the full run takes about 15 minutes")
    bench = sub.add_parser("benchmark", help="named benchmarks: accuracy")
    bsub = bench.add_subparsers(dest="benchmark", metavar="NAME", required=True)
    _add(bsub, "accuracy", "benchmarks.accuracy",
         "accuracy on gleeble_3cr2mo against the published table (writes benchmarks/results/accuracy.json)",
         "Train the networks on the real gleeble_3cr2mo curves under the full / interp (1 1/s held out) / "
         "extrap (5 1/s held out) protocols over several seeds and compare MARE (%) with the published "
         "table in ../shared/reference/anchors.md; also the learning curve.",
         "neumat benchmark accuracy --quick --out /tmp/accuracy.json      # the full run takes about 5 minutes")
