"""Python FEM bridge: backends, J2 return mapping (tangent, yield condition, uniaxial path,
bad input, batch isolation), the UMAT interface."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from constitutive.errors import NeumatInputError
from export.onnx_export import export_onnx
from fem_bridge import (Elasticity, FlowNetBackend, OnnxBackend, UmatMaterial, conventions as cv,
                        integrate, load_backend, umat)
from helpers import GAP_RATES, GAP_TEMPS, gap_flownet, in_box_points, random_flownet

ELASTIC_TABLE = Elasticity.table([1000.0, 1300.0], [120e3, 80e3], [0.30, 0.35])   # °C, MPa, –


@pytest.fixture(scope="module")
def net():
    return random_flownet(seed=7, n_extras=1)


@pytest.fixture(scope="module")
def onnx_path(net, tmp_path_factory):
    return export_onnx(net, tmp_path_factory.mktemp("bridge") / "model.onnx")


@pytest.fixture(scope="module")
def backend(onnx_path):
    return OnnxBackend(onnx_path)


def _states(n, seed, plastic_fraction=0.7):
    """Random start states (stress inside or near the yield surface), increments, dt, T, extras."""
    rng = np.random.default_rng(seed)
    statev = np.zeros((n, cv.NSTATV))
    statev[:, cv.SV_P] = 0.05 + 0.5 * rng.random(n)
    statev[:, cv.SV_EPS_P] = 0.01 * rng.normal(size=(n, 6))
    statev[:, cv.SV_NOUT] = rng.integers(0, 3, n)
    stress = 20.0 * rng.normal(size=(n, 6))
    scale = np.where(rng.random(n) < plastic_fraction, 2e-3, 1e-5)
    dstran = scale[:, None] * rng.normal(size=(n, 6))
    dt = 10 ** rng.uniform(-2, 0, n)                      # s
    temp = 1070.0 + 160.0 * rng.random(n)                 # °C, inside the box
    extras = rng.integers(0, 2, (n, 1)).astype(float)
    return stress, statev, dstran, dt, temp, extras


def _von_mises(s):
    d = s.copy()
    d[:, :3] -= s[:, :3].mean(axis=1, keepdims=True)
    return np.sqrt(1.5 * (np.sum(d[:, :3] ** 2, axis=1) + 2.0 * np.sum(d[:, 3:] ** 2, axis=1)))


# ---- backends --------------------------------------------------------------------------------

def test_backends_agree_and_describe_the_model(net, backend):
    ref = FlowNetBackend(net)
    assert backend.feature_names == net.feature_names and backend.n_features == 4 and backend.n_extras == 1
    assert np.array_equal(backend.box_lo, net.box_lo) and np.array_equal(backend.box_hi, net.box_hi)
    assert backend.rate_floor == net.rate_floor and backend.box_policy == "clamp"
    x = in_box_points(net, 500)
    x[::7, 2] = 1400.0                                    # out of box
    x[::11, 1] = 0.0                                      # below the floor (1e-4) and so below the box (1e-3)
    s, g = backend.evaluate(x)
    s_ref, g_ref = ref.evaluate(x)
    assert np.allclose(s, s_ref, rtol=1e-12, atol=0) and np.allclose(g, g_ref, rtol=1e-10, atol=1e-12)
    assert np.array_equal(backend.out_of_box(x), net.out_of_box(x))
    expected = np.zeros(len(x), bool)
    expected[::7] = expected[::11] = True
    assert np.array_equal(backend.out_of_box(x), expected)
    with pytest.raises(NeumatInputError, match=r"expected \(N, 4\)"):
        backend.evaluate(x[:, :3])
    assert load_backend(backend.path).n_features == 4


def test_backend_bad_files(tmp_path, net):
    with pytest.raises(NeumatInputError, match="not found"):
        OnnxBackend(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_text("this is not a protobuf\n" * 10)
    with pytest.raises(NeumatInputError, match="not an ONNX file"):
        OnnxBackend(junk)
    # a valid ONNX file with another signature
    g = helper.make_graph([helper.make_node("Identity", ["a"], ["b"])], "other",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3])],
                          [helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3])])
    other = tmp_path / "other.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(other))
    with pytest.raises(NeumatInputError, match="expected a neumat flow-stress model: input 'x'"):
        OnnxBackend(other)
    # right signature, no metadata
    m = onnx.load(str(export_onnx(net, tmp_path / "ok.onnx")))
    del m.metadata_props[:]
    stripped = tmp_path / "stripped.onnx"
    onnx.save(m, str(stripped))
    with pytest.raises(NeumatInputError, match="metadata missing neumat.format"):
        OnnxBackend(stripped)
    with pytest.raises(NeumatInputError, match="unknown"):
        load_backend(tmp_path / "ok.onnx", kind="tensorrt")
    with pytest.raises(NeumatInputError, match="not found"):
        UmatMaterial(tmp_path / "missing.onnx", [1e5, 0.3, 1, 0, 0])


# ---- return mapping ----------------------------------------------------------------------------

def test_tangent_matches_central_differences(backend):
    stress, statev, dstran, dt, temp, ex = _states(300, seed=1)
    upd = integrate(backend, stress, statev, dstran, dt, temp, ELASTIC_TABLE, ex)
    assert np.all(upd.status == cv.OK)
    plastic = upd.statev[:, cv.SV_P] > statev[:, cv.SV_P]
    assert 150 < plastic.sum() < 290                      # both kinds are exercised
    # keep points clear of the kinks: the elastic/plastic switch and the box edges in rate
    rate = upd.statev[:, cv.SV_PDOT]
    keep = ~plastic | ((rate > 1.2e-3) & (rate < 4.0))
    h = 1e-6
    D = np.empty((len(dt), 6, 6))
    for j in range(6):
        dp, dm = dstran.copy(), dstran.copy()
        dp[:, j] += h
        dm[:, j] -= h
        up = integrate(backend, stress, statev, dp, dt, temp, ELASTIC_TABLE, ex)
        um = integrate(backend, stress, statev, dm, dt, temp, ELASTIC_TABLE, ex)
        keep &= (up.statev[:, cv.SV_P] > statev[:, cv.SV_P]) == plastic
        keep &= (um.statev[:, cv.SV_P] > statev[:, cv.SV_P]) == plastic
        D[:, :, j] = (up.stress - um.stress) / (2 * h)
    assert keep.sum() > 250
    err = np.max(np.abs(D - upd.ddsdde), axis=(1, 2)) / np.max(np.abs(upd.ddsdde), axis=(1, 2))
    assert np.max(err[keep]) <= 1e-6
    # the plastic tangent is not the elastic one (the test would not see a wrong H otherwise)
    Ce = cv.elastic_stiffness(*ELASTIC_TABLE.at(temp))
    assert np.all(np.max(np.abs(upd.ddsdde - Ce), axis=(1, 2))[plastic] > 1e-3 * np.max(np.abs(Ce)))
    # symmetric (associative J2)
    assert np.allclose(upd.ddsdde, np.swapaxes(upd.ddsdde, 1, 2), rtol=0, atol=1e-9 * np.max(np.abs(Ce)))


def test_yield_condition_and_state_after_plastic_step(backend):
    stress, statev, dstran, dt, temp, ex = _states(400, seed=2, plastic_fraction=1.0)
    upd = integrate(backend, stress, statev, dstran, dt, temp, ELASTIC_TABLE, ex)
    assert np.all(upd.status == cv.OK)
    pl = upd.statev[:, cv.SV_P] > statev[:, cv.SV_P]
    assert pl.sum() > 250
    p, pdot = upd.statev[pl, cv.SV_P], upd.statev[pl, cv.SV_PDOT]
    x = np.column_stack([p, np.maximum(pdot, backend.rate_floor), temp[pl], ex[pl]])
    sy = backend.evaluate(x)[0]
    assert np.all(np.abs(_von_mises(upd.stress[pl]) - sy) <= 1e-9 * sy)
    dp = p - statev[pl, cv.SV_P]
    assert np.allclose(pdot, dp / dt[pl], rtol=1e-14)
    # plastic strain increment: deviatoric, equivalent value Δp (engineering shear halved)
    deps = upd.statev[pl, cv.SV_EPS_P] - statev[pl, cv.SV_EPS_P]
    assert np.allclose(deps[:, :3].sum(axis=1), 0.0, atol=1e-15)
    eq = np.sqrt(2.0 / 3.0 * (np.sum(deps[:, :3] ** 2, axis=1) + 0.5 * np.sum(deps[:, 3:] ** 2, axis=1)))
    assert np.allclose(eq, dp, rtol=1e-10)
    # elastic points keep p and ε_p, report pdot = 0
    el = ~pl
    assert np.array_equal(upd.statev[el, cv.SV_EPS_P], statev[el, cv.SV_EPS_P])
    assert np.all(upd.statev[el, cv.SV_PDOT] == 0.0)
    # the counter grows by one where the converged point left the box (here: ṗ below 1e-3 1/s)
    inc = upd.statev[:, cv.SV_NOUT] - statev[:, cv.SV_NOUT]
    assert np.all(inc[el] == 0) and np.array_equal(inc[pl], backend.out_of_box(x).astype(float))
    assert 0 < inc.sum() < pl.sum()


def test_out_of_box_counter_and_rate_floor_override(backend):
    stress, statev, dstran, dt, temp, ex = _states(50, seed=3, plastic_fraction=1.0)
    dstran *= 5.0
    hot = np.full(50, 1300.0)                              # above the box (1250 °C)
    upd = integrate(backend, stress, statev, dstran, dt, hot, ELASTIC_TABLE, ex)
    pl = upd.statev[:, cv.SV_P] > statev[:, cv.SV_P]
    assert pl.sum() > 30
    assert np.array_equal(upd.statev[:, cv.SV_NOUT], statev[:, cv.SV_NOUT] + pl)
    # a rate floor of 2 1/s: every plastic point is evaluated at max(ṗ, 2)
    upd = integrate(backend, stress, statev, dstran, dt, temp, ELASTIC_TABLE, ex, rate_floor=2.0)
    pl = upd.statev[:, cv.SV_P] > statev[:, cv.SV_P]
    x = np.column_stack([upd.statev[pl, cv.SV_P], np.maximum(upd.statev[pl, cv.SV_PDOT], 2.0), temp[pl], ex[pl]])
    sy = backend.evaluate(x)[0]
    assert np.all(np.abs(_von_mises(upd.stress[pl]) - sy) <= 1e-9 * sy)
    assert np.any(upd.statev[pl, cv.SV_PDOT] < 2.0)


def _uniaxial_path(flow, rate, temp, extras, strain=0.5, n_inc=100, elastic=Elasticity(1.0e5, 0.3)):
    """Homogeneous uniaxial compression along 33 at constant true strain rate (1/s) and T (°C):
    lateral stresses kept zero by Newton on the lateral strain increments with the tangent."""
    dt = strain / rate / n_inc
    stress, statev = np.zeros((1, 6)), np.zeros((1, cv.NSTATV))
    rows, iters = [], []
    for _ in range(n_inc):
        d = np.zeros((1, 6))
        d[0, 2] = -rate * dt
        d[0, :2] = 0.3 * rate * dt                           # elastic-ish first guess
        for it in range(20):
            upd = integrate(flow, stress, statev, d, dt, temp, elastic, extras)
            assert upd.status[0] == cv.OK
            lat = upd.stress[0, :2]
            if np.max(np.abs(lat)) <= 1e-10 * abs(upd.stress[0, 2]) + 1e-12:
                break
            d[0, :2] -= np.linalg.solve(upd.ddsdde[0, :2, :2], lat)
        iters.append(it)
        stress, statev = upd.stress, upd.statev
        rows.append((statev[0, cv.SV_P], -stress[0, 2], statev[0, cv.SV_PDOT]))
    return np.array(rows), np.array(iters)


@pytest.mark.parametrize("rate,temp,extra", [(0.1, 1150.0, 0.0), (2.0, 1080.0, 1.0), (0.005, 1220.0, 1.0)])
def test_uniaxial_compression_reproduces_flow_curve(backend, rate, temp, extra):
    rows, iters = _uniaxial_path(backend, rate, temp, np.array([extra]))
    p, sig, pdot = rows.T
    assert p[-1] > 0.45
    assert np.max(iters) <= 4                                # Newton with the consistent tangent
    x = np.column_stack([p, np.full_like(p, rate), np.full_like(p, temp), np.full_like(p, extra)])
    curve = backend.evaluate(x)[0]                           # the network's own σ(ε_p, ε̇, T)
    assert np.all(p > 0)                                     # plastic from the first increment on
    assert np.max(np.abs(sig / curve - 1.0)) <= 1e-3
    # after the first (elastic-plastic) increment the plastic strain rate is the applied one
    # but for the elastic share of the increment
    assert np.allclose(pdot[1:], rate, rtol=1e-3)


def test_bad_points_do_not_spoil_neighbours(backend):
    stress, statev, dstran, dt, temp, ex = _states(40, seed=4)
    clean = integrate(backend, stress, statev, dstran, dt, temp, ELASTIC_TABLE, ex)
    cases = {
        "stress": lambda s, v, d, t, T, e: s.__setitem__((5, 1), np.nan),
        "statev": lambda s, v, d, t, T, e: v.__setitem__((5, 0), np.inf),
        "dstran": lambda s, v, d, t, T, e: d.__setitem__((5, 3), np.nan),
        "dt0": lambda s, v, d, t, T, e: t.__setitem__(5, 0.0),
        "dt<0": lambda s, v, d, t, T, e: t.__setitem__(5, -1e-3),
        "dtnan": lambda s, v, d, t, T, e: t.__setitem__(5, np.nan),
        "temperature": lambda s, v, d, t, T, e: T.__setitem__(5, -np.inf),
        "extras": lambda s, v, d, t, T, e: e.__setitem__((5, 0), np.nan),
    }
    others = np.arange(40) != 5
    for name, spoil in cases.items():
        args = [a.copy() for a in (stress, statev, dstran, dt, temp, ex)]
        spoil(*args)
        upd = integrate(backend, args[0], args[1], args[2], args[3], args[4], ELASTIC_TABLE, args[5])
        assert upd.status[5] == cv.BAD_INPUT, name
        assert upd.pnewdt[5] == cv.PNEWDT_CUT and np.all(upd.pnewdt[others] == 1.0)
        assert np.array_equal(upd.stress[5], args[0][5], equal_nan=True), name
        assert np.array_equal(upd.statev[5], args[1][5], equal_nan=True), name
        assert np.all(np.isfinite(upd.ddsdde[5])), name
        for field in ("stress", "statev", "ddsdde", "status", "pnewdt"):
            assert np.array_equal(getattr(upd, field)[others], getattr(clean, field)[others]), (name, field)
    # unusable elastic constants: bad input, finite tangent
    upd = integrate(backend, stress, statev, dstran, dt, temp, Elasticity(-1.0, 0.3), ex)
    assert np.all(upd.status == cv.BAD_INPUT) and np.all(np.isfinite(upd.ddsdde))
    upd = integrate(backend, stress, statev, dstran, dt, temp, Elasticity(1e5, 0.5), ex)
    assert np.all(upd.status == cv.BAD_INPUT) and np.all(np.isfinite(upd.ddsdde))


def test_no_convergence_requests_a_step_cut(backend, monkeypatch):
    stress, statev, dstran, dt, temp, ex = _states(30, seed=5)
    ref = integrate(backend, stress, statev, dstran, dt, temp, ELASTIC_TABLE, ex)
    monkeypatch.setattr(cv, "MAX_ITER", 2)
    upd = integrate(backend, stress, statev, dstran, dt, temp, ELASTIC_TABLE, ex)
    cut = upd.status == cv.STEP_CUT
    assert cut.sum() > 10 and np.all(ref.iterations[cut] > 2)
    assert np.array_equal(upd.stress[cut], stress[cut]) and np.array_equal(upd.statev[cut], statev[cut])
    assert np.all(upd.pnewdt[cut] == cv.PNEWDT_CUT)
    Ce = cv.elastic_stiffness(*ELASTIC_TABLE.at(temp[cut]))
    assert np.array_equal(upd.ddsdde[cut], Ce)
    ok = ~cut
    assert np.array_equal(upd.stress[ok], ref.stress[ok])


def test_wrong_shapes_raise(backend):
    stress, statev, dstran, dt, temp, ex = _states(4, seed=6)
    E = ELASTIC_TABLE
    with pytest.raises(NeumatInputError, match=r"stress has shape \(4, 5\)"):
        integrate(backend, stress[:, :5], statev, dstran, dt, temp, E, ex)
    with pytest.raises(NeumatInputError, match="statev has shape"):
        integrate(backend, stress, statev[:, :5], dstran, dt, temp, E, ex)
    with pytest.raises(NeumatInputError, match="dstran has shape"):
        integrate(backend, stress, statev, dstran[:3], dt, temp, E, ex)
    with pytest.raises(NeumatInputError, match="dt has shape"):
        integrate(backend, stress, statev, dstran, np.ones(5), temp, E, ex)
    with pytest.raises(NeumatInputError, match="temperature has shape"):
        integrate(backend, stress, statev, dstran, dt, np.ones((4, 1)), E, ex)
    with pytest.raises(NeumatInputError, match="extras has shape"):
        integrate(backend, stress, statev, dstran, dt, temp, E, np.ones((4, 2)))
    with pytest.raises(NeumatInputError, match="extra feature"):
        integrate(backend, stress, statev, dstran, dt, temp, E)
    with pytest.raises(NeumatInputError, match="Elasticity"):
        integrate(backend, stress, statev, dstran, dt, temp, (1e5, 0.3), ex)
    with pytest.raises(NeumatInputError, match="strictly increasing"):
        Elasticity.table([1000, 900], [1e5, 9e4], 0.3)
    # scalars broadcast: dt, temperature, extras of shape (n_extras,)
    a = integrate(backend, stress, statev, dstran, 0.1, 1100.0, E, np.array([1.0]))
    b = integrate(backend, stress, statev, dstran, np.full(4, 0.1), np.full(4, 1100.0), E, np.ones((4, 1)))
    assert np.array_equal(a.stress, b.stress) and np.array_equal(a.ddsdde, b.ddsdde)


def test_elastic_table_interpolates():
    E, nu = ELASTIC_TABLE.at(np.array([900.0, 1000.0, 1150.0, 1400.0]))
    assert np.allclose(E, [120e3, 120e3, 100e3, 80e3]) and np.allclose(nu, [0.30, 0.30, 0.325, 0.35])


def test_onnx_and_numpy_backends_give_the_same_update(net, backend):
    stress, statev, dstran, dt, temp, ex = _states(100, seed=8)
    a = integrate(backend, stress, statev, dstran, dt, temp, ELASTIC_TABLE, ex)
    b = integrate(FlowNetBackend(net), stress, statev, dstran, dt, temp, ELASTIC_TABLE, ex)
    assert np.allclose(a.stress, b.stress, rtol=1e-12, atol=1e-9)
    assert np.allclose(a.ddsdde, b.ddsdde, rtol=1e-9, atol=1e-6)
    assert np.allclose(a.statev, b.statev, rtol=1e-11, atol=1e-15)


# degree-9 strain polynomials with coefficients up to 3e10, as a quick training run fitted them:
# σ_A carries ~1e-12 relative rounding noise, which a too tight Newton tolerance cannot beat
ILL_CONDITIONED_ARRHENIUS = dict(
    alpha=[0.002056514171, 0.0198746094, -0.5499741384, 5.663417795, -30.66650208, 96.67370671, -181.8570966, 198.8211959, -114.546804, 26.08806269],
    n=[26.92561811, -565.384705, 11657.54697, -114744.0167, 628319.3485, -2059592.251, 4129448.533, -4953114.866, 3257623.223, -901640.908],
    Q=[203498.6631, -3898976.397, 77667428.78, -740833777.8, 3993489163, -1.298982244e+10, 2.596818221e+10, -3.116810582e+10, 2.057824948e+10, -5736254539],
    lnA=[37.5448604, -1167.93035, 23048.41153, -219365.5498, 1178276.566, -3809815.758, 7546791.458, -8941530.216, 5802095.597, -1581316.432],
    strain_min=0.01, strain_max=0.693)


def test_converges_with_a_noisy_flow_stress():
    net = random_flownet(seed=7, n_extras=1, base=dict(mode="multiplicative", arrhenius=ILL_CONDITIONED_ARRHENIUS))
    net.output = dict(kind="affine", scale=0.05, shift=0.0)
    flow = FlowNetBackend(net)
    rng = np.random.default_rng(11)
    n = 2000
    statev = np.zeros((n, cv.NSTATV))
    statev[:, cv.SV_P] = 0.05 + 0.6 * rng.random(n)
    dstran = 3e-3 * rng.normal(size=(n, 6))
    temp, dt = 1060.0 + 180.0 * rng.random(n), 10 ** rng.uniform(-3, 0, n)
    upd = integrate(flow, np.zeros((n, 6)), statev, dstran, dt, temp, Elasticity(1e5, 0.3), np.ones(1))
    assert np.all(upd.status == cv.OK) and np.mean(upd.iterations) < 8


# ---- UMAT interface -----------------------------------------------------------------------------

def _props(temp_mode, extra=1.0, floor=0.0):
    return [1.0e5, 0.3, temp_mode, floor, extra]


def test_umat_matches_integrate_and_temperature_conventions(backend):
    stress, statev, dstran, dt, temp, ex = _states(20, seed=9)
    ex[:] = 1.0
    ref = integrate(backend, stress, statev, dstran, dt, temp, Elasticity(1.0e5, 0.3), ex)
    abq = UmatMaterial(backend, _props(cv.TEMP_MODE_ABAQUS))
    ccx = UmatMaterial(backend, _props(cv.TEMP_MODE_CALCULIX))
    for i in range(20):
        # Abaqus: TEMP at the start, DTEMP the increment; CalculiX: TEMP at the end
        r1 = abq.call(stress[i], statev[i], np.zeros(6), dstran[i], (0.0, 0.0), dt[i], temp[i] - 15.0, 15.0)
        r2 = ccx.call(stress[i], statev[i], np.zeros(6), dstran[i], (0.0, 0.0), dt[i], temp[i], 99.0)
        for r in (r1, r2):
            assert np.array_equal(r[0], ref.stress[i]) or np.allclose(r[0], ref.stress[i], rtol=1e-14, atol=1e-12)
            assert np.allclose(r[1], ref.statev[i], rtol=1e-14, atol=1e-16)
            assert np.allclose(r[2], ref.ddsdde[i], rtol=1e-13, atol=1e-9)
            assert r[3] == 1.0
    # the raw Abaqus-style call updates in place and returns PNEWDT
    s, v, dd = stress[0].copy(), statev[0].copy(), np.zeros((6, 6))
    sse, spd, scd = np.zeros(1), np.zeros(1), np.zeros(1)
    pn = umat(s, v, dd, sse, spd, scd, np.zeros(1), np.zeros(6), np.zeros(6), np.zeros(1), np.zeros(6),
              dstran[0], np.zeros(2), dt[0], temp[0], 0.0, np.zeros(1), np.zeros(1), "MAT", 3, 3, 6,
              cv.NSTATV, np.array(_props(0)), 5, np.zeros(3), np.eye(3), 1.5, 1.0, np.eye(3), np.eye(3),
              1, 1, 1, 1, 1, 1, flow=backend)
    assert pn == 1.5
    assert np.allclose(s, ref.stress[0], rtol=1e-14, atol=1e-12) and np.allclose(dd, ref.ddsdde[0], rtol=1e-13, atol=1e-9)
    if v[cv.SV_P] > statev[0, cv.SV_P]:
        assert spd[0] > 0
    assert sse[0] > 0


def test_umat_bad_input_cuts_the_step_with_finite_outputs(backend):
    mat = UmatMaterial(backend, _props(cv.TEMP_MODE_CALCULIX))
    s0, v0 = np.array([50.0, -20.0, 0.0, 5.0, 0.0, 0.0]), np.zeros(cv.NSTATV)
    d = np.array([-1e-3, 5e-4, 5e-4, 0.0, 0.0, 0.0])
    for kwargs in (dict(temp=np.nan), dict(dtime=0.0), dict(dtime=-1.0), dict(dtemp=np.inf),
                   dict(dstran=np.array([np.nan, 0, 0, 0, 0, 0]))):
        call = dict(stress=s0, statev=v0, stran=np.zeros(6), dstran=d, time=(0.0, 0.0), dtime=0.01,
                    temp=1100.0, dtemp=0.0)
        call.update(kwargs)
        s, v, dd, pn = mat.call(**call)
        assert pn < 1.0, kwargs
        assert np.all(np.isfinite(s)) and np.all(np.isfinite(v)) and np.all(np.isfinite(dd)), kwargs
        assert np.array_equal(s, s0) and np.array_equal(v, v0)
    # PNEWDT: CalculiX passes -1 ("no request"), Abaqus a large value; a smaller request stays
    call = (s0, v0, np.zeros(6), d, (0.0, 0.0), 0.01, np.nan, 0.0)
    assert mat.call(*call, pnewdt=-1.0)[3] == cv.PNEWDT_CUT
    assert mat.call(*call, pnewdt=1e36)[3] == cv.PNEWDT_CUT
    assert mat.call(*call, pnewdt=0.25)[3] == 0.25
    assert mat.call(s0, v0, np.zeros(6), d, (0.0, 0.0), 0.01, 1100.0, 0.0, pnewdt=-1.0)[3] == -1.0
    bad_props = UmatMaterial(backend, [1e5, 0.3, np.nan, 0.0, 1.0])
    assert bad_props.call(s0, v0, np.zeros(6), d, (0.0, 0.0), 0.01, 1100.0, 0.0)[3] < 1.0
    s, v, dd, pn = UmatMaterial(backend, [np.nan, 0.3, 1, 0.0, 1.0]).call(s0, v0, np.zeros(6), d, (0, 0), 0.01, 1100.0, 0.0)
    assert pn < 1.0 and np.all(np.isfinite(dd))
    # configuration errors are errors
    with pytest.raises(NeumatInputError, match="CONSTANTS|expected 5"):
        UmatMaterial(backend, [1e5, 0.3, 1, 0.0])
    with pytest.raises(NeumatInputError, match="NTENS"):     # NDI + NSHR != NTENS: no continuum layout
        umat(np.zeros(4), np.zeros(9), np.zeros((4, 4)), 0, 0, 0, 0, None, None, 0, np.zeros(4), np.zeros(4),
             np.zeros(2), 0.1, 1100.0, 0.0, None, None, "M", 2, 1, 4, 9, np.array(_props(1)), 5, None, None,
             1.0, 1.0, None, None, 1, 1, 1, 1, 1, 1, flow=backend)
    with pytest.raises(NeumatInputError, match="DEPVAR"):
        mat_short = UmatMaterial(backend, _props(1), nstatv=5)
        mat_short.call(s0, np.zeros(5), np.zeros(6), d, (0, 0), 0.01, 1100.0, 0.0)


# ---- data coverage (issue 16, item 1) ------------------------------------------------------------

@pytest.fixture(scope="module")
def gap_backend(tmp_path_factory):
    """A model measured at 20 °C and 650–1050 °C (a 630 °C gap), curves from strain 0.002 on."""
    net = gap_flownet(seed=4, n_extras=1)
    return OnnxBackend(export_onnx(net, tmp_path_factory.mktemp("gap") / "gap.onnx"))


def _first_yield(flow, n, seed):
    """n virgin points loaded uniaxially at a measured condition (T, rate, extra of GAP_TEMPS ×
    GAP_RATES × {0, 1}) until the first plastic increment; returns (first plastic update, T,
    the states before it)."""
    rng = np.random.default_rng(seed)
    temp = rng.choice(GAP_TEMPS, n)
    rate = rng.choice(GAP_RATES, n)
    ex = rng.integers(0, 2, (n, 1)).astype(float)
    el = Elasticity(1.0e5, 0.3)
    d = 2e-4 * (0.5 + rng.random(n))                          # strain per increment, various sizes
    dstran = np.column_stack([-d, 0.5 * d, 0.5 * d, np.zeros((n, 3))])
    dt = d / rate
    stress, statev = np.zeros((n, 6)), np.zeros((n, cv.NSTATV))
    first = np.full(n, False)
    for _ in range(400):
        upd = integrate(flow, stress, statev, dstran, dt, temp, el, ex)
        assert np.all(upd.status == cv.OK)
        newly = (upd.statev[:, cv.SV_P] > 0) & ~first
        if np.any(newly):
            yield_state = upd.statev[newly]
            assert np.all(yield_state[:, cv.SV_P] < 0.002)        # below the first measured strain
            assert np.all(yield_state[:, cv.SV_NOUT] == 0), "first yield flagged outside the data"
        first |= upd.statev[:, cv.SV_P] > 0
        stress, statev = upd.stress, upd.statev
        if first.all():
            return
    raise AssertionError("not every point yielded")


def test_first_yield_is_never_flagged(gap_backend):
    _first_yield(gap_backend, 200, seed=1)
    # the README's snippet: 1000 points, one plastic increment from zero at a measured condition
    n = 1000
    upd = integrate(gap_backend, np.zeros((n, 6)), np.zeros((n, cv.NSTATV)),
                    np.tile([-2e-3, 1e-3, 1e-3, 0, 0, 0], (n, 1)), dt=0.02, temperature=950.0,
                    elastic=Elasticity(E=150e3, nu=0.3), extras=[0.0])
    assert np.all(upd.statev[:, cv.SV_P] > 0) and np.all(upd.statev[:, cv.SV_P] < 0.002)
    assert np.all(upd.statev[:, cv.SV_NOUT] == 0)


def test_gap_between_conditions_and_strain_beyond_the_curves_are_flagged(gap_backend):
    b = gap_backend
    assert b.coverage is not None and b.coverage.conditions.shape == (36, 3)
    x = np.array([[0.2, 0.1, 335.0, 0.0],       # middle of the 20–650 °C gap
                  [0.2, 0.1, 700.0, 0.0],       # between two measured temperatures: inside
                  [0.0005, 0.01, 20.0, 1.0],    # below the first measured strain: inside
                  [0.5, 1.0, 20.0, 1.0],        # beyond the 20 °C curves' end (0.4)
                  [0.5, 1.0, 650.0, 1.0],       # within the 650 °C curves (0.6)
                  [0.2, 0.03, 850.0, 0.5],      # between rates and extras: inside
                  [0.2, 1e-6, 850.0, 0.0],      # below the lowest rate: the onset of flow, inside
                  [0.2, 30.0, 850.0, 0.0],      # 1.5 decades above the highest rate
                  [0.2, 0.1, 1300.0, 0.0],      # 250 °C above the highest temperature
                  [-0.01, 0.1, 850.0, 0.0]])    # negative strain
    expected = [True, False, False, True, False, False, False, True, True, True]
    assert b.out_of_box(x).tolist() == expected
    assert FlowNetBackend(gap_flownet(seed=4, n_extras=1)).out_of_box(x).tolist() == expected
    # the J2 counter: plastic flow at 335 °C counts, at 700 °C it does not
    n = 20
    rng = np.random.default_rng(3)
    d = np.column_stack([-np.full(n, 4e-3), np.full(n, 2e-3), np.full(n, 2e-3), np.zeros((n, 3))])
    statev = np.zeros((n, cv.NSTATV))
    statev[:, cv.SV_P] = 0.05 + 0.2 * rng.random(n)
    temp = np.where(np.arange(n) % 2 == 0, 335.0, 700.0)
    upd = integrate(b, np.zeros((n, 6)), statev, d, 0.04, temp, Elasticity(1e5, 0.3), np.zeros((n, 1)))
    assert np.all(upd.status == cv.OK) and np.all(upd.statev[:, cv.SV_P] > statev[:, cv.SV_P])
    assert upd.statev[:, cv.SV_NOUT].tolist() == [1.0, 0.0] * (n // 2)
    assert "36 measured conditions" in b.describe()


def test_models_without_conditions_fall_back_to_the_box(tmp_path, net):
    """An ONNX file written before the coverage key existed (key absent) still loads; its rule is
    the training box with plastic strain from 0 inside."""
    m = onnx.load(str(export_onnx(net, tmp_path / "new.onnx")))
    keep = [p for p in m.metadata_props if p.key != "neumat.coverage"]
    del m.metadata_props[:]
    m.metadata_props.extend(keep)
    old = tmp_path / "old.onnx"
    onnx.save(m, str(old))
    b = OnnxBackend(old)
    assert b.coverage is None and "box rule" in b.describe()
    x = in_box_points(net, 50)
    x[:, 0] = 0.0                                             # strain 0 (box starts at 0 here)
    assert not b.out_of_box(x).any()
    x[::5, 2] = 1300.0
    assert b.out_of_box(x).tolist() == [i % 5 == 0 for i in range(50)]
    lifted = random_flownet(seed=7, n_extras=1)
    lifted.box_lo = [0.01] + list(lifted.box_lo[1:])          # first measured strain 0.01
    y = in_box_points(lifted, 10)
    y[:, 0] = 0.004
    assert not FlowNetBackend(lifted).out_of_box(y).any()     # below the first strain: inside


# ---- element types, temperature units, impossible input (issue 16, items 2, 3, 7) ----------------

def test_ntens4_plane_strain_axisymmetric_matches_3d(backend):
    stress, statev, dstran, dt, temp, ex = _states(30, seed=21, plastic_fraction=1.0)
    stress[:, 4:] = 0.0
    dstran[:, 4:] = 0.0
    statev[:, 5:7] = 0.0                                      # ε_p 13, 23 of a 2-D state
    ex[:] = 1.0
    mat = UmatMaterial(backend, _props(cv.TEMP_MODE_CALCULIX))
    plastic = []
    for i in range(30):
        s6, v6, c6, p6 = mat.call(stress[i], statev[i], np.zeros(6), dstran[i], (0, 0), dt[i], temp[i])
        plastic.append(v6[cv.SV_P] - statev[i, cv.SV_P])
        s4, v4, c4, p4 = mat.call(stress[i, :4], statev[i], np.zeros(4), dstran[i, :4], (0, 0), dt[i], temp[i])
        assert p4 == p6 == 1.0
        assert np.array_equal(s4, s6[:4]) and np.array_equal(v4, v6) and np.array_equal(c4, c6[:4, :4])
        assert s6[4] == s6[5] == 0.0
    # the 4×4 tangent against central differences of the 4-component update
    assert sum(np.array(plastic) > 0) > 10
    i = int(np.argmax(plastic))
    base = mat.call(stress[i, :4], statev[i], np.zeros(4), dstran[i, :4], (0, 0), dt[i], temp[i])
    assert base[1][cv.SV_P] > statev[i, cv.SV_P]
    h = 1e-7
    fd = np.empty((4, 4))
    for j in range(4):
        e = np.zeros(4)
        e[j] = h
        sp = mat.call(stress[i, :4], statev[i], np.zeros(4), dstran[i, :4] + e, (0, 0), dt[i], temp[i])[0]
        sm = mat.call(stress[i, :4], statev[i], np.zeros(4), dstran[i, :4] - e, (0, 0), dt[i], temp[i])[0]
        fd[:, j] = (sp - sm) / (2 * h)
    assert np.max(np.abs(fd - base[2])) <= 1e-5 * np.max(np.abs(base[2]))


def test_plane_stress_is_refused_with_a_step_cut(backend):
    mat = UmatMaterial(backend, _props(cv.TEMP_MODE_CALCULIX))
    s0 = np.array([10.0, -5.0, 2.0])
    with pytest.warns(RuntimeWarning, match="plane stress"):
        s, v, dd, pn = mat.call(s0, np.zeros(cv.NSTATV), np.zeros(3), np.array([-1e-3, 5e-4, 0.0]), (0, 0), 0.01, 1100.0)
    assert pn == cv.PNEWDT_CUT and np.array_equal(s, s0) and np.all(v == 0)
    assert dd.shape == (3, 3) and np.all(np.isfinite(dd)) and dd[0, 0] == pytest.approx(1e5 / (1 - 0.09))


def test_impossible_input_is_bad_input_and_umat_outputs_stay_finite(backend):
    stress, statev, dstran, dt, temp, ex = _states(8, seed=22)
    cases = {"T below absolute zero": (None, None, None, np.full(8, -300.0)),
             "negative p": (None, "p", None, None), "strain increment of 1": (None, None, "big", None)}
    for name, (_, sv, de, T) in cases.items():
        v, d, t = statev.copy(), dstran.copy(), temp.copy() if T is None else T
        if sv:
            v[:, cv.SV_P] = -0.01
        if de:
            d[:, 2] = -1.0
        upd = integrate(backend, stress, v, d, dt, t, ELASTIC_TABLE, ex)
        assert np.all(upd.status == cv.BAD_INPUT), name
        assert np.all(upd.pnewdt == cv.PNEWDT_CUT) and np.all(np.isfinite(upd.ddsdde)), name
    # the UMAT never hands back a non-finite stress: an inf input stress comes back as 0 there
    mat = UmatMaterial(backend, _props(cv.TEMP_MODE_CALCULIX))
    s0 = np.array([np.inf, -20.0, 0.0, 5.0, 0.0, 0.0])
    s, v, dd, pn = mat.call(s0, np.zeros(cv.NSTATV), np.zeros(6), np.full(6, 1e-4), (0, 0), 0.01, 1100.0)
    assert pn == cv.PNEWDT_CUT and np.all(np.isfinite(s)) and np.all(np.isfinite(dd))
    assert s.tolist() == [0.0, -20.0, 0.0, 5.0, 0.0, 0.0]


def test_temperature_unit(backend):
    stress, statev, dstran, dt, temp, ex = _states(30, seed=23)
    ref = integrate(backend, stress, statev, dstran, dt, temp, ELASTIC_TABLE, ex)
    for unit, t in (("K", temp + 273.15), ("F", temp * 9.0 / 5.0 + 32.0)):
        upd = integrate(backend, stress, statev, dstran, dt, t, ELASTIC_TABLE, ex, temperature_unit=unit)
        assert np.allclose(upd.stress, ref.stress, rtol=1e-9, atol=1e-9) and np.array_equal(upd.status, ref.status)
    with pytest.raises(NeumatInputError, match="temperature unit 'R' unknown"):
        integrate(backend, stress, statev, dstran, dt, temp, ELASTIC_TABLE, ex, temperature_unit="R")
    assert backend.temperature_outside(np.array([1100.0, 1373.15])).tolist() == [False, True]
