"""neumat mesh / fem_bridge.mesh.evaluate_mesh with the ONNX backend."""
from __future__ import annotations

import os

import meshio
import numpy as np
import pytest

from constitutive.cli import main
from constitutive.errors import NeumatInputError
from export.onnx_export import export_onnx
from fem_bridge import conventions as cv
from fem_bridge.backends import load_backend
from fem_bridge.j2 import Elasticity, integrate
from fem_bridge.mesh import derivative_field_name, evaluate_mesh
from helpers import in_box_points, random_flownet


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("mesh_models")
    return export_onnx(random_flownet(3), d / "m.onnx"), export_onnx(random_flownet(4, n_extras=1), d / "mx.onnx")


def _cloud(n, seed=0):
    net = random_flownet(0)
    x = in_box_points(net, n, seed=seed)
    pts = np.random.default_rng(seed).random((n, 3))
    return meshio.Mesh(pts, [("vertex", np.arange(n).reshape(-1, 1))],
                       point_data={"peeq": x[:, 0], "rate": x[:, 1], "T": x[:, 2]})


def _hexes(nx=3):
    from skfem import MeshHex
    from skfem.io.meshio import HEX_MAPPING
    m = MeshHex.init_tensor(*(np.linspace(0, 1, nx + 1),) * 3)
    return meshio.Mesh(m.p.T, [("hexahedron", m.t[HEX_MAPPING[:8]].T)])


def test_cli_mesh_on_a_million_points(models, tmp_path, capsys):
    n = 1_000_000
    src, out = tmp_path / "cloud.vtu", tmp_path / "cloud_out.vtu"
    meshio.write(src, _cloud(n))
    rc = main(["mesh", "--model", str(models[0]), "--in", str(src), "--out", str(out), "--temperature", "T",
               "--strain-rate", "rate", "--plastic-strain", "peeq", "--no-progress"])
    assert rc == 0
    assert "1000000 evaluations" in capsys.readouterr().out
    m = meshio.read(out)
    flow = load_backend(models[0])
    names = ["flow_stress_MPa", "out_of_box"] + [derivative_field_name(f) for f in flow.feature_names]
    for name in names:
        assert m.point_data[name].shape == (n,)
    idx = np.random.default_rng(5).choice(n, 2000, replace=False)
    x = np.column_stack([m.point_data["peeq"][idx], m.point_data["rate"][idx], m.point_data["T"][idx]])
    s, d = flow.evaluate(x)
    np.testing.assert_allclose(m.point_data["flow_stress_MPa"][idx], s, rtol=1e-12)
    for j, f in enumerate(flow.feature_names):
        np.testing.assert_allclose(m.point_data[derivative_field_name(f)][idx], d[:, j], rtol=1e-12, atol=1e-300)
    assert m.point_data["out_of_box"].sum() == 0


def test_chunking_and_constants(models):
    flow = load_backend(models[0])
    mesh = _cloud(1000, seed=2)
    r1, m1 = evaluate_mesh(flow, mesh, temperature=1100, strain_rate="rate", plastic_strain=0.3, chunk=7)
    s1 = m1.point_data["flow_stress_MPa"].copy()
    r2, m2 = evaluate_mesh(flow, _cloud(1000, seed=2), temperature="1100", strain_rate="rate",
                           plastic_strain="0.3", chunk=1 << 16)
    np.testing.assert_allclose(s1, m2.point_data["flow_stress_MPa"], rtol=1e-13)
    x = np.column_stack([np.full(1000, 0.3), mesh.point_data["rate"], np.full(1000, 1100.0)])
    np.testing.assert_allclose(s1, flow.evaluate(x)[0], rtol=1e-12)
    assert r1.rows == 1000 and r1.location == "points"


def test_out_of_box_and_extras(models):
    flow = load_backend(models[1])
    mesh = _cloud(50)
    mesh.point_data["T"][:5] = 900.0                       # below the 1050 °C box edge
    mesh.point_data["dir"] = np.tile([0.0, 1.0], 25)
    res, m = evaluate_mesh(flow, mesh, temperature="T", strain_rate="rate", plastic_strain="peeq",
                           extras={"extra0": "dir"})
    assert res.n_out_of_box == 5 and m.point_data["out_of_box"][:5].all()
    x = np.column_stack([mesh.point_data["peeq"], mesh.point_data["rate"], mesh.point_data["T"], mesh.point_data["dir"]])
    np.testing.assert_allclose(m.point_data["flow_stress_MPa"], flow.evaluate(x)[0], rtol=1e-12)
    with pytest.raises(NeumatInputError, match="extra0"):
        evaluate_mesh(flow, _cloud(5), temperature="T", strain_rate="rate", plastic_strain="peeq")
    with pytest.raises(NeumatInputError, match="no extra feature"):
        evaluate_mesh(flow, _cloud(5), temperature="T", strain_rate="rate", plastic_strain="peeq",
                      extras={"extra0": 0, "direction": 1})


def test_quadrature_point_cell_data_to_xdmf(models, tmp_path):
    """Cell data with 8 values per cell in, (n_cells, 8) out; XDMF round trip."""
    flow = load_backend(models[0])
    mesh = _hexes(3)
    nc = len(mesh.cells[0].data)
    rng = np.random.default_rng(1)
    T = 1050 + 200 * rng.random((nc, 8))
    mesh.cell_data["T"] = [T[:, :, None]]            # XDMF's form of (n_cells, n_qp) scalars
    src = tmp_path / "hex.xdmf"
    meshio.write(src, mesh)
    out = tmp_path / "hex_out.xdmf"
    res, _ = evaluate_mesh(models[0], src, out, temperature="T", strain_rate=0.1, plastic_strain=0.2)
    assert res.location == "cells" and res.values_per_entity == 8
    m = meshio.read(out)
    s = m.cell_data["flow_stress_MPa"][0]
    assert s.shape == (nc, 8, 1)
    x = np.column_stack([np.full(nc * 8, 0.2), np.full(nc * 8, 0.1), T.ravel()])
    np.testing.assert_allclose(s.ravel(), flow.evaluate(x)[0], rtol=1e-12)


def test_full_update_equals_direct_integrate(models, tmp_path):
    flow = load_backend(models[0])
    mesh = _hexes(2)
    nc, nq = len(mesh.cells[0].data), 8
    rng = np.random.default_rng(7)
    n = nc * nq
    dstran = 2e-3 * rng.normal(size=(n, 6))
    stress = 30.0 * rng.normal(size=(n, 6))
    state = np.zeros((n, cv.NSTATV))
    state[:, cv.SV_P] = 0.5 * rng.random(n)
    T = 1060 + 180 * rng.random(n)
    mesh.cell_data.update({"de": [dstran.reshape(nc, nq, 6)], "sig": [stress.reshape(nc, nq, 6)],
                           "sv": [state.reshape(nc, nq, cv.NSTATV)], "T": [T.reshape(nc, nq, 1)]})
    src, out = tmp_path / "upd.vtu", tmp_path / "upd_out.xdmf"
    meshio.write(tmp_path / "upd.xdmf", mesh)
    mesh_in = meshio.read(tmp_path / "upd.xdmf")
    meshio.write(src, meshio.Mesh(mesh.points, mesh.cells))      # (geometry only, for the error test below)
    res, _ = evaluate_mesh(flow, mesh_in, out, temperature="T", strain_increment="de", dt=0.05, stress="sig",
                           state="sv", E=120000.0, nu=0.3, chunk=100)
    ref = integrate(flow, stress, state, dstran, 0.05, T, Elasticity(120000.0, 0.3))
    m = meshio.read(out)
    np.testing.assert_array_equal(m.cell_data["stress_MPa"][0].reshape(n, 6), ref.stress)
    np.testing.assert_array_equal(m.cell_data["state"][0].reshape(n, cv.NSTATV), ref.statev)
    np.testing.assert_array_equal(m.cell_data["status"][0].ravel(), ref.status)
    np.testing.assert_array_equal(m.cell_data["equivalent_plastic_strain"][0].ravel(), ref.statev[:, cv.SV_P])
    assert np.any(ref.statev[:, cv.SV_P] > state[:, cv.SV_P])          # some points did yield
    assert res.status_counts.get(cv.OK) == n


def test_update_from_point_data_with_initial_plastic_strain(models):
    flow = load_backend(models[0])
    mesh = _cloud(40)
    de = np.zeros((40, 6))
    de[:, 2] = -0.01
    mesh.point_data["de"] = de
    _, m = evaluate_mesh(flow, mesh, temperature="T", plastic_strain="peeq", strain_increment="de", dt=0.1,
                         E=150000.0, nu=0.3)
    sv = np.zeros((40, cv.NSTATV))
    sv[:, cv.SV_P] = mesh.point_data["peeq"]
    ref = integrate(flow, np.zeros((40, 6)), sv, de, 0.1, mesh.point_data["T"], Elasticity(150000.0, 0.3))
    np.testing.assert_array_equal(m.point_data["stress_MPa"], ref.stress)
    np.testing.assert_allclose(m.point_data["mises_stress_MPa"],
                               np.abs(ref.stress[:, 2] - ref.stress[:, 0]), rtol=1e-12)


def test_errors(models, tmp_path):
    flow = load_backend(models[0])
    mesh = _cloud(20)
    with pytest.raises(NeumatInputError, match=r"no field 'Temp'.*available point data: peeq"):
        evaluate_mesh(flow, mesh, temperature="Temp", strain_rate="rate", plastic_strain="peeq")
    mesh.point_data["vec"] = np.zeros((20, 6))
    with pytest.raises(NeumatInputError, match=r"'vec'.*shape \(20, 6\)"):
        evaluate_mesh(flow, mesh, temperature="vec", strain_rate="rate", plastic_strain="peeq")
    mesh.point_data["de3"] = np.zeros((20, 3))
    with pytest.raises(NeumatInputError, match=r"'de3'.*expected \(20, 6\)"):
        evaluate_mesh(flow, mesh, temperature="T", strain_increment="de3", dt=0.1, E=1e5, nu=0.3)
    with pytest.raises(NeumatInputError, match="--E"):
        evaluate_mesh(flow, mesh, temperature="T", strain_increment="vec", dt=0.1)
    with pytest.raises(NeumatInputError, match="dt"):
        evaluate_mesh(flow, mesh, temperature="T", strain_increment="vec", dt=0.0, E=1e5, nu=0.3)
    with pytest.raises(NeumatInputError, match="strain rate"):
        evaluate_mesh(flow, mesh, temperature="T", plastic_strain="peeq")
    hexm = _hexes(1)
    hexm.point_data["T"] = np.full(8, 1100.0)
    hexm.cell_data["p"] = [np.zeros(1)]
    with pytest.raises(NeumatInputError, match="different locations"):
        evaluate_mesh(flow, hexm, temperature="T", strain_rate=0.1, plastic_strain="p")
    bad = tmp_path / "garbage.vtu"
    bad.write_bytes(b"\x00\x01 not a mesh at all")
    with pytest.raises(NeumatInputError, match="cannot read mesh"):
        evaluate_mesh(flow, bad, tmp_path / "o.vtu", temperature=1100, strain_rate=0.1, plastic_strain=0.1)
    with pytest.raises(NeumatInputError, match="not found"):
        evaluate_mesh(flow, tmp_path / "missing.vtu", None, temperature=1, strain_rate=1, plastic_strain=0)


def test_cli_errors_exit_2(models, tmp_path, capsys):
    src = tmp_path / "c.vtu"
    meshio.write(src, _cloud(10))
    out = str(tmp_path / "o.vtu")
    assert main(["mesh", "--model", str(models[0]), "--in", str(src), "--out", out, "--temperature", "TT",
                 "--strain-rate", "rate", "--plastic-strain", "peeq"]) == 2
    err = capsys.readouterr().err
    assert "no field 'TT'" in err and "peeq" in err and "Traceback" not in err
    assert main(["mesh", "--model", str(tmp_path / "none.onnx"), "--in", str(src), "--out", out,
                 "--temperature", "T", "--strain-rate", "rate", "--plastic-strain", "peeq"]) == 2
    assert main(["mesh", "--model", str(models[0]), "--in", str(src), "--out", out, "--temperature", "T",
                 "--strain-rate", "rate", "--plastic-strain", "peeq", "--extra", "oops"]) == 2


def test_streaming_vtu_writer_round_trips(tmp_path):
    """The raw-appended VTU writer (used for .vtu output) reads back through meshio unchanged:
    mixed cell blocks, int and float fields, per-quadrature-point tensors (stored flattened)."""
    from pathlib import Path

    from fem_bridge.mesh_io import write_vtu_raw
    base = _hexes(2)
    rng = np.random.default_rng(3)
    mesh = meshio.Mesh(base.points, [base.cells[0], ("vertex", np.arange(5).reshape(-1, 1))],
                       point_data={"a": rng.random(27), "v": rng.random((27, 3))},
                       cell_data={"s": [rng.random((8, 6)), rng.random((5, 6))],
                                  "st": [np.arange(8, dtype=np.int32), np.arange(5, dtype=np.int32)],
                                  "q": [rng.random((8, 8, 6)), rng.random((5, 8, 6))]})
    write_vtu_raw(Path(tmp_path / "raw.vtu"), mesh)
    r = meshio.read(tmp_path / "raw.vtu")
    assert [b.type for b in r.cells] == ["hexahedron", "vertex"]
    np.testing.assert_array_equal(r.cells[0].data, mesh.cells[0].data)
    np.testing.assert_array_equal(r.points, mesh.points)
    for k in mesh.point_data:
        np.testing.assert_array_equal(r.point_data[k], mesh.point_data[k])
    for k in mesh.cell_data:
        for a, b in zip(r.cell_data[k], mesh.cell_data[k]):
            np.testing.assert_array_equal(a.ravel(), b.ravel())
            assert a.dtype == b.dtype


# ---- issue 16: units, whole-run settings and output checks before the work, out-of-data summary ---

def test_temperature_unit_and_the_wrong_unit_warning(models, tmp_path, capsys):
    flow = load_backend(models[0])
    ref, m_ref = evaluate_mesh(flow, _cloud(300, seed=4), temperature="T", strain_rate="rate", plastic_strain="peeq")
    kel = _cloud(300, seed=4)
    kel.point_data["T"] = kel.point_data["T"] + 273.15
    with pytest.warns(RuntimeWarning, match="temperature outside the data"):
        bad, _ = evaluate_mesh(flow, kel, temperature="T", strain_rate="rate", plastic_strain="peeq")
    assert bad.n_out_of_box == 300 and "is the temperature unit right" in bad.warnings[0]
    res, m = evaluate_mesh(flow, _cloud(300, seed=4), temperature="T", strain_rate="rate", plastic_strain="peeq")
    kel = _cloud(300, seed=4)
    kel.point_data["T"] = kel.point_data["T"] + 273.15
    res, m = evaluate_mesh(flow, kel, temperature="T", strain_rate="rate", plastic_strain="peeq",
                           temperature_unit="K")
    assert res.warnings == [] and res.n_out_of_box == 0
    np.testing.assert_allclose(m.point_data["flow_stress_MPa"], m_ref.point_data["flow_stress_MPa"], rtol=1e-9)
    # the CLI: --temperature-unit F, and the warning on stderr with exit 0
    src = tmp_path / "c.vtu"
    meshio.write(src, kel)
    rc = main(["mesh", "--model", str(models[0]), "--in", str(src), "--out", str(tmp_path / "o.vtu"),
               "--temperature", "T", "--strain-rate", "rate", "--plastic-strain", "peeq", "--no-progress"])
    cap = capsys.readouterr()
    assert rc == 0 and cap.err.count("warning:") == 1 and "--temperature-unit" in cap.err
    assert "300 outside the data" in cap.out
    fah = _cloud(300, seed=4)
    fah.point_data["T"] = fah.point_data["T"] * 1.8 + 32.0
    meshio.write(src, fah)
    rc = main(["mesh", "--model", str(models[0]), "--in", str(src), "--out", str(tmp_path / "o.vtu"),
               "--temperature", "T", "--temperature-unit", "F", "--strain-rate", "rate", "--plastic-strain",
               "peeq", "--no-progress"])
    cap = capsys.readouterr()
    assert rc == 0 and "warning" not in cap.err and "0 outside the data" in cap.out


def test_whole_run_settings_and_outputs_checked_before_the_work(models, tmp_path, capsys, monkeypatch):
    import fem_bridge.mesh as mesh_mod
    src = tmp_path / "c.vtu"
    meshio.write(src, _cloud(20))
    calls = []
    monkeypatch.setattr(mesh_mod, "read_mesh", lambda p: calls.append(p) or meshio.read(p))
    base = ["mesh", "--model", str(models[0]), "--in", str(src), "--temperature", "T", "--no-progress"]
    upd = ["--plastic-strain", "0", "--strain-increment", "d", "--dt", "0.01", "--E", "1e5"]
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    cases = [(["--out", str(tmp_path / "o.vtu"), *upd, "--nu", "0.5"], "nu = 0.5"),
             (["--out", str(tmp_path / "o.vtu"), *upd[:-1], "-5", "--nu", "0.3"], "E = -5.0"),
             (["--out", str(tmp_path / "x.xyz"), "--strain-rate", "rate", "--plastic-strain", "peeq"],
              "unknown mesh format '.xyz'"),
             (["--out", str(tmp_path / "a.vtu"), "--strain-rate", "rate", "--plastic-strain", "peeq",
               "--temperature-unit", "K", "--at", "points"], None)]
    (tmp_path / "plain.txt").write_text("x")
    cases.append((["--out", str(tmp_path / "plain.txt" / "o.vtu"), "--strain-rate", "rate", "--plastic-strain",
                   "peeq"], "is not a folder"))
    if os.geteuid() != 0:                                   # root writes anywhere
        cases.append((["--out", str(ro / "sub" / "o.vtu"), "--strain-rate", "rate", "--plastic-strain", "peeq"],
                      "not writable"))
    for extra, msg in cases:
        rc = main(base + extra)
        err = capsys.readouterr().err
        if msg is None:
            assert rc == 0
            continue
        assert rc == 2 and msg in err and "Traceback" not in err, (extra, err)
    assert len(calls) == 1                                  # only the good run read the mesh
    ro.chmod(0o700)
    with pytest.raises(NeumatInputError, match="nu = 0.5"):
        evaluate_mesh(models[0], _cloud(5), temperature=1100, plastic_strain=0.0, strain_increment=[0] * 6,
                      dt=0.01, E=1e5, nu=0.5)


def test_update_mode_reports_evaluations_outside_the_data(models):
    flow = load_backend(models[0])
    n = 40
    mesh = _cloud(n, seed=6)
    mesh.point_data["T"][: n // 2] = 1400.0                  # beyond the box (no recorded conditions)
    mesh.point_data["d"] = np.tile([-4e-3, 2e-3, 2e-3, 0, 0, 0], (n, 1))
    res, m = evaluate_mesh(flow, mesh, temperature="T", plastic_strain=0.1, strain_increment="d", dt=0.01,
                           E=1e5, nu=0.3)
    grew = m.point_data["state"][:, cv.SV_NOUT] > 0
    assert res.n_out_of_box == int(grew.sum()) == n // 2 and grew[: n // 2].all()
    assert f"{n // 2} evaluated outside the data" in res.summary()
