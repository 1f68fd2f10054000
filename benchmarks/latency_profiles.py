"""Where the time of each latency goal goes: per path, the fixed cost per call and the marginal
cost per point, cProfile of the Python paths, onnxruntime's own profiler per operator type, perf
samples of the Fortran driver, and the comparison with the benchmark's reference kernels. Each
profile carries a one-line ``summary`` that the README prints beside a missed goal.
"""
from __future__ import annotations

import cProfile
import json
import pstats
import time
from pathlib import Path

import onnx
import onnxruntime as ort

from . import latency_subjects as subj
from .latency_goals import entries, point_at
from .latency_measure import Settings
from .latency_paths import CallbackLoop, CountingFlow, J2Runner, ModelContext, backend_for, failure_reason
from .latency_refkernel import time_in_fortran
from .latency_report import fmt_time
from .latency_timing import time_call


def _cprofile(fn, top: int = 10) -> dict:
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.runcall(fn)
    total = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    rows = []
    for (file, line, name), (cc, nc, tt, ct, _) in stats.stats.items():
        where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if file != "~" else "builtin"
        rows.append(dict(function=name, where=where, calls=nc, tottime_s=tt, cumtime_s=ct))
    total_tt = sum(r["tottime_s"] for r in rows) or 1.0
    rows.sort(key=lambda r: -r["tottime_s"])
    for r in rows:
        r["share"] = r["tottime_s"] / total_tt
    return dict(tool="cProfile (own time per function; the profiler inflates Python-call costs)",
                wall_s=total, top=rows[:top])


def _fit_overhead(entry: dict) -> dict | None:
    """Fixed cost per call (N = 1) and marginal cost per point (slope between the two largest N)."""
    pts = entry.get("points", [])
    if len(pts) < 3:
        return None
    p1, pa, pb = pts[0], pts[-2], pts[-1]
    slope = (pb["min_s_per_call"] - pa["min_s_per_call"]) / (pb["n"] - pa["n"])
    return dict(per_call_s=p1["min_s_per_call"], marginal_per_point_s=slope, between_n=[pa["n"], pb["n"]])


def _top_text(prof: dict | None, k: int = 4, key: str = "symbol") -> str:
    if not prof or not prof.get("top"):
        return ""
    return ", ".join(f"{r[key] if key in r else r['function']} {100 * r['share']:.0f} %" for r in prof["top"][:k])


def profile_onnx(ctx: ModelContext, st: Settings, paths: list[dict]) -> dict:
    out: dict = {}
    e = next(iter(entries(paths, ctx.name, "onnxruntime", 1)), None)
    if e:
        out["overhead"] = _fit_overhead(e)
    backend = backend_for(ctx, "onnxruntime", 1)
    x1 = subj.in_box_points(ctx.net, 1)
    raw = time_call(lambda: backend.session.run(None, {"x": x1}), st.repeats, st.target_s, st.max_total_s)
    out["session_run_n1_s"] = raw["min_s"]
    model = onnx.load(str(ctx.onnx_path))
    out["graph_nodes"] = len(model.graph.node)
    # onnxruntime's own profiler: time per node type at a large N
    n = min(10**5, st.ns[-1])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.enable_profiling = True
    so.profile_file_prefix = str(ctx.workdir / "ort_profile")
    sess = ort.InferenceSession(str(ctx.onnx_path), so, providers=["CPUExecutionProvider"])
    xn = subj.in_box_points(ctx.net, n)
    for _ in range(3 if st.quick else 5):
        sess.run(None, {"x": xn})
    trace = json.loads(Path(sess.end_profiling()).read_text())
    by_op: dict = {}
    total = 0.0
    for ev in trace:
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
            op = ev.get("args", {}).get("op_name", "?")
            by_op[op] = by_op.get(op, 0.0) + ev["dur"]
            total += ev["dur"]
    rows = sorted(({"op": k, "share": v / total} for k, v in by_op.items()), key=lambda r: -r["share"]) if total else []
    out["node_profile"] = dict(tool="onnxruntime profiler (kernel time per operator type)", n=n, top=rows[:8])
    parts = []
    if out.get("overhead"):
        o = out["overhead"]
        parts.append(f"{fmt_time(o['per_call_s'])} per call at N = 1 ({out['graph_nodes']} graph nodes; "
                     f"session.run alone {fmt_time(out['session_run_n1_s'])}), then {fmt_time(o['marginal_per_point_s'])} "
                     f"per extra point")
    if rows:
        parts.append(f"at N = {n:.0e} kernel time by operator: " + ", ".join(f"{r['op']} {100 * r['share']:.0f} %" for r in rows[:5]))
    out["summary"] = "; ".join(parts)
    return out


def profile_compiled(ctx: ModelContext, st: Settings, paths: list[dict], umat: dict | None) -> dict:
    out: dict = {}
    e = next(iter(entries(paths, ctx.name, "compiled", 1)), None)
    if e:
        out["overhead"] = _fit_overhead(e)
    fortran = (umat or {}).get("fortran", {})
    if fortran:
        out["fortran_kernel_n1_s"] = fortran["flow_kernel_n1"]["min_s"]
        out["fortran_kernel_batch_per_point_s"] = fortran["flow_kernel_batch"]["min_s"]
    if umat and umat.get("perf_batch"):
        out["perf"] = umat["perf_batch"]
    if ctx.ref_lib is not None:
        out["reference_kernel_fortran"] = time_in_fortran(ctx.ref_lib.parent, ctx.net, ncalls=20_000 if st.quick else 50_000,
                                                          nrep=5 if st.quick else 40)
    parts = []
    if "fortran_kernel_batch_per_point_s" in out:
        parts.append(f"the Fortran kernel itself costs {fmt_time(out['fortran_kernel_batch_per_point_s'])} per point "
                     f"(batch of 1000 from Fortran, no Python)")
    if out.get("overhead"):
        parts.append(f"ctypes + wrapper: {fmt_time(out['overhead']['per_call_s'])} per call at N = 1")
    if out.get("perf"):
        parts.append("samples: " + _top_text(out["perf"], 5))
    for e in entries(paths, ctx.name, "compiled_native", 1):
        p = point_at(e, 10**5) or e["points"][-1]
        out["native_per_point_s"] = p["min_s_per_point"]
        parts.append(f"the same generated code with -march=native: {fmt_time(p['min_s_per_point'])} per point at "
                     f"N = {p['n']:.0e}")
    e1 = next(iter(entries(paths, ctx.name, "compiled", 1)), None)
    if e1 and e1["points"][0]["n"] == 1:
        parts.append(f"N = 1 through ctypes costs {fmt_time(e1['points'][0]['min_s_per_call'])} (a one-point call "
                     f"pads to a whole block of points)" if e1["points"][0]["min_s_per_call"] > 20e-6 else
                     f"N = 1 through ctypes costs {fmt_time(e1['points'][0]['min_s_per_call'])}")
    for e in entries(paths, ctx.name, "reference_kernel_simd", 1):
        p = point_at(e, 10**5) or e["points"][-1]
        out["reference_simd_per_point_s"] = p["min_s_per_point"]
        parts.append(f"the benchmark's blocked SIMD reference kernel (32 points per block, -march=native) reaches "
                     f"{fmt_time(p['min_s_per_point'])} per point at N = {p['n']:.0e} through ctypes")
    ref = out.get("reference_kernel_fortran")
    if ref and "fortran_kernel_batch_per_point_s" in out:
        parts.append(f"the benchmark's straight-line reference kernel of the same network, same flags: "
                     f"{fmt_time(ref['batch']['min_s'])} per point in a batch, {fmt_time(ref['n1']['min_s'])} per single call "
                     f"(generated kernel {fmt_time(out['fortran_kernel_batch_per_point_s'])} / "
                     f"{fmt_time(out.get('fortran_kernel_n1_s'))})")
    out["summary"] = "; ".join(parts)
    return out


def profile_integrate(ctx: ModelContext, st: Settings) -> dict:
    n = min(10**5, st.ns[-1])
    runner = J2Runner(ctx, "compiled", 1)
    counting = CountingFlow(runner.flow)
    runner.flow = counting
    call = runner.prepare(n)
    call()
    evals, pts = counting.calls, counting.points
    runner.flow = counting.inner
    prof = _cprofile(runner.prepare(n))
    out = dict(n=n, flow_evaluations_per_call=evals, flow_points_per_call=pts, cprofile=prof)
    out["summary"] = (f"at N = {n:.0e}: {evals} backend calls on {pts / n:.1f} points per point-step; "
                      f"own time: " + ", ".join(f"{r['function']} ({r['where']}) {100 * r['share']:.0f} %"
                                                for r in prof["top"][:5]))
    return out


def profile_callback(ctx: ModelContext, st: Settings) -> dict:
    loop = CallbackLoop(ctx, backend_for(ctx, "compiled", 1), st.umat_nsteps)
    ncalls = min(st.callback_calls, 1000)
    loop.run(3)
    prof = _cprofile(lambda: loop.run(ncalls))
    out = dict(calls=ncalls, cprofile=prof)
    out["summary"] = (f"{fmt_time(prof['wall_s'] / ncalls)} per call under cProfile; own time: "
                      + ", ".join(f"{r['function']} ({r['where']}) {100 * r['share']:.0f} %" for r in prof["top"][:6]))
    return out


def profile_umat(ctx: ModelContext, st: Settings, umat: dict | None, compiled_prof: dict | None = None,
                 paths_all: list | None = None) -> dict:
    paths_all = paths_all or []
    if not umat or not umat.get("available"):
        return dict(summary="", error="UMAT loop unavailable")
    f = umat["fortran"]
    out = dict(newton_iterations_per_call=f.get("newton_iterations_per_call"),
               flow_kernel_n1_s=f["flow_kernel_n1"]["min_s"], umat_call_s=f["umat_call"]["min_s"])
    parts = []
    if f.get("newton_iterations_per_call") is not None:
        # nm_j2_update counts the yield check as Newton iteration 1: iterations = flow evaluations
        evals = f["newton_iterations_per_call"]
        share = evals * f["flow_kernel_n1"]["min_s"] / f["umat_call"]["min_s"]
        out.update(flow_evaluations_per_call=evals, flow_share_estimate=share)
        parts.append(f"{evals:.2f} flow evaluations per call (the warm-start guess or the yield check included) × "
                     f"{fmt_time(f['flow_kernel_n1']['min_s'])} per one-point kernel call ≈ {100 * min(share, 1):.0f} % of the call")
        ref = (compiled_prof or {}).get("reference_kernel_fortran")
        if ref:
            rest = max(f["umat_call"]["min_s"] - evals * f["flow_kernel_n1"]["min_s"], 0.0)
            est = rest + evals * ref["n1"]["min_s"]
            out.update(estimate_with_reference_kernel_s=est, rest_of_call_s=rest)
            parts.append(f"with the reference scalar kernel instead: {fmt_time(rest)} (rest of the call) + "
                         f"{evals:.2f} × {fmt_time(ref['n1']['min_s'])} ≈ {fmt_time(est)}")
    for e in entries(paths_all, ctx.name, "umat_fortran_loop_native"):
        out["umat_native_s"] = e["points"][0]["min_s_per_point"]
        parts.append(f"same UMAT compiled with -march=native: {fmt_time(out['umat_native_s'])} per call")
    if umat.get("perf_umat"):
        out["perf"] = umat["perf_umat"]
        parts.append("samples: " + _top_text(umat["perf_umat"], 5))
    out["summary"] = "; ".join(parts)
    return out


def profile_model(ctx: ModelContext, st: Settings, paths: list[dict]) -> dict:
    umat = next(iter(entries(paths, ctx.name, "umat_fortran_loop")), None)
    out: dict = {}
    jobs = {"onnx_batch": lambda: profile_onnx(ctx, st, paths),
            "compiled_batch": lambda: profile_compiled(ctx, st, paths, umat),
            "integrate_compiled": lambda: profile_integrate(ctx, st),
            "callback": lambda: profile_callback(ctx, st),
            "umat": lambda: profile_umat(ctx, st, umat, out.get("compiled_batch"), paths)}
    for key, job in jobs.items():
        try:
            out[key] = job()
        except Exception as exc:
            out[key] = dict(error=failure_reason(exc), summary="")
    return out

