"""Child process of ``neumat bench``: peak-RSS rise of one call of one path at N points.

Usage (internal): ``python -m benchmarks.latency_mem '<json spec>'``; prints one JSON line
``{"baseline_bytes": …, "delta_bytes": …}``. The inputs (and, for the J2 paths, the state
arrays) are allocated and the path is warmed up on 10 points; then the kernel's peak-RSS mark is
reset (``/proc/self/clear_refs``), so the rise of VmHWM over the resident size before the call
is what one call at N points adds at its peak (outputs and temporaries, native ones included).
(``ru_maxrss`` is not used: Linux carries it over from the parent process across exec.)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from constitutive.flownet import FlowNet
from fortran_umat.build import build_umat

from . import latency_paths as L
from . import latency_subjects as subj
from .latency_refkernel import build_reference
from .latency_timing import peak_rss_bytes, reset_peak_rss, rss_bytes


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    net = FlowNet.load(spec["model_json"])
    ctx = L.ModelContext(spec["name"], net, "", "", Path(spec["model_json"]).parent,
                         onnx_path=Path(spec["onnx"]) if spec["onnx"] else None)
    if spec["path"] in ("compiled", "integrate_compiled", "compiled_native"):
        ctx.library = build_umat(ctx.onnx_path)
        if spec["path"] == "compiled_native":
            ctx.native = L.native_variant(ctx.library)
    if spec["path"].startswith("reference_kernel"):
        ctx.ref_lib = build_reference(net)
    n, path = int(spec["n"]), spec["path"]
    if L.PATHS[path][0] == "flow":
        ev = L.flow_evaluator(ctx, path, 1)
        ev.evaluate(subj.in_box_points(net, 10))
        x = subj.in_box_points(net, n)
        call = lambda: ev.evaluate(x)
    else:
        runner = L.J2Runner(ctx, "compiled" if path == "integrate_compiled" else "onnxruntime", 1)
        runner.prepare(10)()
        call = runner.prepare(n)
    if not reset_peak_rss():
        raise RuntimeError("cannot reset the peak-RSS mark (/proc/self/clear_refs)")
    base = rss_bytes()
    out = call()
    delta = peak_rss_bytes() - base
    del out
    print(json.dumps(dict(baseline_bytes=base, delta_bytes=delta)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
