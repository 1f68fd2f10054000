"""The ensemble method (``TrainConfig(method="ensemble")``, what ``neumat train`` does without
options): several plain networks averaged, then distilled into ONE network for export.

1. **Members.** ``ensemble_members`` networks of the member settings (``ensemble_member``
   overrides of the TrainConfig; by default the plain MLP 3-15-A-7-A-1, sigmoid, weight decay
   1e-3, no transfer) are trained on the same curves, each with its own seed
   (``member_seeds``): its own initialisation, its own validation curves for early stopping and
   its own strain jitter. One network fitted on 10–30 curves varies a lot from seed to seed
   away from the measured conditions; the mean of several is steadier there.
2. **Teacher.** The members' mean of ln σ (a geometric mean of the stresses).
3. **Student.** One network of the member structure, fitted (Adam, then Levenberg–Marquardt)
   to the teacher's ln σ on the training points and on ``distil_points`` inputs drawn over the
   training box widened by ``distil_margin`` in strain rate (log) and temperature
   (``anchored.virtual_points``). The student is what is saved and exported: its cost at an
   integration point is that of one member. Its fidelity to the teacher (MARE on other drawn
   inputs) is reported in ``info["ensemble"]``.

The members' disagreement (``spread_pct``: (max − min) / mean of their stresses, per drawn
input) is reported too: it is large where the data say little.

This module holds the numpy side (member settings, seeds, teacher, spread); the torch training
of members and student is in ``constitutive.training``.
"""
from __future__ import annotations

import numpy as np

# member settings of the default (the plain MLP of the accuracy benchmark)
DEFAULT_MEMBER = {"spec": "3-15-A-7-A-1", "activation": "sigmoid", "weight_decay": 1e-3, "transfer": False,
                  "hybrid": "none", "smote_ratio": 0.0}
MEMBER_KEYS = ("spec", "activation", "weight_decay", "transfer", "transfer_factor", "hybrid", "smote_ratio",
               "smote_across", "dropout", "lr", "lr_final", "batch_size", "val_fraction", "output", "features",
               "sign_penalty", "sign_points", "sign_margin")


def member_overrides(cfg) -> dict:
    """The TrainConfig fields a member sets (checked names), with method = network."""
    d = dict(cfg.ensemble_member)
    unknown = sorted(set(d) - set(MEMBER_KEYS))
    if unknown:
        raise ValueError(f"ensemble_member: unknown setting(s) {', '.join(unknown)}; allowed: {', '.join(MEMBER_KEYS)}")
    return {**d, "method": "network"}


def member_seeds(seed: int, n: int) -> list[int]:
    """Seeds of the ``n`` members of a run with ``seed``: distinct for distinct seeds (seed 0 →
    0 … n−1, so its first member is the plain network of seed 0)."""
    return [int(seed) * int(n) + i for i in range(int(n))]


def member_log_stress(members, x: np.ndarray) -> np.ndarray:
    """(n_members, n_points) ln σ of every member at physical inputs ``x``."""
    return np.log(np.maximum(np.vstack([m.predict(x) for m in members]), 1e-300))


def teacher_stress(log_stress: np.ndarray) -> np.ndarray:
    """The teacher: exp of the members' mean ln σ (MPa)."""
    return np.exp(np.mean(log_stress, axis=0))


def spread_pct(log_stress: np.ndarray) -> dict:
    """Members' disagreement, (max − min) / mean of their stresses in %: median, 95th percentile, max."""
    s = np.exp(log_stress)
    r = 100.0 * (s.max(axis=0) - s.min(axis=0)) / s.mean(axis=0)
    return {"median": float(np.median(r)), "p95": float(np.percentile(r, 95)), "max": float(np.max(r))}
