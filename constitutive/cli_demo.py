"""``neumat demo``: the main job end to end on the embedded (SYNTHETIC) DZ411 data set.

It runs the same subcommands a user runs, in order, each into ``--out``:

1. ``data``      summary and plot of the synthetic campaign (65 curves, direction as input);
2. ``baselines`` Arrhenius / Hensel–Spittel / Johnson–Cook on the 3 test conditions, and the
                 full fit on gleeble_3cr2mo when the shared data set is present;
3. ``train``     the residual network with transfer learning from Arrhenius;
4. ``export``    ONNX with σ and dσ/dx in physical units;
5. ``simulate``  the scikit-fem hot-compression host driven by the bridge;
6. ``umat``      the Fortran UMAT generated from the ONNX file and compiled;
7. ``ccx``       the UMAT inside CalculiX (when the ccx build of ``make ccx`` is present).

A failing step stops the demo with its exit code; ``report.md`` lists what ran.
"""
from __future__ import annotations

import shlex
import time
from pathlib import Path

from .data import dataset_available


def register(sub) -> None:
    p = sub.add_parser("demo", help="the main job end to end on the embedded synthetic DZ411 data")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--quick", action="store_true", help="quick training settings (seconds)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def _steps(out: Path, quick: bool, seed: int) -> list[tuple[str, list[str]]]:
    from fortran_umat.ccx import CcxNotBuilt, ccx_binary
    from .synthetic import DZ411_TEST_CONDITIONS
    heldout = ",".join(f"{t:g}:{r:g}:{d:g}" for t, r, d in DZ411_TEST_CONDITIONS)
    run, onnx = out / "run", out / "model.onnx"
    steps = [
        ("data", ["data", "--data", "synthetic_dz411", "--plot", str(out / "data.png"),
                  "--write-csv", str(out / "synthetic_dz411.csv")]),
        ("baselines (synthetic)", ["baselines", "--data", "synthetic_dz411", "--protocol", "full",
                                   "--heldout", heldout, "--json", str(out / "baselines_synthetic.json")]),
    ]
    if dataset_available("gleeble_3cr2mo"):
        steps.append(("baselines (gleeble_3cr2mo)",
                      ["baselines", "--data", "gleeble_3cr2mo", "--protocol", "full",
                       "--json", str(out / "baselines_gleeble.json")]))
    steps += [
        ("train", ["train", "--data", "synthetic_dz411", "--heldout", heldout, "--seed", str(seed),
                   "--out", str(run), *(["--quick"] if quick else [])]),
        ("export", ["export", str(run), "--out", str(onnx)]),
        ("simulate", ["simulate", "--model", str(onnx), "--temperature", "1000", "--strain-rate", "0.1",
                      "--extra", "direction=0", "--increments", "20", "--out", str(out / "simulate")]),
        ("umat", ["umat", str(onnx), "--out", str(out / "umat")]),
    ]
    try:
        ccx_binary()
        steps.append(("ccx", ["ccx", "--model", str(onnx), "--temperature", "1000", "--strain-rate", "0.1",
                              "--extras", "0", "--compare-plastic", "--compare-bridge",
                              "--out", str(out / "ccx")]))
    except CcxNotBuilt as exc:
        print(f"(skipping the CalculiX step: {exc})")
    return steps


def _figures(out: Path) -> list[str]:
    """Key figures of the run, read back from the files the steps wrote."""
    import json
    lines = ["", "## Figures (SYNTHETIC data)"]
    metrics = out / "run" / "metrics.json"
    if metrics.is_file():
        m = json.loads(metrics.read_text())
        for part in ("train", "validation", "heldout"):
            if m.get(part):
                lines.append(f"- network, {part} curves: MARE {m[part]['mare_pct']:.3f} %, "
                             f"RMSE {m[part]['rmse_mpa']:.3f} MPa, R² {m[part]['r2']:.5f}")
    base = out / "baselines_synthetic.json"
    if base.is_file():
        b = json.loads(base.read_text())
        for name, s in b["models"].items():
            if s.get("heldout"):
                lines.append(f"- {name}, held-out curves: MARE {s['heldout']['mare_pct']:.2f} %")
    for what, path in (("CalculiX results", out / "ccx" / "results.csv"),
                       ("FE host force–displacement", out / "simulate" / "force_displacement.csv"),
                       ("plots", out / "run")):
        if path.exists():
            lines.append(f"- {what}: `{path}`")
    return lines


def run(args) -> int:
    from .cli import main
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = ["# neumat demo (SYNTHETIC DZ411 data)", ""]
    status = 0
    for name, argv in _steps(out, args.quick, args.seed):
        print(f"\n=== neumat {shlex.join(argv)}", flush=True)
        t0 = time.perf_counter()
        rc = main(argv)
        dt = time.perf_counter() - t0
        report.append(f"- `neumat {shlex.join(argv)}` → exit {rc} in {dt:.1f} s")
        if rc != 0:
            status = rc
            report.append(f"\nStopped: step '{name}' failed.")
            break
    report += _figures(out)
    (out / "report.md").write_text("\n".join(report) + "\n")
    print(f"\nreport: {out / 'report.md'}")
    return status
