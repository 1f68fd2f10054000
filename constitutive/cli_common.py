"""Argument helpers shared by every subcommand that reads flow curves."""
from __future__ import annotations

import argparse

from .csv_reader import parse_columns
from .datasets import load
from .flow_curves import FlowCurves, parse_heldout

DATA_HELP = ("data set name (gleeble_3cr2mo, bst_freiberg, synthetic_dz411), a long CSV file, "
             "or a folder of one-CSV-per-curve files")


def add_data_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", required=required, help=DATA_HELP)
    g.add_argument("--columns", help="FIELD=COLUMN,... for temperature, strain_rate, strain, stress, "
                                     "curve and extra features (direction, or a name given in --extras), e.g. "
                                     "strain=true_strain,stress=sig,direction=dir; an unknown FIELD is an error")
    g.add_argument("--extras", default="", help="comma-separated extra features used as model inputs (column "
                                                "names, or names mapped to columns in --columns)")
    g.add_argument("--temperature-unit", default=None, choices=["C", "K", "F"],
                   help="unit of the temperature column: C (°C), K or F; without it °C, and values "
                        "that look like kelvin (above 1800, or all 273.15 + a multiple of 25) are "
                        "refused: give K, or C to accept them as °C")
    g.add_argument("--stress-unit", default="MPa", choices=["MPa", "Pa", "kPa", "GPa", "psi", "ksi"])
    g.add_argument("--strain-rate-unit", default="1/s", choices=["1/s", "1/min", "1/ms"])
    g.add_argument("--allow-replicates", action="store_true",
                   help="accept several curves with the same condition (needs a curve-id column)")


def load_from_args(args: argparse.Namespace) -> FlowCurves:
    kwargs = dict(columns=parse_columns(args.columns),
                  extras=[e for e in args.extras.split(",") if e],
                  temperature_unit=args.temperature_unit, stress_unit=args.stress_unit,
                  strain_rate_unit=args.strain_rate_unit, allow_replicates=args.allow_replicates)
    return load(args.data, **kwargs)


def add_heldout_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--heldout", default=None,
                   help='held-out conditions "T:rate[:extra...],..." (°C, 1/s); whole curves')


def heldout_from_args(args: argparse.Namespace):
    return parse_heldout(args.heldout)
