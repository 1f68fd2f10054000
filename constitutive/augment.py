"""Data augmentation and cleaning of curve points (method.md).

- ``smote``: for a real point x pick one of its K nearest neighbours x_nn (Euclidean, in the
  normalised input space z) at random and add x + u·(x_nn − x), u ~ U(0, 1); the targets
  (stress and anything else carried along) are interpolated with the same u. With
  ``groups`` and ``across_groups=True`` the neighbours are taken from *other* curves only
  (points between conditions instead of along a curve).
- ``add_noise``: multiplicative Gaussian noise on stress.
- ``flag_outliers``: points far from a smoothed version of their curve (robust z-score of the
  residual above ``threshold`` MADs). Nothing is dropped here: training compares fits with and
  without the flagged points (``TrainConfig.outliers = "compare"``) and keeps the one that
  validates better.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .errors import NeumatInputError
from .flow_curves import FlowCurves


def smote(z: np.ndarray, targets: np.ndarray, ratio: float, k: int, rng: np.random.Generator,
          groups: np.ndarray | None = None, across_groups: bool = False
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic points: (z_syn (m, C), targets_syn (m, ...), (i, j, u) as an (m, 3) array).

    ``m = round(ratio · n)``; i the base point, j the neighbour, u the interpolation weight."""
    z = np.asarray(z, dtype=float)
    targets = np.asarray(targets, dtype=float)
    n = len(z)
    m = int(round(ratio * n))
    if ratio < 0:
        raise NeumatInputError(f"SMOTE ratio {ratio} < 0")
    if m == 0 or n < 2:
        return z[:0], targets[:0], np.zeros((0, 3))
    k = int(max(1, min(k, n - 1)))
    base = rng.integers(0, n, m)
    if across_groups and groups is not None and len(np.unique(groups)) > 1:
        nb = np.empty(m, dtype=np.int64)
        for g in np.unique(groups[base]):
            sel = np.flatnonzero(groups[base] == g)
            other = np.flatnonzero(groups != g)
            kk = min(k, len(other))
            _, idx = cKDTree(z[other]).query(z[base[sel]], k=kk)
            idx = np.asarray(idx).reshape(len(sel), kk)
            pick = idx[np.arange(len(sel)), rng.integers(0, kk, len(sel))]
            nb[sel] = other[pick]
    else:
        _, idx = cKDTree(z).query(z[base], k=k + 1)
        idx = np.asarray(idx).reshape(m, k + 1)
        # drop the point itself (the nearest, or a duplicate at distance 0)
        choices = np.empty((m, k), dtype=np.int64)
        for r in range(m):
            row = idx[r][idx[r] != base[r]][:k]
            if len(row) < k:
                row = np.concatenate([row, np.full(k - len(row), row[-1] if len(row) else base[r])])
            choices[r] = row
        nb = choices[np.arange(m), rng.integers(0, k, m)]
    u = rng.random(m)
    shape = (m,) + (1,) * (targets.ndim - 1)
    z_syn = z[base] + u[:, None] * (z[nb] - z[base])
    t_syn = targets[base] + u.reshape(shape) * (targets[nb] - targets[base])
    return z_syn, t_syn, np.column_stack([base, nb, u])


def add_noise(stress: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """σ·(1 + level·N(0, 1)); ``level`` is a relative standard deviation (0.01 = 1 %)."""
    if level < 0:
        raise NeumatInputError(f"noise level {level} < 0")
    if level == 0:
        return np.asarray(stress, dtype=float).copy()
    return np.asarray(stress, dtype=float) * (1.0 + level * rng.standard_normal(np.shape(stress)))


def flag_outliers(curves: FlowCurves, threshold: float = 5.0, window: int = 31) -> np.ndarray:
    """Boolean mask of suspect points: |σ − smoothed σ| above ``threshold`` robust standard
    deviations (1.4826·MAD of the residuals of the same curve)."""
    sm = curves.smoothed(window=window, order=3)
    res = curves.stress - sm.stress
    flag = np.zeros(len(curves), dtype=bool)
    for c in range(curves.n_curves):
        i = curves.curve_points(c)
        r = res[i]
        mad = 1.4826 * np.median(np.abs(r - np.median(r)))
        scale = max(mad, 1e-3 * float(np.median(curves.stress[i])))
        flag[i] = np.abs(r - np.median(r)) > threshold * scale
    return flag
