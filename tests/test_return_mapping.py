"""The J2 return mapping's cost and robustness (issue 13), in both implementations.

* Warm start: the previous increment's Δp/Δt (STATEV 8) gives the Newton start; under steady
  plastic loading a call then needs about 2 flow evaluations instead of 4, and gives the same
  answer as the cold start (to the convergence tolerance).
* A noisy model (rounding noise far above RTOL · q, like an order-9 polynomial hybrid) converges:
  the stop rule "the bracket cannot shrink" does not depend on the noise; the old rule
  |r| <= RTOL · q alone cut the step at every such point.
* The compiled UMAT follows the same algorithm (Fortran against the Python bridge).
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from constitutive.flownet import FlowNet
from fem_bridge import conventions as cv
from fem_bridge.backends import FlowNetBackend, FlowStressBackend
from fem_bridge.j2 import Elasticity, integrate
from helpers import random_flownet

E_MPA, NU = 1.0e5, 0.3


class HashNoise(FlowStressBackend):
    """A backend whose flow stress carries deterministic pseudo-random relative noise of size
    ``rel`` (a hash of the input's bits): σ(1 + rel·u), u in [−½, ½); exact derivative."""

    def __init__(self, base: FlowStressBackend, rel: float):
        self.base, self.rel = base, rel
        for k in ("feature_names", "feature_units", "box_lo", "box_hi", "rate_floor", "box_policy", "coverage"):
            setattr(self, k, getattr(base, k))

    def _evaluate(self, x):
        s, g = self.base._evaluate(x)
        h = (np.ascontiguousarray(x).view(np.uint64).sum(axis=1) * np.uint64(2654435761)) % np.uint64(1000003)
        return s * (1.0 + self.rel * (h / 1000003.0 - 0.5)), g


def _loading(n, seed=0):
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 6)) * 2e-3
    d[:, :3] -= d[:, :3].mean(axis=1, keepdims=True)          # deviatoric: plastic flow
    return d, 1100.0 + 100.0 * rng.random(n)


def _run(flow, n=400, nsteps=10, dt=0.02, cold=False):
    d, temp = _loading(n)
    stress, sv = np.zeros((n, 6)), np.zeros((n, cv.NSTATV))
    out = []
    for _ in range(nsteps):
        if cold:
            sv = sv.copy()
            sv[:, cv.SV_PDOT] = 0.0                           # no guess: the cold start
        u = integrate(flow, stress, sv, d, dt, temp, Elasticity(E_MPA, NU))
        out.append(u)
        stress, sv = u.stress, u.statev
    return out


def test_warm_start_halves_flow_evaluations_same_answer():
    flow = FlowNetBackend(random_flownet(3))
    warm, cold = _run(flow), _run(flow, cold=True)
    for uw, uc in zip(warm, cold):
        assert np.all(uw.status == cv.OK) and np.all(uc.status == cv.OK)
        assert np.max(np.abs(uw.stress - uc.stress)) <= 1e-9 * np.max(np.abs(uc.stress))
        assert np.max(np.abs(uw.ddsdde - uc.ddsdde)) <= 1e-8 * np.max(np.abs(uc.ddsdde))
    steady_warm = np.mean([u.iterations.mean() for u in warm[4:]])
    steady_cold = np.mean([u.iterations.mean() for u in cold[4:]])
    assert steady_cold >= 3.5                                 # the yield check, then 3 Newton steps
    assert steady_warm <= 2.5                                 # the guess, then one Newton step


def test_warm_start_then_unloading_is_elastic():
    flow = FlowNetBackend(random_flownet(3))
    u = _run(flow, n=50, nsteps=4)[-1]
    d, temp = _loading(50)
    back = integrate(flow, u.stress, u.statev, -0.2 * d, 0.02, temp, Elasticity(E_MPA, NU))
    assert np.all(back.status == cv.OK) and np.all(back.iterations == 0)
    assert np.all(back.statev[:, cv.SV_PDOT] == 0.0)
    np.testing.assert_array_equal(back.statev[:, cv.SV_P], u.statev[:, cv.SV_P])


@pytest.mark.parametrize("rel", [1e-9, 1e-7])
def test_noisy_model_converges(rel):
    exact = FlowNetBackend(random_flownet(3))
    noisy = _run(HashNoise(exact, rel))
    ref = _run(exact)
    for un, ue in zip(noisy, ref):
        assert np.all(un.status == cv.OK)                     # the old stop rule cut these steps
        assert un.iterations.max() <= cv.MAX_ITER
        assert np.max(np.abs(un.stress - ue.stress)) <= 20 * rel * np.max(np.abs(ue.stress))


def noisy_flownet(seed: int, k: float) -> FlowNet:
    """random_flownet with a cancellation before its output layer: y = w·h + (K w·h + c) −
    (K w·h + c) in floating point, i.e. rounding noise of about K·1e-16 relative inside the graph
    (what an order-9 polynomial hybrid does), the same function otherwise."""
    net = random_flownet(seed)
    w = np.asarray(net.ops[-1]["W"], dtype=float)            # (1, width)
    b = np.asarray(net.ops[-1]["b"], dtype=float)
    net.ops[-1] = dict(op="linear", W=np.vstack([w, k * w, -k * w]), b=np.array([b[0], 50.0, -50.0]))
    net.ops.append(dict(op="linear", W=np.ones((1, 3)), b=np.zeros(1)))
    return net


@pytest.mark.skipif(shutil.which("gfortran") is None, reason="gfortran not installed")
def test_fortran_umat_noisy_model_converges_and_follows_python(tmp_path, monkeypatch):
    from export.onnx_export import export_onnx
    from fem_bridge.umat import UmatMaterial
    from fortran_umat.build import build_umat
    from fortran_umat.library_binding import CompiledUmat
    monkeypatch.setenv("NEUMAT_CACHE", str(tmp_path / "cache"))
    props = [E_MPA, NU, 1.0, 0.0]
    de = np.array([-2e-3, 1e-3, 1e-3, 4e-4, 0.0, 0.0])
    for name, net in (("exact", random_flownet(3)), ("noisy", noisy_flownet(3, 1e7))):
        path = export_onnx(net, tmp_path / f"{name}.onnx")
        fo = CompiledUmat(build_umat(path).library, props)
        py = UmatMaterial(FlowNetBackend(net), props)
        s_f = s_p = np.zeros(6)
        v_f = v_p = np.zeros(cv.NSTATV)
        stran = np.zeros(6)
        for k in range(12):
            kw = dict(time=(0.02 * k, 0.02 * k), dtime=0.02, temp=1150.0, dtemp=0.0, kinc=k + 1)
            s_f, v_f, c_f, pn_f = fo.call(s_f, v_f, stran, de, **kw)
            s_p, v_p, c_p, pn_p = py.call(s_p, v_p, stran, de, **kw)
            stran = stran + de
            assert pn_f == pn_p == 1.0, (name, k)             # converged: no step cut
            tol = 1e-9 if name == "exact" else 1e-7
            assert np.max(np.abs(s_f - s_p)) <= tol * np.max(np.abs(s_p)), (name, k)
            assert abs(v_f[cv.SV_P] - v_p[cv.SV_P]) <= tol * v_p[cv.SV_P], (name, k)
        assert v_f[cv.SV_P] > 0.0
