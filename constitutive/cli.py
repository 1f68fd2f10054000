"""The ``neumat`` command: the shell on the ground floor. It knows no subcommand by name; each
package declares its commands as entry points of the group ``neumat.commands`` in pyproject.toml
(``name = "package.module:register"``), and ``register(subparsers)`` adds one or more parsers whose
``func(args) -> int`` runs the command. So a package on any floor adds a command without this
module importing it. User errors (``NeumatInputError``) exit with code 2 and a one-line message,
never a traceback."""
from __future__ import annotations

import argparse
import importlib.metadata
import sys
import textwrap

from .errors import NeumatInputError

COMMAND_GROUP = "neumat.commands"
# the packages from the ground floor up: commands are listed in --help in this order
FLOORS = ("constitutive", "export", "fem_bridge", "fortran_umat", "benchmarks")


def command_registrars() -> list[importlib.metadata.EntryPoint]:
    """The installed ``neumat.commands`` entry points, ground floor first."""
    def floor(ep):
        top = ep.value.split(".")[0]
        return (FLOORS.index(top) if top in FLOORS else len(FLOORS), ep.name)
    return sorted(importlib.metadata.entry_points(group=COMMAND_GROUP), key=floor)


EXAMPLES = """\
examples (`neumat COMMAND --help` for each):
  neumat demo                                         # the main job end to end → runs/demo/report.md
  neumat data --data my_curves.csv                    # check what was read
  neumat train --data my_curves.csv --heldout 1100:0.01 --out runs/mine
  neumat export runs/mine --out mine.onnx
  neumat umat mine.onnx --out umat/ --verify          # Fortran UMAT for Abaqus / CalculiX
  neumat mesh --model mine.onnx --in part.vtu --out part_flow.vtu --temperature T --strain-rate 0.1"""


class HelpFormatter(argparse.HelpFormatter):
    """Wraps prose paragraphs; keeps a paragraph as written when its first line ends with ':'
    or its lines are indented (tables, example lists)."""

    def _fill_text(self, text, width, indent):
        out = []
        for para in textwrap.dedent(text).strip("\n").split("\n\n"):
            lines = para.splitlines()
            if lines[0].rstrip().endswith(":") or any(l.startswith(" ") for l in lines):
                out.append("\n".join(indent + l for l in lines))
            else:
                out.append(textwrap.fill(" ".join(l.strip() for l in lines), width,
                                         initial_indent=indent, subsequent_indent=indent))
        return "\n\n".join(out)


def _all_parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for p in action.choices.values():
                yield from _all_parsers(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neumat",
        description="Neural constitutive models from a few measured flow curves, for FE solvers: fit the "
                    "classical laws, train a small residual network with transfer learning, export it to "
                    "ONNX with its derivatives, and evaluate it from Python FE codes, meshes, or a Fortran "
                    "UMAT in Abaqus/CalculiX. Units everywhere: temperature °C, strain rate 1/s, stress and "
                    "moduli MPa, true strain, time s.",
        epilog=EXAMPLES)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for ep in command_registrars():
        try:
            register = ep.load()
        except ModuleNotFoundError as exc:          # a package of the distribution left out: no commands
            if exc.name != ep.module and not ep.module.startswith(f"{exc.name}."):
                raise
            continue
        register(sub)
    for p in _all_parsers(parser):
        p.formatter_class = HelpFormatter
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
