"""``neumat casting``: arguments and the command (registered by ``fortran_umat.cli.register``).
Units: mm, s, °C, MPa, W/(m²·K)."""
from __future__ import annotations

import argparse
from pathlib import Path

from constitutive.errors import NeumatInputError

from .casting import CastingOptions, run_casting
from .casting_deck import ELASTIC_FORMS, HOLDS
from .casting_geometry import ELEMENT_TYPES


def add_casting_parser(sub) -> None:
    p = sub.add_parser(
        "casting", help="residual stress of a cooling blade-like casting in CalculiX with the generated UMAT",
        description="Mesh a blade-like part (thick root, thin airfoil blade) with gmsh, cool it in CalculiX "
                    "from a near-solidus temperature inside the model's box to room temperature (transient "
                    "heat conduction with a film coefficient, then a static analysis reading the temperatures "
                    "with the UMAT generated from the model; the root held as by the mould) and write a VTU "
                    "series, histories.csv, PNG figures and summary.json. Thermal properties: a representative "
                    "cast Ni-base superalloy (fortran_umat/casting_deck.py). Units: mm, s, °C, MPa.",
        epilog="example:  neumat casting --model runs/demo/model.onnx --out runs/casting --compare-plastic",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="exported model (.onnx)")
    p.add_argument("--out", default="casting_out", help="output folder (default casting_out)")
    p.add_argument("--element", choices=ELEMENT_TYPES, default="C3D10",
                   help="tetrahedra: C3D10 quadratic (default) or C3D4 linear")
    p.add_argument("--size", type=float, default=6.0, help="element size in the root, mm (default 6)")
    p.add_argument("--blade-size", type=float, default=3.5, help="element size in the blade, mm (default 3.5)")
    p.add_argument("--t-start", type=float, default=None,
                   help="start temperature, °C (default: the model's upper temperature − 20 °C)")
    p.add_argument("--film", type=float, default=250.0, help="film coefficient on every face, W/(m² K) (default 250)")
    p.add_argument("--sink", type=float, default=20.0, help="sink temperature of the film, °C (default 20)")
    p.add_argument("--cool-time", type=float, default=600.0, help="heat-transfer time, s (default 600)")
    p.add_argument("--room", type=float, default=20.0,
                   help="room temperature of the final state, °C (default 20)")
    p.add_argument("--deltmx", type=float, default=80.0,
                   help="largest temperature change per heat-transfer increment, °C (default 80)")
    p.add_argument("--max-step-change", type=float, default=60.0,
                   help="largest temperature change at any node per mechanical step, °C (default 60)")
    p.add_argument("--hold", choices=HOLDS, default="clamped",
                   help="clamped: the root's bottom face fixed (the mould); free: rigid-body motion removed only")
    p.add_argument("--elastic", choices=ELASTIC_FORMS, default="per-temperature",
                   help="how E(T), nu(T) reach the UMAT: per-temperature *USER MATERIAL constants (CalculiX "
                        "interpolates them; default) or props-table (the PROPS elastic table, the Abaqus form)")
    p.add_argument("--extras", type=float, nargs="*", default=[],
                   help="values of the model's extra features (default: their lower bounds, e.g. direction 0)")
    p.add_argument("--threads", type=int, default=2, help="ccx threads (default 2)")
    p.add_argument("--compare-plastic", action="store_true",
                   help="also run ccx's *ELASTIC + *PLASTIC with temperature-dependent tables sampled from the "
                        "network at the part's typical plastic strain rate, and compare point by point")
    p.add_argument("--plastic-rate", type=float, default=None,
                   help="strain rate of the *PLASTIC tables, 1/s (default: the UMAT run's median plastic rate)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--no-vtu", action="store_true", help="skip the VTU series")
    p.set_defaults(func=run_casting_command)


def run_casting_command(args) -> int:
    if args.plastic_rate is not None and not args.plastic_rate > 0:
        raise NeumatInputError(f"--plastic-rate {args.plastic_rate} 1/s must be > 0")
    opt = CastingOptions(model=Path(args.model), out=Path(args.out), element_type=args.element, size=args.size,
                         blade_size=args.blade_size, t_start=args.t_start, film=args.film, sink=args.sink,
                         cool_time=args.cool_time, room=args.room, deltmx=args.deltmx,
                         max_step_change=args.max_step_change, hold=args.hold, elastic=args.elastic,
                         extras=tuple(args.extras),
                         threads=args.threads, compare_plastic=args.compare_plastic,
                         plastic_rate=args.plastic_rate, figures=not args.no_figures, vtu=not args.no_vtu)
    s = run_casting(opt)
    bad = s["umat"]["cut_attempts"]
    print(f"wrote {Path(args.out) / 'summary.json'}" + (f"; {bad} increment(s) were cut and retried" if bad else ""))
    return 0
