"""The latency goals (issue 6) and how a measured latency document is read against them.

``GOALS``: seconds per call or per point a path should reach; ``evaluate_goals`` gives one row
per (model, goal) with the best measured figure and the verdict, plus the flatness rows (cost per
point within 2× from N = 10³ to 10⁶). ``entries`` and ``point_at`` look up measured entries and
are shared by the profiles and the README text.
"""
from __future__ import annotations

import numpy as np

from .latency_paths import ARRHENIUS_MODEL

GOALS = [
    # key, text, target (s)
    ("umat", "UMAT call, plastic, Newton included (Fortran driver)", 1e-6),
    ("compiled_batch", "compiled batch σ + dσ/dx per point, N >= 10⁴ (worst N)", 50e-9),
    ("onnx_batch", "onnxruntime batch σ + dσ/dx per point at N = 10⁵", 150e-9),
    ("integrate_compiled", "integrate J2, compiled backend, per point-step at N = 10⁵", 0.5e-6),
    ("callback", "single-point Python UMAT callback, per call", 10e-6),
]
FLAT_RANGE = (10**3, 10**6)


def entries(paths: list[dict], model: str, path: str, threads: int | None = None) -> list[dict]:
    """The available entries of ``path`` for ``model`` (with ``threads`` threads, or any)."""
    return [p for p in paths if p["model"] == model and p["path"] == path and p.get("available")
            and (threads is None or p["threads"] == threads)]


def point_at(entry: dict, n: int) -> dict | None:
    """The measured point of ``entry`` at batch size ``n``, None when not measured."""
    for pt in entry.get("points", []):
        if pt["n"] == n:
            return pt
    return None


def _goal_value(paths: list[dict], model: str, key: str) -> tuple[float, float, str, float | None] | None:
    """(min, median, where, CPU min) seconds for a goal: the best thread count for batch goals."""
    best = None

    def consider(vmin, vmed, where, cpu=None):
        nonlocal best
        if best is None or vmin < best[0]:
            best = (vmin, vmed, where, cpu)

    if key in ("umat", "callback"):
        for e in entries(paths, model, "umat_fortran_loop" if key == "umat" else "umat_python_callback"):
            p = e["points"][0]
            consider(p["min_s_per_point"], p["median_s_per_point"], "per call", p.get("cpu_min_s_per_point"))
    elif key == "compiled_batch":
        for e in entries(paths, model, "compiled"):
            pts = [p for p in e["points"] if p["n"] >= 10**4]
            if pts:
                w = max(pts, key=lambda p: p["min_s_per_point"])
                consider(w["min_s_per_point"], w["median_s_per_point"], f"{e['threads']} thread(s), worst N = {w['n']:.0e}",
                         w.get("cpu_min_s_per_point"))
    elif key in ("onnx_batch", "integrate_compiled"):
        path = "onnxruntime" if key == "onnx_batch" else "integrate_compiled"
        for e in entries(paths, model, path):
            p = point_at(e, 10**5)
            if p:
                consider(p["min_s_per_point"], p["median_s_per_point"], f"{e['threads']} thread(s)",
                         p.get("cpu_min_s_per_point"))
    return best


def evaluate_goals(paths: list[dict], models: list[str], profiles: dict) -> list[dict]:
    rows = []
    for model in models:
        for key, text, target in GOALS:
            v = _goal_value(paths, model, key)
            row = dict(goal=key, text=text, model=model, target_s=target)
            if v is None:
                row.update(reached=None, note="not measured (path unavailable or N not reached in this mode)")
            else:
                row.update(min_s=v[0], median_s=v[1], where=v[2], cpu_min_s=v[3], reached=bool(v[0] <= target))
                if not row["reached"]:
                    row["time_goes"] = profiles.get(model, {}).get(key, {}).get("summary", "")
            rows.append(row)
        # flatness of cost per point over N = 10³ … 10⁶, threads 1, every batch path
        for e in paths:
            if e["model"] != model or not e.get("available") or e["kind"] not in ("flow", "j2") or e["threads"] != 1:
                continue
            pts = [p for p in e["points"] if FLAT_RANGE[0] <= p["n"] <= FLAT_RANGE[1]]
            row = dict(goal="flat", text=f"cost per point flat within 2× from N = 10³ to 10⁶: {e['path']}",
                       model=model, path=e["path"], target_ratio=2.0)
            if len(pts) < 2 or pts[-1]["n"] < FLAT_RANGE[1]:
                row.update(reached=None, note="N = 10⁶ not measured in this mode")
            else:
                v = [p["min_s_per_point"] for p in pts]
                row.update(ratio=max(v) / min(v), reached=bool(max(v) / min(v) <= 2.0),
                           n_of_max=pts[int(np.argmax(v))]["n"], n_of_min=pts[int(np.argmin(v))]["n"])
            rows.append(row)
    # Arrhenius baseline flatness
    for e in entries(paths, ARRHENIUS_MODEL, "arrhenius_numpy", 1):
        pts = [p for p in e["points"] if FLAT_RANGE[0] <= p["n"] <= FLAT_RANGE[1]]
        if len(pts) >= 2 and pts[-1]["n"] >= FLAT_RANGE[1]:
            v = [p["min_s_per_point"] for p in pts]
            rows.append(dict(goal="flat", text="cost per point flat within 2× from N = 10³ to 10⁶: arrhenius_numpy",
                             model=ARRHENIUS_MODEL, path="arrhenius_numpy", target_ratio=2.0,
                             ratio=max(v) / min(v), reached=bool(max(v) / min(v) <= 2.0)))
    return rows
