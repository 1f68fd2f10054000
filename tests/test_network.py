"""Spec parser, residual wiring, transforms, SMOTE geometry, torch ↔ FlowNet equality."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from constitutive.augment import flag_outliers, smote
from constitutive.flow_curves import FlowCurves
from constitutive.errors import NeumatInputError
from constitutive.flownet import ACTIVATIONS, FlowNet
from constitutive.network import ResidualMLP, init_network, parse_spec
from constitutive.preprocessing import FeatureSpec, InputTransform, OutputTransform, column_values
from constitutive.training import TrainConfig, TrainedModel

ARR = {"alpha": [0.012, 0.002], "n": [4.5, -0.5], "Q": [3.2e5, 2e4], "lnA": [25.0, 1.0],
       "strain_min": 0.01, "strain_max": 0.7}


def test_spec_parser_method_notation():
    ops = parse_spec("4-R-8-A-4-A-R-1")
    assert ops == [("linear", 4, 8), ("push",), ("act",), ("linear", 8, 4), ("act",), ("linear", 4, 8),
                   ("add",), ("linear", 8, 1)]
    assert parse_spec("4-8-A-4-A-1") == [("linear", 4, 8), ("act",), ("linear", 8, 4), ("act",), ("linear", 4, 1)]
    # the first number is replaced by the real input width
    assert parse_spec("3-15-A-7-A-1", n_inputs=5)[0] == ("linear", 5, 15)
    two = parse_spec("4-R-8-A-8-A-R-R-8-A-8-A-R-1", n_inputs=3)
    assert [o[0] for o in two].count("push") == 2 and [o[0] for o in two].count("add") == 2


@pytest.mark.parametrize("bad", ["4-R-8-A-1", "4-8-A", "4-X-1", "4-8-A-A-1", "R-8-1", "4-8-2", "", "4"])
def test_spec_parser_rejects(bad):
    with pytest.raises(NeumatInputError):
        parse_spec(bad)


def test_residual_branch_zeroed_equals_skip_path():
    net = ResidualMLP("4-R-8-A-4-A-R-1", 3, "elu").double()
    init_network(net, 3)
    z = torch.rand(50, 3, dtype=torch.float64)
    full = net(z)
    closers = net.residual_closers()
    assert len(closers) == 1
    with torch.no_grad():
        closers[0].weight.zero_()
        closers[0].bias.zero_()
    skip, last = net.linears[0], net.linears[-1]
    expected = last(skip(z))[:, 0]
    assert torch.allclose(net(z), expected, rtol=0, atol=1e-14)
    assert not torch.allclose(full, expected)      # the branch did contribute before zeroing


def _fake_curves(n_extras=0, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for c, (t, r) in enumerate([(1000, 0.01), (1000, 1.0), (1100, 0.1), (1200, 0.01), (1200, 1.0)]):
        e = np.linspace(0.0, 0.7, 30)
        s = 50 * (1 + e) * (r / 0.1) ** 0.15 * np.exp((1100 - t) / 200) * (1 + 0.01 * rng.standard_normal(30))
        rows.append((np.full(30, c), np.full(30, t), np.full(30, r), e, s))
    cols = [np.concatenate(x) for x in zip(*rows)]
    extras = {"direction": (cols[0] % 2).astype(float)} if n_extras else {}
    return FlowCurves(*cols, curve_names=[f"c{i}" for i in range(5)], extras=extras)


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("hybrid", ["none", "multiplicative", "additive"])
def test_torch_float64_equals_flownet(act, hybrid):
    fc = _fake_curves(n_extras=1)
    x = fc.features()
    x[:, 0] = np.maximum(x[:, 0], 1e-3)
    spec = FeatureSpec(engineered=["inv_t", "ln_z", "strain_root"], power={"temperature": 0.5})
    in_tf = InputTransform(fc.feature_names, spec).fit(x, q=3e5)
    sa = None
    from constitutive.laws import arrhenius_stress
    if hybrid != "none":
        sa = arrhenius_stress(ARR, x[:, 0], x[:, 1], x[:, 2])
    out_tf = OutputTransform("log", hybrid).fit(fc.stress, sa)
    net = ResidualMLP("4-R-8-A-4-A-R-1", len(in_tf.columns), act)
    init_network(net, 7)
    with torch.no_grad():       # a non-trivial output layer also for the hybrid
        for lin in net.linears:
            lin.bias.uniform_(-0.3, 0.3)
    cfg = TrainConfig(method="network", spec="4-R-8-A-4-A-R-1", activation=act, hybrid=hybrid)
    model = TrainedModel(net, in_tf, out_tf, cfg, fc.feature_names, x.min(0), x.max(0), 1e-4,
                         arrhenius=ARR if hybrid != "none" else None)
    fn = model.to_flownet({"test": True})
    fn2 = FlowNet.from_dict(fn.to_dict())          # through the JSON form
    a = model.predict(x)
    b = fn2.evaluate(x, policy=False)[0]
    assert np.max(np.abs(a - b) / np.abs(b)) < 1e-12
    assert fn.output["kind"] == ("exp" if hybrid == "none" else "affine")
    assert (fn.base is None) == (hybrid == "none")


def test_power_transform_and_normalisations():
    rng = np.random.default_rng(1)
    x = np.column_stack([rng.uniform(0.001, 0.7, 200), np.exp(rng.uniform(-7, 1.6, 200)),
                         rng.uniform(1050, 1250, 200)])
    for norm in ("minmax", "mean", "zscore"):
        tf = InputTransform(["strain", "strain_rate", "temperature"],
                            FeatureSpec(power={"temperature": 0.5}, normalisation=norm)).fit(x)
        z = tf.transform(x)
        if norm == "minmax":
            assert np.allclose(z.min(0), 0) and np.allclose(z.max(0), 1)
        if norm == "mean":
            assert np.allclose(z.mean(0), 0, atol=1e-12) and np.allclose(z.max(0) - z.min(0), 1)
        if norm == "zscore":
            assert np.allclose(z.std(0), 1)
        # the power column follows ((x + γ)^β − 1)/β with γ = max|x| (x positive here)
        c = tf.columns[2]
        assert c["power"]["gamma"] == pytest.approx(x[:, 2].max())
        v = ((x[:, 2] + c["power"]["gamma"]) ** 0.5 - 1) / 0.5
        assert np.allclose(z[:, 2], (v - c["shift"]) / c["scale"])
        # round trip through the dict form
        tf2 = InputTransform.from_dict(tf.to_dict())
        assert np.array_equal(tf2.transform(x), z)
        assert np.allclose(column_values(tf.flownet_columns(), x), z)
    # a negative column (ln rate) gets γ so that u + γ > 0
    tf = InputTransform(["strain", "strain_rate", "temperature"], FeatureSpec(rate="log", power={"strain_rate": 0.5})).fit(x)
    assert np.all(np.log(x[:, 1]) + tf.columns[1]["power"]["gamma"] > 0)
    rank = InputTransform(["strain", "strain_rate", "temperature"], FeatureSpec(normalisation="rank")).fit(x)
    assert not rank.exportable
    zr = rank.transform(x)
    assert zr.min() == pytest.approx(0) and zr.max() == pytest.approx(1)
    with pytest.raises(NeumatInputError):
        rank.flownet_columns()


@pytest.mark.parametrize("kind,hybrid", [("log", "none"), ("affine", "none"), ("affine", "multiplicative"),
                                         ("affine", "additive")])
def test_output_transform_round_trip(kind, hybrid):
    rng = np.random.default_rng(2)
    s = rng.uniform(20, 200, 100)
    sa = s * rng.uniform(0.9, 1.1, 100)
    tf = OutputTransform(kind, hybrid).fit(s, sa)
    t = tf.target(s, sa)
    assert np.allclose(tf.inverse(t, sa), s, rtol=1e-13)
    assert np.allclose(OutputTransform.from_dict(tf.to_dict()).inverse(t, sa), s, rtol=1e-13)
    if hybrid != "none":            # a zero network output is the Arrhenius stress
        assert np.allclose(tf.inverse(np.zeros(100), sa), sa)


def test_smote_points_lie_on_segments_between_neighbours():
    rng = np.random.default_rng(3)
    z = rng.random((60, 3))
    y = np.column_stack([z @ [1.0, 2.0, 3.0], rng.random(60)])
    k = 4
    zs, ys, ijw = smote(z, y, ratio=2.0, k=k, rng=np.random.default_rng(4))
    assert len(zs) == 120
    d = np.linalg.norm(z[:, None] - z[None], axis=2)
    for (i, j, u), zp, yp in zip(ijw, zs, ys):
        i, j = int(i), int(j)
        assert i != j and 0 <= u <= 1
        nearest = np.argsort(d[i])[1:k + 1]          # the K nearest neighbours of the base point
        assert j in nearest
        assert np.allclose(zp, z[i] + u * (z[j] - z[i]))
        assert np.allclose(yp, y[i] + u * (y[j] - y[i]))     # stress interpolated alike
    groups = np.repeat(np.arange(6), 10)
    _, _, ijw = smote(z, y, 1.0, 3, np.random.default_rng(5), groups=groups, across_groups=True)
    assert np.all(groups[ijw[:, 0].astype(int)] != groups[ijw[:, 1].astype(int)])
    z0, y0, _ = smote(z, y, 0.0, 3, rng)
    assert len(z0) == 0


def test_outliers_flagged_not_dropped():
    fc = _fake_curves()
    fc.stress[40] *= 1.5                 # a spike in curve 1
    flags = flag_outliers(fc)
    assert flags[40]
    assert flags.sum() <= 3
    assert len(fc) == 150               # nothing removed
