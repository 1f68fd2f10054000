"""The Fortran generated from the ONNX file: flow stress against onnxruntime, the UMAT against the
Python bridge, thread safety under OpenMP, failure behaviour, the translator's refusals, the CLI.

All builds go to a session-wide temporary NEUMAT_CACHE (each model compiled once per session)."""
from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from constitutive.errors import NeumatInputError
from fem_bridge import conventions as cv
from helpers import in_box_points, random_flownet

pytestmark = pytest.mark.skipif(shutil.which("gfortran") is None, reason="gfortran not installed")

ARRHENIUS = dict(alpha=[0.012, 0.004], n=[5.0, -1.0], Q=[4.0e5, 2.0e4], lnA=[33.0, 1.0, -0.5],
                 strain_min=0.05, strain_max=0.6)
VARIANTS = {
    "elu-residual": dict(activation="elu"),
    "tanh-plain-1extra": dict(activation="tanh", residual=False, n_extras=1),
    "sigmoid-2extras-extrapolate": dict(activation="sigmoid", n_extras=2, box_policy="extrapolate"),
    "softplus-1extra": dict(activation="softplus", n_extras=1),
    "relu": dict(activation="relu"),
    "leaky_relu": dict(activation="leaky_relu", residual=False),
    "hybrid-additive": dict(activation="elu", n_extras=1, base=dict(mode="additive", arrhenius=ARRHENIUS)),
    "hybrid-multiplicative": dict(activation="tanh", base=dict(mode="multiplicative", arrhenius=ARRHENIUS)),
}


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("neumat_cache")
    old = os.environ.get("NEUMAT_CACHE")
    os.environ["NEUMAT_CACHE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("NEUMAT_CACHE", None)
    else:
        os.environ["NEUMAT_CACHE"] = old


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """name -> (FlowNet, path of its ONNX export)."""
    from export.onnx_export import export_onnx
    d = tmp_path_factory.mktemp("onnx")
    out = {}
    for i, (name, kw) in enumerate(VARIANTS.items()):
        net = random_flownet(seed=10 + i, **kw)
        out[name] = (net, export_onnx(net, d / f"{name}.onnx"))
    return out


def _points(net, n, seed):
    """n in-box points plus a tail outside the box (below the rate floor, T and strain beyond)."""
    x = in_box_points(net, n, seed=seed)
    rng = np.random.default_rng(seed + 100)
    k = n // 50
    xo = in_box_points(net, k, seed=seed + 1)
    lo, hi = np.asarray(net.box_lo), np.asarray(net.box_hi)
    xo[:, 1] = np.where(rng.random(k) < 0.5, net.rate_floor * rng.random(k), hi[1] * (1 + rng.random(k)))
    xo[:, 2] += (hi[2] - lo[2]) * rng.uniform(-0.3, 0.3, k)
    xo[:, 0] = rng.uniform(0.0, 1.2 * hi[0], k)
    return np.vstack([x, xo])


# ---- flow stress: generated Fortran == onnxruntime ------------------------------------------

@pytest.mark.parametrize("name", list(VARIANTS))
def test_flow_matches_onnxruntime(name, models, cache):
    from fem_bridge.backends import OnnxBackend, load_backend
    net, path = models[name]
    ref = OnnxBackend(path)
    comp = load_backend(path, kind="compiled")
    for attr in ("feature_names", "rate_floor", "box_policy", "n_features", "n_extras"):
        assert getattr(comp, attr) == getattr(ref, attr), attr
    np.testing.assert_array_equal(comp.box_lo, ref.box_lo)
    np.testing.assert_array_equal(comp.box_hi, ref.box_hi)
    x = _points(net, 100_000, seed=3)
    s, d = comp.evaluate(x)
    rs, rd = ref.evaluate(x)
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(d))
    assert np.max(np.abs(s - rs) / np.abs(rs)) <= 1e-12
    # derivatives: relative to the row's largest derivative (single components can be 0)
    scale = np.max(np.abs(rd), axis=1)
    err = np.max(np.abs(d - rd), axis=1)
    assert np.max(np.where(scale > 0, err / np.where(scale > 0, scale, 1.0), err)) <= 1e-12
    # and the policy's zero derivatives (clamped inputs, rate below the floor) are exact zeros
    np.testing.assert_array_equal(d == 0.0, rd == 0.0)
    np.testing.assert_array_equal(comp.out_of_box(x), ref.out_of_box(x))


def test_compiled_backend_rejects_bad_shapes(models, cache):
    from fortran_umat.compiled import CompiledBackend
    comp = CompiledBackend(models["elu-residual"][1])
    with pytest.raises(NeumatInputError, match="expected"):
        comp.evaluate(np.zeros((4, 5)))
    s, d = comp.evaluate(np.zeros((0, 3)))
    assert s.shape == (0,) and d.shape == (0, 3)


# ---- the translator beyond the exporter's op set, and its refusals ----------------------------

def _graph_model(nodes, inits, f=3, meta=True):
    g = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", f])],
        [helper.make_tensor_value_info("sigma", TensorProto.DOUBLE, ["N"]),
         helper.make_tensor_value_info("dsigma_dx", TensorProto.DOUBLE, ["N", f])],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    if meta:
        helper.set_model_props(m, {"neumat.feature_names": '["strain", "strain_rate", "temperature"]',
                                   "neumat.box_lo": "[0.0, 0.001, 1000.0]",
                                   "neumat.box_hi": "[1.0, 10.0, 1200.0]",
                                   "neumat.rate_floor": "0.0001", "neumat.box_policy": '"clamp"'})
    return m


def test_translator_general_ops_match_onnxruntime(tmp_path, cache):
    """Gemm (transB), Transpose, Sigmoid/Relu/LeakyRelu nodes, ReduceSum, Gather, Squeeze,
    Unsqueeze, Clip, Expand, Cast, Split — all against onnxruntime."""
    import onnxruntime as ort
    from fortran_umat.compiled import CompiledBackend
    rng = np.random.default_rng(0)
    W1, b1, W2 = rng.normal(size=(5, 3)), rng.normal(size=5), rng.normal(size=(5, 4))
    n = helper.make_node
    nodes = [
        n("Div", ["x", "scale"], ["xs"]),
        n("Clip", ["xs", "lo", "hi"], ["xc"]),
        n("Gemm", ["xc", "W1", "b1"], ["h1"], transB=1, alpha=0.7, beta=1.3),
        n("Sigmoid", ["h1"], ["a1"]), n("Relu", ["h1"], ["a2"]), n("LeakyRelu", ["h1"], ["a3"], alpha=0.3),
        n("Concat", ["a1", "a2", "a3"], ["a"], axis=0),                 # (3, 5)
        n("Transpose", ["a"], ["at"], perm=[1, 0]),                      # (5, 3)
        n("MatMul", ["a", "W2"], ["h2"]),                                # (3, 4)
        n("ReduceSum", ["h2", "ax0"], ["r"], keepdims=0),                # (4,)
        n("Gather", ["r", "idx"], ["rg"], axis=0),                       # (3,)
        n("Unsqueeze", ["rg", "ax0"], ["ru"]),                           # (1, 3)
        n("Split", ["at", "spl"], ["s1", "s2"], axis=0),                 # (2, 3), (3, 3)
        n("ReduceMax", ["s2"], ["m2"], axes=[0], keepdims=1),            # (1, 3)
        n("Greater", ["m2", "ru"], ["gt"]), n("Cast", ["gt"], ["gtf"], to=TensorProto.DOUBLE),
        n("Mul", ["ru", "gtf"], ["q0"]), n("Add", ["q0", "m2"], ["q1"]),
        n("Tanh", ["q1"], ["q2"]), n("Exp", ["q2"], ["dsigma_dx"]),
        n("ReduceMean", ["q1"], ["qm"], axes=[1], keepdims=1),
        n("Squeeze", ["qm", "ax1"], ["sq"]),
        n("Expand", ["sq", "shp"], ["sigma"]),
    ]
    inits = dict(scale=np.array([1.0, 2.0, 300.0]), lo=np.array(-2.0), hi=np.array(4.5), W1=W1, b1=b1,
                 W2=W2, ax0=np.array([0], dtype=np.int64), ax1=np.array([1], dtype=np.int64),
                 idx=np.array([3, 0, 2], dtype=np.int64), spl=np.array([2, 3], dtype=np.int64),
                 shp=np.array([1], dtype=np.int64))
    m = _graph_model(nodes, inits)
    onnx.checker.check_model(m, full_check=True)
    p = tmp_path / "general.onnx"
    onnx.save(m, str(p))
    comp = CompiledBackend(p)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(str(p), so)
    x = rng.uniform([0, 0, 900], [1.5, 12, 1300], size=(500, 3))
    rs = np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(200)])
    rd = np.concatenate([sess.run(None, {"x": x[i:i + 1]})[1] for i in range(200)])
    s, d = comp.evaluate(x[:200])
    np.testing.assert_allclose(s, rs, rtol=1e-13, atol=0)
    np.testing.assert_allclose(d, rd, rtol=1e-13, atol=0)


@pytest.mark.parametrize("op", ["Einsum", "LSTM"])
def test_translator_refuses_unsupported_op(op, tmp_path, cache):
    from fortran_umat.translate import translate
    node = (helper.make_node("Einsum", ["x", "x"], ["y"], name="my_einsum", equation="ni,ni->ni")
            if op == "Einsum" else helper.make_node("LSTM", ["x3", "w", "r"], ["y"], name="my_lstm", hidden_size=1))
    nodes = [helper.make_node("Unsqueeze", ["x", "ax"], ["x3"]), node] if op == "LSTM" else [node]
    nodes += [helper.make_node("Identity", ["x"], ["dsigma_dx"]),
              helper.make_node("ReduceSum", ["x", "ax1"], ["sigma"], keepdims=0)]
    m = _graph_model(nodes, dict(ax=np.array([0], dtype=np.int64), ax1=np.array([1], dtype=np.int64),
                                 w=np.ones((1, 4, 3)), r=np.ones((1, 4, 1))))
    p = tmp_path / "bad.onnx"
    onnx.save(m, str(p))
    with pytest.raises(NeumatInputError, match=f"operator '{op}'.*node 'my_{op.lower()}'"):
        translate(p)


def test_translator_rejects_non_onnx_and_missing_metadata(tmp_path, cache):
    from fortran_umat.translate import translate
    bad = tmp_path / "bad.onnx"
    bad.write_text("this is not onnx")
    with pytest.raises(NeumatInputError, match="not an ONNX model"):
        translate(bad)
    with pytest.raises(NeumatInputError, match="not found"):
        translate(tmp_path / "missing.onnx")
    m = _graph_model([helper.make_node("Identity", ["x"], ["dsigma_dx"]),
                      helper.make_node("ReduceSum", ["x", "ax"], ["sigma"], keepdims=0)],
                     dict(ax=np.array([1], dtype=np.int64)), meta=False)
    p = tmp_path / "nometa.onnx"
    onnx.save(m, str(p))
    with pytest.raises(NeumatInputError, match="box"):
        translate(p)


# ---- the library itself ------------------------------------------------------------------------

def test_build_cached_name_and_no_static_data(models, cache, tmp_path):
    from fortran_umat.build import build_umat
    _, path = models["tanh-plain-1extra"]
    r1 = build_umat(path)
    mtime = r1.library.stat().st_mtime_ns
    r2 = build_umat(path)
    assert r2.library == r1.library and r2.library.stat().st_mtime_ns == mtime     # cache hit
    assert r1.name.isalnum() and r1.name.isupper() and r1.library.name == f"lib{r1.name}.so"
    assert r1.library.parent.parent == cache / "umat"
    assert r1.nstatv == cv.NSTATV and r1.nprops == cv.N_FIXED_PROPS + 1
    assert f"*MATERIAL, NAME=@ABAQUS_{r1.name}" in r1.snippet and "*DEPVAR\n9" in r1.snippet
    # module-level or SAVEd mutable data would show up as .data/.bss symbols of our code
    nm = subprocess.run(["nm", "--defined-only", str(r1.library)], capture_output=True, text=True).stdout
    mutable = [ln for ln in nm.splitlines() if ln.split()[1:2] and ln.split()[1] in "bBdD"
               and ("neumat" in ln.lower() or "umat" in ln.lower())]
    assert not mutable, mutable
    syms = subprocess.run(["nm", "-D", "--defined-only", str(r1.library)], capture_output=True, text=True).stdout
    assert " umat_" in syms and " neumat_flow_batch" in syms
    # the written source is standard Fortran 2008
    proc = subprocess.run(["gfortran", "-std=f2008", "-fsyntax-only", f"-J{tmp_path}", str(r1.source)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_cli_umat(models, cache, tmp_path, capsys):
    from constitutive.cli import main
    _, path = models["tanh-plain-1extra"]
    out = tmp_path / "umat"
    assert main(["umat", str(path), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    libs = list(out.glob("libNEUMAT*.so"))
    assert len(libs) == 1 and list(out.glob("*.f90")) and (out / "material.inp").is_file()
    assert str(libs[0]) in text and "LD_LIBRARY_PATH" in text and "*USER MATERIAL, CONSTANTS=5" in text
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"\x00garbage")
    assert main(["umat", str(bad), "--out", str(out)]) == 2
    assert "not an ONNX model" in capsys.readouterr().err
