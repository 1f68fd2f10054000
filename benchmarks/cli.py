"""``neumat bench`` (latency, benchmarks.latency) and ``neumat benchmark accuracy``
(benchmarks.accuracy). Each benchmark module exposes ``add_arguments(parser)`` and ``run(args)``;
it is imported only when its command runs."""
from __future__ import annotations

import importlib


def _lazy(module: str):
    def run(args):
        return importlib.import_module(module).run(args)
    return run


def _add(sub, name: str, module: str, help: str):
    p = sub.add_parser(name, help=help)
    try:
        importlib.import_module(module).add_arguments(p)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
    p.set_defaults(func=_lazy(module))
    return p


def register(sub) -> None:
    _add(sub, "bench", "benchmarks.latency",
         "latency and throughput of every evaluation path (writes benchmarks/results/latency.json)")
    bench = sub.add_parser("benchmark", help="named benchmarks: accuracy")
    bsub = bench.add_subparsers(dest="benchmark", metavar="NAME", required=True)
    _add(bsub, "accuracy", "benchmarks.accuracy",
         "accuracy on gleeble_3cr2mo against the published table (writes benchmarks/results/accuracy.json)")
