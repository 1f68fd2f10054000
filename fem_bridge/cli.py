"""``neumat mesh`` (flow stress or a stress update over a mesh file, ``fem_bridge.mesh``) and
``neumat simulate`` (the scikit-fem hot-compression host, ``fem_bridge.hosts.skfem_compression``)."""
from __future__ import annotations

import argparse
import sys
import warnings

from constitutive.errors import NeumatInputError

from .backends import load_backend
from .hosts.compression_setup import CompressionSetup, parse_divisions
from .hosts.skfem_compression import run_compression
from .mesh import DEFAULT_CHUNK, evaluate_mesh


def _extras(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise NeumatInputError(f"--extra takes NAME=FIELD or NAME=VALUE, got '{item}'")
        if name.strip() in out:
            raise NeumatInputError(f"--extra {name.strip()} given twice")
        out[name.strip()] = value.strip()
    return out


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def register(sub) -> None:
    p = sub.add_parser(
        "mesh", help="evaluate flow stress and derivatives (or a J2 stress update) on a mesh file",
        description="Reads any meshio format (VTU, XDMF, ...), evaluates the model on every point or "
                    "cell (or quadrature point of cell data (n_cells, n_qp)) and writes the results as "
                    "new fields. Each input is a point/cell field name or a constant. Flow-stress mode "
                    "writes flow_stress_MPa, dflow_stress_d_<feature> (MPa per unit of the feature) and "
                    "out_of_box; update mode (--strain-increment and --dt) writes stress_MPa (Voigt 11,22,"
                    "33,12,13,23), mises_stress_MPa, equivalent_plastic_strain, state (9 STATEV), status "
                    "(0 ok, 1 step cut, 2 bad input) and pnewdt. Units: °C, 1/s, MPa, s.",
        epilog="examples:\n"
               "  neumat mesh --model dz411.onnx --in part.vtu --out part_flow.vtu --temperature T "
               "--strain-rate 0.1 --plastic-strain peeq --extra direction=0\n"
               "  neumat mesh --model dz411.onnx --in step.xdmf --out step_upd.xdmf --temperature 1000 "
               "--plastic-strain 0 --strain-increment dstran --dt 0.01 --E 150000 --nu 0.3\n"
               "  neumat mesh ... --dask local:2        # chunks on a local Dask cluster of 2 workers")
    p.add_argument("--model", required=True, help="exported model (.onnx)")
    p.add_argument("--in", dest="mesh_in", required=True, help="input mesh file")
    p.add_argument("--out", dest="mesh_out", required=True, help="output mesh file (format from the suffix)")
    p.add_argument("--temperature", help="temperature: FIELD or VALUE, in --temperature-unit (default °C)")
    p.add_argument("--temperature-unit", choices=["C", "K", "F"], default="C",
                   help="unit of --temperature (default C); converted to °C, the model's unit. A warning "
                        "is printed when most rows fall outside the data in temperature")
    p.add_argument("--strain-rate", help="strain rate, 1/s: FIELD or VALUE (flow-stress mode)")
    p.add_argument("--plastic-strain", help="equivalent plastic strain: FIELD or VALUE")
    p.add_argument("--extra", action="append", metavar="NAME=FIELD|VALUE",
                   help="an extra model feature (repeat for each)")
    p.add_argument("--strain-increment", help="update mode: strain-increment field, 6 components "
                                              "(Voigt, engineering shear)")
    p.add_argument("--dt", type=float, help="update mode: increment time, s")
    p.add_argument("--stress", help="update mode: stress field at the start, 6 components, MPa (default 0)")
    p.add_argument("--state", help="update mode: state field, 9 STATEV (default 0)")
    p.add_argument("--E", type=float, help="update mode: Young's modulus, MPa")
    p.add_argument("--nu", type=float, help="update mode: Poisson's ratio")
    p.add_argument("--at", choices=["points", "cells"], default=None,
                   help="where to evaluate (default: where the input fields live; points when all are constants)")
    p.add_argument("--chunk", type=_positive_int, default=DEFAULT_CHUNK,
                   help=f"rows per evaluation chunk (default {DEFAULT_CHUNK}; bounds the working memory)")
    p.add_argument("--backend", choices=["onnxruntime", "compiled"], default="onnxruntime")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dask", metavar="ADDRESS|local[:N]", default=None,
                   help="evaluate the chunks on a Dask cluster: 'local[:N]' starts N one-thread worker "
                        "processes here (default N = number of cores), ADDRESS (tcp://host:8786) uses a "
                        "running scheduler whose workers have neumat installed. The model is sent to each "
                        "worker once; results equal the single-process run bit for bit. A failed task "
                        "leaves its rows NaN (evaluation_failed = 1), the file is still written and the "
                        "command exits 1. Needs the 'dask' extra (pip install 'neumat[dask]')")
    p.add_argument("--dask-task-rows", type=_positive_int, default=None, metavar="N",
                   help="rows per Dask task (default 1048576, rounded up to a multiple of --chunk)")
    p.set_defaults(func=run_mesh)

    s = sub.add_parser(
        "simulate", help="hot compression of a Gleeble cylinder in scikit-fem driven by the J2 bridge",
        description="Cylinder Ø10 × 15 mm (1/8 model, hexahedra, B-bar), isothermal, platens closing at "
                    "v = strain_rate · h0 to ln(h0/h) = --strain; frictionless or sticking ends. Writes "
                    "increment_NNNN.vtu, compression.pvd and force_displacement.csv into --out and prints "
                    "the Newton residual norms of every increment. Units: mm, s, MPa, N, °C.",
        epilog="example:\n  neumat simulate --model dz411.onnx --temperature 1000 --strain-rate 0.1 "
               "--extra direction=0 --friction stick --out sim_1000")
    s.add_argument("--model", required=True, help="exported model (.onnx)")
    s.add_argument("--temperature", type=float, default=1100.0, help="°C (default 1100)")
    s.add_argument("--strain-rate", type=float, default=0.1, help="nominal strain rate v/h0, 1/s (default 0.1)")
    s.add_argument("--strain", type=float, default=0.5, help="final logarithmic height strain (default 0.5)")
    s.add_argument("--increments", type=_positive_int, default=25, help="time increments (default 25)")
    s.add_argument("--friction", choices=["none", "stick"], default="none")
    s.add_argument("--E", type=float, default=150000.0, help="Young's modulus, MPa (default 150000)")
    s.add_argument("--nu", type=float, default=0.3, help="Poisson's ratio (default 0.3)")
    s.add_argument("--extra", action="append", metavar="NAME=VALUE", help="value of an extra model feature")
    s.add_argument("--divisions", default="4,3,6",
                   help="mesh: O-grid core, ring and layers over the half height (default 4,3,6)")
    s.add_argument("--backend", choices=["onnxruntime", "compiled"], default="onnxruntime")
    s.add_argument("--out", default="simulate_out", help="output folder (default simulate_out)")
    s.set_defaults(func=run_simulate)


def run_mesh(args) -> int:
    with warnings.catch_warnings():            # the whole-run warnings are printed below, once
        warnings.simplefilter("ignore", RuntimeWarning)
        res, _ = _evaluate_mesh_args(args)
    print(res.summary())
    for w in res.warnings:
        print(f"neumat mesh: warning: {w}", file=sys.stderr)
    return _report_mesh(args, res)


def _evaluate_mesh_args(args):
    return evaluate_mesh(
        args.model, args.mesh_in, args.mesh_out, temperature=args.temperature, strain_rate=args.strain_rate,
        plastic_strain=args.plastic_strain, extras=_extras(args.extra), strain_increment=args.strain_increment,
        dt=args.dt, stress=args.stress, state=args.state, E=args.E, nu=args.nu, location=args.at,
        chunk=args.chunk, backend=args.backend, progress=not args.no_progress and sys.stderr.isatty(),
        dask=args.dask, dask_task_rows=args.dask_task_rows, temperature_unit=args.temperature_unit)


def _report_mesh(args, res) -> int:
    print(f"wrote {args.mesh_out}")
    if res.failures:
        label = res.location if res.values_per_entity == 1 else f"{res.location[:-1]} quadrature-point rows"
        for f in res.failures:
            print(f"neumat mesh: error: {f.message(label)}", file=sys.stderr)
        print(f"neumat mesh: error: {len(res.failures)} Dask task(s) failed; their {res.n_failed} rows are NaN "
              f"in {args.mesh_out} (field evaluation_failed = 1), the other rows were evaluated",
              file=sys.stderr)
        return 1
    return 0


def run_simulate(args) -> int:
    div = parse_divisions(args.divisions)
    extras = {}
    for name, value in _extras(args.extra).items():
        try:
            extras[name] = float(value)
        except ValueError:
            raise NeumatInputError(f"--extra {name}: '{value}' is not a number") from None
    setup = CompressionSetup(temperature=args.temperature, strain_rate=args.strain_rate, strain=args.strain,
                             increments=args.increments, friction=args.friction, E=args.E, nu=args.nu,
                             divisions=div, extras=extras)
    setup.check()
    flow = load_backend(args.model, kind=args.backend)
    res = run_compression(flow, setup, out_dir=args.out)
    print(f"wrote {len(res.files)} files to {args.out} (force_displacement.csv, compression.pvd, increment_*.vtu)")
    if not res.completed:
        print(f"neumat simulate: {res.message}", file=sys.stderr)
        return 1
    return 0
