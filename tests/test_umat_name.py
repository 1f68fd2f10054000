"""The UMAT's material name: chosen (``neumat umat --name``) or from the model file's name, the
same after a retrain, valid for CalculiX (upper case, letters and digits, <= 70 characters), with
the model's sha256 in the generated .f90 and material.inp."""
from __future__ import annotations

import shutil

import pytest

from constitutive.cli import main
from constitutive.errors import NeumatInputError

from helpers import random_flownet

pytestmark = pytest.mark.skipif(shutil.which("gfortran") is None, reason="gfortran not installed")


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUMAT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _export(path, seed):
    from export.onnx_export import export_onnx
    path.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(random_flownet(seed=seed), path)
    return path


def test_default_name_from_file_name_stable_over_retrain(tmp_path, cache):
    from fortran_umat.build import build_umat
    from fortran_umat.flow_module import translate
    a = build_umat(_export(tmp_path / "v1" / "dz411-hot.onnx", seed=1), out_dir=tmp_path / "u1")
    b = build_umat(_export(tmp_path / "v2" / "dz411-hot.onnx", seed=2), out_dir=tmp_path / "u2")
    assert a.name == b.name == "DZ411HOT"                       # a retrained model keeps its name
    sha_a, sha_b = translate(tmp_path / "v1" / "dz411-hot.onnx")[0].sha256, \
        translate(tmp_path / "v2" / "dz411-hot.onnx")[0].sha256
    assert sha_a != sha_b
    assert a.library.name == "libDZ411HOT.so" and (tmp_path / "u1" / "libDZ411HOT.so").is_file()
    inp = (tmp_path / "u1" / "material.inp").read_text()
    assert "*MATERIAL, NAME=@ABAQUS_DZ411HOT" in inp and f"model sha256 {sha_a}" in inp
    assert f"model sha256 {sha_a}" in (tmp_path / "u1" / "dz411hot.f90").read_text()
    assert f"model sha256 {sha_b}" in (tmp_path / "u2" / "material.inp").read_text()
    # model.onnx takes its folder's name; a name that would start with a digit gets a prefix
    assert build_umat(_export(tmp_path / "runs" / "demo" / "model.onnx", seed=1)).name == "DEMO"


def test_names_chosen_checked_and_cut(tmp_path, cache, capsys):
    from fortran_umat.build import MAX_NAME_LENGTH, check_name, default_name
    assert MAX_NAME_LENGTH == 70 and len("@ABAQUSNL_" + "X" * MAX_NAME_LENGTH) == 80
    assert default_name("3cr2mo_v2.onnx") == "NEUMAT3CR2MOV2"
    assert default_name("a" * 100 + ".onnx") == "A" * 70
    assert check_name("hot3cr") == "HOT3CR" and check_name("@ABAQUS_Hot") == "HOT"
    for bad in ("hot_3cr", "3cr", "", "x" * 71, "é1"):
        with pytest.raises(NeumatInputError, match="letters and digits"):
            check_name(bad)
    onnx = _export(tmp_path / "m.onnx", seed=3)
    assert main(["umat", str(onnx), "--out", str(tmp_path / "u"), "--name", "Alloy625"]) == 0
    out = capsys.readouterr().out
    assert "@ABAQUS_ALLOY625" in out and (tmp_path / "u" / "libALLOY625.so").is_file()
    assert "NAME=@ABAQUS_ALLOY625" in (tmp_path / "u" / "material.inp").read_text()
    assert main(["umat", str(onnx), "--out", str(tmp_path / "v"), "--name", "alloy_625"]) == 2
    assert "letters and digits" in capsys.readouterr().err
