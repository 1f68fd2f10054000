"""The text the latency benchmark writes: the latency section of ``benchmarks/README.md``
(goal verdicts, the table of time per point, the comparison with the published anchors) and
``fmt_time``, the display of a duration in s used by every latency text (summaries, plot,
console)."""
from __future__ import annotations

import math
from pathlib import Path

from .latency_goals import entries, point_at
from .readme_sections import BENCHMARKS_README, write_section


def fmt_time(s: float | None) -> str:
    """A duration in seconds as ns/µs/ms/s with 3 significant digits; "–" for None/non-finite."""
    if s is None or not math.isfinite(s):
        return "–"
    if s < 1e-6:
        return f"{s * 1e9:.3g} ns"
    if s < 1e-3:
        return f"{s * 1e6:.3g} µs"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s"



def _goal_rows_md(doc: dict) -> list[str]:
    lines = ["| goal | model | measured: wall min / median (CPU min) | target | verdict | where the time goes |",
             "| --- | --- | --- | --- | --- | --- |"]
    for g in doc["goals"]:
        if g["goal"] == "flat":
            continue
        if g["reached"] is None:
            meas, verdict = "–", "not measured"
        else:
            cpu = f"; CPU {fmt_time(g['cpu_min_s'])}" if g.get("cpu_min_s") else ""
            meas = f"{fmt_time(g['min_s'])} / {fmt_time(g['median_s'])} ({g['where']}{cpu})"
            verdict = "**reached**" if g["reached"] else "**missed**"
        lines.append(f"| {g['text']} | {g['model']} | {meas} | {fmt_time(g['target_s'])} | {verdict} | "
                     f"{g.get('time_goes', '') or g.get('note', '')} |")
    flat = [g for g in doc["goals"] if g["goal"] == "flat"]
    if flat:
        lines += ["", "Cost per point flat within 2× from N = 10³ to 10⁶ (1 thread, max/min of the per-point minimum):", "",
                  "| model | path | ratio | verdict |", "| --- | --- | --- | --- |"]
        for g in flat:
            if g["reached"] is None:
                lines.append(f"| {g['model']} | {g['path']} | – | not measured |")
            else:
                lines.append(f"| {g['model']} | {g['path']} | {g['ratio']:.2f} | "
                             f"{'**reached**' if g['reached'] else '**missed**'} |")
    return lines


def _cost_table_md(doc: dict) -> list[str]:
    show = [n for n in (1, 10**3, 10**5, 10**6) if n in doc["n_values"]]
    head = "| model | path | threads | " + " | ".join(f"N = {n:.0e}".replace("e+0", "e") for n in show) + " | peak mem/point |"
    lines = ["Time per point (per call for the single-point paths), minimum of the repeats:", "",
             head, "|" + " --- |" * (4 + len(show))]
    for e in doc["paths"]:
        if not e.get("available"):
            lines.append(f"| {e['model']} | {e['path']} | {e['threads']} | " + " | ".join("–" for _ in show)
                         + f" | {e.get('reason', '')} |")
            continue
        cells = []
        for n in show:
            p = point_at(e, n)
            if p is None and e["kind"] in ("callback", "umat_loop") and n == 1:
                p = e["points"][0]
            cells.append(fmt_time(p["min_s_per_point"]) if p else "–")
        mem = e.get("memory", {})
        m = mem.get("peak_rss_delta_bytes_per_point", mem.get("tracemalloc_peak_bytes_per_point"))
        mtxt = "–" if m is None else f"{m:.0f} B" + (" (RSS)" if "peak_rss_delta_bytes_per_point" in mem else " (traced)")
        lines.append(f"| {e['model']} | {e['path']} | {e['threads']} | " + " | ".join(cells) + f" | {mtxt} |")
    return lines


def _vs(t: float, ref: float) -> str:
    return f"{ref / t:.2g}× faster" if t < ref else f"{t / ref:.2g}× slower"


def _anchor_md(doc: dict) -> list[str]:
    lines = ["Against anchors.md (NEML2 J2 radial return ≈ 5 µs per point-step per thread; roseNNa 2-10-1 MLP, "
             "batch of 1000, σ only: 3.3 µs per call = 3.3 ns per point, libtorch 83 µs):", ""]
    for model in doc["models"]:
        parts = []
        for e in entries(doc["paths"], model, "integrate_compiled", 1):
            p = point_at(e, 10**5) or e["points"][-1]
            parts.append(f"`integrate` (compiled backend, 1 thread) {fmt_time(p['min_s_per_point'])} per point-step at "
                         f"N = {p['n']:.0e}: {_vs(p['min_s_per_point'], 5e-6)} than NEML2 per thread")
        for e in entries(doc["paths"], model, "umat_fortran_loop"):
            t = e["points"][0]["min_s_per_point"]
            parts.append(f"Fortran UMAT {fmt_time(t)} per point-step: {_vs(t, 5e-6)} than NEML2 per thread")
        for path in ("compiled", "reference_kernel"):
            for e in entries(doc["paths"], model, path, 1):
                p = point_at(e, 10**3)
                if p:
                    parts.append(f"{path} batch of 1000 (σ and dσ/dx): {fmt_time(p['min_s_per_call'])} per call, "
                                 f"{fmt_time(p['min_s_per_point'])} per point vs roseNNa's 3.3 ns (σ only, "
                                 f"{doc['models'][model].get('n_parameters', '?')} vs 41 parameters)")
        for e in entries(doc["paths"], model, "torch_eager", 1):
            p = point_at(e, 10**3)
            if p:
                parts.append(f"torch eager batch of 1000 with autograd: {fmt_time(p['min_s_per_call'])} per call "
                             f"(libtorch in roseNNa's table: 83 µs, σ only)")
        if parts:
            lines.append(f"- **{model}**: " + "; ".join(parts) + ".")
    return lines


def readme_section(doc: dict, plot_name: str) -> str:
    m, v = doc["machine"], doc["versions"]
    lines = ["## Latency and throughput", "",
             f"Measured by `neumat bench{' --quick' if doc['quick'] else ''}` on {doc['date'][:19]} UTC: "
             f"{m['cpu_model']}, {m['logical_cores']} logical cores ({', '.join(m['simd'])}); numpy {v['numpy']}, "
             f"onnxruntime {v['onnxruntime']}, torch {v['torch']}, {v['gfortran']}. "
             f"Load average before/after: {doc['load']['before']['loadavg_1_5_15']} / {doc['load']['after']['loadavg_1_5_15']} "
             f"(machine shared with other work; figures are the minimum of {doc['settings']['repeats']} repeats, "
             f"medians in `results/latency.json`). Verdicts use the wall-clock minimum; the process CPU time "
             f"(all threads) is given beside it because other work on the machine inflates wall time.", ""]
    g = doc.get("git", {})
    if g.get("commit"):
        lines += [f"Code measured: commit {g['commit'][:10]}"
                  + (f" with uncommitted changes in {', '.join(g['modified_files'])}" if g.get("modified_files") else "")
                  + ".", ""]
    lines += _goal_rows_md(doc) + [""] + _cost_table_md(doc) + [""] + _anchor_md(doc)
    lines += ["", "Paths that are not the product, measured to show what a change would reach on this machine: "
              "`reference_kernel` (scalar straight-line Fortran written by the benchmark from the FlowNet, the "
              "product's flags), `reference_kernel_simd` (the same on blocks of 32 points, `-march=native`), "
              "`compiled_native` / `umat_fortran_loop_native` (the product's generated code with `-march=native` "
              "added). "
              "Per-call paths (callbacks, Fortran loop) appear in the N = 1 column."]
    lines += ["", f"![cost per point against N](results/{plot_name})", "",
              "Method: " + doc["timing_method"], "", "Memory: " + doc["memory_method"]]
    return "\n".join(lines)


def write_readme(text: str, readme: str | Path = BENCHMARKS_README) -> None:
    """Put ``text`` in the latency section of ``readme`` (NeumatInputError without its markers)."""
    write_section("latency", text, readme)
