"""Thermal stress with the generated UMAT in CalculiX (issue 14), and ``neumat casting``.

References that do not trust our own ccx decks: closed forms (free, uniaxially and fully
constrained blocks; the free plate with a parabolic temperature profile), the Python bridge on the
same homogeneous path (the bar cooled through the model's whole temperature range with
plasticity), and ccx's own *ELASTIC + *PLASTIC with tables sampled from the same network.

The model: ``helpers.gap_flownet`` (20–1050 °C with a 630 °C gap above room temperature, as the
DZ411 campaign has), exported to ONNX. The ccx tests need the binary of `make ccx` (they fail, not
skip, without it: `make test` builds it).
"""
from __future__ import annotations

import meshio
import numpy as np
import pytest

from constitutive.errors import NeumatInputError
from export.onnx_export import export_onnx
from fem_bridge import conventions as cv
from fem_bridge.backends import load_backend
from fem_bridge.umat import UmatMaterial
from fortran_umat.build import build_umat
from fortran_umat.casting import CastingOptions, run_casting
from fortran_umat.casting_checks import (bridge_bar_path, plate_reference, write_block_deck,
                                         write_plate_deck)
from fortran_umat.casting_deck import Cooling, SuperalloyProperties
from fortran_umat.casting_geometry import TET_FACES, BladeGeometry, boundary_faces, mesh_blade
from fortran_umat.casting_results import sample_times, von_mises
from fortran_umat.ccx_deck import UserMaterial, built_library
from fortran_umat.ccx_results import parse_frd
from fortran_umat.ccx_run import CcxNotBuilt, ccx_binary, run_ccx
from fortran_umat.library_binding import CompiledUmat
from helpers import gap_flownet

E0, NU0, ALPHA0 = 1.7e5, 0.3, 15e-6
CONST = SuperalloyProperties(E=((20.0, E0),), nu=((20.0, NU0),), alpha=((20.0, ALPHA0),))


@pytest.fixture(scope="module")
def umat(tmp_path_factory):
    """(onnx path, library dir, UserMaterial with placeholder E, ν replaced per temperature)."""
    try:
        ccx_binary()
    except CcxNotBuilt as exc:
        pytest.fail(f"{exc}")
    d = tmp_path_factory.mktemp("casting_umat")
    onnx_path = d / "gap.onnx"
    export_onnx(gap_flownet(seed=2), onnx_path)
    built = build_umat(onnx_path, out_dir=d / "umat")
    lib, name = built_library(built)
    return onnx_path, lib.parent, UserMaterial(name, [1.0, 0.3, 1.0, 0.0], built.nstatv, n_model_props=4)


def _mean_stress(res):
    return np.array([i.stress.mean(axis=0) for i in res.increments])


# ---------------------------------------------------------------------------------------------
# no solver needed

def test_tables_checked_at_deck_writing(tmp_path):
    with pytest.raises(NeumatInputError, match="strictly increasing"):
        SuperalloyProperties(E=((20.0, 2e5), (20.0, 1.9e5))).check()
    with pytest.raises(NeumatInputError, match="nu"):
        SuperalloyProperties(nu=((20.0, 0.3), (900.0, 0.55))).check()
    with pytest.raises(NeumatInputError, match="rows"):
        SuperalloyProperties(alpha=(1e-5, 2e-5)).check()
    with pytest.raises(NeumatInputError, match="start temperature"):
        Cooling(t_start=10.0).check()


def test_mesh_tet10_order_volume_and_faces():
    g = BladeGeometry()
    m = mesh_blade(g, element_type="C3D10", size=8.0, blade_size=4.0)
    assert np.all(m.volumes() > 0)
    up, lo = g.section(400)
    poly = np.vstack([up, lo[::-1]])
    area = 0.5 * abs(np.dot(poly[:, 0], np.roll(poly[:, 1], 1)) - np.dot(poly[:, 1], np.roll(poly[:, 0], 1)))
    exact = g.root_length * g.root_width * g.root_height + area * g.blade_height
    assert m.volumes().sum() == pytest.approx(exact, rel=2e-2)      # straight-edged facets of the airfoil
    # Abaqus C3D10: nodes 5–10 are the midpoints of edges 1-2, 2-3, 3-1, 1-4, 2-4, 3-4
    x = m.points[m.cells]
    for mid, (a, b) in zip(range(4, 10), ((0, 1), (1, 2), (2, 0), (0, 3), (1, 3), (2, 3))):
        np.testing.assert_allclose(x[:, mid], 0.5 * (x[:, a] + x[:, b]), atol=1e-9)
    # the boundary faces close the surface: every edge of a boundary face belongs to exactly two of them
    tri = np.array([m.cells[e, list(TET_FACES[f - 1])] for e, f in boundary_faces(m.cells)])
    edges = np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert np.all(counts == 2) and len(tri) == len(m.faces)
    assert m.sets["NFIX"].size > 10 and np.all(m.points[m.sets["NFIX"], 2] == 0)
    assert np.all(m.points[:, 2] >= 0) and m.points[:, 2].max() == pytest.approx(g.height)


def test_sample_times_bounds_the_change_per_step():
    T = np.linspace(1000.0, 20.0, 50)[:, None] * np.array([1.0, 0.5])[None, :] + 10.0
    start = np.array([1010.0, 510.0])
    idx = sample_times(T, start, 60.0)
    assert idx[-1] == len(T) - 1
    steps = np.vstack([start, T[idx]])
    assert np.max(np.abs(np.diff(steps, axis=0))) <= 60.0
    assert len(idx) < 25
    with pytest.raises(NeumatInputError, match="max-step-change"):
        sample_times(T, start, 0.0)


def test_frd_continuation_lines_are_read(tmp_path):
    f = tmp_path / "x.frd"
    f.write_text("\n".join([
        "    1C", "  100CL  101 1.000000000           2                     0    1           1",
        " -4  SDV         9    1",
        " -1         1 1.00000E+00 2.00000E+00 3.00000E+00 4.00000E+00 5.00000E+00 6.00000E+00",
        " -2           7.00000E+00 8.00000E+00 9.00000E+00",
        " -1         2-1.00000E+00-2.00000E+00-3.00000E+00-4.00000E+00-5.00000E+00-6.00000E+00",
        " -2          -7.00000E+00-8.00000E+00-9.00000E+00", " -3", "9999"]) + "\n")
    b = parse_frd(f)[0]
    np.testing.assert_array_equal(b["values"][1], np.arange(1.0, 10.0))
    np.testing.assert_array_equal(b["values"][2], -np.arange(1.0, 10.0))


def test_von_mises_of_uniaxial_and_shear():
    assert von_mises(np.array([100.0, 0, 0, 0, 0, 0])) == pytest.approx(100.0)
    assert von_mises(np.array([0, 0, 0, 0, 0, 50.0])) == pytest.approx(50.0 * np.sqrt(3.0))


# ---------------------------------------------------------------------------------------------
# CalculiX with the UMAT

@pytest.mark.ccx
def test_free_block_cooled_uniformly_is_stress_free(umat, tmp_path):
    onnx_path, lib, mat = umat
    d = write_block_deck(tmp_path / "free.inp", mat, SuperalloyProperties(), t0=1000.0,
                         temps=[700.0, 300.0, 20.0], support="free", n_elem=2)
    res = run_ccx(d.path, library_dir=lib)
    assert len(res.increments) == 3
    for inc in res.increments:
        assert np.max(np.abs(inc.stress)) < 1e-6
        assert np.all(inc.sdv[:, 0] == 0)             # no plastic strain
    # and the strain ccx prints is the total one: the thermal strain of the secant *EXPANSION
    eth = SuperalloyProperties().thermal_strain(20.0, 1000.0)
    np.testing.assert_allclose(res.increments[-1].strain[:, :3], eth, rtol=1e-5)


@pytest.mark.ccx
def test_constrained_blocks_elastic_closed_forms(umat, tmp_path):
    onnx_path, lib, mat = umat
    temps = [595.0, 590.0]                            # 10 °C: 25.5 MPa, below the ~58 MPa yield at 600 °C
    bar = run_ccx(write_block_deck(tmp_path / "bar.inp", mat, CONST, t0=600.0, temps=temps, support="bar").path,
                  library_dir=lib)
    s = _mean_stress(bar)
    expect = -E0 * ALPHA0 * (np.asarray(temps) - 600.0)
    np.testing.assert_allclose(s[:, 0], expect, rtol=1e-6)
    assert np.max(np.abs(s[:, 1:])) < 1e-6
    full = run_ccx(write_block_deck(tmp_path / "full.inp", mat, CONST, t0=600.0, temps=[500.0, 20.0],
                                    support="full").path, library_dir=lib)
    s = _mean_stress(full)
    expect = -E0 * ALPHA0 * (np.array([500.0, 20.0]) - 600.0) / (1 - 2 * NU0)
    for i in range(3):                                # hydrostatic: never yields
        np.testing.assert_allclose(s[:, i], expect, rtol=1e-6)
    assert np.all(full.increments[-1].sdv[:, 0] == 0)


@pytest.mark.ccx
def test_ccx_interpolates_user_material_constants_per_temperature(umat, tmp_path):
    """E(T) through *USER MATERIAL constants given per temperature: the incremental elastic trial
    with C(T_end) gives Δσ_11 = E(T_k) α ΔT_k on the constrained bar (conventions step 4)."""
    onnx_path, lib, mat = umat
    props = SuperalloyProperties(E=((500.0, 1.0e5), (700.0, 2.0e5)), nu=((20.0, NU0),), alpha=((20.0, ALPHA0),))
    temps = np.array([597.0, 594.0])
    res = run_ccx(write_block_deck(tmp_path / "te.inp", mat, props, t0=600.0, temps=temps, support="bar").path,
                  library_dir=lib)
    E_end = np.interp(temps, [500.0, 700.0], [1.0e5, 2.0e5])
    expect = np.cumsum(E_end * ALPHA0 * 3.0)
    np.testing.assert_allclose(_mean_stress(res)[:, 0], expect, rtol=1e-6)


@pytest.mark.ccx
def test_thermoelastic_plate_parabolic_profile(umat, tmp_path):
    onnx_path, lib, mat = umat
    d = write_plate_deck(tmp_path / "plate.inp", mat, CONST, t_centre=600.0, delta_t=20.0)
    inc = run_ccx(d.path, library_dir=lib).increments[-1]
    S = {(int(a), int(b)): s for (a, b), s in zip(inc.ip, inc.stress)}
    nx, ny, _ = d.n_elem
    ref = plate_reference(d, E0, NU0, ALPHA0, [1 + iy * nx for iy in range(ny)])   # the column at x = z = 0
    peak = max(abs(r[3]) for r in ref)
    err = max(max(abs(S[(el, ip)][0] - sr), abs(S[(el, ip)][2] - sr)) for el, ip, y, sr in ref) / peak
    assert err < 0.01
    assert max(abs(S[(el, ip)][1]) for el, ip, y, sr in ref) < 0.01 * peak


@pytest.mark.ccx
def test_bar_cooled_through_the_box_matches_the_python_bridge(umat, tmp_path):
    onnx_path, lib, mat = umat
    props = SuperalloyProperties()
    temps = np.linspace(1040.0, 20.0, 18)
    d = write_block_deck(tmp_path / "barbox.inp", mat, props, t0=1050.0, temps=temps, support="bar", step_time=30.0)
    res = run_ccx(d.path, library_dir=lib)
    assert all(ok for *_, ok in res.attempts) and len(res.attempts) == len(temps)
    cs = _mean_stress(res)
    cv = np.array([i.sdv.mean(axis=0) for i in res.increments])

    def props_at(T):
        E, nu = props.elastic_at(T)
        return [float(E), float(nu), 1.0, 0.0]
    bs, bv = bridge_bar_path(load_backend(onnx_path), props_at, props.thermal_strain, t0=1050.0, temps=temps,
                             step_time=30.0)
    assert bv[-1, 0] > 0.005                           # it did flow plastically while cooling
    assert np.max(np.abs(cs - bs)) / np.max(np.abs(bs)) <= 1e-6
    np.testing.assert_allclose(cv[:, 0], bv[:, 0], rtol=1e-5, atol=1e-9)
    np.testing.assert_array_equal(cv[:, 8], bv[:, 8])   # the same out-of-box count (the 630 °C gap)
    assert bv[-1, 8] > 0


@pytest.mark.ccx
@pytest.mark.slow
def test_casting_run_outputs_and_umat_against_plastic(umat, tmp_path):
    """A coarse casting (the default chain on a C3D4 mesh, constant E so that the elastic law of
    the UMAT and of ccx's *ELASTIC coincide): no increment cut, VTU/CSV/PNG written, STATEV 9
    counted, and the residual stress of the UMAT within 1 % of the peak of ccx's *PLASTIC with
    tables sampled from the network (the rates are below the lowest training rate: the network is
    evaluated at the same clamped rate by both)."""
    onnx_path, lib, mat = umat
    out = tmp_path / "cast"
    s = run_casting(CastingOptions(model=onnx_path, out=out, element_type="C3D4", size=8.0, blade_size=4.0,
                                   compare_plastic=True, props=CONST, max_step_change=100.0), log=lambda m: None)
    assert s["umat"]["cut_attempts"] == 0 and s["plastic"]["cut_attempts"] == 0
    assert s["umat"]["converged_increments"] == s["stress_steps"]
    assert s["umat"]["plastic_elements"] > 0 and s["umat"]["out_of_box_total"] > 0
    cmp = s["umat_vs_plastic"]
    assert cmp["max_von_mises_difference_pct_of_peak"] < 1.0
    pvd = out / "vtu" / "casting.pvd"
    assert pvd.is_file()
    last = sorted((out / "vtu").glob("casting_*.vtu"))[-1]
    m = meshio.read(last)
    for key in ("temperature_C", "von_mises_MPa", "peeq", "stress_MPa", "statev9_out_of_box"):
        assert key in m.point_data
    np.testing.assert_allclose(m.point_data["temperature_C"], 20.0)
    for png in ("casting_temperature.png", "casting_von_mises.png", "casting_peeq.png"):
        assert (out / png).stat().st_size > 10_000
    rows = (out / "histories.csv").read_text().splitlines()
    assert rows[0].startswith("source,time_s,probe") and len(rows) > 50


# ---------------------------------------------------------------------------------------------
# the PROPS elastic table (for hosts that do not interpolate PROPS: Abaqus)

def test_elastic_table_checked_before_the_deck_is_written():
    base = [2e5, 0.3, 1.0, 0.0]
    with pytest.raises(NeumatInputError, match="increase strictly"):
        UserMaterial("NM", base + [2, 900.0, 1.5e5, 0.3, 20.0, 2e5, 0.3], 9, n_model_props=4)
    with pytest.raises(NeumatInputError, match="need 11 PROPS"):
        UserMaterial("NM", base + [2, 20.0, 2e5, 0.3, 900.0, 1.5e5], 9, n_model_props=4)
    with pytest.raises(NeumatInputError, match="nu"):
        cv.elastic_table_props([20.0, 900.0], [2e5, 1.5e5], [0.3, 0.6])
    ok = UserMaterial("NM", base + cv.elastic_table_props([20.0, 900.0], [2e5, 1.5e5], 0.3), 9, n_model_props=4)
    assert len(ok.props) == 4 + 1 + 6
    # the interpolation rule is ccx's: linear inside, constant beyond the ends
    assert cv.elastic_at(ok.props, 4, 460.0) == pytest.approx((1.75e5, 0.3))
    assert cv.elastic_at(ok.props, 4, -50.0)[0] == 2e5 and cv.elastic_at(ok.props, 4, 1500.0)[0] == 1.5e5


@pytest.mark.ccx
def test_elastic_table_fortran_matches_bridge_while_cooling_with_plasticity(umat):
    """Abaqus convention (TEMP = start, DTEMP = increment, PROPS(3) = 0), E and ν from the PROPS
    table at T_end, cooling through the box with plastic flow: compiled UMAT = Python bridge."""
    onnx_path, lib, mat = umat
    props = [2e5, 0.3, 0.0, 0.0] + cv.elastic_table_props([20.0, 600.0, 1100.0], [2e5, 1.7e5, 1.3e5],
                                                           [0.30, 0.31, 0.32])
    f = CompiledUmat(next(lib.glob("lib*.so")), props)
    py = UmatMaterial(load_backend(onnx_path), props)
    a = (np.zeros(6), np.zeros(9))
    b = (np.zeros(6), np.zeros(9))
    stran, T, worst, plastic = np.zeros(6), 1040.0, 0.0, 0
    de = np.array([2e-4, -0.5e-4, -1e-4, 1e-4, 0.0, 0.5e-4])
    for k in range(40):
        ra = py.call(*a, stran, de, time=(k, k), dtime=2.0, temp=T, dtemp=-25.0)
        rb = f.call(*b, stran, de, time=(k, k), dtime=2.0, temp=T, dtemp=-25.0)
        assert ra[3] == rb[3] == 1.0
        plastic += ra[1][0] > a[1][0]
        for x, y in zip(ra[:3], rb[:3]):
            worst = max(worst, float(np.max(np.abs(x - y)) / max(1e-12, np.max(np.abs(x)))))
        a, b, stran, T = ra[:2], rb[:2], stran + de, T - 25.0
    assert plastic > 10 and worst < 1e-10
    # a malformed table (temperatures not increasing) is bad input in both: nothing changes, step cut
    bad = [2e5, 0.3, 0.0, 0.0, 2, 600.0, 1.7e5, 0.3, 20.0, 2e5, 0.3]
    for impl in (UmatMaterial(load_backend(onnx_path), bad), CompiledUmat(next(lib.glob("lib*.so")), bad)):
        if isinstance(impl, UmatMaterial):
            with pytest.warns(RuntimeWarning, match="increase strictly"):
                s, sv, C, pn = impl.call(np.zeros(6), np.zeros(9), np.zeros(6), de, time=(0, 0), dtime=1.0,
                                         temp=500.0, dtemp=0.0)
        else:
            s, sv, C, pn = impl.call(np.zeros(6), np.zeros(9), np.zeros(6), de, time=(0, 0), dtime=1.0,
                                     temp=500.0, dtemp=0.0)
        assert pn == cv.PNEWDT_CUT and np.all(s == 0) and np.all(sv == 0)
        np.testing.assert_array_equal(C, np.eye(6))


@pytest.mark.ccx
def test_ccx_props_table_equals_per_temperature_constants(umat, tmp_path):
    """The same bar cooled through the box with E(T), ν(T) given both ways: the PROPS table (the
    UMAT interpolates) and per-temperature constants (ccx interpolates) give the same stresses."""
    onnx_path, lib, mat = umat
    props = SuperalloyProperties()
    temps = np.linspace(1040.0, 20.0, 12)
    runs = {}
    for form in ("per-temperature", "props-table"):
        d = write_block_deck(tmp_path / f"{form}.inp", mat, props, t0=1050.0, temps=temps, support="bar",
                             step_time=30.0, elastic=form)
        runs[form] = _mean_stress(run_ccx(d.path, library_dir=lib))
    a, b = runs["per-temperature"], runs["props-table"]
    assert np.max(np.abs(a)) > 30                     # it carries stress (at the yield of the gap model)
    assert np.max(np.abs(a - b)) / np.max(np.abs(a)) <= 1e-6
