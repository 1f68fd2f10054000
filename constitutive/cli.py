"""The ``neumat`` command. Each subcommand lives with the package that owns it and is
registered here by name; its module exposes ``register(subparsers)`` which adds one parser
whose ``func(args) -> int`` runs it. User errors (``NeumatInputError``) exit with code 2 and a
one-line message, never a traceback."""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import NeumatInputError

# (module, what it adds) — modules are imported only when present so the CLI never breaks
# because an optional part is missing.
SUBCOMMAND_MODULES = [
    "constitutive.cli_data",        # data
    "constitutive.cli_baselines",   # baselines
    "constitutive.cli_train",       # train, cv, search
    "constitutive.cli_demo",        # demo
    "export.cli",                   # export
    "fem_bridge.cli",               # mesh, simulate
    "fortran_umat.cli",             # umat, ccx
    "benchmarks.cli",               # bench, benchmark accuracy
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neumat",
        description="Neural constitutive models from flow curves, for FE solvers. Units: "
                    "temperature °C, strain rate 1/s, stress MPa, true strain.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except NeumatInputError as exc:
        print(f"neumat {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
