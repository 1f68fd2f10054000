"""The default method (constitutive.ensemble): members with their own seeds, the teacher as the
mean of ln σ, one distilled student that is deterministic for a seed and exports."""
from __future__ import annotations

import numpy as np

from constitutive import ensemble
from constitutive.baselines import without_zero_strain
from constitutive.synthetic import generate_campaign
from constitutive.training import TrainConfig, fit


def test_default_is_the_ensemble_of_plain_networks():
    cfg = TrainConfig()
    assert cfg.method == "ensemble" and cfg.ensemble_members >= 3
    assert ensemble.member_overrides(cfg)["spec"] == "3-15-A-7-A-1"
    assert ensemble.member_seeds(0, 5) == [0, 1, 2, 3, 4]
    assert not set(ensemble.member_seeds(1, 5)) & set(ensemble.member_seeds(0, 5))


def test_teacher_is_the_geometric_mean_and_spread_measures_disagreement():
    ls = np.log(np.array([[100.0, 50.0], [400.0, 50.0]]))
    assert np.allclose(ensemble.teacher_stress(ls), [200.0, 50.0])
    sp = ensemble.spread_pct(ls)
    assert np.isclose(sp["max"], 120.0) and np.isclose(sp["median"], 60.0)


def test_ensemble_student_follows_its_teacher_is_deterministic_and_exports():
    c = without_zero_strain(generate_campaign("peak_4x3"))
    cfg = TrainConfig.quick(distil_sign_penalty=0.0, distil_lm_steps=40)    # the student free to follow
    a, b = fit(c, cfg, seed=3), fit(c, cfg, seed=3)
    x = c.features()
    assert np.array_equal(a.predict(x), b.predict(x))                    # deterministic for a seed
    other = fit(c, cfg, seed=4)
    assert not np.array_equal(a.predict(x), other.predict(x))
    e = a.info["ensemble"]
    assert e["members"] == cfg.ensemble_members and e["member_seeds"] == ensemble.member_seeds(3, cfg.ensemble_members)
    teacher = ensemble.teacher_stress(ensemble.member_log_stress([m for _, _, m in a.member_models], x))
    rel = np.abs(a.predict(x) / teacher - 1)
    assert np.mean(rel) < 0.02 and np.isclose(100 * np.mean(np.abs(a.predict(x) - c.stress) / c.stress),
                                              e["student_train_mare_pct"], rtol=0.2)
    # one network of the member structure is what is exported
    fn = a.to_flownet()
    assert np.allclose(fn.evaluate(x, policy=False)[0], a.predict(x), rtol=1e-10)
    assert a.net.spec.split("-")[1:] == "3-15-A-7-A-1".split("-")[1:]
