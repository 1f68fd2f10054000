"""`neumat benchmark solver` (issue 13): CalculiX with the generated UMAT against *PLASTIC.

Needs the ccx of `make ccx` (a missing binary FAILS, as in tests/test_ccx.py). Checks the
non-homogeneous cylinder deck (mesh, sets, a field that really differs between points), the
counting wrapper (it forwards every argument: results bit for bit equal to the plain UMAT run; it
counts what ccx does: one DSTRAN = 0 call per point in increment 1), and the command's JSON and
README section on the quick settings. No timing figure is asserted.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from constitutive.errors import NeumatInputError
from benchmarks import solver
from benchmarks.solver_profile import _category, read_counts, wrapper_env, wrapper_library
from export.onnx_export import export_onnx
from fem_bridge.conventions import SV_PDOT, TEMP_MODE_CALCULIX
from fortran_umat.build import build_umat
from fortran_umat.ccx_cylinder import cylinder_mesh, write_cylinder_deck
from fortran_umat.ccx_deck import PlasticMaterial, UserMaterial, built_library, plastic_table
from fortran_umat.ccx_compare import onnx_flow_stress
from fortran_umat.ccx_run import CcxNotBuilt, ccx_binary, run_ccx
from helpers import random_flownet

pytestmark = pytest.mark.ccx

T_C, RATE = 1150.0, 0.1


@pytest.fixture(scope="module")
def umat(tmp_path_factory):
    try:
        ccx_binary()
    except CcxNotBuilt as exc:
        pytest.fail(f"{exc}")
    d = tmp_path_factory.mktemp("solver_umat")
    onnx = d / "model.onnx"
    export_onnx(random_flownet(3), onnx)
    built = build_umat(onnx, out_dir=d / "umat")
    return onnx, built


def _args(**kw):
    p = argparse.ArgumentParser()
    solver.add_arguments(p)
    a = p.parse_args([])
    for k, v in kw.items():
        setattr(a, k, v)
    return a


def test_cylinder_mesh_counts_orientation_and_sets(tmp_path):
    pts, conn = cylinder_mesh(5.0, 7.5, 3, 2, 4)
    assert conn.shape == ((3 * 3 + 2 * 3 * 2) * 4, 8)
    x = pts[conn]
    # every corner Jacobian positive (C3D8 node order): edges to the three neighbours of each corner
    nb = {0: (1, 3, 4), 1: (2, 0, 5), 2: (3, 1, 6), 3: (0, 2, 7), 4: (7, 5, 0), 5: (4, 6, 1), 6: (5, 7, 2), 7: (6, 4, 3)}
    for c, (a, b, e) in nb.items():
        j = np.einsum("ij,ij->i", np.cross(x[:, a] - x[:, c], x[:, b] - x[:, c]), x[:, e] - x[:, c])
        assert np.all(j > 0), c
    assert np.isclose(np.hypot(pts[:, 0], pts[:, 1]).max(), 5.0)
    mat = PlasticMaterial(1e5, 0.3, [(100.0, 0.0), (120.0, 0.5)])
    deck = write_cylinder_deck(tmp_path / "c.inp", material=mat, temperature_c=T_C, strain_rate=RATE,
                               n_core=3, n_ring=2, n_z=4)
    text = deck.path.read_text()
    assert deck.n_elements == len(conn) and deck.n_nodes == len(pts)
    assert "NTOP, 1, 2" in text and "*PLASTIC" in text           # sticking platen, ccx plasticity
    with pytest.raises(NeumatInputError, match="n_z"):
        write_cylinder_deck(tmp_path / "d.inp", material=mat, temperature_c=T_C, strain_rate=RATE, n_z=0)


def test_cylinder_is_not_homogeneous_cube_is(tmp_path, umat):
    """The sticking platens give points in different states (plastic strain spread), which is
    what the second deck is for."""
    onnx, _ = umat
    table = plastic_table(onnx_flow_stress(onnx), RATE, T_C, p_max=0.7, n_points=100)
    mat = PlasticMaterial(1e5, 0.3, table)
    deck = write_cylinder_deck(tmp_path / "cyl.inp", material=mat, temperature_c=T_C, strain_rate=RATE,
                               final_strain=0.2, n_increments=4, n_core=3, n_ring=2, n_z=4)
    res = run_ccx(deck.path)
    peeq = res.increments[-1].peeq
    assert peeq is not None and len(peeq) == deck.n_integration_points
    assert peeq.max() > 2.0 * max(peeq.min(), 1e-12)


def test_counting_wrapper_forwards_and_counts(tmp_path, umat):
    onnx, built = umat
    lib_path, lib_name = built_library(built)
    props = [1e5, 0.3, float(TEMP_MODE_CALCULIX), 0.0]
    deck = write_cylinder_deck(tmp_path / "plain.inp", material=UserMaterial(lib_name, props, built.nstatv),
                               temperature_c=T_C, strain_rate=RATE, final_strain=0.2, n_increments=3,
                               n_core=2, n_ring=1, n_z=2)
    plain = run_ccx(deck.path, library_dir=lib_path.parent)
    wlib, wname = wrapper_library(built.library, SV_PDOT)
    wdeck = tmp_path / "wrapped.inp"
    wdeck.write_text(deck.path.read_text().replace(f"@ABAQUS_{lib_name.upper()}", f"@ABAQUS_{wname}"))
    counts = tmp_path / "counts.json"
    wrapped = run_ccx(wdeck, library_dir=wlib.parent, env=wrapper_env(built.library, counts))
    a, b = plain.increments[-1], wrapped.increments[-1]
    assert np.array_equal(a.stress, b.stress) and np.array_equal(a.sdv, b.sdv)
    assert np.array_equal(a.rf_total, b.rf_total)
    c = read_counts(counts)
    n_ip = deck.n_integration_points
    assert c["zero_dstran_calls"] == n_ip                  # first call of increment 1, every point
    iters = sum(x[2] for x in wrapped.attempts)
    assert n_ip * iters <= c["calls"] <= 3 * n_ip * (iters + len(wrapped.attempts))
    assert 0 < c["plastic_calls"] < c["calls"]
    assert c["ns_inside"] > 0 and c["timer_ns_per_call"] > 0


def test_settings_errors():
    with pytest.raises(NeumatInputError, match="--cylinder"):
        solver.settings(_args(cylinder="1,2"))
    with pytest.raises(NeumatInputError, match="--decks"):
        solver.settings(_args(decks="cube,notch"))
    with pytest.raises(NeumatInputError, match="--threads"):
        solver.settings(_args(threads="0"))


def test_output_category_and_material_category():
    assert _category("ccx", "incplas_lin_").startswith("material (ccx")
    assert _category("ccx", "umat_main_").startswith("material (ccx")
    assert _category("libNEUMATABCDEF0123.so", "umat_") == "material (generated UMAT)"
    assert _category("libspooles.so.2.2", "DVdot33").startswith("equation solver")
    assert _category("libc.so.6", "__vfprintf_internal").startswith("output")


def test_quick_run_json_and_readme(tmp_path, umat):
    onnx, _ = umat
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\nintro\n")
    rc = solver.run(_args(quick=True, out=str(tmp_path / "res"), model=str(onnx), readme=str(readme),
                          threads="1,2", increments=2))
    assert rc == 0
    doc = json.loads((tmp_path / "res" / "solver.json").read_text())
    cases = doc["cases"]
    assert {(c["deck"], c["threads"]) for c in cases} == {(d, t) for d in ("cube", "cylinder") for t in (1, 2)}
    for c in cases:
        assert c["ratio"] == pytest.approx(c["umat_s"] / c["plastic_s"], rel=1e-3)
        assert c["umat_s"] == pytest.approx(np.median([r["wall_s"] for r in c["runs"]["umat"]]), rel=1e-3)
        assert c["umat_iterations"] > 0 and c["plastic_iterations"] > 0
        if c["deck"] == "cube":        # the same J2 problem: the UMAT and *PLASTIC agree
            assert c["agreement"]["relative_difference"] < 5e-3
    for name in ("cube", "cylinder"):
        cnt = doc["profiles"][name]["umat"]["counts"]
        assert 1.0 <= cnt["calls_per_point_per_iteration"] <= 3.0
    for k in ("machine", "load", "versions", "git", "settings"):
        assert k in doc
    text = readme.read_text()
    assert text.startswith("# Benchmarks") and "<!-- solver:start -->" in text and "| cube |" in text
