"""ONNX export: graph validity, operator subset, metadata, equality with FlowNet.evaluate,
derivatives against central differences, input policy, CLI."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from constitutive.cli import main as cli_main
from export.contract import EMITTED_OPS, METADATA_KEYS, read_metadata
from export.onnx_export import build_model, export_onnx
from fem_bridge.backends import OnnxBackend
from helpers import in_box_points, random_flownet

# a realistic strain-compensated Arrhenius base (3Cr2Mo-like magnitudes)
ARRHENIUS = dict(alpha=[0.012, 0.003], n=[5.0, -1.5], Q=[4.0e5, -3.0e4], lnA=[34.0, -2.0],
                 strain_min=0.02, strain_max=0.65)
# lnA large enough that (Z/A)^(1/n) drops below 1e-3: exercises the asinh series branch
ARRHENIUS_SMALL_X = dict(ARRHENIUS, lnA=[70.0, -2.0])

CASES = {
    "elu-res": dict(activation="elu"),
    "elu-plain-extras": dict(activation="elu", residual=False, n_extras=2),
    "tanh-extras": dict(activation="tanh", n_extras=1),
    "sigmoid-plain": dict(activation="sigmoid", residual=False),
    "relu": dict(activation="relu", n_extras=1),
    "leaky": dict(activation="leaky_relu", residual=False),
    "softplus": dict(activation="softplus", n_extras=2),
    "hybrid-mult": dict(activation="elu", base=dict(mode="multiplicative", arrhenius=ARRHENIUS)),
    "hybrid-add-extras": dict(activation="tanh", n_extras=1, base=dict(mode="additive", arrhenius=ARRHENIUS)),
    "hybrid-series": dict(activation="softplus", base=dict(mode="multiplicative", arrhenius=ARRHENIUS_SMALL_X)),
    "extrapolate": dict(activation="elu", n_extras=1, box_policy="extrapolate"),
    "lnz-invkelvin": dict(activation="tanh", n_extras=1, columns="lnz"),
}


def _make_net(seed, columns=None, **kw):
    net = random_flownet(seed=seed, **kw)
    if columns == "lnz":       # Zener–Hollomon and 1/T columns, one with a power transform
        net.columns[1] = dict(kind="ln_z", rate=1, temp=2, Q=3.5e5, power=None, shift=25.0, scale=10.0)
        net.columns[2] = dict(kind="inv_kelvin", feature=2, power=dict(gamma=0.0, beta=0.5),
                              shift=-1.95, scale=0.02)
    return net
SMOOTH = [k for k in CASES if CASES[k]["activation"] not in ("relu", "leaky_relu")]


@pytest.mark.parametrize("opset", [18, 20])
def test_later_opsets(tmp_path, opset):
    net = random_flownet(seed=2, n_extras=1, base=dict(mode="additive", arrhenius=ARRHENIUS))
    b = OnnxBackend(export_onnx(net, tmp_path / "m.onnx", opset=opset))
    x = in_box_points(net, 200)
    assert np.allclose(b.evaluate(x)[0], net(x), rtol=1e-12, atol=0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    out = {}
    for i, (name, kw) in enumerate(CASES.items()):
        net = _make_net(10 + i, **kw)
        out[name] = (net, OnnxBackend(export_onnx(net, d / f"{name}.onnx")))
    return out


def test_lean_graph_one_reverse_sweep(exported):
    """Leaner graph (issue 13): each linear layer is one Gemm forward and (but the first step
    back from the scalar output) one MatMul backward; no forward-mode tangent tensors, so no
    Reshape but the output's and one Where per input bound."""
    for name in ("elu-res", "tanh-extras", "softplus"):
        net, backend = exported[name]
        ops = [n.op_type for n in onnx.load(str(backend.path)).graph.node]
        n_linear = sum(op["op"] == "linear" for op in net.ops)
        assert ops.count("Gemm") == n_linear and ops.count("MatMul") == n_linear - 1, name
        assert ops.count("Reshape") == 1, name                       # sigma (N, 1) -> (N,)
        assert ops.count("Where") <= 2 + sum(op.get("fn") in ("elu", "relu", "leaky_relu") for op in net.ops) * 2


def test_checker_ops_and_metadata(exported, tmp_path):
    net, backend = exported["hybrid-add-extras"]
    model = onnx.load(str(backend.path))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17
    used = {n.op_type for n in model.graph.node}
    assert used <= set(EMITTED_OPS), used - set(EMITTED_OPS)
    assert not any(n.op_type in ("Elu", "Expm1", "Einsum") for n in model.graph.node)
    used_names = {i for n in model.graph.node for i in n.input}
    for t in model.graph.initializer:
        assert t.name in used_names
        assert t.data_type in (onnx.TensorProto.DOUBLE, onnx.TensorProto.INT64)
    props = {p.key: p.value for p in model.metadata_props}
    assert set(METADATA_KEYS.values()) <= set(props)
    meta = read_metadata(model)
    assert meta["feature_names"] == net.feature_names
    assert meta["feature_units"] == net.feature_units
    assert meta["box_lo"] == net.box_lo and meta["box_hi"] == net.box_hi
    assert meta["rate_floor"] == net.rate_floor and meta["box_policy"] == "clamp"
    assert meta["data_hash"] == "test" and meta["stress_unit"] == "MPa" and meta["base"] == "additive"
    assert len(meta["model_hash"]) == 64
    # every MatMul is 2-D × 2-D: the right operand is a 2-D initializer, the left has rank 2
    inits = {t.name: t for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "MatMul":
            assert n.input[1] in inits and len(inits[n.input[1]].dims) == 2
    inferred = onnx.shape_inference.infer_shapes(model)
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in inferred.graph.value_info}
    for n in model.graph.node:
        if n.op_type == "MatMul" and n.input[0] in ranks:
            assert ranks[n.input[0]] == 2


@pytest.mark.parametrize("name", list(CASES))
def test_matches_flownet(exported, name):
    net, backend = exported[name]
    x = in_box_points(net, 10_000, seed=2)
    s_ref, g_ref = net.evaluate(x)
    s, g = backend.evaluate(x)
    assert s.shape == (10_000,) and g.shape == (10_000, net.n_features)
    assert np.max(np.abs(s - s_ref) / np.abs(s_ref)) <= 1e-12
    col = np.max(np.abs(g_ref), axis=0)
    assert np.all(np.abs(g - g_ref) <= 1e-12 * np.abs(g_ref) + 1e-12 * col)


@pytest.mark.parametrize("name", SMOOTH)
def test_derivatives_central_differences(exported, name):
    net, backend = exported[name]
    rng = np.random.default_rng(5)
    lo, hi = np.asarray(net.box_lo), np.asarray(net.box_hi)
    x = in_box_points(net, 300, seed=3)
    # stay away from the box edges, the rate floor and the Arrhenius strain range ends
    x[:, 0] = 0.05 + 0.55 * rng.random(len(x))
    x[:, 2] = lo[2] + (0.05 + 0.9 * rng.random(len(x))) * (hi[2] - lo[2])
    x[:, 1] = np.clip(x[:, 1], 1.2 * lo[1], 0.8 * hi[1])
    x[:, 3:] = 0.2 + 0.6 * rng.random((len(x), net.n_features - 3))
    _, g = backend.evaluate(x)
    for k in range(net.n_features):
        h = 1e-4 * (x[:, 1] if k == 1 else np.full(len(x), hi[k] - lo[k]))
        xp, xm = x.copy(), x.copy()
        xp[:, k] += h
        xm[:, k] -= h
        fd = (backend.evaluate(xp)[0] - backend.evaluate(xm)[0]) / (2 * h)
        tol = 1e-6 * np.abs(g[:, k]) + 1e-9 * np.max(np.abs(g[:, k]))
        assert np.all(np.abs(fd - g[:, k]) <= tol), (k, np.max(np.abs(fd - g[:, k]) / np.abs(g[:, k])))


def _outside_points(net):
    """Rows out of the box in each input and below the rate floor, plus one in-box row."""
    lo, hi = np.asarray(net.box_lo), np.asarray(net.box_hi)
    mid = 0.5 * (lo + hi)
    mid[1] = np.sqrt(lo[1] * hi[1])
    rows = [mid.copy()]
    for k in range(net.n_features):
        for v in (lo[k] - 0.3 * (hi[k] - lo[k]), hi[k] + 0.3 * (hi[k] - lo[k])):
            r = mid.copy()
            r[k] = v
            rows.append(r)
    for rate in (0.0, 0.1 * net.rate_floor, net.rate_floor, 2 * net.rate_floor):
        r = mid.copy()
        r[1] = rate
        rows.append(r)
    return np.array(rows)


@pytest.mark.parametrize("name", ["elu-plain-extras", "extrapolate", "hybrid-mult"])
def test_policy_outside_box_and_below_floor(exported, name):
    net, backend = exported[name]
    x = _outside_points(net)
    s_ref, g_ref = net.evaluate(x)
    s, g = backend.evaluate(x)
    assert np.allclose(s, s_ref, rtol=1e-12, atol=0)
    assert np.allclose(g, g_ref, rtol=1e-11, atol=1e-12 * np.max(np.abs(g_ref)))
    below = x[:, 1] < net.rate_floor
    assert np.all(g[below, 1] == 0.0)
    at_floor = x.copy()
    at_floor[below, 1] = net.rate_floor
    assert np.array_equal(backend.evaluate(at_floor)[0][below], s[below])
    if net.box_policy == "clamp":
        lo, hi = np.asarray(net.box_lo), np.asarray(net.box_hi)
        out = (x < lo) | (x > hi)
        assert np.all(g[out] == 0.0)
        assert np.array_equal(backend.evaluate(np.clip(x, lo, hi))[0], s)
    # a NaN row gives NaN in that row only
    xn = np.vstack([x[:1], x[:1]])
    xn[0, 2] = np.nan
    sn, gn = backend.evaluate(xn)
    assert np.isnan(sn[0]) and sn[1] == s[0]


def test_cli_export(tmp_path, capsys):
    net = random_flownet(seed=4, n_extras=1)
    run = tmp_path / "run"
    run.mkdir()
    net.save(run / "model.json")
    assert cli_main(["export", str(run), "--out", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "verified" in out
    b = OnnxBackend(tmp_path / "m.onnx")
    assert json.loads(json.dumps(b.metadata["source"])).endswith("model.json")
    x = in_box_points(net, 100)
    assert np.allclose(b.evaluate(x)[0], net(x), rtol=1e-12, atol=0)
    # a model.json path works too
    assert cli_main(["export", str(run / "model.json"), "--out", str(tmp_path / "m2.onnx"), "--no-verify"]) == 0
    # user errors exit 2 with a message, no traceback
    assert cli_main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert cli_main(["export", str(tmp_path / "bad.json"), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "not a neumat model" in capsys.readouterr().err
    assert cli_main(["export", str(run), "--out", str(tmp_path / "m.txt")]) == 2


def test_build_model_rejects_bad_nets():
    net = random_flownet(seed=1)
    net.ops[0]["W"] = np.ones((8, 5))
    with pytest.raises(ValueError, match="do not fit"):
        build_model(net)
    net = random_flownet(seed=1, box_policy="wrap")
    with pytest.raises(ValueError, match="box_policy"):
        build_model(net)
