"""The ONNX contract (export.contract) is the one seam between the exporter and the runtimes:
every operator the exporter emits has a translator rule, and the onnxruntime backend, the
translator and the UMAT build refuse a file for the same reason with the same message."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from constitutive.errors import NeumatInputError
from export.contract import (DEFAULT_OPSET, EMITTED_OPS, INPUT_NAME, METADATA_KEYS, OUTPUT_NAMES, REQUIRED_KEYS,
                             read_model_info)
from export.onnx_export import export_onnx
from fem_bridge.backends import OnnxBackend
from fortran_umat.flow_module import HELPERS, translate
from fortran_umat.onnx_ops import KINDS, RULES
from helpers import random_flownet

ROOT = Path(__file__).resolve().parents[1]


def test_every_emitted_op_has_a_translator_rule():
    missing = [op for op in EMITTED_OPS if op not in RULES]
    assert not missing, f"operators the exporter emits without a translator rule: {missing}"
    for op in EMITTED_OPS:
        r = RULES[op]
        assert r.name == op and r.kind in KINDS
        assert r.kind != "elementwise" or r.fortran is not None, op
        assert r.kind != "emit" or r.emit is not None, op
        assert r.kind != "shape", f"{op}: the exporter's ops must be translatable on input-dependent data"


def test_fortran_helpers_called_by_rules_are_in_the_template():
    called = set(re.findall(r"\bnm_\w+(?=\()", (ROOT / "fortran_umat" / "onnx_ops.py").read_text()))
    defined = set(re.findall(r"function (nm_\w+)\(", HELPERS.read_text()))
    assert called and called <= defined, called - defined


def test_contract_imports_no_runtime():
    code = ("import sys, export.contract; bad = {'onnxruntime', 'torch'} & set(sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    net = random_flownet(seed=3, n_extras=1)
    return net, export_onnx(net, tmp_path_factory.mktemp("contract") / "m.onnx")


def test_read_model_info_of_an_export(exported):
    net, path = exported
    info = read_model_info(path)
    assert info.feature_names == net.feature_names and info.feature_units == net.feature_units
    np.testing.assert_array_equal(info.box_lo, net.box_lo)
    np.testing.assert_array_equal(info.box_hi, net.box_hi)
    assert info.rate_floor == net.rate_floor and info.box_policy == net.box_policy
    assert info.opset == DEFAULT_OPSET and info.model_bytes == path.read_bytes()
    assert set(info.op_types) <= set(EMITTED_OPS)
    assert set(REQUIRED_KEYS) <= set(info.metadata) <= set(METADATA_KEYS)
    assert [i.name for i in info.model.graph.input] == [INPUT_NAME]
    assert tuple(o.name for o in info.model.graph.output) == OUTPUT_NAMES
    # the same from bytes (a Dask worker), the path then only names the model
    again = read_model_info("shipped.onnx", data=info.model_bytes)
    assert again.sha256 == info.sha256 and again.feature_names == info.feature_names


def _with_prop(path: Path, out: Path, key: str, value: str | None) -> Path:
    m = onnx.load(str(path))
    props = {p.key: p.value for p in m.metadata_props}
    if value is None:
        props.pop(key)
    else:
        props[key] = value
    del m.metadata_props[:]
    onnx.helper.set_model_props(m, props)
    onnx.save(m, str(out))
    return out


def _message(fn, path) -> str:
    with pytest.raises(NeumatInputError) as err:
        fn(path)
    return str(err.value)


@pytest.mark.parametrize("key, value, expected", [
    ("neumat.format", '"neumat-onnx/0"', "metadata format 'neumat-onnx/0'"),
    ("neumat.box_lo", "[0.0, 0.001", "unreadable metadata"),
    ("neumat.rate_floor", None, "metadata missing neumat.rate_floor"),
    ("neumat.box_hi", "[1.0, 2.0]", "metadata lists 4 features but boxes of"),
    ("neumat.box_policy", '"wrap"', "box_policy 'wrap'"),
    ("neumat.coverage", '{"format": "neumat-coverage/1", "conditions": [[1000.0, 0.1]], "strain_max": [0.5], '
                        '"spacing": [50.0, 1.0], "threshold": 1.0}', "do not fit a model of 4 features"),
    ("neumat.coverage", '{"format": "neumat-coverage/1", "conditions": [[1000.0, -0.1, 0.0]], "strain_max": [0.5], '
                        '"spacing": [50.0, 1.0, 1.0], "threshold": 1.0}', "rates, spacings and threshold > 0"),
])
def test_backend_and_translator_refuse_alike(exported, tmp_path, key, value, expected):
    """One bad metadata entry: read_model_info, OnnxBackend and translate give the same message."""
    bad = _with_prop(exported[1], tmp_path / "bad.onnx", key, value)
    ref = _message(read_model_info, bad)
    assert expected in ref
    assert _message(OnnxBackend, bad) == ref
    assert _message(translate, bad) == ref


def test_backend_and_translator_refuse_missing_and_junk_alike(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_text("this is not a protobuf\n" * 10)
    for path in (tmp_path / "missing.onnx", junk):
        ref = _message(read_model_info, path)
        assert _message(OnnxBackend, path) == ref == _message(translate, path)


def test_measured_conditions_travel_from_flownet_through_onnx_to_every_consumer(tmp_path):
    """FlowNet JSON (``coverage``, or ``meta["coverage"]`` as training records it) → ONNX metadata
    ``neumat.coverage`` → ModelInfo.coverage → the backend and the Fortran parameters."""
    from constitutive.flownet import FlowNet
    from helpers import gap_flownet
    net = gap_flownet(seed=2)
    net.save(tmp_path / "model.json")
    back = FlowNet.load(tmp_path / "model.json")
    assert back.coverage == net.coverage and back.data_coverage.conditions.shape == (18, 2)
    info = read_model_info(export_onnx(back, tmp_path / "m.onnx"))
    np.testing.assert_array_equal(info.coverage.conditions, net.data_coverage.conditions)
    np.testing.assert_array_equal(info.coverage.strain_max, net.data_coverage.strain_max)
    assert info.as_dict()["coverage"] == net.data_coverage.to_dict()
    assert OnnxBackend(tmp_path / "m.onnx").coverage.threshold == 1.0
    tr, _ = translate(tmp_path / "m.onnx")
    assert "NM_NCOND = 18" in tr.flow_source and "NM_COV_RATE_MIN" in tr.flow_source
    # the form training writes: the coverage inside meta
    via_meta = gap_flownet(seed=2)
    via_meta.meta = dict(via_meta.meta, coverage=via_meta.coverage)
    via_meta.coverage = None
    assert read_model_info(export_onnx(via_meta, tmp_path / "v.onnx")).coverage is not None
    # a model without conditions: null in the file, None when read, and the same hash as before
    plain = random_flownet(1)
    assert "coverage" not in plain.to_dict()
    assert read_model_info(export_onnx(plain, tmp_path / "p.onnx")).coverage is None


def test_coverage_from_flow_curves_merges_conditions_and_normalises_by_the_grid_spacing():
    from constitutive.coverage import Coverage
    from constitutive.flow_curves import FlowCurves
    rows = []            # (curve, T, rate, strain): 3 temperatures × 2 rates, a repeat at 900 °C / 0.1
    k = 0
    for t in (900.0, 1000.0, 1100.0):
        for r in (0.1, 10.0):
            for e in np.linspace(0.005, 0.5 if t < 1100 else 0.3, 6):
                rows.append((k, t, r, e))
            k += 1
    for e in np.linspace(0.005, 0.7, 6):
        rows.append((k, 900.0, 0.1, e))
    a = np.array(rows)
    curves = FlowCurves(curve=a[:, 0].astype(int), temperature=a[:, 1], strain_rate=a[:, 2], strain=a[:, 3],
                        stress=np.full(len(a), 100.0), curve_names=[f"c{i}" for i in range(k + 1)])
    cov = Coverage.from_curves(curves)
    assert cov.conditions.shape == (6, 2)                       # the repeat merged
    assert cov.spacing.tolist() == [100.0, 2.0]                 # °C, decades
    assert cov.strain_max[0] == 0.7 and cov.strain_max.max() == 0.7 and cov.strain_max.min() == 0.3
    x = np.array([[0.001, 0.1, 950.0], [0.6, 0.1, 900.0], [0.6, 0.1, 1100.0], [0.2, 1.0, 1050.0],
                  [0.2, 0.1, 1250.0]])
    assert cov.outside(x, rate_floor=0.01).tolist() == [False, False, True, False, True]
    assert Coverage.from_dict(cov.to_dict(), 3).to_dict() == cov.to_dict()
