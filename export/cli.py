"""``neumat export RUN --out model.onnx``: the trained model as ONNX with σ and dσ/dx."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from constitutive.errors import NeumatInputError
from constitutive.flownet import FlowNet

from .contract import DEFAULT_OPSET, EMITTED_OPS, ModelInfo, read_model_info
from .onnx_export import export_onnx
from .runtime import open_session, run_session

VERIFY_POINTS = 2000
VERIFY_RTOL = 1e-12


def register(sub) -> None:
    p = sub.add_parser("export", help="export a trained model (run folder or model.json) to ONNX "
                                      "with flow stress (MPa) and its input derivatives",
                       description="Write a float64 ONNX graph x (N, F) → sigma (N,) in MPa and dsigma_dx (N, F) "
                                   "(MPa per unit of each input: strain, strain rate 1/s, temperature °C, extras), "
                                   "with the rate floor and box policy inside the graph and the metadata (feature "
                                   "names and units, training box, hashes) in the file; checks onnxruntime "
                                   "against the model on random in-box points.",
                       epilog="example:\n  neumat export runs/dz411 --out dz411.onnx")
    p.add_argument("run", help="run folder written by 'neumat train' (with model.json) or a model.json path")
    p.add_argument("--out", required=True, help="output .onnx path")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset (>= {DEFAULT_OPSET}, default {DEFAULT_OPSET})")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the check of onnxruntime against the model on random in-box points")
    p.set_defaults(func=run)


def _verify(net: FlowNet, info: ModelInfo, n: int = VERIFY_POINTS, seed: int = 0) -> tuple[float, float]:
    """Max relative difference of σ and of dσ/dx (onnxruntime vs FlowNet.evaluate) in the box."""
    rng = np.random.default_rng(seed)
    lo, hi = np.asarray(net.box_lo, float), np.asarray(net.box_hi, float)
    x = lo + rng.random((n, len(lo))) * (hi - lo)
    if lo[1] > 0:
        x[:, 1] = np.exp(np.log(lo[1]) + rng.random(n) * (np.log(hi[1]) - np.log(lo[1])))
    s_ref, g_ref = net.evaluate(x)
    s, g = run_session(open_session(info), np.ascontiguousarray(x, dtype=np.float64))
    ds = float(np.max(np.abs(s - s_ref) / np.maximum(np.abs(s_ref), 1e-300)))
    gscale = np.maximum(np.max(np.abs(g_ref), axis=0), 1e-300)
    dg = float(np.max(np.abs(g - g_ref) / gscale))
    return ds, dg


def run(args) -> int:
    src = Path(args.run)
    src_json = src / "model.json" if src.is_dir() else src
    net = FlowNet.load(src)                       # NeumatInputError for a missing/bad file
    if args.opset < DEFAULT_OPSET:
        raise NeumatInputError(f"--opset {args.opset}: must be >= {DEFAULT_OPSET}")
    out = Path(args.out)
    if out.suffix.lower() != ".onnx":
        raise NeumatInputError(f"--out {out}: expected a path ending in .onnx")
    try:
        export_onnx(net, out, opset=args.opset, source=str(src_json))
    except ValueError as exc:
        raise NeumatInputError(f"{src_json}: cannot export ({exc})") from None
    info = read_model_info(out)                   # the checks every consumer of the file makes
    used = info.op_types
    print(f"wrote {out} ({out.stat().st_size / 1024:.1f} KiB, opset {args.opset}, {len(info.model.graph.node)} nodes; "
          f"ops {', '.join(used)})")
    assert set(used) <= set(EMITTED_OPS)
    print("input  x (N, %d): %s" % (net.n_features, ", ".join(
        f"{n} [{u}] in [{lo:g}, {hi:g}]" for n, u, lo, hi in
        zip(net.feature_names, net.feature_units, net.box_lo, net.box_hi))))
    print(f"output sigma (N,) MPa, dsigma_dx (N, {net.n_features}); rate floor {net.rate_floor:g} 1/s, "
          f"box policy {net.box_policy}" + (f", hybrid base {net.base['mode']}" if net.base else ""))
    if not args.no_verify:
        ds, dg = _verify(net, info)
        print(f"verified on {VERIFY_POINTS} random in-box points: max relative difference "
              f"sigma {ds:.2e}, dsigma_dx {dg:.2e} (onnxruntime vs model.json)")
        if not (ds <= VERIFY_RTOL and dg <= 1e-10):
            print("error: the exported graph does not reproduce the model", flush=True)
            return 1
    return 0
