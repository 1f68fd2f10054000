"""Data layer: loaders, every bad input (file / row / column named), exclusions, resampling,
smoothing, held-out splits, leave-one-condition-out folds, the long-CSV round trip and the
``neumat data`` command."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from constitutive import datasets
from constitutive.cli import main
from constitutive.csv_reader import load_csv, parse_columns
from constitutive.datasets import dataset_available, load, load_named
from constitutive.errors import DataError, NeumatInputError
from constitutive.flow_curves import FlowCurves, exclude_curves, parse_heldout
from constitutive.folder_reader import load_folder
from constitutive.units import celsius_to_kelvin, convert_and_check, kelvin_to_celsius

HEADER = "curve,temperature_C,strain_rate_per_s,true_strain,true_stress_MPa"


def curve_rows(cid, t, r, n=6, s0=100.0, extra=""):
    return [f"{cid},{t},{r},{0.1 * k:.3f},{s0 + 10 * k:.3f}{extra}" for k in range(n)]


def write(tmp_path: Path, name: str, lines) -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def good_lines():
    return [HEADER, *curve_rows("a", 1000, 0.1), *curve_rows("b", 1000, 1, s0=150)]


def assert_located(exc: DataError, path, row, column):
    msg = str(exc)
    assert exc.file == str(path) and str(path) in msg
    assert exc.row == row and f"row {row}" in msg
    assert exc.column == column and f"column '{column}'" in msg


# ---- loaders --------------------------------------------------------------------------------
@pytest.mark.skipif(not dataset_available("gleeble_3cr2mo"), reason="gleeble_3cr2mo data set missing")
def test_gleeble_by_name():
    fc = load("gleeble_3cr2mo")
    assert fc.source == "gleeble_3cr2mo" and not fc.synthetic
    assert fc.n_curves == 30 and len(fc) == 21030
    assert np.all(np.bincount(fc.curve) == 701)
    conds = fc.conditions()
    assert sorted(set(conds[:, 0])) == [1050, 1100, 1150, 1200, 1250]
    assert sorted(set(conds[:, 1])) == [0.001, 0.01, 0.1, 1, 2, 5]
    assert len(np.unique(conds, axis=0)) == 30
    assert fc.strain.min() == 0.0 and fc.strain.max() == pytest.approx(0.7)
    assert fc.excluded == []


@pytest.mark.skipif(not dataset_available("bst_freiberg"), reason="bst_freiberg data set missing")
def test_bst_by_name_with_replicates():
    fc = load("bst_freiberg")
    assert fc.n_curves == 30 and fc.source == "bst_freiberg"
    assert "BST_800_01a.txt" in fc.curve_names and "BST_800_01b.txt" in fc.curve_names
    groups = fc.condition_groups()
    assert len(groups) == 15 and all(len(g) == 2 for g in groups)
    counts = np.bincount(fc.curve)
    assert counts.min() >= 134 and counts.max() <= 154
    # without the replicate permission the same file is rejected, naming the second curve
    path = datasets.data_root() / "bst_freiberg" / "flow_curves.csv"
    with pytest.raises(DataError) as ei:
        load_csv(path, columns=datasets.NAMED_DATASETS["bst_freiberg"]["columns"])
    assert ei.value.column == "file" and "allow-replicates" in str(ei.value)


def test_named_set_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("NEUMAT_DATA", str(tmp_path))
    assert datasets.data_root() == tmp_path
    assert not dataset_available("gleeble_3cr2mo")
    with pytest.raises(NeumatInputError, match="NEUMAT_DATA"):
        load_named("gleeble_3cr2mo")
    with pytest.raises(NeumatInputError, match="neither a known data set"):
        load(str(tmp_path / "nope.csv"))


def test_named_set_rejects_file_options():
    with pytest.raises(NeumatInputError, match="temperature-unit"):
        load("synthetic_dz411", temperature_unit="K")
    with pytest.raises(NeumatInputError, match="columns"):
        load("synthetic_dz411", columns={"strain": "x"})
    assert load("synthetic_dz411", temperature_unit="C", columns={}, extras=[]).n_curves == 65


def test_long_csv_mapping_and_units(tmp_path):
    lines = ["id;T_K;rate_min;eps;sig_Pa;dir;note"]
    for cid, tk, d in (("x", 1273.15, 0), ("y", 1373.15, 1)):
        for k in range(5):
            lines.append(f"{cid};{tk};6;{0.05 * k};{(80 + k) * 1e6};{d};hello")
    p = write(tmp_path, "mapped.csv", lines)
    fc = load_csv(p, columns=parse_columns("curve=id,temperature=T_K,strain_rate=rate_min,"
                                           "strain=eps,stress=sig_Pa,direction=dir"),
                  temperature_unit="K", stress_unit="Pa", strain_rate_unit="1/min")
    assert fc.curve_names == ["x", "y"]
    np.testing.assert_allclose(fc.conditions(), [[1000, 0.1, 0], [1100, 0.1, 1]])
    np.testing.assert_allclose(fc.stress[:5], [80, 81, 82, 83, 84])
    assert fc.extra_names == ["direction"]
    assert fc.excluded == [("column 'note'", "not used (map it with --columns or --extras to use it)")]
    np.testing.assert_allclose(kelvin_to_celsius(celsius_to_kelvin(fc.temperature)), fc.temperature)


def test_long_csv_without_curve_id_and_decimal_comma(tmp_path):
    lines = ["temperature_C;strain_rate_per_s;true_strain;true_stress_MPa"]
    for t in (900, 950):
        lines += [f"{t};0,01;{0.1 * k:.1f}".replace(".", ",") + f";{100 + k},5" for k in range(6)]
    fc = load_csv(write(tmp_path, "eu.csv", lines))
    assert fc.curve_names == ["T900_R0.01", "T950_R0.01"]
    assert fc.stress[1] == 101.5 and fc.strain[2] == pytest.approx(0.2)


def test_extras_argument_and_auto_direction(tmp_path):
    lines = [HEADER + ",direction,grain"]
    lines += curve_rows("a", 1000, 0.1, extra=",0,10") + curve_rows("b", 1000, 0.1, extra=",1,10")
    p = write(tmp_path, "dir.csv", lines)
    fc = load_csv(p)                      # direction is used automatically, grain is listed
    assert fc.extra_names == ["direction"] and fc.n_curves == 2
    assert ("column 'grain'", "not used (map it with --columns or --extras to use it)") in fc.excluded
    fc2 = load_csv(p, extras=["direction", "grain"])
    assert fc2.extra_names == ["direction", "grain"] and fc2.excluded == []


def test_blank_and_comment_lines_keep_file_line_numbers(tmp_path):
    lines = ["# a comment", HEADER, *curve_rows("a", 1000, 0.1), "", "   ", *curve_rows("b", 1000, 1)]
    lines[-2] = "b,1000,1,0.4,oops"
    p = write(tmp_path, "gaps.csv", lines)
    with pytest.raises(DataError) as ei:
        load_csv(p)
    assert_located(ei.value, p, len(lines) - 1, "true_stress_MPa")


def _folder(tmp_path, names, manifest=None, n=6):
    folder = tmp_path / "curves"
    folder.mkdir()
    for k, name in enumerate(names):
        write(folder, name, ["true_strain,true_stress_MPa",
                             *[f"{0.1 * i:.2f},{100 + 20 * k + i}" for i in range(n)]])
    if manifest is not None:
        write(folder, "manifest.csv", manifest)
    return folder


def test_folder_from_file_names(tmp_path):
    folder = _folder(tmp_path, ["T1000_R0.1_D0.csv", "T1000_R0.1_D1.csv", "spec_T1050_R1e-2_D0.csv"])
    (folder / "README.txt").write_text("notes")
    (folder / "raw").mkdir()
    fc = load(str(folder))
    assert fc.n_curves == 3 and fc.extra_names == ["direction"]
    conds = {n: tuple(c) for n, c in zip(fc.curve_names, fc.conditions())}
    assert conds["spec_T1050_R1e-2_D0.csv"] == (1050, 0.01, 0)
    assert conds["T1000_R0.1_D1.csv"] == (1000, 0.1, 1)
    assert ("'README.txt'", "not a .csv curve file") in fc.excluded
    assert ("'raw'", "sub-folder, not searched") in fc.excluded


def test_folder_from_manifest_with_units(tmp_path):
    folder = _folder(tmp_path, ["a.csv", "b.csv"],
                     manifest=["file,temperature,strain_rate,direction,operator",
                               "a.csv,1273.15,0.1,0,anna", "b.csv,1273.15,0.1,1,bob"])
    fc = load_folder(folder, temperature_unit="K")
    np.testing.assert_allclose(fc.conditions(), [[1000, 0.1, 0], [1000, 0.1, 1]])
    assert fc.curve_names == ["a.csv", "b.csv"]
    assert any("operator" in what for what, _ in fc.excluded)


# ---- bad input: every case names file, row and column ------------------------------------------
def _replace(lines, row, col, value):
    cells = lines[row - 1].split(",")
    cells[HEADER.split(",").index(col)] = value
    lines[row - 1] = ",".join(cells)
    return lines


@pytest.mark.parametrize("column,value,needle", [
    ("true_stress_MPa", "abc", "not a number"),
    ("true_stress_MPa", "", "empty value"),
    ("true_strain", "nan", "not finite"),
    ("true_stress_MPa", "inf", "not finite"),
    ("true_stress_MPa", "-5", "not > 0"),
    ("true_stress_MPa", "0", "not > 0"),
    ("strain_rate_per_s", "0", "not > 0"),
    ("strain_rate_per_s", "-0.1", "not > 0"),
    ("temperature_C", "-300", "absolute zero"),
    ("true_strain", "-0.2", "negative"),
])
def test_bad_values_are_located(tmp_path, column, value, needle):
    lines = _replace(good_lines(), 4, column, value)
    p = write(tmp_path, "bad.csv", lines)
    with pytest.raises(DataError) as ei:
        load_csv(p)
    assert_located(ei.value, p, 4, column)
    assert needle in str(ei.value)


def test_below_absolute_zero_in_kelvin(tmp_path):
    lines = [HEADER, *curve_rows("a", 1273, 0.1), *curve_rows("b", -2, 0.1)]
    p = write(tmp_path, "k.csv", lines)
    with pytest.raises(DataError) as ei:
        load_csv(p, temperature_unit="K")
    assert_located(ei.value, p, 8, "temperature_C")
    assert "allowed" in str(ei.value)


def test_missing_column(tmp_path):
    p = write(tmp_path, "nocol.csv", ["# meta: x", "curve,temperature_C,strain_rate_per_s,true_strain",
                                      "a,1000,0.1,0.0"])
    with pytest.raises(DataError) as ei:
        load_csv(p)
    assert_located(ei.value, p, 2, "true_stress_MPa")
    assert "--columns" in str(ei.value)


def test_stress_in_wrong_unit(tmp_path):
    lines = [HEADER, *(f"a,1000,0.1,{0.1 * k},{(100 + k) * 1e6}" for k in range(6))]
    p = write(tmp_path, "pa.csv", lines)
    with pytest.raises(DataError) as ei:
        load_csv(p)
    assert ei.value.column == "true_stress_MPa" and "--stress-unit" in str(ei.value)
    assert load_csv(p, stress_unit="Pa").stress.max() == pytest.approx(105)


def test_too_few_points(tmp_path):
    lines = [HEADER, *curve_rows("a", 1000, 0.1), *curve_rows("b", 1000, 1, n=3)]
    p = write(tmp_path, "short.csv", lines)
    with pytest.raises(DataError) as ei:
        load_csv(p)
    assert_located(ei.value, p, 8, "true_strain")
    assert "at least 5" in str(ei.value)


def test_same_condition_with_curve_ids(tmp_path):
    lines = [HEADER, *curve_rows("a", 1000, 0.1), *curve_rows("b", 1000, 0.1)]
    p = write(tmp_path, "rep.csv", lines)
    with pytest.raises(DataError) as ei:
        load_csv(p)
    assert_located(ei.value, p, 8, "curve")
    assert load_csv(p, allow_replicates=True).n_curves == 2


def test_same_condition_without_curve_id_restart(tmp_path):
    rows = [r.split(",", 1)[1] for r in curve_rows("a", 1000, 0.1) + curve_rows("a", 1000, 0.1)]
    p = write(tmp_path, "restart.csv", [HEADER.split(",", 1)[1], *rows])
    with pytest.raises(DataError) as ei:
        load_csv(p)
    assert_located(ei.value, p, 8, "true_strain")
    assert "same condition" in str(ei.value)


def test_same_condition_without_curve_id_comes_back(tmp_path):
    rows = [r.split(",", 1)[1] for r in
            curve_rows("a", 1000, 0.1) + curve_rows("b", 1050, 0.1) + curve_rows("c", 1000, 0.1)]
    p = write(tmp_path, "back.csv", [HEADER.split(",", 1)[1], *rows])
    with pytest.raises(DataError) as ei:
        load_csv(p)
    assert_located(ei.value, p, 14, "temperature_C, strain_rate_per_s")


def test_curve_changing_condition_and_empty_id(tmp_path):
    lines = _replace(good_lines(), 5, "temperature_C", "1010")
    p = write(tmp_path, "change.csv", lines)
    with pytest.raises(DataError) as ei:
        load_csv(p)
    assert_located(ei.value, p, 5, "temperature_C, strain_rate_per_s")
    p = write(tmp_path, "noid.csv", _replace(good_lines(), 3, "curve", ""))
    with pytest.raises(DataError) as ei:
        load_csv(p)
    assert_located(ei.value, p, 3, "curve")


def test_empty_and_header_only_files(tmp_path):
    p = write(tmp_path, "empty.csv", ["", "# nothing"])
    with pytest.raises(DataError, match="empty"):
        load_csv(p)
    p = write(tmp_path, "header.csv", [HEADER])
    with pytest.raises(DataError) as ei:
        load_csv(p)
    assert ei.value.row == 2 and "no data rows" in str(ei.value)


def test_folder_same_condition_from_manifest(tmp_path):
    folder = _folder(tmp_path, ["a.csv", "b.csv"], manifest=[
        "file,temperature,strain_rate", "a.csv,1000,0.1", "b.csv,1000,0.1"])
    with pytest.raises(DataError) as ei:
        load_folder(folder)
    assert_located(ei.value, folder / "manifest.csv", 3, "temperature, strain_rate")
    assert load_folder(folder, allow_replicates=True).n_curves == 2


def test_folder_same_condition_from_file_names(tmp_path):
    folder = _folder(tmp_path, ["x_T1000_R0.1.csv", "y_T1000_R0.1.csv"])
    with pytest.raises(DataError) as ei:
        load_folder(folder)
    assert ei.value.file == str(folder / "y_T1000_R0.1.csv") and ei.value.column == "file name"


def test_folder_bad_inputs(tmp_path):
    folder = _folder(tmp_path, ["a.csv", "b.csv"], manifest=[
        "file,temperature,strain_rate", "a.csv,1000,0.1", "b.csv,-400,0.1"])
    with pytest.raises(DataError) as ei:
        load_folder(folder)
    assert_located(ei.value, folder / "manifest.csv", 3, "temperature")
    (folder / "manifest.csv").write_text("file,temperature,strain_rate\na.csv,1000,0.1\nc.csv,1000,1\n")
    with pytest.raises(DataError) as ei:
        load_folder(folder)
    assert_located(ei.value, folder / "manifest.csv", 3, "file")
    (folder / "manifest.csv").unlink()
    with pytest.raises(DataError) as ei:            # no manifest, names without a condition
        load_folder(folder)
    assert ei.value.column == "file name" and "T975_R0.1_D0" in str(ei.value)


def test_folder_curve_file_errors(tmp_path):
    folder = _folder(tmp_path, ["T1000_R0.1.csv", "T1000_R1.csv"])
    write(folder, "T1000_R1.csv", ["true_strain,true_stress_MPa", "0,100", "0.1,110", "0.2,x"])
    with pytest.raises(DataError) as ei:
        load_folder(folder)
    assert_located(ei.value, folder / "T1000_R1.csv", 4, "true_stress_MPa")
    write(folder, "T1000_R1.csv", ["true_strain,true_stress_MPa", "0,100", "0.1,110", "0.2,120"])
    with pytest.raises(DataError) as ei:
        load_folder(folder)
    assert_located(ei.value, folder / "T1000_R1.csv", 2, "true_strain")
    write(folder, "T1000_R1.csv", ["eps,sig", "0,100"])
    with pytest.raises(DataError) as ei:
        load_folder(folder)
    assert_located(ei.value, folder / "T1000_R1.csv", 1, "true_strain")


def test_unknown_unit_and_parsers():
    with pytest.raises(NeumatInputError, match="unit"):
        convert_and_check("x", {}, [], {}, "R", "MPa", "1/s")
    with pytest.raises(NeumatInputError):
        parse_columns("strain")
    with pytest.raises(NeumatInputError):
        parse_heldout("1000")
    with pytest.raises(NeumatInputError):
        parse_heldout("1000:abc")
    assert parse_heldout("975:0.1:0, 900:0.1:1") == [(975, 0.1, 0), (900, 0.1, 1)]
    assert parse_columns("strain = e, stress=s") == {"strain": "e", "stress": "s"}


# ---- exclusions, resampling, smoothing, splits ------------------------------------------------
@pytest.fixture(scope="module")
def syn() -> FlowCurves:
    return load("synthetic_dz411")


def test_exclusions_are_listed(syn):
    out = exclude_curves(syn, [(20, 0.1, 1), (975, 0.1)])
    assert out.n_curves == 63 and len(out.excluded) == 2
    assert all(why == "condition excluded by the user" for _, why in out.excluded)
    assert "syn_T975_R0.1_D0" in out.excluded[1][0]
    with pytest.raises(NeumatInputError, match="excluded condition"):
        exclude_curves(syn, [(1234, 0.1)])


def test_resample(syn):
    grid = np.linspace(0.0, 0.8, 17)             # beyond 0.693 nothing is extrapolated
    res = syn.resample(grid)
    assert res.n_curves == syn.n_curves and len(res) == 65 * 14
    np.testing.assert_allclose(res.conditions(), syn.conditions())
    for c in (0, 40):
        i, j = syn.curve_points(c), res.curve_points(c)
        np.testing.assert_allclose(res.stress[j], np.interp(res.strain[j], syn.strain[i], syn.stress[i]))
    # a curve that does not reach the grid is dropped and listed
    short = syn.take(np.flatnonzero((syn.curve != 3) | (syn.strain < 0.2)))
    res2 = short.resample([0.3, 0.4])
    assert res2.n_curves == 64 and syn.curve_names[3] not in res2.curve_names
    assert any(syn.curve_names[3] in what for what, _ in res2.excluded)
    # unsorted input with duplicate strains: sorted and averaged
    fc = FlowCurves(curve=[0] * 4, temperature=[1000] * 4, strain_rate=[1] * 4,
                    strain=[0.2, 0.0, 0.1, 0.1], stress=[30, 10, 18, 22], curve_names=["u"])
    np.testing.assert_allclose(fc.resample([0.05, 0.1, 0.15]).stress, [15, 20, 25])


def test_smoothing():
    e = np.linspace(0, 0.7, 141)
    cubic = 100 + 300 * e - 200 * e ** 2 + 50 * e ** 3
    noisy = cubic * (1 + 0.01 * np.random.default_rng(0).standard_normal(len(e)))
    fc = FlowCurves(curve=np.repeat([0, 1, 2], [141, 141, 4]), temperature=np.repeat([1000, 1050, 1100], [141, 141, 4]),
                    strain_rate=np.ones(286), strain=np.r_[e, e, e[:4]],
                    stress=np.r_[cubic, noisy, cubic[:4]], curve_names=["exact", "noisy", "short"])
    sm = fc.smoothed(window=30, order=3)          # even window made odd
    np.testing.assert_allclose(sm.stress[:141], cubic, rtol=1e-9)   # SG of order 3 keeps a cubic
    err_raw = np.abs(noisy - cubic).mean()
    err_sm = np.abs(sm.stress[141:282] - cubic).mean()
    assert err_sm < 0.5 * err_raw
    np.testing.assert_array_equal(sm.stress[282:], cubic[:4])    # too short: unchanged
    assert fc.stress[150] == noisy[9]                             # original untouched


def test_split_heldout_whole_curves(syn):
    train, held = syn.split_heldout([(975, 0.1, 0), (900, 0.1, 1), (800, 0.1, 1)])
    assert train.n_curves == 62 and held.n_curves == 3
    assert not set(train.curve_names) & set(held.curve_names)
    assert len(train) + len(held) == len(syn)
    assert np.all(np.bincount(held.curve) == 140)
    # (T, rate) without direction matches both directions
    _, both = syn.split_heldout([(950, 0.1)])
    assert sorted(both.curve_names) == ["syn_T950_R0.1_D0", "syn_T950_R0.1_D1"]
    with pytest.raises(NeumatInputError, match="matches no curve"):
        syn.split_heldout([(123, 0.1)])
    with pytest.raises(NeumatInputError, match="has 4 values"):
        syn.split_heldout([(975, 0.1, 0, 1)])
    with pytest.raises(NeumatInputError, match="none is left"):
        syn.split_heldout([tuple(c) for c in syn.conditions()])
    with pytest.raises(NeumatInputError, match="at least 2"):
        list(syn.subset([0]).leave_one_condition_out())


def test_leave_one_condition_out_keeps_replicates_together(tmp_path):
    lines = [HEADER, *curve_rows("a1", 1000, 0.1), *curve_rows("a2", 1000, 0.1, s0=104),
             *curve_rows("b", 1000, 1), *curve_rows("c", 1100, 1)]
    fc = load_csv(write(tmp_path, "reps.csv", lines), allow_replicates=True)
    folds = list(fc.leave_one_condition_out())
    assert len(folds) == 3
    tests = [sorted(te.curve_names) for _, te in folds]
    assert ["a1", "a2"] in tests
    for tr, te in folds:
        assert not set(tr.curve_names) & set(te.curve_names)
        assert tr.n_curves + te.n_curves == 4
    assert sorted(n for t in tests for n in t) == ["a1", "a2", "b", "c"]


def test_csv_round_trip(syn, tmp_path):
    sub = exclude_curves(syn, [(20, 0.001)])
    p = tmp_path / "syn.csv"
    sub.to_csv(p)
    back = load_csv(p)
    assert back.synthetic and back.curve_names == sub.curve_names
    assert back.extra_names == ["direction"]
    for k in ("curve", "temperature", "strain_rate", "strain", "stress", "time_index"):
        np.testing.assert_array_equal(getattr(back, k), getattr(sub, k))
    np.testing.assert_array_equal(back.extras["direction"], sub.extras["direction"])
    assert back.data_hash() == sub.data_hash()


# ---- the CLI ------------------------------------------------------------------------------------
def test_cli_data_synthetic(tmp_path, capsys):
    png, csv_path = tmp_path / "c.png", tmp_path / "c.csv"
    assert main(["data", "--data", "synthetic_dz411", "--plot", str(png), "--write-csv", str(csv_path),
                 "--exclude", "20:0.1:1"]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out and "64 curves" in out
    assert "excluded curve 'syn_T20_R0.1_D1'" in out
    assert png.stat().st_size > 10_000
    assert main(["data", "--data", str(csv_path)]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out and "64 curves, 8960 points" in out


@pytest.mark.skipif(not dataset_available("gleeble_3cr2mo"), reason="gleeble_3cr2mo data set missing")
def test_cli_data_real_set_attribution(capsys):
    assert main(["data", "--data", "gleeble_3cr2mo"]) == 0
    out = capsys.readouterr().out
    assert "30 curves, 21030 points" in out and "SYNTHETIC" not in out
    assert "doi:10.3390/met13030633" in out


@pytest.mark.parametrize("extra", [[], ["--exclude", "1:1"], ["--exclude", "x"]])
def test_cli_bad_input_exit_2_one_line(tmp_path, capsys, extra):
    p = write(tmp_path, "bad.csv", _replace(good_lines(), 3, "true_stress_MPa", "-1"))
    argv = ["data", "--data", str(p) if not extra else "synthetic_dz411", *extra]
    assert main(argv) == 2
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert "Traceback" not in cap.err and len(err.splitlines()) == 1
    assert err.startswith("neumat data: error:")
    if not extra:
        assert str(p) in err and "row 3" in err and "column 'true_stress_MPa'" in err


def test_cli_unknown_data(capsys):
    assert main(["data", "--data", "no_such_set"]) == 2
    assert "neither a known data set" in capsys.readouterr().err


@pytest.mark.skipif(not dataset_available("bst_freiberg"), reason="bst_freiberg data set missing")
def test_csv_round_trip_with_replicates_and_attribution(tmp_path):
    fc = load("bst_freiberg")
    p = tmp_path / "bst.csv"
    fc.to_csv(p, attribution=datasets.NAMED_DATASETS["bst_freiberg"]["attribution"])
    text = p.read_text()
    assert "# replicates: true" in text and "MIT licence" in text
    back = load_csv(p)                 # no allow_replicates needed: the file says so
    assert back.curve_names == fc.curve_names and not back.synthetic
    np.testing.assert_array_equal(back.stress, fc.stress)
    np.testing.assert_array_equal(back.strain, fc.strain)
    np.testing.assert_array_equal(back.conditions(), fc.conditions())


def test_cli_folder_lists_excluded(tmp_path, capsys):
    folder = _folder(tmp_path, ["T1000_R0.1_D0.csv", "T1000_R0.1_D1.csv"])
    (folder / "notes.txt").write_text("x")
    assert main(["data", "--data", str(folder), "--list"]) == 0
    out = capsys.readouterr().out
    assert "2 curves, 12 points" in out and "direction" in out
    assert "excluded 'notes.txt': not a .csv curve file" in out
    assert "T1000_R0.1_D1.csv: 1000 °C, 0.1 1/s, direction=1; 6;" in out


# ---- mistakes caught where they are made (issue 16) ---------------------------------------------
def test_unknown_columns_field_is_an_error_naming_the_known_ones(tmp_path, capsys):
    lines = ["curve,TempK,strain_rate_per_s,true_strain,true_stress_MPa,HV",
             *curve_rows("a", 1273.15, 0.1, extra=",200"), *curve_rows("b", 1273.15, 1, s0=150, extra=",210")]
    p = write(tmp_path, "typo.csv", lines)
    with pytest.raises(NeumatInputError) as ei:
        load_csv(p, columns={"temprature": "TempK"}, temperature_unit="K")
    msg = str(ei.value)
    assert "unknown field 'temprature'" in msg and "did you mean 'temperature'" in msg
    for field in ("temperature", "strain_rate", "strain", "stress", "curve", "direction", "--extras"):
        assert field in msg
    # the CLI: exit 2, nothing trained or read further
    assert main(["data", "--data", str(p), "--columns", "temprature=TempK", "--temperature-unit", "K"]) == 2
    assert "unknown field 'temprature'" in capsys.readouterr().err
    # declared names still work: an extra named in --extras, and direction
    fc = load_csv(p, columns={"temperature": "TempK", "hardness": "HV"}, extras=["hardness"],
                  temperature_unit="K")
    assert fc.extra_names == ["hardness"]
    folder = _folder(tmp_path, ["T1000_R0.1.csv", "T1050_R0.1.csv"])
    with pytest.raises(NeumatInputError, match="unknown field 'stres'"):
        load_folder(folder, columns={"stres": "sig"})


def test_every_bad_row_is_reported_capped(tmp_path):
    lines = good_lines()
    for row in (3, 5, 9):
        lines = _replace(lines, row, "true_stress_MPa", "abc")
    lines = _replace(lines, 6, "strain_rate_per_s", "-1")
    p = write(tmp_path, "many.csv", lines)
    with pytest.raises(DataError) as ei:
        load_csv(p)
    msg = str(ei.value)
    assert "4 problems" in msg and ei.value.row == 3 and ei.value.column == "true_stress_MPa"
    for row, col in ((3, "true_stress_MPa"), (5, "true_stress_MPa"), (6, "strain_rate_per_s"),
                     (9, "true_stress_MPa")):
        assert f"row {row}, column '{col}'" in msg
    # a long list is capped: the first 20 listed, the rest counted
    many = [HEADER] + [f"c{k},1000,0.1,0.{k % 10},x" for k in range(50)]
    with pytest.raises(DataError) as ei:
        load_csv(write(tmp_path, "fifty.csv", many))
    msg = str(ei.value)
    assert "50 problems; the first 20" in msg and "... and 30 more" in msg
    assert "row 21," in msg and "row 22," not in msg


def test_strain_must_increase_within_a_curve(tmp_path):
    lines = good_lines()
    lines = _replace(lines, 4, "true_strain", "0.1")      # repeats row 3's 0.1
    lines = _replace(lines, 11, "true_strain", "0.05")    # falls below row 10's 0.3
    p = write(tmp_path, "mono.csv", lines)
    with pytest.raises(DataError) as ei:
        load_csv(p)
    msg = str(ei.value)
    assert ei.value.row == 4 and ei.value.column == "true_strain" and "2 problems" in msg
    assert "curve 'a'" in msg and "repeats" in msg and "curve 'b'" in msg and "falls below" in msg
    assert "row 11" in msg and str(p) in msg
    folder = _folder(tmp_path, ["T1000_R0.1.csv", "T1050_R0.1.csv"])
    write(folder, "T1050_R0.1.csv", ["true_strain,true_stress_MPa", *[f"{e},{100 + i}" for i, e in
                                                                       enumerate([0, 0.1, 0.2, 0.2, 0.3, 0.4])]])
    with pytest.raises(DataError) as ei:
        load_folder(folder)
    assert_located(ei.value, folder / "T1050_R0.1.csv", 5, "true_strain")
    assert "repeats" in str(ei.value)


@pytest.mark.parametrize("temps", [(1173, 1223, 1273), (1173.15, 1273.15), (1900, 2000)])
def test_kelvin_declared_as_celsius_is_caught(tmp_path, temps, capsys):
    lines = [HEADER] + [r for k, t in enumerate(temps) for r in curve_rows(f"c{k}", t, 0.1)]
    p = write(tmp_path, "kelvin.csv", lines)
    with pytest.raises(DataError) as ei:
        load_csv(p)
    assert "look like kelvin" in str(ei.value) and "--temperature-unit K" in str(ei.value)
    assert ei.value.column == "temperature_C" and ei.value.file == str(p)
    assert main(["data", "--data", str(p)]) == 2
    assert "look like kelvin" in capsys.readouterr().err
    # said explicitly, both readings are accepted
    assert load_csv(p, temperature_unit="K").temperature.max() == pytest.approx(max(temps) - 273.15)
    assert load_csv(p, temperature_unit="C").temperature.max() == max(temps)
    # nominal Celsius campaigns are not flagged
    ok = [HEADER] + [r for k, t in enumerate((900, 950, 1000)) for r in curve_rows(f"c{k}", t, 0.1)]
    assert load_csv(write(tmp_path, "celsius.csv", ok)).n_curves == 3


def test_kelvin_file_names_without_unit_are_caught(tmp_path):
    folder = _folder(tmp_path, ["T1173_R0.1.csv", "T1273_R0.1.csv"])
    with pytest.raises(DataError, match="look like kelvin"):
        load_folder(folder)
    assert load_folder(folder, temperature_unit="K").conditions()[0, 0] == pytest.approx(899.85)


def test_written_files_are_atomic_and_keep_the_usual_permissions(tmp_path, monkeypatch):
    """``--write-csv`` and ``--plot`` go through a temporary file and a rename (a failed write
    leaves the old file), with the permissions a plain open() gives, not mkstemp's 0600."""
    import os
    from constitutive import jsonio
    csv_out, png = tmp_path / "all.csv", tmp_path / "curves.png"
    assert main(["data", "--data", "synthetic_dz411", "--write-csv", str(csv_out), "--plot", str(png)]) == 0
    mask = jsonio.current_umask()
    for p in (csv_out, png):
        assert os.stat(p).st_mode & 0o777 == 0o666 & ~mask, p
    old = csv_out.read_bytes()

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(jsonio.os, "replace", failing_replace)
    assert main(["data", "--data", "synthetic_dz411", "--write-csv", str(csv_out)]) == 2
    assert csv_out.read_bytes() == old and sorted(p.name for p in tmp_path.iterdir()) == ["all.csv", "curves.png"]
