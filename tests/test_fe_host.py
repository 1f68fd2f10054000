"""The scikit-fem hot-compression host (fem_bridge.hosts.skfem_compression) driven by the ONNX backend and
fem_bridge.j2.integrate.

Kinematics under test (see the skfem_compression docstring): incremental small strain on the updated mesh
with the strain increment measured on the mid-increment configuration, so in the frictionless
(homogeneous) case the axial strain increment is Δh/h_mid and the accumulated strain is ln(h0/h);
the force is the platen reaction on the end-of-increment mesh; the current area is V/h.
"""
from __future__ import annotations

import csv

import meshio
import numpy as np
import pytest
from scipy.optimize import brentq

from constitutive.cli import main
from export.onnx_export import export_onnx
from fem_bridge import conventions as cv
from fem_bridge.backends import load_backend
from fem_bridge.hosts.compression_setup import CompressionSetup
from fem_bridge.hosts.cylinder_mesh import quarter_cylinder_mesh
from fem_bridge.hosts.skfem_bbar import BBarKinematics
from fem_bridge.hosts.skfem_compression import run_compression
from helpers import random_flownet

SEED = 7   # a random net with positive rate sensitivity (m ≈ 0.04) and mild hardening, as steels are


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return export_onnx(random_flownet(SEED), tmp_path_factory.mktemp("fe_host") / "model.onnx")


@pytest.fixture(scope="module")
def flow(model_path):
    return load_backend(model_path)


@pytest.fixture(scope="module")
def frictionless(flow):
    return run_compression(flow, CompressionSetup(friction="none"), log=None)


def test_model_is_physically_sane(flow):
    """Precondition of the sticking-vs-frictionless comparison: σ_y grows with rate and strain."""
    x = np.array([[p, r, 1100.0] for p in (0.0, 0.25, 0.5) for r in (0.1, 0.15, 0.2)])
    _, d = flow.evaluate(x)
    assert np.all(d[:, 1] > 0) and np.all(d[:, 0] > 0)


def test_mesh_geometry():
    m = quarter_cylinder_mesh(5.0, 7.5, 4, 3, 6)
    kin = BBarKinematics(m.p, m.t)
    exact = np.pi * 25.0 * 7.5 / 4
    assert kin.w.min() > 0
    assert abs(kin.w.sum() / exact - 1) < 0.01          # polygonal arc: 0.7 % smaller
    r = np.hypot(m.p[0], m.p[1])
    assert r.max() == pytest.approx(5.0) and m.p[2].max() == pytest.approx(7.5)


def test_assembly_matches_scikit_fem_forms():
    """The hand-vectorised B-matrix assembly (without B-bar) equals scikit-fem's BilinearForm
    with the tangent passed as quadrature-point data."""
    from skfem import Basis, BilinearForm, ElementHex1, ElementVector, MeshHex, asm
    from skfem.helpers import sym_grad
    m = quarter_cylinder_mesh(5.0, 7.5, 2, 1, 2)
    kin = BBarKinematics(m.p, m.t, bbar=False)
    rng = np.random.default_rng(0)
    ne, nq = kin.w.shape
    C = rng.normal(size=(ne * nq, 6, 6))
    C = C + C.transpose(0, 2, 1)
    K = kin.stiffness(C, 3 * m.p.shape[1]).toarray()
    basis = Basis(MeshHex(m.p, m.t), ElementVector(ElementHex1()), intorder=3)
    idx = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]
    Cq = C.reshape(ne, nq, 6, 6).transpose(2, 3, 0, 1)

    def voigt(e):           # engineering shear
        return [e[i, j] * (1 if i == j else 2) for i, j in idx]

    @BilinearForm
    def form(u, v, w):
        eu, ev = voigt(sym_grad(u)), voigt(sym_grad(v))
        return sum(ev[a] * w.C[a, b] * eu[b] for a in range(6) for b in range(6))

    Kref = asm(form, basis, C=Cq).toarray()
    assert np.abs(K - Kref).max() <= 1e-10 * np.abs(Kref).max()


def _uniaxial_reference(flow, res, T, E, nu):
    """Independent 1-D integration of the same path: axial log-strain increments of the FE
    kinematics, σ = σ_n + E(Δε − Δp) = σ_y(p_n + Δp, Δp/Δt, T) (bisection by brentq), current
    area from volume (elastic dilatation (1 − 2ν)σ/E) over height."""
    tab = res.table()
    h = np.concatenate([[res.height0], tab["height_mm"]])
    sig, p, out = 0.0, 0.0, []
    for k, dt in enumerate(tab["dt_s"]):
        de = 2 * (h[k] - h[k + 1]) / (h[k] + h[k + 1])
        trial = sig + E * de

        def g(dp):
            x = np.array([[p + dp, max(dp / dt, flow.rate_floor), T]])
            return trial - E * dp - flow.evaluate(x)[0][0]
        dp = brentq(g, 0.0, trial / E, xtol=1e-15, rtol=1e-14) if g(0.0) > 0 else 0.0
        p += dp
        sig = trial - E * dp
        area = res.volume0 * np.exp(-(1 - 2 * nu) * sig / E) / h[k + 1]
        out.append((sig, p, area))
    return np.array(out).T


def test_frictionless_force_is_flow_curve_times_area(flow, frictionless):
    res, s = frictionless, frictionless.setup
    assert res.completed and len(res.records) == 25
    tab = res.table()
    assert tab["true_strain"][-1] == pytest.approx(0.5, rel=1e-12)
    sig, p, area = _uniaxial_reference(flow, res, s.temperature, s.E, s.nu)
    f_ref = sig * area
    err = np.abs(tab["force_N"] / f_ref - 1)
    assert err.max() < 5e-3, err
    # the pieces: area and plastic strain of the FE mesh against the reference
    assert np.abs(tab["area_mm2"] / area - 1).max() < 1e-3
    assert np.abs(tab["mean_p"] - p).max() < 1e-3
    # homogeneous: every Gauss point carries the same state
    assert np.ptp(res.final_statev[:, cv.SV_P]) < 1e-9


def _check_quadratic(records, C=1.0):
    n_pairs = 0
    for rec in records:
        rel = np.array(rec.residuals[1:]) / rec.reaction_norm      # after the first correction
        assert len(rec.residuals) - 1 <= 8
        for a, b in zip(rel[:-1], rel[1:]):
            if 1e-7 < a < 1e-1:        # above the round-off floor (~1e-13 relative)
                assert b <= C * a ** 1.5, (rec.increment, rel)
                n_pairs += 1
    return n_pairs


def test_newton_converges_quadratically(frictionless):
    n_pairs = _check_quadratic(frictionless.records[1:])        # increment 1 holds the elastic-plastic switch
    assert n_pairs >= 20
    for rec in frictionless.records:
        assert rec.residuals[-1] <= 1e-10 * rec.reaction_norm


def test_sticking_ends_barrel_and_need_more_force(flow, tmp_path):
    res = run_compression(flow, CompressionSetup(friction="stick", strain=0.25, increments=10),
                          out_dir=tmp_path, log=None)
    assert res.completed
    assert _check_quadratic(res.records[1:]) >= 10
    s = res.setup
    sig, _, area = _uniaxial_reference(flow, res, s.temperature, s.E, s.nu)
    ratio = res.table()["force_N"] / (sig * area)
    assert np.all(ratio > 1.002), ratio                      # friction hill
    m = meshio.read(tmp_path / "increment_0010.vtu")
    x = m.points + m.point_data["displacement_mm"]
    r = np.hypot(x[:, 0], x[:, 1])
    top, mid = np.isclose(m.points[:, 2], 7.5), np.isclose(m.points[:, 2], 0.0)
    assert r[top].max() == pytest.approx(5.0, abs=1e-7)       # stuck (skfem joins meshes at 1e-8 mm)
    assert r[mid].max() > 5.0 * np.exp(0.25 / 2) * 1.01        # barrel wider than the homogeneous radius


def test_step_cut_halves_and_recovers(flow):
    from fem_bridge.j2 import integrate
    dt_full = (1 - np.exp(-0.05)) / 0.1 / 4
    calls = {"cut": 0}

    def flaky(flow_, stress, statev, dstran, dt, *a, **k):
        up = integrate(flow_, stress, statev, dstran, dt, *a, **k)
        if np.max(dt) > 0.75 * dt_full and calls["cut"] < 2:
            calls["cut"] += 1
            up.status[::7] = cv.STEP_CUT
        return up
    lines = []
    res = run_compression(flow, CompressionSetup(strain=0.05, increments=4), log=lines.append, integrate_fn=flaky)
    assert res.completed and calls["cut"] == 2
    assert res.records[0].cuts == 1 and res.records[0].dt == pytest.approx(dt_full / 2)
    assert res.table()["true_strain"][-1] == pytest.approx(0.05, rel=1e-12)
    assert any("halving" in ln for ln in lines)


def test_gives_up_cleanly_when_every_step_is_cut(flow):
    from fem_bridge.j2 import integrate

    def always(*a, **k):
        up = integrate(*a, **k)
        up.status[:] = cv.STEP_CUT
        return up
    res = run_compression(flow, CompressionSetup(strain=0.05, increments=2, max_cuts=3), log=None,
                          integrate_fn=always)
    assert not res.completed and "halvings" in res.message and res.records == []


def test_cli_simulate_writes_vtu_and_csv(model_path, tmp_path, capsys):
    out = tmp_path / "sim"
    rc = main(["simulate", "--model", str(model_path), "--strain", "0.1", "--increments", "3",
               "--friction", "stick", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Newton |r|" in text and text.count("increment ") >= 3
    rows = list(csv.DictReader(open(out / "force_displacement.csv")))
    assert len(rows) == 3 and float(rows[-1]["true_strain"]) == pytest.approx(0.1)
    assert float(rows[-1]["force_N"]) > float(rows[0]["force_N"]) > 0
    m = meshio.read(out / "increment_0003.vtu")
    for name in ("stress_MPa", "equivalent_plastic_strain", "status", "mises_stress_MPa"):
        assert name in m.cell_data
    assert m.point_data["displacement_mm"].shape == (len(m.points), 3)
    assert (out / "compression.pvd").is_file()


def test_cli_simulate_bad_input(model_path, tmp_path, capsys):
    assert main(["simulate", "--model", str(tmp_path / "nope.onnx"), "--out", str(tmp_path)]) == 2
    assert main(["simulate", "--model", str(model_path), "--strain-rate", "-1", "--out", str(tmp_path)]) == 2
    assert main(["simulate", "--model", str(model_path), "--extra", "direction=0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "strain rate" in err and "extra" in err
