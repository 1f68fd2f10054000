"""``neumat demo`` end to end (quick settings), its failure handling, and the help texts."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from constitutive.cli import build_parser, main, _all_parsers


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    rc = main(["demo", "--quick", "--out", str(out)])
    return rc, out


def test_demo_quick_fills_every_section(demo_run):
    rc, out = demo_run
    assert rc == 0
    report = (out / "report.md").read_text()
    for heading in ("## 1. Data", "## 2. Phenomenological baselines", "## 3. Held-out comparison",
                    "## 4. Learning curve", "## 5. Export and UMAT", "## 6. Mesh evaluation",
                    "## 7. FE runs", "## 8. Latency of this model"):
        assert heading in report
    assert "failed" not in report.lower() and "did not run" not in report
    assert "SYNTHETIC" in report
    # every image the report links exists
    for name in re.findall(r"!\[[^]]*\]\(([^)]+)\)", report):
        assert (out / name).is_file(), name
    for name in ("flow_curves.png", "learning_curve.png", "network/parity.png", "compression.png",
                 "casting/casting_von_mises.png"):
        assert f"]({name})" in report
    cast = json.loads((out / "casting" / "summary.json").read_text())   # the casting step (issue 14)
    assert cast["umat"]["cut_attempts"] == 0 and f"{cast['umat']['peak_von_mises_MPa']:.1f}" in report
    res = json.loads((out / "results.json").read_text())
    assert [r["model"].split()[0] for r in res["comparison"]["rows"]] == ["Arrhenius", "plain", "seed", "neumat"]
    for r in res["comparison"]["rows"]:
        assert np.isfinite(r["whole"]["mare_pct"]) and r["whole"]["mare_pct"] > 0
        assert "high_t_axial_low_strain" in r              # the 975 °C axial test curve
    assert [r["training_curves"] for r in res["learning_curve"]] == [6, 12, 62]
    v = json.loads((out / "umat" / "verification.json").read_text())
    assert v["passed"] and v["plastic_increments"] > 50 and v["max_rel_tangent"] < 1e-9
    assert res["mesh"]["points"] == 125 and res["mesh"]["flow_stress_min_mpa"] > 0
    lat = {r["path"]: r for r in res["latency"]}
    assert all("min_s" in r or "reason" in r for r in lat.values())
    assert "min_s" in lat["onnxruntime"] and "min_s" in lat["umat_python_callback"]


def test_demo_report_numbers_come_from_the_run(demo_run):
    """The comparison table in the report is the one computed from the saved models."""
    _, out = demo_run
    res = json.loads((out / "results.json").read_text())
    net = json.loads((out / "network" / "metrics.json").read_text())
    ours = res["comparison"]["rows"][-1]["whole"]["mare_pct"]
    assert ours == pytest.approx(net["heldout"]["mare_pct"], rel=1e-9)
    assert f"{ours:.3f}" in (out / "report.md").read_text()


def test_demo_goes_on_after_a_failed_step(tmp_path, monkeypatch):
    import benchmarks.demo as demo

    def broken(*a, **k):
        raise RuntimeError("injected failure")
    monkeypatch.setattr(demo, "learning_curve", broken)
    monkeypatch.setattr(demo, "comparison", broken)
    rc = main(["demo", "--quick", "--no-latency", "--out", str(tmp_path)])
    assert rc == 1
    report = (tmp_path / "report.md").read_text()
    assert "Step 'learning curve' failed (exit 1): RuntimeError: injected failure" in report
    assert "Step 'compare' failed" in report
    assert "passed" in report                                 # the UMAT verification still ran
    assert (tmp_path / "model.onnx").is_file()


def test_demo_other_data_needs_heldout(tmp_path, capsys):
    from constitutive.synthetic import generate_dz411
    csv = tmp_path / "mine.csv"
    generate_dz411(points_per_curve=20).to_csv(csv)
    assert main(["demo", "--data", str(csv), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--heldout" in err and "Traceback" not in err


def test_every_command_help_has_a_description_and_an_example():
    parser = build_parser()
    assert "example" in parser.format_help()
    for p in _all_parsers(parser):
        text = p.format_help()
        if p is parser or p.prog.endswith("benchmark"):
            continue
        assert p.description, p.prog
        assert re.search(r"examples?:", text), p.prog
        assert re.search(r"°C|1/s|MPa|units", text, re.I), p.prog


def _readme_commands() -> list[list[str]]:
    """Every `neumat ...` command line in the README's code blocks (continuations joined,
    comments dropped)."""
    import shlex
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv[:1] == ["neumat"]:
                cmds.append(argv[1:])
    return cmds


def test_readme_commands_parse():
    """Each command the README shows is accepted by the parser as printed (flags, choices)."""
    cmds = _readme_commands()
    assert len(cmds) >= 9
    parser = build_parser()
    for argv in cmds:
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"README command does not parse: neumat {' '.join(argv)}")
        assert getattr(args, "func", None), argv


def _report_text(tmp_path, train, test, synthetic):
    from benchmarks.demo_report import write_report
    results = {"synthetic": synthetic, "seed": 0, "quick": True, "seconds": 1.0, "machine": "test machine",
               "steps": [], "fe_condition": [float(test.conditions()[0, 0]), float(test.conditions()[0, 1]), []]}
    return write_report(tmp_path, results, train, test).read_text()


def test_demo_report_on_user_data_says_nothing_of_the_synthetic_campaign(tmp_path):
    from constitutive.flow_curves import FlowCurves
    from constitutive.synthetic import generate_dz411
    e = np.linspace(0.0, 0.5, 10)
    conds = [(900, 0.1), (1000, 0.1), (900, 1.0), (1000, 1.0)]
    cols = [np.concatenate(x) for x in zip(*[(np.full(10, k), np.full(10, t), np.full(10, r), e, 100 + 50 * e)
                                             for k, (t, r) in enumerate(conds)])]
    user = FlowCurves(*cols, curve_names=[f"c{k}" for k in range(4)], source="mine.csv")
    text = _report_text(tmp_path, user.subset([0, 1, 2]), user.subset([3]), synthetic=False)
    for needle in ("DZ411", "SYNTHETIC", "room, intermediate", "regime-wise", "direction"):
        assert needle not in text, needle
    dz = generate_dz411(points_per_curve=20)
    train, test = dz.split_heldout([tuple(c) for c in dz.conditions()[:1]])
    text = _report_text(tmp_path, train, test, synthetic=True)
    assert "SYNTHETIC" in text and "regime-wise" in text and "extra inputs (direction)" in text


def test_readme_python_snippet_runs_on_a_model_with_other_features(tmp_path):
    """The README's bridge snippet reads the model's features: it runs unchanged on a model with
    two extra features and another temperature range than the demo model's."""
    from pathlib import Path
    from export.onnx_export import export_onnx
    from helpers import random_flownet
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    snippet = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "load_backend(" in b)
    path = re.search(r'load_backend\("([^"]+)"\)', snippet).group(1)
    net = random_flownet(seed=4, n_extras=2)
    net.feature_names = ["strain", "strain_rate", "temperature", "hardness", "grain_size"]
    export_onnx(net, tmp_path / "other.onnx")
    scope: dict = {}
    exec(snippet.replace(f'"{path}"', repr(str(tmp_path / "other.onnx"))), scope)
    upd = scope["upd"]
    assert scope["flow"].n_extras == 2 and upd.stress.shape == (1000, 6)
    assert np.all(np.isfinite(upd.stress)) and np.all(upd.status == 0)
