"""The compiled N-point return mapping (issue 13): with the compiled backend,
``fem_bridge.j2.integrate`` makes one call into Fortran (``neumat_j2_batch``, the UMAT's
``nm_j2_update`` over the points, OpenMP) — same statuses, iteration counts and outputs as the
numpy path, which stays the reference."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from fem_bridge import conventions as cv
from fem_bridge.backends import OnnxBackend
from fem_bridge.j2 import Elasticity, integrate
from fem_bridge.umat import UmatMaterial
from helpers import random_flownet

pytestmark = pytest.mark.skipif(shutil.which("gfortran") is None, reason="gfortran not installed")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from export.onnx_export import export_onnx
    d = tmp_path_factory.mktemp("compiled_integrate")
    net = random_flownet(5, n_extras=1)
    return net, export_onnx(net, d / "m.onnx")


@pytest.fixture
def compiled(model, tmp_path, monkeypatch):
    from fortran_umat.library_binding import CompiledBackend
    monkeypatch.setenv("NEUMAT_CACHE", str(tmp_path / "cache"))
    return lambda threads=1: CompiledBackend(model[1], threads=threads)


class CountingOnnx(OnnxBackend):
    calls = 0

    def _evaluate(self, x):
        CountingOnnx.calls += 1
        return super()._evaluate(x)


def _path(n, seed):
    """A loading path on n points: plastic loading, unloading, a temperature ramp, bad points."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 6)) * 2e-3
    d[:, :3] -= 0.8 * d[:, :3].mean(axis=1, keepdims=True)
    steps = []
    for k in range(9):
        dk = d * (1.0 if k < 6 else -0.03)                         # then elastic unloading
        temp = 1080.0 + 15.0 * k + 40.0 * rng.random(n)
        dt = np.where(rng.random(n) < 0.3, 5.0, 0.02)              # some points below the rate floor
        steps.append((dk, dt, temp))
    bad = steps[3][0].copy()
    bad[0, 0] = np.nan                                              # BAD_INPUT at one point
    steps[3] = (bad, steps[3][1], steps[3][2])
    return steps


def _run(flow, n=300, seed=1):
    el = Elasticity.table([1000.0, 1300.0], [1.2e5, 0.9e5], [0.3, 0.32])
    stress, sv = np.zeros((n, 6)), np.zeros((n, cv.NSTATV + 2))     # two host columns kept as they are
    sv[:, -1] = 7.0
    ex = np.random.default_rng(seed).integers(0, 2, (n, 1)).astype(float)
    floor = np.where(np.arange(n) % 5 == 0, 0.05, 0.0)             # PROPS(4) override on a fifth
    out = []
    for dk, dt, temp in _path(n, seed):
        u = integrate(flow, stress, sv, dk, dt, temp, el, extras=ex, rate_floor=floor)
        out.append(u)
        stress, sv = u.stress, u.statev
    return out


def test_compiled_integrate_matches_numpy_path(model, compiled):
    CountingOnnx.calls = 0
    comp = compiled()
    assert comp.has_j2_update
    ref = _run(CountingOnnx(model[1]))
    assert CountingOnnx.calls > 0
    calls = CountingOnnx.calls
    got = _run(comp)
    n_plastic = 0
    for k, (a, b) in enumerate(zip(got, ref)):
        np.testing.assert_array_equal(a.status, b.status, err_msg=f"step {k}")
        np.testing.assert_array_equal(a.iterations, b.iterations, err_msg=f"step {k}")
        np.testing.assert_array_equal(a.pnewdt, b.pnewdt)
        assert np.max(np.abs(a.stress - b.stress)) <= 1e-9 * np.max(np.abs(b.stress)), k
        assert np.max(np.abs(a.statev - b.statev) / np.maximum(np.abs(b.statev), 1e-12)) <= 1e-9, k
        assert np.max(np.abs(a.ddsdde - b.ddsdde)) <= 1e-9 * np.max(np.abs(b.ddsdde)), k
        n_plastic += int(np.count_nonzero(a.iterations > 0))
    assert np.any(got[3].status == cv.BAD_INPUT)
    assert n_plastic > 500 and np.any(got[-1].iterations == 0)      # plastic and elastic points
    np.testing.assert_array_equal(got[-1].statev[:, -1], 7.0)        # host columns untouched
    assert CountingOnnx.calls == calls                               # the compiled run used no backend evaluate


def test_compiled_integrate_two_threads_bit_identical(compiled):
    one, two = _run(compiled(1)), _run(compiled(2))
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a.stress, b.stress)
        np.testing.assert_array_equal(a.statev, b.statev)
        np.testing.assert_array_equal(a.ddsdde, b.ddsdde)


def test_umat_material_uses_compiled_path(model, compiled):
    """UmatMaterial (and fem_bridge.umat) on a compiled backend: the library's own UMAT, one
    Fortran call, the same answer as the numpy bridge."""
    comp = compiled()
    calls = []
    orig = comp.umat_direct
    comp.umat_direct = lambda *a: calls.append(1) or orig(*a)
    props = [1.1e5, 0.3, 1.0, 0.0, 1.0]
    fast, ref = UmatMaterial(comp, props), UmatMaterial(OnnxBackend(model[1]), props)
    s1 = s2 = np.zeros(6)
    v1 = v2 = np.zeros(cv.NSTATV)
    de = np.array([-3e-3, 1.5e-3, 1.5e-3, 1e-3, 0.0, 0.0])
    for k in range(6):
        kw = dict(time=(0.02 * k, 0.02 * k), dtime=0.02, temp=1150.0, kinc=k + 1)
        s1, v1, c1, p1 = fast.call(s1, v1, np.zeros(6), de, **kw)
        s2, v2, c2, p2 = ref.call(s2, v2, np.zeros(6), de, **kw)
        assert p1 == p2 == 1.0
        assert np.max(np.abs(s1 - s2)) <= 1e-9 * np.max(np.abs(s2))
        assert np.max(np.abs(v1 - v2)) <= 1e-9 * np.max(np.abs(v2))
        assert np.max(np.abs(c1 - c2)) <= 1e-9 * np.max(np.abs(c2))
    assert len(calls) == 6


@pytest.mark.parametrize("case", ["ok", "nan-stress", "dt0", "ntens4", "elastic-table", "cut-kept"])
def test_umat_direct_matches_numpy_umat(model, compiled, case):
    """fem_bridge.umat.umat: the compiled model's direct path and the numpy bridge give the same
    in-place outputs, energies and PNEWDT, bad input included."""
    from fem_bridge.umat import umat
    nt = 4 if case == "ntens4" else 6
    props = [1.1e5, 0.3, 0.0, 0.0, 1.0] + ([2.0, 1000.0, 1.2e5, 0.3, 1300.0, 0.9e5, 0.32]
                                           if case == "elastic-table" else [])
    out = []
    for flow in (compiled(), OnnxBackend(model[1])):
        stress = np.array([-50.0, 10.0, 5.0, 3.0, 1.0, 2.0][:nt])
        if case == "nan-stress":
            stress[1] = np.nan
        statev = np.array([0.1, -0.01, 0.005, 0.005, 0.0, 0.0, 0.0, 0.3, 0.0, 42.0])
        ddsdde = np.zeros((nt, nt))
        sse, spd = np.array([1.0]), np.array([2.0])
        dstran = np.array([-4e-3, 2e-3, 2e-3, 1e-3, 0.0, 0.0][:nt])
        pn = umat(stress, statev, ddsdde, sse, spd, np.zeros(1), np.zeros(1), np.zeros(nt), np.zeros(nt),
                  np.zeros(1), np.zeros(nt), dstran, np.array([0.1, 0.1]), 0.0 if case == "dt0" else 0.02,
                  1140.0, 10.0, np.zeros(1), np.zeros(1), "NEUMAT", 3, nt - 3, nt, cv.NSTATV, np.array(props),
                  len(props), np.zeros(3), np.eye(3), 0.3 if case == "cut-kept" else -1.0, 1.0, np.eye(3),
                  np.eye(3), 1, 1, 1, 1, [1, 1, 0, 0], 3, flow=flow)
        out.append((stress, statev, ddsdde, sse, spd, pn))
    (s1, v1, c1, e1, p1, n1), (s2, v2, c2, e2, p2, n2) = out
    assert n1 == n2
    for a, b in ((s1, s2), (v1, v2), (c1, c2), (e1, e2), (p1, p2)):
        assert np.all(np.isfinite(a))
        assert np.max(np.abs(a - b)) <= 1e-9 * max(np.max(np.abs(b)), 1e-300)
    assert v1[-1] == 42.0                                # columns beyond NSTATV untouched
