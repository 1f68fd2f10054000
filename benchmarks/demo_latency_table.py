"""A short latency table for ONE trained model (what ``neumat demo`` puts in its report).

It reuses the measurement code of the latency benchmark (:mod:`benchmarks.latency_measure`: same
timers, same paths, same checks against the numpy FlowNet) on a handful of sizes, so it runs in
about half a minute. The full study over all sizes and models is ``neumat bench``. Times in s.
"""
from __future__ import annotations

from pathlib import Path

from constitutive.flownet import FlowNet
from fortran_umat.build import build_umat

from .latency_measure import Settings, measure_path
from .latency_paths import ModelContext
from .latency_report import fmt_time

# (path, threads, N) rows of the table, with what each figure means
ROWS = [
    ("umat_fortran_loop", 1, 1, "Fortran UMAT, one plastic call (Newton included), from a Fortran loop", "call"),
    ("umat_compiled_ctypes", 1, 1, "Fortran UMAT called from Python through ctypes, one call", "call"),
    ("umat_python_callback", 1, 1, "Python UMAT callback (fem_bridge.umat), one call", "call"),
    ("compiled", 1, 100_000, "compiled kernel (ctypes), σ and dσ/dx, one batch", "point"),
    ("onnxruntime", 1, 100_000, "onnxruntime, σ and dσ/dx, one batch", "point"),
    ("integrate_compiled", 1, 10_000, "J2 return mapping (integrate), compiled backend, one batch", "point"),
]


def measure(model_json: str | Path, onnx_path: str | Path, workdir: str | Path, quick: bool = False) -> list[dict]:
    """Rows: path, label, unit ("call" or "point"), n, min and median seconds per unit, or the
    reason the path could not be measured."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = ModelContext("trained", FlowNet.load(model_json), "trained model", str(model_json), workdir)
    ctx.onnx_path = Path(onnx_path)
    ctx.library = build_umat(ctx.onnx_path)
    rows = []
    for path, threads, n, label, unit in ROWS:
        n_used = min(n, 1000) if quick else n
        st = Settings(quick, [n_used], [threads], repeats=3 if quick else 7, target_s=0.002 if quick else 0.01,
                      max_total_s=0.05 if quick else 0.5, memory_child=False, umat_nsteps=300,
                      umat_npaths=3 if quick else 5, umat_nrep=3 if quick else 10,
                      callback_calls=10 if quick else 200)
        e = measure_path(ctx, path, threads, st)
        row = dict(path=path, label=label, unit=unit, n=n_used, threads=threads)
        if e.get("available") and e.get("points"):
            p = e["points"][0]
            key = "per_call" if unit == "call" else "per_point"
            row.update(min_s=p[f"min_s_{key}"], median_s=p[f"median_s_{key}"], repeats=p["repeats"])
        else:
            row["reason"] = e.get("reason", "not measured")
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    out = ["| path | N | per | min | median |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        if "min_s" in r:
            out.append(f"| {r['label']} | {r['n']:,} | {r['unit']} | {fmt_time(r['min_s'])} | "
                       f"{fmt_time(r['median_s'])} |")
        else:
            out.append(f"| {r['label']} | {r['n']:,} | {r['unit']} | not measured: {r['reason']} | |")
    return "\n".join(out)
