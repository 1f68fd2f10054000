"""The Fortran generated from the ONNX file: flow stress against onnxruntime, the UMAT against the
Python bridge, thread safety under OpenMP, failure behaviour, the translator's refusals, the CLI.

All builds go to a session-wide temporary NEUMAT_CACHE (each model compiled once per session)."""
from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from constitutive.errors import NeumatInputError
from fem_bridge import conventions as cv
from helpers import GAP_TEMPS, gap_flownet, in_box_points, random_flownet

pytestmark = pytest.mark.skipif(shutil.which("gfortran") is None, reason="gfortran not installed")

ARRHENIUS = dict(alpha=[0.012, 0.004], n=[5.0, -1.0], Q=[4.0e5, 2.0e4], lnA=[33.0, 1.0, -0.5],
                 strain_min=0.05, strain_max=0.6)
VARIANTS = {          # together: every activation, residual or not, 0-2 extras, both policies and bases
    "elu-residual": dict(activation="elu"),
    "tanh-plain-1extra": dict(activation="tanh", residual=False, n_extras=1),
    "sigmoid-2extras-extrapolate": dict(activation="sigmoid", n_extras=2, box_policy="extrapolate"),
    "leaky_relu": dict(activation="leaky_relu", residual=False),
    "softplus-hybrid-additive": dict(activation="softplus", n_extras=1,
                                     base=dict(mode="additive", arrhenius=ARRHENIUS)),
    "relu-hybrid-multiplicative": dict(activation="relu", base=dict(mode="multiplicative", arrhenius=ARRHENIUS)),
}


@pytest.fixture(scope="session")
def _cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("neumat_cache")


@pytest.fixture
def cache(_cache_root, monkeypatch):
    """NEUMAT_CACHE pointing at one folder for the whole session, set only while a test of
    this file runs (other test files keep their own cache, e.g. the ccx build)."""
    monkeypatch.setenv("NEUMAT_CACHE", str(_cache_root))
    return _cache_root


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """name -> (FlowNet, path of its ONNX export)."""
    from export.onnx_export import export_onnx
    d = tmp_path_factory.mktemp("onnx")
    out = {}
    for i, (name, kw) in enumerate(VARIANTS.items()):
        net = random_flownet(seed=10 + i, **kw)
        if kw.get("base", {}).get("mode") == "multiplicative":
            # σ = σ_A (1 + y) with a small affine correction y (also covers the affine output)
            net.output = dict(kind="affine", scale=0.05, shift=0.0)
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


def test_flow_nan_and_inf_rows_as_onnxruntime(models, cache):
    """A NaN input gives NaN in its row only (as onnxruntime: Max/Min propagate NaN); ±inf
    inputs are clamped to the box."""
    from fem_bridge.backends import OnnxBackend
    from fortran_umat.library_binding import CompiledBackend
    _, path = models["softplus-hybrid-additive"]
    x = np.tile([0.2, 0.1, 1150.0, 1.0], (10, 1))
    for i in range(4):
        x[i, i] = np.nan
    x[4, 0], x[5, 1], x[6, 2], x[7, 2] = np.inf, -np.inf, np.inf, -np.inf
    s, d = CompiledBackend(path).evaluate(x)
    rs, rd = OnnxBackend(path).evaluate(x)
    np.testing.assert_array_equal(np.isnan(s), np.isnan(rs))
    np.testing.assert_array_equal(np.isnan(d), np.isnan(rd))
    assert np.isnan(s[:4]).all() and np.isfinite(s[4:]).all()
    np.testing.assert_allclose(s[4:], rs[4:], rtol=1e-12, atol=0)
    np.testing.assert_allclose(d[4:], rd[4:], rtol=1e-12, atol=1e-12 * np.abs(rd[4:]).max())


def test_batch_kernel_agrees_with_one_point_kernel(models, cache):
    """The blocked batch (32 points a block, partial last block) against the one-point kernel
    the UMAT uses: equal up to the last bits of glibc's vector math (exp, log, pow, tanh) and of
    FMA contraction — 1e-12 relative, the reproducibility policy of fortran_umat/build.py."""
    from fortran_umat.library_binding import CompiledBackend
    net, path = models["softplus-hybrid-additive"]
    comp = CompiledBackend(path)
    x = _points(net, 100, seed=9)                   # 102 points: 3 full blocks and a partial one
    s, d = comp.evaluate(x)
    one = [comp.evaluate_point(xi) for xi in x]
    s1, d1 = np.array([o[0] for o in one]), np.array([o[1] for o in one])
    assert np.max(np.abs(s1 - s) / s) <= 1e-12
    assert np.max(np.max(np.abs(d1 - d), axis=1) / np.max(np.abs(d), axis=1)) <= 1e-12


def test_compiled_backend_rejects_bad_shapes(models, cache):
    from fortran_umat.library_binding import CompiledBackend
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
        # the contract's required keys (export.contract.REQUIRED_KEYS), the format tag included
        helper.set_model_props(m, {"neumat.format": '"neumat-onnx/1"',
                                   "neumat.feature_names": '["strain", "strain_rate", "temperature"]',
                                   "neumat.box_lo": "[0.0, 0.001, 1000.0]",
                                   "neumat.box_hi": "[1.0, 10.0, 1200.0]",
                                   "neumat.rate_floor": "0.0001", "neumat.box_policy": '"clamp"'})
    return m


def test_translator_general_ops_match_onnxruntime(tmp_path, cache):
    """Gemm (transB), Transpose, Sigmoid/Relu/LeakyRelu nodes, ReduceSum, Gather, Squeeze,
    Unsqueeze, Clip, Expand, Cast, Split — all against onnxruntime."""
    import onnxruntime as ort
    from fortran_umat.library_binding import CompiledBackend
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
    from fortran_umat.flow_module import translate
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
    from fortran_umat.flow_module import translate
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
    # module-level or SAVEd mutable data (or large locals placed in static memory) would show up
    # as .data/.bss symbols; the check itself is shown to catch them on a small counter-example
    assert _mutable_symbols(r1.library) == []
    bad = tmp_path / "saved.f90"
    bad.write_text("subroutine foo(x)\n  double precision :: x, big(100000)\n  integer, save :: counter = 0\n"
                   "  counter = counter + 1\n  big = x\n  x = sum(big) + counter\nend subroutine\n")
    subprocess.run(["gfortran", "-O3", "-fPIC", "-shared", str(bad), "-o", str(tmp_path / "libsaved.so")],
                   check=True, cwd=tmp_path)
    assert {s.split(".")[0] for s in _mutable_symbols(tmp_path / "libsaved.so")} == {"big", "counter"}
    syms = subprocess.run(["nm", "-D", "--defined-only", str(r1.library)], capture_output=True, text=True).stdout
    assert " umat_" in syms and " neumat_flow_batch" in syms
    # the written source is standard Fortran 2008
    proc = subprocess.run(["gfortran", "-std=f2008", "-fsyntax-only", f"-J{tmp_path}", str(r1.source)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


_TOOLCHAIN_DATA = {"_DYNAMIC", "_GLOBAL_OFFSET_TABLE_", "__TMC_END__", "__dso_handle", "completed.0",
                   "__do_global_dtors_aux_fini_array_entry", "__frame_dummy_init_array_entry"}


def _mutable_symbols(lib) -> list[str]:
    """Writable data symbols (.data/.bss) of a shared library other than the toolchain's own."""
    out = subprocess.run(["nm", "--defined-only", str(lib)], capture_output=True, text=True, check=True).stdout
    rows = [ln.split() for ln in out.splitlines()]
    return sorted(r[2] for r in rows if len(r) == 3 and r[1] in "bBdD" and r[2] not in _TOOLCHAIN_DATA)


def test_cli_umat(models, cache, tmp_path, capsys):
    from constitutive.cli import main
    _, path = models["tanh-plain-1extra"]
    out = tmp_path / "umat"
    assert main(["umat", str(path), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    libs = list(out.glob("lib*.so"))           # lib<NAME>.so, NAME from the model file (issue 16)
    assert len(libs) == 1 and list(out.glob("*.f90")) and (out / "material.inp").is_file()
    assert str(libs[0]) in text and "LD_LIBRARY_PATH" in text and "*USER MATERIAL, CONSTANTS=5" in text
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"\x00garbage")
    assert main(["umat", str(bad), "--out", str(out)]) == 2
    assert "not an ONNX model" in capsys.readouterr().err


# ---- the compiled UMAT against the Python UMAT ---------------------------------------------------

E_MPA, NU = 1.2e5, 0.3


def _paths(rng, n_inc=24):
    """Strain-increment paths (engineering shear) with their dt (s) and temperatures (°C, end of
    each increment): uniaxial compression, shear, mixed, loading then elastic unloading and
    reloading, a temperature ramp across the box edge, rates across the floor and the box."""
    def uniax(d):
        return np.array([-d, 0.5 * d, 0.5 * d, 0.0, 0.0, 0.0])
    out = []
    tconst = np.full(n_inc, 1150.0)
    out.append(("uniaxial", [uniax(4e-3)] * n_inc, np.full(n_inc, 0.02), tconst))
    out.append(("shear", [np.array([0, 0, 0, 6e-3, 0, 0])] * n_inc, np.full(n_inc, 0.5), tconst))
    mixed = [rng.normal(size=6) * 3e-3 for _ in range(n_inc)]
    out.append(("mixed", mixed, 10 ** rng.uniform(-3.5, 1.5, n_inc), rng.uniform(1080, 1220, n_inc)))
    # "unload": an increment that removes 20 % of the current deviatoric stress elastically
    unload = [uniax(4e-3)] * 8 + ["unload"] * 4 + [uniax(4e-3)] * (n_inc - 12)
    out.append(("unloading", unload, np.full(n_inc, 0.05), tconst))
    out.append(("temperature-ramp", [uniax(3e-3)] * n_inc, np.full(n_inc, 0.01),
                np.linspace(1000.0, 1300.0, n_inc + 1)[1:]))
    out.append(("slow-below-floor", [uniax(2e-3)] * n_inc, np.full(n_inc, 200.0), tconst))
    return out


def _rel(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.mark.parametrize("name,temp_mode,rate_floor", [
    ("elu-residual", 1, 0.0), ("tanh-plain-1extra", 0, 0.0),
    ("softplus-hybrid-additive", 1, 0.05), ("relu-hybrid-multiplicative", 0, 0.02)])
def test_umat_matches_python_umat(name, temp_mode, rate_floor, models, cache):
    """PROPS(4) rate floor: 0 = the model's, > 0 an override (1/s)."""
    from fem_bridge.backends import OnnxBackend
    from fem_bridge.umat import UmatMaterial
    from fortran_umat.build import build_umat
    from fortran_umat.library_binding import CompiledUmat
    from fortran_umat.verify import unload_increment
    net, path = models[name]
    props = [E_MPA, NU, temp_mode, rate_floor] + [1.0] * (net.n_features - 3)
    py = UmatMaterial(OnnxBackend(path), props)
    fo = CompiledUmat(build_umat(path).library, props)
    rng = np.random.default_rng(5)
    n_plastic = n_unload = n_out_of_box = 0
    for label, incs, dts, temps in _paths(rng):
        s_p = s_f = np.zeros(6)
        v_p = v_f = np.zeros(cv.NSTATV)
        stran = np.zeros(6)
        t_prev = temps[0]
        for k, (de, dt, t_end) in enumerate(zip(incs, dts, temps)):
            if isinstance(de, str):
                de = unload_increment(s_p, E_MPA, NU)
            # Abaqus: TEMP at the start + DTEMP; CalculiX: TEMP at the end, DTEMP = 0
            temp, dtemp = (t_prev, t_end - t_prev) if temp_mode == 0 else (t_end, 0.0)
            kw = dict(time=(k * dt, k * dt), dtime=dt, temp=temp, dtemp=dtemp, kinc=k + 1)
            s_p1, v_p1, c_p, pn_p = py.call(s_p, v_p, stran, de, **kw)
            s_f1, v_f1, c_f, pn_f = fo.call(s_f, v_f, stran, de, **kw)
            where = f"{label} increment {k + 1}"
            assert pn_p == pn_f == 1.0, where
            assert _rel(s_f1, s_p1) <= 1e-9, where
            assert _rel(v_f1, v_p1) <= 1e-9 and v_f1[cv.SV_NOUT] == v_p1[cv.SV_NOUT], where
            assert _rel(c_f, c_p) <= 1e-9, where
            n_plastic += v_p1[cv.SV_P] > v_p[cv.SV_P]
            n_unload += (v_p1[cv.SV_P] == v_p[cv.SV_P]) and k > 0
            n_out_of_box = max(n_out_of_box, v_p1[cv.SV_NOUT])
            s_p, v_p, s_f, v_f = s_p1, v_p1, s_f1, v_f1
            stran = stran + de
            t_prev = t_end
    assert n_plastic > 50 and n_unload >= 3          # both branches were exercised
    assert n_out_of_box > 0                          # and the out-of-box count


def test_umat_temperature_conventions_agree(models, cache):
    """The same temperature history given the Abaqus way and the CalculiX way: same results."""
    from fortran_umat.build import build_umat
    from fortran_umat.library_binding import CompiledUmat
    _, path = models["elu-residual"]
    lib = build_umat(path).library
    abq, ccx = CompiledUmat(lib, [E_MPA, NU, 0, 0.0]), CompiledUmat(lib, [E_MPA, NU, 1, 0.0])
    de = np.array([-4e-3, 2e-3, 2e-3, 1e-3, 0, 0])
    temps = np.linspace(1100.0, 1200.0, 11)
    sa = sc = np.zeros(6)
    va = vc = np.zeros(cv.NSTATV)
    for t0, t1 in zip(temps[:-1], temps[1:]):
        sa, va, ca, _ = abq.call(sa, va, np.zeros(6), de, dtime=0.1, temp=t0, dtemp=t1 - t0)
        sc, vc, cc, _ = ccx.call(sc, vc, np.zeros(6), de, dtime=0.1, temp=t1, dtemp=0.0)
        assert _rel(sa, sc) <= 1e-12 and _rel(ca, cc) <= 1e-12
    assert va[cv.SV_P] > 0.0


# ---- failure behaviour ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["nan-dstran", "inf-dstran", "nan-temp", "nan-dtemp", "zero-dtime",
                                  "nan-dtime", "negative-E", "nu-0.5", "nan-extra", "nan-statev"])
def test_umat_bad_input_cuts_step(case, models, cache):
    from fem_bridge.backends import OnnxBackend
    from fem_bridge.umat import UmatMaterial
    from fortran_umat.build import build_umat
    from fortran_umat.library_binding import CompiledUmat
    _, path = models["tanh-plain-1extra"]
    props = np.array([E_MPA, NU, 1, 0.0, 1.0])
    s0 = np.array([-80.0, 10.0, 10.0, 5.0, 0.0, 0.0])
    v0 = np.r_[0.1, np.zeros(6), 0.5, 0.0]
    de = np.array([-5e-3, 2.5e-3, 2.5e-3, 0, 0, 0])
    kw = dict(dtime=0.1, temp=1150.0, dtemp=0.0)
    if case == "nan-dstran":
        de = de.copy(); de[1] = np.nan
    elif case == "inf-dstran":
        de = de.copy(); de[3] = np.inf
    elif case == "nan-temp":
        kw["temp"] = np.nan
    elif case == "nan-dtemp":
        kw["dtemp"] = np.nan
    elif case == "zero-dtime":
        kw["dtime"] = 0.0
    elif case == "nan-dtime":
        kw["dtime"] = np.nan
    elif case == "negative-E":
        props[0] = -1.0
    elif case == "nu-0.5":
        props[1] = 0.5
    elif case == "nan-extra":
        props[4] = np.nan
    elif case == "nan-statev":
        v0 = v0.copy(); v0[cv.SV_PDOT] = np.nan
    fo = CompiledUmat(build_umat(path).library, props)
    py = UmatMaterial(OnnxBackend(path), props)
    for pnewdt_in in (1.0, -1.0):                   # Abaqus-style and CalculiX-style incoming PNEWDT
        s, v, c, pn = fo.call(s0, v0, np.zeros(6), de, pnewdt=pnewdt_in, **kw)
        assert pn == cv.PNEWDT_CUT
        assert np.all(np.isfinite(s)) and np.all(np.isfinite(c)) and np.all(np.isfinite(v) | np.isnan(v0))
        np.testing.assert_array_equal(s, s0)
        np.testing.assert_array_equal(v[np.isfinite(v0)], v0[np.isfinite(v0)])
    sp, vp, cp, pp = py.call(s0, v0, np.zeros(6), de, **kw)
    assert pp < 1.0
    np.testing.assert_array_equal(c, cp)              # the same (elastic or identity) fallback tangent


def test_umat_forced_nonconvergence_cuts_step(models, cache):
    """MAX_ITER = 1 (a build-time test hook): every plastic step fails to converge."""
    from fortran_umat.build import build_umat
    from fortran_umat.library_binding import CompiledUmat
    _, path = models["elu-residual"]
    res = build_umat(path, max_iter=1)
    assert res.library != build_umat(path).library
    fo = CompiledUmat(res.library, [E_MPA, NU, 1, 0.0])
    s0, v0 = np.zeros(6), np.zeros(cv.NSTATV)
    # elastic step: converges trivially
    s, v, c, pn = fo.call(s0, v0, np.zeros(6), np.array([-1e-5, 0, 0, 0, 0, 0]), dtime=0.1, temp=1150.0)
    assert pn == 1.0 and s[0] < 0
    # plastic step: no convergence in one iteration -> cut, outputs finite and unchanged
    s, v, c, pn = fo.call(s0, v0, np.zeros(6), np.array([-2e-2, 1e-2, 1e-2, 0, 0, 0]), dtime=0.1, temp=1150.0)
    assert pn == cv.PNEWDT_CUT
    np.testing.assert_array_equal(s, s0)
    np.testing.assert_array_equal(v, v0)
    np.testing.assert_allclose(c, cv.elastic_stiffness(E_MPA, NU), rtol=1e-15)
    # an absurd input through the normal build: a strain increment of 1e300 overflows the trial
    fo2 = CompiledUmat(build_umat(path).library, [E_MPA, NU, 1, 0.0])
    s, v, c, pn = fo2.call(s0, v0, np.zeros(6), np.array([1e300, -1e300, 0, 0, 0, 0]), dtime=0.1, temp=1150.0)
    assert pn == cv.PNEWDT_CUT and np.all(np.isfinite(s)) and np.all(np.isfinite(c)) and np.all(np.isfinite(v))


# ---- thread safety -------------------------------------------------------------------------------

_DRIVER = """\
program neumat_omp_driver
  ! integrates NPATH strain paths with the UMAT serially, then again with 2 OpenMP threads at
  ! once, and compares all results bit for bit
  use omp_lib
  implicit none
  integer, parameter :: npath = 48, ninc = 60, nres = 6 + 9 + 36
  double precision :: serial(nres, ninc, npath), par(nres, ninc, npath)
  integer :: ip, nthreads, owner(npath)
  nthreads = 0
  do ip = 1, npath
    call run_path(ip, serial(:, :, ip))
  end do
  !$omp parallel num_threads(2)
  !$omp single
  nthreads = omp_get_num_threads()
  !$omp end single
  !$omp do schedule(static, 1)
  do ip = 1, npath
    owner(ip) = omp_get_thread_num()
    call run_path(ip, par(:, :, ip))
  end do
  !$omp end do
  !$omp end parallel
  print '(a, i0)', 'threads ', nthreads
  print '(a, i0)', 'thread1paths ', count(owner == 1)
  print '(a, i0)', 'plastic ', count(serial(7, ninc, :) > 0.0d0)
  if (all(transfer(serial, 1_8, size(serial)) == transfer(par, 1_8, size(par)))) then
    print '(a)', 'IDENTICAL'
  else
    print '(a)', 'DIFFERENT'
  end if
contains
  subroutine run_path(ip, res)
    integer, intent(in) :: ip
    double precision, intent(out) :: res(nres, ninc)
    double precision :: stress(6), statev(9), ddsdde(6, 6), sse, spd, scd, rpl, ddsddt(6), drplde(6)
    double precision :: drpldt, stran(6), dstran(6), time(2), dtime, temp, dtemp, predef(1), dpred(1)
    double precision :: props(NPROPS), coords(3), drot(3, 3), pnewdt, celent, dfgrd(3, 3), dir(6)
    character(len=80) :: cmname
    integer :: k
    props = [PROPS_VALUES]
    stress = 0.0d0; statev = 0.0d0; stran = 0.0d0; sse = 0; spd = 0; scd = 0
    coords = 0; drot = 0; dfgrd = 0; celent = 1; cmname = '@ABAQUS_NEUMAT'
    dir = [-1.0d0, 0.5d0, 0.5d0, 0.3d0 * sin(dble(ip)), 0.2d0 * cos(dble(ip)), 0.1d0 * sin(3.0d0 * ip)]
    dtime = 10.0d0 ** (-3.0d0 + 4.0d0 * modulo(0.37d0 * ip, 1.0d0))
    do k = 1, ninc
      dstran = 4.0d-3 * dir
      if (k > 30 .and. k <= 36) dstran = -0.5d-3 * dir          ! elastic unloading
      temp = 1100.0d0 + 2.0d0 * k + ip
      dtemp = 0.0d0
      time = (k - 1) * dtime
      pnewdt = -1.0d0
      call umat(stress, statev, ddsdde, sse, spd, scd, rpl, ddsddt, drplde, drpldt, stran, dstran, &
                time, dtime, temp, dtemp, predef, dpred, cmname, 3, 3, 6, 9, props, NPROPS, coords, &
                drot, pnewdt, celent, dfgrd, dfgrd, ip, 1, 1, 1, 1, k)
      stran = stran + dstran
      res(1:6, k) = stress
      res(7:15, k) = statev
      res(16:51, k) = reshape(ddsdde, [36])
    end do
  end subroutine run_path
end program neumat_omp_driver
"""


def test_umat_two_openmp_threads_bit_identical(models, cache, tmp_path):
    from fortran_umat.build import build_umat
    _, path = models["sigmoid-2extras-extrapolate"]
    res = build_umat(path)
    props = [E_MPA, NU, 1, 0.0, 1.0, 0.0]
    src = (_DRIVER.replace("NPROPS", str(len(props)))
           .replace("PROPS_VALUES", ", ".join(f"{v!r}d0" for v in map(float, props))))
    drv = tmp_path / "driver.f90"
    drv.write_text(src)
    exe = tmp_path / "driver"
    lib = res.library
    subprocess.run(["gfortran", "-O2", "-fopenmp", f"-J{tmp_path}", str(drv), "-o", str(exe),
                    f"-L{lib.parent}", f"-l{res.name}", f"-Wl,-rpath,{lib.parent}"],
                   check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "2"}).stdout
    vals = dict(line.split() for line in out.splitlines() if " " in line)
    assert vals["threads"] == "2" and int(vals["thread1paths"]) == 24
    assert int(vals["plastic"]) == 48
    assert out.strip().splitlines()[-1] == "IDENTICAL", out


# ---- issue 16: data coverage, element types, impossible input, whole-run problems --------------

@pytest.fixture(scope="module")
def gap_model(tmp_path_factory):
    from export.onnx_export import export_onnx
    return export_onnx(gap_flownet(seed=5, n_extras=1), tmp_path_factory.mktemp("gap") / "gap.onnx")


def test_umat_out_of_data_counter_matches_python_across_the_gap(gap_model, cache):
    """The Fortran UMAT carries the measured conditions as parameters and flags the same plastic
    increments as the Python bridge: paths at measured temperatures, in the 20–650 °C gap, beyond
    the last measured strain at 20 °C, and a temperature ramp through the gap."""
    from fem_bridge.umat import UmatMaterial
    from fortran_umat.build import build_umat
    from fortran_umat.library_binding import CompiledUmat
    from fortran_umat.verify import verify_umat
    built = build_umat(gap_model)
    assert "NM_COV_C(" in built.source.read_text() and "NM_NCOND = 36" in built.source.read_text()
    props = [E_MPA, NU, 1, 0.0, 1.0]
    py, fo = UmatMaterial(gap_model, props), CompiledUmat(built.library, props)
    de = np.array([-1e-2, 5e-3, 5e-3, 0.0, 0.0, 0.0])
    counts = {}
    for name, temps in (("20", np.full(60, 20.0)), ("335", np.full(60, 335.0)), ("700", np.full(60, 700.0)),
                        ("ramp", np.linspace(20.0, 1050.0, 60))):
        sp = sf = np.zeros(6)
        vp = vf = np.zeros(cv.NSTATV)
        for t in temps:
            sp, vp, cp, pp = py.call(sp, vp, np.zeros(6), de, dtime=0.1, temp=float(t))
            sf, vf, cf, pf = fo.call(sf, vf, np.zeros(6), de, dtime=0.1, temp=float(t))
            assert _rel(sf, sp) <= 1e-12 and _rel(cf, cp) <= 1e-12 and pf == pp
            assert vf[cv.SV_NOUT] == vp[cv.SV_NOUT], (name, t)
        counts[name] = vp[cv.SV_NOUT]
    # 60 plastic increments to p ≈ 0.6: at 20 °C those beyond 0.4 count, all of them in the gap
    assert counts["700"] == 0 and counts["335"] >= 59 and 15 <= counts["20"] <= 25 and counts["ramp"] > 20
    v = verify_umat(gap_model, library=built.library)
    assert v.passed and v.out_of_data_mismatches == 0 and "outside the data" in v.summary()


def test_umat_ntens4_matches_python_and_3d(models, cache):
    """Plane strain / axisymmetric calls (NTENS = 4: 11 22 33 12) against the Python UMAT and the
    3-D call with zero 13, 23, along a path with plastic loading, unloading and reloading."""
    from fem_bridge.backends import OnnxBackend
    from fem_bridge.umat import UmatMaterial
    from fortran_umat.build import build_umat
    from fortran_umat.library_binding import CompiledUmat
    _, path = models["elu-residual"]
    lib = build_umat(path).library
    props = [E_MPA, NU, 1, 0.0]
    f4, f6 = CompiledUmat(lib, props, ntens=4), CompiledUmat(lib, props)
    p4 = UmatMaterial(OnnxBackend(path), props)
    rng = np.random.default_rng(4)
    s4 = sp = np.zeros(4)
    s6 = np.zeros(6)
    v4 = vp = v6 = np.zeros(cv.NSTATV)
    n_plastic = 0
    for k in range(30):
        de = np.r_[rng.normal(size=4) * 3e-3, 0.0, 0.0] * (-1.0 if 12 <= k < 15 else 1.0)
        t = float(rng.uniform(1080, 1220))
        r4 = f4.call(s4, v4, np.zeros(4), de[:4], dtime=0.05, temp=t)
        rp = p4.call(sp, vp, np.zeros(4), de[:4], dtime=0.05, temp=t)
        r6 = f6.call(s6, v6, np.zeros(6), de, dtime=0.05, temp=t)
        assert _rel(r4[0], rp[0]) <= 1e-12 and _rel(r4[1], rp[1]) <= 1e-12 and _rel(r4[2], rp[2]) <= 1e-12
        assert r4[3] == rp[3] == 1.0
        assert np.array_equal(r4[0], r6[0][:4]) and np.array_equal(r4[2], r6[2][:4, :4])
        assert np.array_equal(r4[1], r6[1]) and r6[0][4] == r6[0][5] == 0.0
        n_plastic += r4[1][cv.SV_P] > v4[cv.SV_P]
        s4, v4, sp, vp, s6, v6 = r4[0], r4[1], rp[0], rp[1], r6[0], r6[1]
    assert n_plastic > 10


_HOST = """
import ctypes, sys
import numpy as np
sys.path.insert(0, {tests!r})
from fortran_umat.library_binding import CompiledUmat
props = {props}
u = CompiledUmat({lib!r}, props, nstatv={nstatv}, ntens={ntens})
n = u.ntens
for k in range(5):
    s, v, c, pn = u.call(np.zeros(n), np.zeros({nstatv}), np.zeros(n), np.full(n, -1e-3), dtime=0.1, temp=1150.0,
                         pnewdt=-1.0)
    assert pn == 0.5 and np.all(np.isfinite(s)) and np.all(np.isfinite(c)), (pn, s, c)
print("host still alive")
"""


@pytest.mark.parametrize("what,ntens,nstatv,props,message", [
    ("plane stress", 3, 9, [1.2e5, 0.3, 1, 0.0], "element type not supported"),
    ("short DEPVAR", 6, 5, [1.2e5, 0.3, 1, 0.0], "*DEPVAR must be at least 9"),
    ("short PROPS", 6, 9, [1.2e5, 0.3], "CONSTANTS must be at least 4"),
    ("nu = 0.5", 6, 9, [1.2e5, 0.5, 1, 0.0], "PROPS unusable"),
])
def test_umat_whole_run_problems_never_stop_the_host(what, ntens, nstatv, props, message, models, cache,
                                                       tmp_path):
    """No ERROR STOP: the host process survives, every call returns PNEWDT = 0.5 with finite
    outputs, and the UMAT prints one message per run (5 calls, one line)."""
    import sys
    from pathlib import Path
    from fortran_umat.build import build_umat
    _, path = models["elu-residual"]
    lib = build_umat(path).library
    root = Path(__file__).resolve().parents[1]
    code = _HOST.format(tests=str(root / "tests"), props=props, lib=str(lib), nstatv=nstatv, ntens=ntens)
    env = dict(os.environ, TMPDIR=str(tmp_path), PYTHONPATH=str(root))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, (what, proc.stdout, proc.stderr)
    assert "host still alive" in proc.stdout
    assert proc.stdout.count(message) == 1, (what, proc.stdout)
    assert len(list(tmp_path.glob("neumat_umat_*.flag"))) == 1


@pytest.mark.parametrize("case", ["inf-stress", "below-absolute-zero", "negative-p", "dstran-1"])
def test_umat_impossible_input_is_bad_input(case, models, cache):
    """T_end < -273.15 °C, p < 0 in STATEV, a strain increment of 1 in one step: BAD_INPUT in
    Fortran and Python alike; an inf stress comes back finite (0 there) from both."""
    from fem_bridge.backends import OnnxBackend
    from fem_bridge.umat import UmatMaterial
    from fortran_umat.build import build_umat
    from fortran_umat.library_binding import CompiledUmat
    _, path = models["elu-residual"]
    props = [E_MPA, NU, 1, 0.0]
    s0 = np.array([-80.0, 10.0, 10.0, 5.0, 0.0, 0.0])
    v0 = np.r_[0.1, np.zeros(6), 0.5, 0.0]
    de = np.array([-5e-3, 2.5e-3, 2.5e-3, 0, 0, 0])
    kw = dict(dtime=0.1, temp=1150.0, dtemp=0.0)
    if case == "inf-stress":
        s0 = s0.copy(); s0[0] = np.inf
    elif case == "below-absolute-zero":
        kw["temp"] = -300.0
    elif case == "negative-p":
        v0 = v0.copy(); v0[cv.SV_P] = -0.05
    else:
        de = np.array([-1.0, 0.5, 0.5, 0, 0, 0])
    fo = CompiledUmat(build_umat(path).library, props)
    py = UmatMaterial(OnnxBackend(path), props)
    rf, rp = fo.call(s0, v0, np.zeros(6), de, **kw), py.call(s0, v0, np.zeros(6), de, **kw)
    for s, v, c, pn in (rf, rp):
        assert pn == cv.PNEWDT_CUT
        assert np.all(np.isfinite(s)) and np.all(np.isfinite(c)) and np.all(np.isfinite(v))
        np.testing.assert_array_equal(s, np.where(np.isfinite(s0), s0, 0.0))
        np.testing.assert_array_equal(v, v0)
    np.testing.assert_array_equal(rf[2], rp[2])


def test_cli_umat_checks_material_and_out_before_building(models, cache, tmp_path, capsys, monkeypatch):
    """Whole-run settings (E, nu, temp mode, extras) and the --out folder are checked once, before
    the compiler runs, with exit 2; material.inp carries the checked values and says TEMP is °C."""
    import fortran_umat.build as build_mod
    from constitutive.cli import main
    _, path = models["tanh-plain-1extra"]
    compiled = []
    real = build_mod.compile_library
    monkeypatch.setattr(build_mod, "compile_library", lambda *a, **k: compiled.append(a) or real(*a, **k))
    (tmp_path / "plain.txt").write_text("x")
    for args, msg in ((["--nu", "0.5"], "nu = 0.5"), (["--E", "-1"], "E = -1.0"),
                      (["--extras", "1", "2"], "6 PROPS given, the model needs 5"),
                      (["--out", str(tmp_path / "plain.txt" / "u")], "is not a folder")):
        argv = ["umat", str(path), "--out", str(tmp_path / "u"), "--force", *args]
        if args[0] == "--out":
            argv = ["umat", str(path), "--force", *args]
        assert main(argv) == 2, args
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err, (args, err)
    assert compiled == [] and not (tmp_path / "u").exists()
    assert main(["umat", str(path), "--out", str(tmp_path / "u"), "--E", "90000", "--nu", "0.33",
                 "--extras", "1"]) == 0
    inp = (tmp_path / "u" / "material.inp").read_text()
    assert "90000, 0.33, 1, 0, 1" in inp and "degC" in inp
