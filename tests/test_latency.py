"""`neumat bench --quick` runs end to end and writes a complete, finite latency.json.

No timing assertions: only that every path ran, produced finite positive figures, and that the
JSON carries the machine, versions, load, goals and profiles the README table is built from.
"""
from __future__ import annotations

import json
import math

import pytest

from benchmarks.latency_measure import QUICK_N
from benchmarks.latency_paths import ARRHENIUS_MODEL, PATHS
from constitutive.cli import main

EXPECTED_MODELS = {"residual_elu", "sigmoid_3_15_7_1"}


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    rc = main(["bench", "--quick", "--out", str(out), "--no-readme"])
    doc = json.loads((out / "latency.json").read_text())
    return rc, out, doc


def _finite_positive(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def test_quick_bench_exit_and_files(quick_result):
    rc, out, doc = quick_result
    assert rc == 0, [(e["model"], e["path"], e.get("reason")) for e in doc["paths"] if not e.get("available")]
    assert (out / "latency_quick.png").stat().st_size > 1000
    assert doc["format"] == "neumat-latency/1" and doc["quick"] is True
    assert doc["n_values"] == QUICK_N


def test_metadata_recorded(quick_result):
    _, _, doc = quick_result
    m, v = doc["machine"], doc["versions"]
    assert m["cpu_model"] and m["logical_cores"] >= 1
    for lib in ("numpy", "onnxruntime", "torch", "gfortran"):
        assert v[lib], lib
    assert len(doc["load"]["before"]["loadavg_1_5_15"]) == 3 and doc["load"]["after"]["uptime"]
    assert doc["date"][:2] == "20"
    assert set(doc["models"]) == EXPECTED_MODELS | {ARRHENIUS_MODEL}


def test_every_path_measured_with_finite_positive_figures(quick_result):
    _, _, doc = quick_result
    seen = set()
    for e in doc["paths"]:
        if not e["available"]:
            # the only accepted gap: a second thread for a kernel without an OpenMP loop
            assert e["threads"] == 2 and "OpenMP" in e["reason"], e
            continue
        seen.add((e["model"], e["path"]))
        assert e["points"], e["path"]
        for p in e["points"]:
            for key in ("min_s_per_call", "median_s_per_call", "min_s_per_point", "median_s_per_point"):
                assert _finite_positive(p[key]), (e["model"], e["path"], key, p)
            assert p["min_s_per_point"] <= p["median_s_per_point"]
        if e["kind"] in ("flow", "j2"):
            assert [p["n"] for p in e["points"]] == QUICK_N
            assert e["memory"]["tracemalloc_peak_bytes_per_point"] >= 0
    for model in EXPECTED_MODELS:
        for path in PATHS:
            if path != "arrhenius_numpy":
                assert (model, path) in seen, (model, path)
    assert (ARRHENIUS_MODEL, "arrhenius_numpy") in seen


def test_paths_compute_the_right_thing(quick_result):
    """A benchmark of wrong numbers is worthless: each path agrees with the numpy reference."""
    _, _, doc = quick_result
    for e in doc["paths"]:
        if not e["available"] or "check" not in e:
            continue
        c = e["check"]
        for key in ("max_rel_err_sigma", "max_rel_err_grad", "max_rel_err_stress"):
            if key in c:
                assert c[key] < 1e-8, (e["model"], e["path"], key, c[key])
        if "plastic_fraction" in c:
            assert c["plastic_fraction"] == 1.0, (e["model"], e["path"])


def test_fortran_loop_is_plastic_with_newton(quick_result):
    _, _, doc = quick_result
    for e in doc["paths"]:
        if e["path"] != "umat_fortran_loop":
            continue
        f = e["fortran"]
        assert f["plastic_calls"] == f["calls"] > 0 and f["step_cuts"] == 0
        assert f["newton_iterations_per_call"] >= 1
        assert _finite_positive(f["flow_kernel_n1"]["min_s"]) and _finite_positive(f["flow_kernel_batch"]["min_s"])


def test_goals_and_profiles_present(quick_result):
    _, _, doc = quick_result
    keys = {(g["model"], g["goal"]) for g in doc["goals"]}
    for model in EXPECTED_MODELS:
        for goal in ("umat", "compiled_batch", "onnx_batch", "integrate_compiled", "callback"):
            assert (model, goal) in keys
        prof = doc["profiles"][model]
        for key in ("onnx_batch", "compiled_batch", "integrate_compiled", "callback", "umat"):
            assert "error" not in prof[key], prof[key]
            assert prof[key]["summary"], key
    for g in doc["goals"]:
        if g["reached"] is not None and g["goal"] != "flat":
            assert _finite_positive(g["min_s"])


def test_readme_section_renders(quick_result, tmp_path):
    from benchmarks.latency_report import readme_section, write_readme
    _, _, doc = quick_result
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- latency:start -->\nOLD SECTION TEXT\n<!-- latency:end -->\ntail\n")
    write_readme(readme_section(doc, "latency_quick.png"), readme)
    text = readme.read_text()
    assert "OLD SECTION TEXT" not in text and text.endswith("<!-- latency:end -->\ntail\n")
    assert "| goal |" in text and "NEML2" in text and "roseNNa" in text
