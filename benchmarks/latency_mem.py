"""Child process of ``neumat bench``: peak-RSS rise of one call of one path at N points.

Usage (internal): ``python -m benchmarks.latency_mem '<json spec>'``; prints one JSON line
``{"baseline_bytes": …, "delta_bytes": …}``. The inputs (and, for the J2 paths, the state
arrays) are allocated and the path is warmed up on 10 points before the baseline is read, so the
rise is what one call at N points adds at its peak (outputs and temporaries).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    from constitutive.flownet import FlowNet

    from . import latency as L
    from . import latency_models as lm
    from .latency_timing import maxrss_bytes
    net = FlowNet.load(spec["model_json"])
    ctx = L.ModelContext(spec["name"], net, "", "", Path(spec["model_json"]).parent,
                         onnx_path=Path(spec["onnx"]) if spec["onnx"] else None)
    if spec["path"] in ("compiled", "integrate_compiled"):
        from fortran_umat.build import build_umat
        ctx.library = build_umat(ctx.onnx_path)
    n, path = int(spec["n"]), spec["path"]
    if L.PATHS[path][0] == "flow":
        ev = L.flow_evaluator(ctx, path, 1)
        ev.evaluate(lm.in_box_points(net, 10))
        x = lm.in_box_points(net, n)
        call = lambda: ev.evaluate(x)
    else:
        runner = L.J2Runner(ctx, "compiled" if path == "integrate_compiled" else "onnxruntime", 1)
        runner.prepare(10)()
        call = runner.prepare(n)
    base = maxrss_bytes()
    out = call()
    delta = maxrss_bytes() - base
    del out
    print(json.dumps(dict(baseline_bytes=base, delta_bytes=delta)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
