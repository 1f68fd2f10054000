"""Measuring one path of the latency benchmark: time per call and per point at each batch size
N, a check against the numpy FlowNet, and the peak memory per point.

``measure_path`` dispatches on the path's kind (``latency_paths.PATHS``); each ``measure_*``
returns one entry of ``latency.json["paths"]`` (``available=False`` with a ``reason`` when the
path could not run). Times in seconds, memory in bytes.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import latency_subjects as subj
from .latency_paths import (PATHS, CallbackLoop, CountingFlow, J2Runner, ModelContext, backend_for,
                            compiled_uses_openmp, failure_reason, flow_evaluator, j2_plastic_fraction,
                            library_path, result_field, set_omp_threads, source_path)
from .latency_timing import time_call, traced_peak_bytes
from .latency_umat import build_driver, perf_profile, run_driver

REPO = Path(__file__).resolve().parent.parent
FULL_N = [10**k for k in range(7)]
QUICK_N = [10**k for k in range(4)]
NO_OPENMP = "the generated kernel has no OpenMP loop: one thread only"


@dataclass
class Settings:
    quick: bool
    ns: list[int]
    threads: list[int]
    repeats: int
    target_s: float          # duration of one timing sample
    max_total_s: float       # budget per (path, threads, N)
    memory_child: bool       # peak RSS in a fresh process at the largest N (full mode)
    umat_nsteps: int
    umat_npaths: int
    umat_nrep: int
    callback_calls: int


def settings_for(args) -> Settings:
    ns = list(QUICK_N if args.quick else FULL_N)
    if args.max_n:
        ns = [n for n in ns if n <= args.max_n] or [1]
    if args.quick:
        return Settings(True, ns, [1, 2], repeats=args.repeats or 3, target_s=0.002, max_total_s=0.03,
                        memory_child=False, umat_nsteps=300, umat_npaths=5, umat_nrep=3, callback_calls=10)
    # many short samples: their minimum is robust against other work on a shared machine
    return Settings(False, ns, [1, 2], repeats=args.repeats or 15, target_s=0.01, max_total_s=2.0,
                    memory_child=not args.no_memory_child, umat_nsteps=300, umat_npaths=10, umat_nrep=40,
                    callback_calls=300)


def _point(n: int, t: dict) -> dict:
    return dict(n=n, min_s_per_call=t["min_s"], median_s_per_call=t["median_s"],
                min_s_per_point=t["min_s"] / n, median_s_per_point=t["median_s"] / n,
                repeats=t["repeats"], inner=t["inner"], first_call_s=t["first_call_s"],
                cpu_min_s_per_point=t["cpu_min_s"] / n, cpu_median_s_per_point=t["cpu_median_s"] / n)


def _entry(model: str, path: str, threads: int) -> dict:
    kind, label = PATHS[path]
    return dict(model=model, path=path, kind=kind, label=label, threads=threads, available=True)


def _rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = np.maximum(np.abs(b).max(axis=0), 1e-300)
    return float(np.max(np.abs(a - b) / scale))


def measure_path(ctx: ModelContext, path: str, threads: int, st: Settings) -> dict:
    """The entry of one (model, path, threads), whatever the path's kind."""
    kind = PATHS[path][0]
    if kind == "flow":
        return measure_flow(ctx, path, threads, st)
    if kind == "j2":
        return measure_j2(ctx, path, threads, st)
    if kind == "callback":
        return measure_callback(ctx, path, st)
    return measure_umat_loop(ctx, st, path)


def measure_flow(ctx: ModelContext, path: str, threads: int, st: Settings, model_name: str | None = None) -> dict:
    e = _entry(model_name or ctx.name, path, threads)
    if path in ("compiled", "compiled_native") and threads > 1 and ctx.library is not None and not compiled_uses_openmp(ctx):
        e.update(available=False, reason=NO_OPENMP)
        return e
    try:
        ev = flow_evaluator(ctx, path, threads)
        x = subj.in_box_points(ctx.net, 1000)
        s, g = ev.evaluate(x)
        if path != "arrhenius_numpy":
            s_ref, g_ref = ctx.net.evaluate(x)
            e["check"] = dict(n=1000, max_rel_err_sigma=_rel_err(s, s_ref), max_rel_err_grad=_rel_err(g, g_ref),
                              reference="FlowNet.evaluate (numpy float64)")
        points = []
        for n in st.ns:
            xn = subj.in_box_points(ctx.net, n)
            if path in ("compiled", "compiled_native"):
                set_omp_threads(threads)
            t = time_call(lambda: ev.evaluate(xn), st.repeats, st.target_s, st.max_total_s)
            points.append(_point(n, t))
        e["points"] = points
        nmax = st.ns[-1]
        xn = subj.in_box_points(ctx.net, nmax)
        e["memory"] = dict(n=nmax, tracemalloc_peak_bytes_per_point=traced_peak_bytes(lambda: ev.evaluate(xn)) / nmax)
    except Exception as exc:
        e.update(available=False, reason=failure_reason(exc))
    return e


def measure_j2(ctx: ModelContext, path: str, threads: int, st: Settings) -> dict:
    e = _entry(ctx.name, path, threads)
    backend = "compiled" if path == "integrate_compiled" else "onnxruntime"
    if backend == "compiled" and threads > 1 and ctx.library is not None and not compiled_uses_openmp(ctx, "neumat_j2_batch"):
        e.update(available=False, reason=NO_OPENMP)
        return e
    try:
        runner = J2Runner(ctx, backend, threads)
        # check: the same update with the numpy FlowNet as flow law
        n = 1000
        res = runner.prepare(n)()
        ref_runner = J2Runner.__new__(J2Runner)
        ref_runner.__dict__.update(runner.__dict__, flow=ctx.net)
        ref = ref_runner.prepare(n)()
        e["check"] = dict(n=n, max_rel_err_stress=_rel_err(result_field(res, "stress"), result_field(ref, "stress")),
                          reference="integrate with FlowNet.evaluate (numpy float64) as flow law",
                          plastic_fraction=j2_plastic_fraction(res, n),
                          newton_flow_evaluations_per_point=float(np.mean(result_field(res, "iterations")))
                          if hasattr(res, "iterations") else None,
                          status_ok_fraction=float(np.mean(result_field(res, "status") == 0))
                          if hasattr(res, "status") else None)
        points = []
        for n in st.ns:
            call = runner.prepare(n)
            if backend == "compiled":
                set_omp_threads(threads)
            t = time_call(call, st.repeats, st.target_s, st.max_total_s)
            points.append(_point(n, t))
        e["points"] = points
        nmax = st.ns[-1]
        e["memory"] = dict(n=nmax, tracemalloc_peak_bytes_per_point=traced_peak_bytes(runner.prepare(nmax)) / nmax)
    except Exception as exc:
        e.update(available=False, reason=failure_reason(exc))
    return e


def measure_callback(ctx: ModelContext, path: str, st: Settings) -> dict:
    e = _entry(ctx.name, path, 1)
    try:
        if path == "umat_compiled_ctypes":
            loop = CallbackLoop(ctx, "compiled_umat", st.umat_nsteps)
            counting = None
        else:
            backend = "onnxruntime" if path.endswith("onnxruntime") else "compiled"
            loop = CallbackLoop(ctx, backend_for(ctx, backend, 1), st.umat_nsteps)
            counting = CountingFlow(backend_for(ctx, backend, 1))
            CallbackLoop(ctx, counting, st.umat_nsteps).run(min(st.callback_calls, st.umat_nsteps))
        ncalls = st.callback_calls
        info = loop.run(min(ncalls, st.umat_nsteps))            # warm-up, and a check
        ref = CallbackLoop(ctx, ctx.net, st.umat_nsteps).run(min(ncalls, st.umat_nsteps))
        wall, cpu = [], []
        for _ in range(st.repeats):
            c0, t0 = time.process_time(), time.perf_counter()
            r = loop.run(ncalls)
            wall.append((time.perf_counter() - t0) / ncalls)
            cpu.append((time.process_time() - c0) / ncalls)
        e["points"] = [dict(n=1, min_s_per_call=min(wall), median_s_per_call=statistics.median(wall),
                            min_s_per_point=min(wall), median_s_per_point=statistics.median(wall),
                            cpu_min_s_per_point=min(cpu), cpu_median_s_per_point=statistics.median(cpu),
                            repeats=st.repeats, inner=ncalls)]
        e["check"] = dict(plastic_fraction=r["plastic"] / ncalls, step_cuts=r["cuts"],
                          flow_evaluations_per_call=counting.calls / min(st.callback_calls, st.umat_nsteps)
                          if counting else None,
                          max_rel_err_stress=_rel_err(info["stress"], ref["stress"]),
                          reference="UmatMaterial with FlowNet.evaluate (numpy) along the same path")
        e["memory"] = dict(n=1, tracemalloc_peak_bytes_per_point=traced_peak_bytes(lambda: loop.run(1)))
    except Exception as exc:
        e.update(available=False, reason=failure_reason(exc))
    return e


def measure_umat_loop(ctx: ModelContext, st: Settings, path: str = "umat_fortran_loop") -> dict:
    e = _entry(ctx.name, path, 1)
    try:
        build = ctx.native if path.endswith("native") else ctx.library
        if build is None:
            raise RuntimeError(ctx.errors.get("compiled_native" if path.endswith("native") else "compiled",
                                              ctx.errors.get("onnx", "no compiled UMAT library")))
        exe = build_driver(library_path(build), ctx.workdir / "driver", source_path(build))
        r = run_driver(exe, ctx.net, st.umat_nsteps, st.umat_npaths, st.umat_nrep)
        r["timing"] = (f"{st.umat_nrep} repeats of {st.umat_npaths} loading paths × {st.umat_nsteps} calls; "
                       f"per call = repeat time / calls; min and median over the repeats")
        u = r["umat_call"]
        e["points"] = [dict(n=1, min_s_per_call=u["min_s"], median_s_per_call=u["median_s"],
                            min_s_per_point=u["min_s"], median_s_per_point=u["median_s"],
                            repeats=u["repeats"], inner=r["calls"])]
        e["fortran"] = r
        e["driver"] = "benchmarks/latency_umat.py (generated Fortran, gfortran -O2, linked to the built UMAT library)"
        e["memory"] = dict(note="no allocation per call (fixed-size locals); per-point memory not applicable")
        if not st.quick and path == "umat_fortran_loop":
            e["perf_umat"] = perf_profile(exe, ctx.net, 1, ctx.workdir)
            e["perf_batch"] = perf_profile(exe, ctx.net, 3, ctx.workdir)
        e["points"][0].update(cpu_min_s_per_point=r["umat_call_cpu_time"]["min_s"],
                              cpu_median_s_per_point=r["umat_call_cpu_time"]["median_s"])
    except Exception as exc:
        e.update(available=False, reason=failure_reason(exc))
    return e


# ---- peak RSS per point in fresh child processes (full mode) ----------------------------------
def memory_children(ctx: ModelContext, st: Settings, paths: list[dict]) -> None:
    """Add the peak-RSS rise per point at the largest N (``python -m benchmarks.latency_mem``) to
    the model's 1-thread flow and J2 entries."""
    n = st.ns[-1]
    for e in paths:
        if e["model"] != ctx.name or not e.get("available") or e["threads"] != 1 or e["kind"] not in ("flow", "j2"):
            continue
        spec = dict(model_json=str(ctx.model_json()), onnx=str(ctx.onnx_path) if ctx.onnx_path else None,
                    path=e["path"], n=n, name=ctx.name)
        try:
            res = subprocess.run([sys.executable, "-m", "benchmarks.latency_mem", json.dumps(spec)],
                                 capture_output=True, text=True, timeout=600, cwd=str(REPO))
            if res.returncode != 0:
                raise RuntimeError(res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"exit {res.returncode}")
            r = json.loads(res.stdout.strip().splitlines()[-1])
            e.setdefault("memory", {}).update(peak_rss_delta_bytes_per_point=r["delta_bytes"] / n,
                                              peak_rss_n=n, rss_before_bytes=r["baseline_bytes"])
        except Exception as exc:
            e.setdefault("memory", {})["peak_rss_error"] = failure_reason(exc)
