import math

import numpy as np
import pytest

from constitutive.flow_curves import FlowCurves
from constitutive.metrics import mare_pct, per_curve_scores, r2, rmse_mpa, scores


def test_hand_computed_values():
    exp = [100.0, 50.0, 20.0, 10.0]
    pred = [110.0, 45.0, 20.0, 12.0]
    # relative errors 10 %, 10 %, 0 %, 20 % -> mean 10 %
    assert mare_pct(pred, exp) == pytest.approx(10.0)
    # squared errors 100, 25, 0, 4 -> mean 32.25
    assert rmse_mpa(pred, exp) == pytest.approx(math.sqrt(32.25))
    # mean 45; ss_tot = 55² + 5² + 25² + 35² = 4900; ss_res = 129
    assert r2(pred, exp) == pytest.approx(1.0 - 129.0 / 4900.0)
    assert scores(pred, exp) == {"mare_pct": pytest.approx(10.0), "rmse_mpa": pytest.approx(math.sqrt(32.25)),
                                 "r2": pytest.approx(1.0 - 129.0 / 4900.0)}


def test_perfect_prediction_and_over_all_points():
    exp = np.array([1.0, 2.0, 3.0])
    assert scores(exp, exp) == {"mare_pct": 0.0, "rmse_mpa": 0.0, "r2": 1.0}
    # over all points, not per curve: one bad point among many counts once
    exp = np.full(100, 10.0)
    pred = exp.copy()
    pred[0] = 20.0
    assert mare_pct(pred, exp) == pytest.approx(1.0)
    assert math.isnan(r2(pred, exp))             # constant experiment: R² undefined


def test_shape_mismatch_and_empty_raise():
    with pytest.raises(ValueError):
        mare_pct([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        rmse_mpa([], [])


def test_per_curve_scores():
    fc = FlowCurves(curve=[0, 0, 1, 1, 1], temperature=[1000, 1000, 1100, 1100, 1100],
                    strain_rate=[0.1, 0.1, 1, 1, 1], strain=[0.1, 0.2, 0.1, 0.2, 0.3],
                    stress=[100, 100, 50, 50, 50], curve_names=["a", "b"], extras={"direction": [0, 0, 1, 1, 1]})
    pred = np.array([110, 90, 50, 50, 55])
    rows = per_curve_scores(fc, pred)
    assert [r["curve"] for r in rows] == ["a", "b"]
    assert rows[0]["mare_pct"] == pytest.approx(10.0)
    assert rows[0]["rmse_mpa"] == pytest.approx(10.0)
    assert rows[1]["mare_pct"] == pytest.approx(10.0 / 3)   # 0, 0, 10 % -> 3.33 %
    assert rows[1]["n_points"] == 3 and rows[1]["temperature"] == 1100 and rows[1]["strain_rate"] == 1
    assert rows[1]["direction"] == 1.0
    assert "1100 °C" in rows[1]["condition"]
    with pytest.raises(ValueError):
        per_curve_scores(fc, pred[:3])
