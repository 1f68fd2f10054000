"""``neumat demo``: the main job end to end, on the embedded SYNTHETIC DZ411 campaign or on
``--data NAME|CSV``. It runs the subcommands a user runs, in order, each into ``--out``
(default ``runs/demo``), then writes ``report.md`` with its figures:

 1. data        summary and plot of the campaign;
 2. baselines   Arrhenius / Hensel–Spittel / Johnson–Cook, fitted on the training curves;
 3. train       the default model (5 plain networks with their own seeds, averaged, distilled into one);
 4. plain MLP   one plain network (4-16-A-8-A-1, no residual connections, no transfer) and the seed method
                (``--method network``: residual layers, SMOTE, transfer learning from Arrhenius);
 5. compare     held-out table Arrhenius vs plain MLP vs seed method vs default (method.md's layout);
 6. learning    held-out error against the number of training curves;
 7. export      ONNX with σ and dσ/dx in physical units;
 8. umat        Fortran UMAT generated from the ONNX file, compiled, verified against the bridge;
 9. mesh        the model on every point of a VTU mesh (meshio);
10. simulate    scikit-fem hot compression of a Gleeble cylinder driven by the bridge;
11. ccx         the UMAT inside CalculiX (when the ccx build of ``make ccx`` is present);
12. latency     per-call and per-point cost of the evaluation paths of this model;
13. casting     a blade-like casting cooled from near-solidus to room temperature in CalculiX with
                the UMAT, against ccx's *PLASTIC (when ccx is built; ``benchmarks/demo_casting.py``).

A failing step is recorded in the report and the demo goes on with the steps that do not
depend on it; the exit code is that of the first failure.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
import traceback
from pathlib import Path

from constitutive.cli import main
from constitutive.cli_common import add_data_arguments, load_from_args
from constitutive.errors import NeumatInputError
from constitutive.jsonio import write_json
from constitutive.flow_curves import check_fit_conditions, parse_heldout
from constitutive.synthetic import DZ411_TEST_CONDITIONS
from fortran_umat.ccx_run import CcxNotBuilt, ccx_binary

from . import demo
from .demo_casting import casting_argv
from .demo_report import write_report
from .machine import machine_info
from .demo_latency_table import measure

EXAMPLES = """examples:
  neumat demo                                   # embedded SYNTHETIC DZ411 campaign → runs/demo/report.md
  neumat demo --quick --out /tmp/demo           # seconds-long training settings (a smoke test)
  neumat demo --data gleeble_3cr2mo --heldout 1100:1,1200:1 --out runs/3cr2mo
  neumat demo --data my_curves.csv --columns temperature=T_C,strain_rate=rate,strain=eps,stress=sig \\
              --heldout 1000:0.1 --out runs/mine"""


def register(sub) -> None:
    p = sub.add_parser(
        "demo", help="the main job end to end: data → baselines → network → ONNX → UMAT → FE → report",
        description="Train, compare, export, compile and run the model end to end and write "
                    "OUT/report.md with plots. Default data: the embedded SYNTHETIC DZ411-like "
                    "campaign (65 curves; the 3 test conditions of method.md held out). "
                    "Units: °C, 1/s, MPa, true strain.",
        epilog=EXAMPLES)
    add_data_arguments(p, required=False)
    p.set_defaults(data="synthetic_dz411")
    next(a for a in p._actions if a.dest == "data").help += " (default: synthetic_dz411, generated, SYNTHETIC)"
    p.add_argument("--heldout", default=None,
                   help='held-out conditions "T:rate[:extra...],..." (°C, 1/s); default for the synthetic '
                        "campaign: its 3 test conditions; required for other data")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--quick", action="store_true", help="quick training settings (seconds; a smoke test)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random step (default 0)")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurements")
    p.set_defaults(func=run)


def _data_argv(args) -> list[str]:
    argv = ["--data", args.data]
    for flag, value, default in (("--columns", args.columns, None), ("--extras", args.extras, ""),
                                 ("--temperature-unit", args.temperature_unit, None),
                                 ("--stress-unit", args.stress_unit, "MPa"),
                                 ("--strain-rate-unit", args.strain_rate_unit, "1/s")):
        if value not in (None, default):
            argv += [flag, value]
    return argv + (["--allow-replicates"] if args.allow_replicates else [])


def _heldout(args, curves) -> str:
    if args.heldout:
        return args.heldout
    if curves.source == "synthetic_dz411":
        return ",".join(":".join(f"{v:g}" for v in c) for c in DZ411_TEST_CONDITIONS)
    raise NeumatInputError(f"--data {args.data}: give the held-out conditions with --heldout \"T:rate[:extra],...\" "
                           f"(°C, 1/s; whole curves, never used in any fit), e.g. --heldout "
                           f"{curves.conditions()[0, 0]:g}:{curves.conditions()[0, 1]:g}")


def _test_condition(curves, test) -> tuple[float, float, list[float]]:
    """The FE runs' condition: the first held-out curve's temperature, rate and extras."""
    c = test.conditions()[0]
    return float(c[0]), float(c[1]), [float(v) for v in c[2:]]


class _Run:
    """Runs steps, times them, keeps going after a failure, remembers what ran."""

    def __init__(self, total: int, progress: bool):
        from tqdm.auto import tqdm  # optional: tqdm comes with the train extra
        self.log: list[dict] = []
        self.status = 0
        self.bar = tqdm(total=total, desc="neumat demo", unit="step", disable=not progress, position=0,
                        leave=True)

    def step(self, name: str, fn, command: str | None = None, *, needs: tuple[str, ...] = ()):
        failed = [n for n in needs if not self.ok(n)]
        entry = {"name": name, "command": command}
        if failed:
            entry.update(rc=None, seconds=0.0, note=f"skipped: needs '{failed[0]}', which failed")
        else:
            self.bar.set_postfix_str(name)
            print(f"\n=== {name}" + (f": {command}" if command else ""), flush=True)
            t0 = time.perf_counter()
            try:
                rc, note = fn()
            except NeumatInputError as exc:
                rc, note = 2, f"error: {exc}"
                print(f"neumat demo: step '{name}': {exc}", file=sys.stderr)
            except Exception as exc:                     # a failed step is reported; the others go on
                rc, note = 1, f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
            entry.update(rc=rc, seconds=time.perf_counter() - t0, note=note)
            if rc and not self.status:
                self.status = rc
        self.log.append(entry)
        self.bar.update(1)
        return entry

    def skip(self, name: str, note: str) -> None:
        """A step that does not run here, with the reason shown in the report and the summary."""
        self.log.append({"name": name, "command": None, "rc": None, "seconds": 0.0, "note": note})
        self.bar.update(1)
        print(f"\n=== {name}: {note}")

    def ok(self, name: str) -> bool:
        return any(e["name"] == name and e["rc"] == 0 for e in self.log)


def run(args) -> int:
    from constitutive.training import TrainConfig  # optional: torch (train extra)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    progress = sys.stderr.isatty()
    curves = load_from_args(args)                   # bad data: one clear error before any step runs
    heldout = _heldout(args, curves)
    train, test = curves.split_heldout(parse_heldout(heldout))
    check_fit_conditions(train)
    data = _data_argv(args)
    quick = ["--quick"] if args.quick else []
    onnx, net_dir, plain_dir, seed_dir = out / "model.onnx", out / "network", out / "plain_mlp", out / "seed_method"
    temp, rate, extras = _test_condition(curves, test)
    extra_kv = [f"{n}={v:g}" for n, v in zip(curves.extra_names, extras)]
    results: dict = {"data": args.data, "synthetic": bool(curves.synthetic), "heldout": heldout,
                     "seed": args.seed, "quick": args.quick, "fe_condition": [temp, rate, extras]}
    cfg = TrainConfig.quick() if args.quick else TrainConfig()

    def cli(argv):
        def go():
            return main(argv), None
        return go, "neumat " + shlex.join(argv)

    r = _Run(total=15, progress=progress)
    plot_args = (["--write-csv", str(out / "data.csv")] if curves.synthetic else [])
    r.step("data", *cli(["data", *data, "--plot", str(out / "data.png"), *plot_args]))
    r.step("baselines", *cli(["baselines", *data, "--protocol", "full", "--heldout", heldout,
                              "--json", str(out / "baselines.json")]))
    # --force: a rerun of the demo into the same --out replaces the previous run's models
    r.step("train", *cli(["train", *data, "--heldout", heldout, "--seed", str(args.seed), "--out", str(net_dir),
                          "--force", *quick]))
    r.step("plain MLP", *cli(["train", *data, "--heldout", heldout, "--seed", str(args.seed), "--no-transfer",
                              "--spec", demo.plain_spec(TrainConfig(method="network").spec), "--no-plots",
                              "--out", str(plain_dir), "--force", *quick]))
    r.step("seed method", *cli(["train", *data, "--heldout", heldout, "--seed", str(args.seed), "--method", "network",
                                "--no-plots", "--out", str(seed_dir), "--force", *quick]))

    def compare():
        from constitutive.training import TrainedModel  # optional: torch (train extra)
        network = TrainedModel.load(net_dir)
        results["comparison"] = demo.comparison(train, test, network, TrainedModel.load(plain_dir),
                                                TrainedModel.load(seed_dir))
        print(demo.comparison_markdown(results["comparison"]))
        demo.plot_flow_curves(train, test, network, out / "flow_curves.png")
        return 0, None
    r.step("compare", compare, needs=("train", "plain MLP", "seed method"))

    def learning():
        rows = demo.learning_curve(train, test, cfg, demo.learning_sizes(train.n_curves, args.quick),
                                   args.seed, progress=progress)
        results["learning_curve"] = rows
        demo.plot_learning_curve(rows, out / "learning_curve.png", curves.synthetic)
        for row in rows:
            print(f"  {row['training_curves']:3d} training curves: held-out MAPE {row['heldout']['mare_pct']:.3f} %")
        return 0, None
    r.step("learning curve", learning)
    r.step("export", *cli(["export", str(net_dir), "--out", str(onnx)]), needs=("train",))
    r.step("umat", *cli(["umat", str(onnx), "--out", str(out / "umat"), "--verify"]), needs=("export",))

    lo_t, hi_t = float(train.temperature.min()), float(train.temperature.max())
    lo_r, hi_r = float(train.strain_rate.min()), float(train.strain_rate.max())
    mesh_in = out / "mesh" / "block.vtu"

    mesh_argv = ["mesh", "--model", str(onnx), "--in", str(mesh_in), "--out", str(out / "mesh" / "block_flow.vtu"),
                 "--temperature", "temperature", "--strain-rate", "strain_rate", "--plastic-strain", "plastic_strain",
                 *[a for kv in extra_kv for a in ("--extra", kv)]]

    def mesh():
        demo.demo_mesh(mesh_in, (lo_t, hi_t), (lo_r, hi_r), n=4 if args.quick else 24)
        rc = main(mesh_argv)
        if rc == 0:
            results["mesh"] = demo.mesh_summary(out / "mesh" / "block_flow.vtu")
        return rc, None
    r.step("mesh", mesh, "neumat " + shlex.join(mesh_argv), needs=("export",))
    r.step("simulate", *cli(["simulate", "--model", str(onnx), "--temperature", f"{temp:g}", "--strain-rate",
                             f"{rate:g}", *[a for kv in extra_kv for a in ("--extra", kv)],
                             "--increments", "10" if args.quick else "20", "--out", str(out / "simulate")]),
           needs=("export",))

    try:
        ccx_binary()
        r.step("ccx", *cli(["ccx", "--model", str(onnx), "--temperature", f"{temp:g}", "--strain-rate", f"{rate:g}",
                            "--extras", *[f"{v:g}" for v in extras], "--compare-plastic", "--compare-bridge",
                            "--out", str(out / "ccx")]), needs=("umat",))
        r.step("casting", *cli(casting_argv(onnx, out, extras, quick=args.quick)), needs=("umat",))
    except CcxNotBuilt as exc:
        r.skip("ccx", f"CalculiX is not available here ({exc}); `make ccx` builds it")
        r.skip("casting", "CalculiX is not available here; `make ccx` builds it")

    def latency():
        results["latency"] = measure(net_dir / "model.json", onnx, out / "latency", quick=args.quick)
        return 0, None
    if args.no_latency:
        r.skip("latency", "skipped (--no-latency)")
    else:
        r.step("latency", latency, needs=("umat",))

    def figures():
        demo.plot_compression(out, onnx, temp, rate, extras, out / "compression.png")
        return 0, None
    r.step("figures", figures, needs=("export",))
    r.bar.close()
    results["steps"] = r.log
    results["seconds"] = time.perf_counter() - t_start
    m = machine_info()
    results["machine"] = f"{m['cpu_model']}, {m['usable_cores']} cores, Python {m['python']}"
    write_json(out / "results.json", results)
    report = write_report(out, results, train, test)
    _summary(out, report, r.log, results["seconds"])
    return r.status


def _summary(out: Path, report: Path, log: list[dict], seconds: float) -> None:
    print("\n" + "=" * 72)
    print(f"neumat demo finished in {seconds:.0f} s")
    for e in log:
        state = "ok" if e["rc"] == 0 else ("skipped" if e["rc"] is None else f"FAILED (exit {e['rc']})")
        print(f"  {e['name']:<15} {state:<18} {e['seconds']:6.1f} s" + (f"  {e['note']}" if e.get("note") else ""))
    print(f"\nreport:   {report}")
    for what, p in (("plots", out / "flow_curves.png"), ("model", out / "model.onnx"), ("UMAT", out / "umat"),
                    ("FE host", out / "simulate"), ("CalculiX", out / "ccx"), ("results", out / "results.json")):
        if p.exists():
            print(f"{what + ':':<10}{p}")
