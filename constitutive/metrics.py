"""Error measures of a flow-stress prediction, as defined in ``shared/reference/anchors.md``.

All of them are taken over *all points* given (not averaged per curve first):

- MARE (%)  = mean_i |σ_pred,i − σ_exp,i| / σ_exp,i × 100
- RMSE (MPa) = sqrt( mean_i (σ_pred,i − σ_exp,i)² )
- R²        = 1 − Σ (σ_pred − σ_exp)² / Σ (σ_exp − mean σ_exp)²

Stresses in MPa. ``per_curve_scores`` gives the same three numbers curve by curve.
"""
from __future__ import annotations

import numpy as np

from .flow_curves import FlowCurves


def _pair(pred, exp) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=float).ravel()
    e = np.asarray(exp, dtype=float).ravel()
    if p.shape != e.shape:
        raise ValueError(f"prediction has {p.size} values, the experiment {e.size}")
    if p.size == 0:
        raise ValueError("no points to score")
    return p, e


def mare_pct(pred, exp) -> float:
    """Mean absolute relative error in % over all points (σ_exp must be non-zero)."""
    p, e = _pair(pred, exp)
    return float(np.mean(np.abs(p - e) / np.abs(e)) * 100.0)


def rmse_mpa(pred, exp) -> float:
    """Root-mean-square error over all points, in the stress unit (MPa)."""
    p, e = _pair(pred, exp)
    return float(np.sqrt(np.mean((p - e) ** 2)))


def r2(pred, exp) -> float:
    """Coefficient of determination over all points (nan when σ_exp is constant)."""
    p, e = _pair(pred, exp)
    ss_tot = float(np.sum((e - e.mean()) ** 2))
    if ss_tot == 0.0:
        return float("nan")
    return float(1.0 - np.sum((p - e) ** 2) / ss_tot)


def scores(pred, exp) -> dict[str, float]:
    """``{"mare_pct", "rmse_mpa", "r2"}`` over all points."""
    return {"mare_pct": mare_pct(pred, exp), "rmse_mpa": rmse_mpa(pred, exp), "r2": r2(pred, exp)}


def per_curve_scores(curves: FlowCurves, pred) -> list[dict]:
    """One dict per curve: ``curve`` (name), ``condition`` (label), ``temperature`` (°C),
    ``strain_rate`` (1/s), extras by name, ``n_points`` and the three scores."""
    pred = np.asarray(pred, dtype=float).ravel()
    if pred.size != len(curves):
        raise ValueError(f"prediction has {pred.size} values, the curves {len(curves)} points")
    conds = curves.conditions()
    out = []
    for c in range(curves.n_curves):
        i = curves.curve_points(c)
        row = {"curve": curves.curve_names[c], "condition": curves.condition_label(c),
               "temperature": float(conds[c, 0]), "strain_rate": float(conds[c, 1])}
        row.update({k: float(v) for k, v in zip(curves.extras, conds[c, 2:])})
        row["n_points"] = int(len(i))
        row.update(scores(pred[i], curves.stress[i]))
        out.append(row)
    return out
