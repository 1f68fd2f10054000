"""Physical admissibility numbers on models built to violate them, and on a law that does not."""
from __future__ import annotations

import numpy as np

from constitutive.admissibility import admissibility, summary_lines
from constitutive.laws import arrhenius_stress

LO = np.array([0.05, 0.01, 900.0])
HI = np.array([0.65, 100.0, 1000.0])


def violating(x):
    """σ = 100 (1 + 50 ε) ε̇^m(T), m = 0.2 (T − 950)/100: σ falls with rate below 950 °C and
    rises with temperature above 1 1/s (∂ ln σ/∂T = 0.002 ln ε̇)."""
    x = np.atleast_2d(x)
    m = 0.2 * (x[:, 2] - 950.0) / 100.0
    return 100.0 * (1.0 + 50.0 * x[:, 0]) * x[:, 1] ** m


def test_shares_where_and_warnings_of_a_violating_model():
    a = admissibility(violating, LO, HI, n_strain=5, n_rate=13, n_temp=13, young_mpa=1e5)
    b = a["box"]
    # 13 temperatures over 890 … 1010 °C (the box widened by 10 %), 11 of them in the box,
    # 5 of those below 950 (m < 0); 950 itself is flat
    assert np.isclose(b["share_rate_negative"], 5 / 11)
    # 13 rates log-spaced over the widened range, 11 in the box, 5 of those above 1 1/s
    # (∂σ/∂T > 0); 1 1/s itself is flat
    assert np.isclose(b["share_temperature_positive"], 5 / 11)
    assert np.isclose(b["share_any"], 1 - (6 / 11) * (6 / 11))
    assert b["n_points"] == 5 * 11 * 11
    assert b["where_rate_negative"]["temperature_c"][1] < 950.0
    assert b["where_temperature_positive"]["strain_rate_per_s"][0] > 1.0
    assert a["violated_in_box"] and a["violated_in_margin"]
    # the margin (box widened by 10 %) holds points below 900 °C and above 100 1/s, all violating
    assert a["margin"]["n_points"] > 0 and a["margin"]["share_any"] > b["share_any"]
    assert a["margin"]["where_rate_negative"]["temperature_c"][0] < 900.0
    # largest hardening slope: 5000 ε̇^m at 1000 °C, 100 1/s (m = 0.1)
    assert np.isclose(a["max_dsigma_dstrain_mpa"], 5000.0 * 100.0 ** 0.1, rtol=1e-6)
    assert np.isclose(a["max_slope_over_young"], a["max_dsigma_dstrain_mpa"] / 1e5)
    lines = summary_lines(a)
    assert any(line.startswith("WARNING: stress falls with strain rate") and "training box" in line for line in lines)
    assert any(line.startswith("WARNING: stress rises with temperature") for line in lines)
    # E small enough that the slope exceeds it: the slope warning appears
    assert any("hardening slope" in line for line in summary_lines(admissibility(violating, LO, HI, young_mpa=5e3)))


def test_a_monotone_law_has_no_violation():
    law = {"alpha": [0.012], "n": [4.0], "Q": [3.5e5], "lnA": [30.0], "strain_min": 0.0, "strain_max": 1.0}

    def f(x):
        return arrhenius_stress(law, x[:, 0], x[:, 1], x[:, 2]) * (1.0 + 0.2 * x[:, 0])
    a = admissibility(f, LO, HI)
    assert a["box"]["share_any"] == 0.0 and a["margin"]["share_any"] == 0.0
    assert not a["violated_in_box"] and not a["violated_in_margin"]
    assert not [line for line in summary_lines(a) if line.startswith("WARNING")]


def test_non_finite_or_negative_stress_counts_as_violation():
    def bad(x):
        s = violating(x) * 0 + 50.0 + 0 * x[:, 0]
        s[x[:, 2] > 980.0] = -1.0
        return s
    a = admissibility(bad, LO, HI)
    assert a["non_finite_or_non_positive"] > 0 and a["violated_in_box"]
    assert any("non-finite or non-positive" in line for line in summary_lines(a))


def test_sign_constraints_pull_a_trained_model_towards_admissibility():
    """Curves whose stress falls with strain rate at one temperature (as scattered low-temperature
    tests do): the sign term of the network's training (``sign_penalty``) shrinks the share of
    the box where the trained model follows them."""
    from constitutive.baselines import without_zero_strain
    from constitutive.synthetic import generate_campaign
    from constitutive.training import TrainConfig, fit
    c = without_zero_strain(generate_campaign("peak_4x3"))
    t_low = c.temperature.min()
    bump = (c.temperature == t_low) & np.isclose(c.strain_rate, np.unique(c.strain_rate)[0])
    c.stress[bump] *= 1.3                    # the lowest rate above the next one at the lowest T
    shares = {}
    for w in (0.0, 3.0):
        cfg = TrainConfig.quick(method="network", spec="3-15-A-7-A-1", activation="sigmoid", transfer=False,
                                weight_decay=1e-3, sign_penalty=w)
        m = fit(c, cfg, seed=0)
        shares[w] = admissibility(m.predict, m.box_lo, m.box_hi, n_strain=4)["box"]["share_rate_negative"]
    assert shares[0.0] > 0.02 and shares[3.0] < 0.5 * shares[0.0]
