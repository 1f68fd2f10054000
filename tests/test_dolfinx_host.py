"""The DOLFINx host (fem_bridge.hosts.dolfinx_compression) and the Mandel ↔ Abaqus conversion of
fem_bridge.conventions.

The host runs in the Python 3.12 environment .venv-dolfinx (``make dolfinx-env``); these tests,
under the main environment, drive it through subprocesses: serial and ``mpiexec -n 2`` (MPICH of
that environment, with ghost cells) must agree, and the frictionless case must reproduce the
scikit-fem host and the network's flow curve. Without .venv-dolfinx the host tests skip, except
when the environment variable CI is set: there they fail, so CI cannot skip them silently.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import brentq

from export.onnx_export import export_onnx
from fem_bridge import conventions as cv
from fem_bridge.backends import load_backend
from fem_bridge.hosts.compression_setup import CompressionSetup
from fem_bridge.hosts.skfem_compression import run_compression
from helpers import random_flownet

ROOT = Path(__file__).resolve().parents[1]
DX_BIN = ROOT / ".venv-dolfinx" / "bin"
SEED = 7                    # the model of test_fe_host: positive rate sensitivity, mild hardening
DIVISIONS = (2, 2, 3)       # 36 hexahedra: coarse, the frictionless solution is homogeneous anyway


# ---------------------------------------------------------------------------------------------
# conventions: Mandel ↔ Abaqus
# ---------------------------------------------------------------------------------------------
def _sym(rng):
    a = rng.normal(size=(3, 3))
    return a + a.T


def test_mandel_order_is_abaqus_order():
    assert [f"{i + 1}{j + 1}" for i, j in cv.VOIGT_INDEX] == list(cv.VOIGT)
    rng = np.random.default_rng(0)
    eps, sig = _sym(rng), _sym(rng)
    eng = np.array([eps[i, j] * (1 if i == j else 2) for i, j in cv.VOIGT_INDEX])     # Abaqus strain
    man = np.array([eps[i, j] * (1 if i == j else np.sqrt(2)) for i, j in cv.VOIGT_INDEX])
    np.testing.assert_allclose(cv.abaqus_to_mandel_strain(eng), man, rtol=1e-15)
    s_a = np.array([sig[i, j] for i, j in cv.VOIGT_INDEX])
    s_m = cv.abaqus_to_mandel_stress(s_a)
    # σ:ε is preserved: tensor double contraction = Abaqus σ·γ = Mandel σ_M·ε_M
    full = float(np.sum(sig * eps))
    assert s_a @ eng == pytest.approx(full, rel=1e-13)
    assert s_m @ cv.abaqus_to_mandel_strain(eng) == pytest.approx(full, rel=1e-13)


def test_mandel_round_trips_and_tangent():
    rng = np.random.default_rng(1)
    s, e, C = rng.normal(size=(5, 6)), rng.normal(size=(5, 6)), rng.normal(size=(5, 6, 6))
    np.testing.assert_allclose(cv.mandel_to_abaqus_stress(cv.abaqus_to_mandel_stress(s)), s, rtol=1e-15)
    np.testing.assert_allclose(cv.mandel_to_abaqus_strain(cv.abaqus_to_mandel_strain(e)), e, rtol=1e-15)
    np.testing.assert_allclose(cv.mandel_to_abaqus_tangent(cv.abaqus_to_mandel_tangent(C)), C, rtol=1e-14)
    # the tangent maps like the vectors: C_M ε_M = (C_A ε_A) in Mandel form
    C_m, e_m = cv.abaqus_to_mandel_tangent(C), cv.abaqus_to_mandel_strain(e)
    np.testing.assert_allclose(np.einsum("nij,nj->ni", C_m, e_m),
                               cv.abaqus_to_mandel_stress(np.einsum("nij,nj->ni", C, e)), rtol=1e-12, atol=1e-12)
    # isotropic elasticity in Mandel form: λ 1⊗1 + 2G I
    E, nu = 200e3, 0.3
    lam, G = E * nu / ((1 + nu) * (1 - 2 * nu)), E / (2 * (1 + nu))
    ref = 2 * G * np.eye(6)
    ref[:3, :3] += lam
    np.testing.assert_allclose(cv.abaqus_to_mandel_tangent(cv.elastic_stiffness(E, nu)), ref, rtol=1e-14)


# ---------------------------------------------------------------------------------------------
# the host, through .venv-dolfinx
# ---------------------------------------------------------------------------------------------
def _need_env():
    if (DX_BIN / "python").is_file() and (DX_BIN / "mpiexec").is_file():
        return
    msg = ".venv-dolfinx not found: run 'make dolfinx-env' (.ci/setup-dolfinx.sh)"
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(msg + "; CI must run the DOLFINx tests, not skip them")
    pytest.skip(msg)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return export_onnx(random_flownet(SEED), tmp_path_factory.mktemp("dolfinx_host") / "model.onnx")


def _host(out: Path, model, *args, ranks: int = 1, check: bool = True):
    cmd = [str(DX_BIN / "python"), "-m", "fem_bridge.hosts.dolfinx_compression", "--model", str(model), "--out", str(out),
           "--quiet", *map(str, args)]
    if ranks > 1:
        cmd = [str(DX_BIN / "mpiexec"), "-n", str(ranks)] + cmd
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if check:
        assert p.returncode == 0, p.stdout + p.stderr
        table = np.genfromtxt(out / "force_displacement.csv", delimiter=",", names=True)
        return table, json.loads((out / "newton.json").read_text())
    return p


def _uniaxial_reference(flow, height0, heights, dts, volume0, T, E, nu):
    """Independent 1-D integration along the host's axial strain increments Δh/h_mid (as in
    test_fe_host): σ = σ_n + E(Δε − Δp) = σ_y(p_n + Δp, Δp/Δt, T); area from the volume."""
    h = np.concatenate([[height0], heights])
    sig, p, out = 0.0, 0.0, []
    for k, dt in enumerate(dts):
        de = 2 * (h[k] - h[k + 1]) / (h[k] + h[k + 1])
        trial = sig + E * de

        def g(dp):
            return trial - E * dp - flow.evaluate(np.array([[p + dp, max(dp / dt, flow.rate_floor), T]]))[0][0]
        dp = brentq(g, 0.0, trial / E, xtol=1e-15, rtol=1e-14) if g(0.0) > 0 else 0.0
        p += dp
        sig = trial - E * dp
        out.append((sig, p, volume0 * np.exp(-(1 - 2 * nu) * sig / E) / h[k + 1]))
    return np.array(out).T


def test_frictionless_serial_mpi_scikit_fem_and_flow_curve(model_path, tmp_path):
    _need_env()
    args = ["--divisions", ",".join(map(str, DIVISIONS)), "--increments", 10, "--strain", 0.5]
    serial, info1 = _host(tmp_path / "serial", model_path, *args)
    mpi, info2 = _host(tmp_path / "mpi", model_path, *args, "--ghost-mode", "shared_facet", ranks=2)
    assert info1["completed"] and info2["completed"]
    assert info1["n_ranks"] == 1 and info2["n_ranks"] == 2 and info2["n_ghost_cells"] > 0
    assert len(serial) == 10 and serial["true_strain"][-1] == pytest.approx(0.5, rel=1e-12)
    # serial and parallel: the same Newton iterations, the same force-displacement curve
    np.testing.assert_array_equal(serial["newton_iterations"], mpi["newton_iterations"])
    assert [r["newton_iterations"] for r in info1["newton"]] == list(serial["newton_iterations"].astype(int))
    assert np.max(np.abs(mpi["force_N"] / serial["force_N"] - 1)) < 1e-8
    assert np.max(np.abs(mpi["platen_displacement_mm"] / serial["platen_displacement_mm"] - 1)) < 1e-12

    # the scikit-fem host on the same mesh and path: same discretisation of a homogeneous field
    flow = load_backend(model_path)
    setup = CompressionSetup(divisions=DIVISIONS, increments=10, strain=0.5)
    ref = run_compression(flow, setup, log=None)
    tab = ref.table()
    assert np.max(np.abs(serial["force_N"] / tab["force_N"] - 1)) < 1e-6
    assert np.max(np.abs(serial["area_mm2"] / tab["area_mm2"] - 1)) < 1e-6
    assert list(serial["newton_iterations"].astype(int)) == [len(r.residuals) - 1 for r in ref.records]

    # the network's flow curve (independent 1-D integration), within 0.5 %
    sig, p, area = _uniaxial_reference(flow, setup.height, serial["height_mm"], serial["dt_s"],
                                       info1["volume0_mm3"], setup.temperature, setup.E, setup.nu)
    assert np.max(np.abs(serial["force_N"] / (sig * area) - 1)) < 5e-3
    assert np.max(np.abs(serial["true_stress_MPa"] / sig - 1)) < 5e-3
    assert np.max(np.abs(serial["mean_p"] - p)) < 1e-3


def test_sticking_serial_equals_mpi_and_barrels(model_path, tmp_path):
    """Non-homogeneous field (Q2, the default when sticking): serial and 2 ranks agree, and the
    friction hill raises the force above the frictionless flow-curve force."""
    _need_env()
    args = ["--divisions", ",".join(map(str, DIVISIONS)), "--increments", 4, "--strain", 0.1, "--friction", "stick"]
    serial, info1 = _host(tmp_path / "serial", model_path, *args)
    mpi, info2 = _host(tmp_path / "mpi", model_path, *args, ranks=2)
    assert info1["completed"] and info2["completed"] and info1["degree"] == 2
    np.testing.assert_array_equal(serial["newton_iterations"], mpi["newton_iterations"])
    assert np.max(np.abs(mpi["force_N"] / serial["force_N"] - 1)) < 1e-8
    flow = load_backend(model_path)
    s = CompressionSetup()
    sig, _, area = _uniaxial_reference(flow, s.height, serial["height_mm"], serial["dt_s"],
                                       info1["volume0_mm3"], s.temperature, s.E, s.nu)
    ratio = serial["force_N"] / (sig * area)
    assert np.all(ratio > 1.002) and np.all(ratio < 1.1), ratio


def test_bad_input_is_one_line_without_traceback(model_path, tmp_path):
    _need_env()
    for args, text in [(["--strain-rate", "-1"], "strain rate"), (["--extra", "direction=0"], "extra"),
                       (["--divisions", "2,x"], "--divisions")]:
        p = _host(tmp_path / "x", model_path, *args, check=False)
        assert p.returncode == 2 and text in p.stderr and "Traceback" not in p.stderr, p.stderr
    p = _host(tmp_path / "x", tmp_path / "missing.onnx", ranks=2, check=False)
    assert p.returncode == 2 and "not found" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.count("error:") == 1          # rank 0 only
