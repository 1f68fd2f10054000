"""The SYNTHETIC DZ411 generator: design of method.md, determinism, noise, physics sanity."""
from __future__ import annotations

import numpy as np
import pytest

from constitutive.datasets import load
from constitutive.synthetic import (DZ411_TEST_CONDITIONS, MAX_STRAIN, design, flow_law,
                                    generate_dz411, oscillation_period, split_dz411)


@pytest.fixture(scope="module")
def fc():
    return generate_dz411(seed=0)


def test_design(fc):
    assert fc.n_curves == 65 and len(fc) == 65 * 140
    assert fc.synthetic and fc.source == "synthetic_dz411"
    assert all(n.startswith("syn_T") for n in fc.curve_names)
    assert "syn_T975_R0.1_D0" in fc.curve_names
    conds = fc.conditions()
    assert len(np.unique(conds, axis=0)) == 65                      # one curve per condition
    assert set(conds[:, 1]) == {0.001, 0.01, 0.1, 1.0}
    t = conds[:, 0]
    assert np.all((t == 20) | ((t >= 650) & (t <= 900)) | ((t >= 950) & (t <= 1170)))
    assert {20.0, 650.0, 900.0, 950.0, 1170.0} <= set(t)
    assert set(conds[:, 2]) == {0.0, 1.0} and fc.extra_names == ["direction"]
    for c in range(fc.n_curves):
        e = fc.strain[fc.curve_points(c)]
        assert e[0] == 0.0 and e[-1] == pytest.approx(0.693) and np.all(np.diff(e) > 0)
    assert MAX_STRAIN == 0.693 and len(design()) == 65


def test_split_and_test_conditions(fc):
    assert DZ411_TEST_CONDITIONS == [(975.0, 0.1, 0.0), (900.0, 0.1, 1.0), (800.0, 0.1, 1.0)]
    train, test = split_dz411(fc)
    assert train.n_curves == 62 and test.n_curves == 3
    assert sorted(map(tuple, test.conditions())) == sorted(DZ411_TEST_CONDITIONS)
    tr = {tuple(c) for c in train.conditions()}
    assert not tr & set(DZ411_TEST_CONDITIONS)
    # the 24 high-temperature axial training curves form a complete T x rate block
    hot_ax = [c for c in tr if c[0] >= 950 and c[2] == 0]
    assert len(hot_ax) == 24
    assert len({c[0] for c in hot_ax}) * len({c[1] for c in hot_ax}) == 24


def test_deterministic_for_a_seed_and_seeds_differ_in_noise_only(fc):
    again = generate_dz411(seed=0)
    np.testing.assert_array_equal(again.stress, fc.stress)
    other = generate_dz411(seed=1)
    for k in ("curve", "temperature", "strain_rate", "strain"):
        np.testing.assert_array_equal(getattr(other, k), getattr(fc, k))
    np.testing.assert_array_equal(other.extras["direction"], fc.extras["direction"])
    assert other.curve_names == fc.curve_names
    assert not np.array_equal(other.stress, fc.stress)
    law = flow_law(fc.strain, fc.strain_rate, fc.temperature, fc.extras["direction"])
    for f in (fc, other):
        rel = f.stress / law - 1
        assert np.abs(rel).max() < 0.045           # 3 % oscillation + white noise 0.3 %
        assert abs(rel.mean()) < 0.003
    np.testing.assert_array_equal(load("synthetic_dz411", data_seed=1).stress, other.stress)
    assert generate_dz411(seed=0, points_per_curve=50).n_curves == 65
    assert len(generate_dz411(seed=0, points_per_curve=50)) == 65 * 50


def test_noise_white_and_periodic(fc):
    law = flow_law(fc.strain, fc.strain_rate, fc.temperature, fc.extras["direction"])
    rel = fc.stress / law - 1
    conds = fc.conditions()
    osc = np.array([oscillation_period(t, r) is not None for t, r, _ in conds])
    assert 10 <= osc.sum() <= 30 and not osc[fc.match_conditions(DZ411_TEST_CONDITIONS)].any()
    sd = np.array([rel[fc.curve_points(c)].std() for c in range(fc.n_curves)])
    assert np.all(sd[~osc] < 0.005) and np.all(sd[~osc] > 0.001)          # white noise 0.3 %
    assert np.all(sd[osc] > 0.008)                                          # 1.5–3 % sinusoid
    # the oscillation is periodic: its spectrum peaks at the documented strain wavelength
    c = int(np.flatnonzero(osc & np.isclose(conds[:, 1], 1.0))[0])
    r = rel[fc.curve_points(c)]
    spec = np.abs(np.fft.rfft(r - r.mean()))
    freq = np.fft.rfftfreq(len(r), d=MAX_STRAIN / (len(r) - 1))            # cycles per unit strain
    wavelength = 1.0 / freq[np.argmax(spec[1:]) + 1]
    assert 0.06 < wavelength < 0.1                                          # 0.08 s at 1 1/s ± 10 %


def test_stress_levels_plausible_for_a_ni_superalloy():
    e = np.linspace(0, MAX_STRAIN, 50)
    for r in (0.001, 0.01, 0.1, 1):
        room = flow_law(e, r, 20.0, 0.0)
        assert room.min() > 850 and room.max() > 1000
        for t in (650, 750, 900):
            assert 150 < flow_law(e, r, t, 0).max() < 900
        for t in (950, 1050, 1170):
            peak = flow_law(e, r, t, 0).max()
            assert 80 < peak < 450
    assert flow_law(e, 1, 950, 0).max() > 350 and flow_law(e, 0.001, 1170, 0).max() < 120


def test_hot_regime_monotonic_in_temperature_and_rate():
    e = np.linspace(0.0, MAX_STRAIN, 30)[:, None, None]
    t = np.linspace(950, 1170, 23)[None, :, None]
    r = np.logspace(-3, 0, 13)[None, None, :]
    for d in (0.0, 1.0):
        s = flow_law(e, r, t, d)
        assert np.all(np.diff(s, axis=1) < 0)       # hotter -> softer
        assert np.all(np.diff(s, axis=2) > 0)       # faster -> harder


def test_hot_curves_peak_and_soften_low_t_hardens():
    e = np.linspace(0, MAX_STRAIN, 200)
    s = flow_law(e, 0.001, 1100, 0)
    k = int(np.argmax(s))
    assert 0 < k < len(e) - 1 and s[-1] < 0.85 * s[k]          # DRX softening after the peak
    room = flow_law(e, 0.01, 20, 0)
    assert np.all(np.diff(room) > 0) and room[-1] > 1.5 * room[0]   # strong work hardening
    m = np.log(flow_law(0.3, 1.0, 20, 0) / flow_law(0.3, 0.001, 20, 0)) / np.log(1000)
    m_hot = np.log(flow_law(0.3, 1.0, 1100, 0) / flow_law(0.3, 0.001, 1100, 0)) / np.log(1000)
    assert 0 < m < 0.01 < 0.1 < m_hot                          # weakly vs strongly rate sensitive


def test_direction_effect():
    e = np.linspace(0, MAX_STRAIN, 40)
    for t in (20, 700, 900, 975, 1170):
        for r in (0.001, 1):
            ratio = flow_law(e, r, t, 1.0) / flow_law(e, r, t, 0.0)
            assert np.all(ratio >= 1.02) and np.all(ratio <= 1.15)
            assert ratio[-1] > ratio[0] + 0.02                  # strain dependent
    assert (flow_law(0.6, 0.1, 20, 1) / flow_law(0.6, 0.1, 20, 0)
            > flow_law(0.6, 0.1, 1100, 1) / flow_law(0.6, 0.1, 1100, 0) + 0.03)   # fades when hot
