"""Physical admissibility of a flow-stress model σ(ε, ε̇, T[, extras]).

A hot flow stress rises with strain rate and falls with temperature. A model that does the
opposite somewhere gives an FE solver a softening material where the physics says there is
none (localisation, lost convergence). This module measures, on a grid:

- the share of the training box, and of a margin around it (the box widened by ``margin`` =
  10 % of each range on each side, rate range taken in ln ε̇, minus the box itself), where
  ∂σ/∂ε̇ < 0 or ∂σ/∂T > 0;
- the largest |∂σ/∂ε| inside the box against Young's modulus E (a hardening slope of the order
  of E or above is not a flow stress; default E = ``DEFAULT_YOUNG_MPA``, the order of a steel's
  modulus at hot-working temperatures; pass the material's own).

Derivatives by central differences of the model's own prediction (any callable x (n, F) → σ
(n,) MPa; x = [strain, strain rate 1/s, temperature °C, extras...]): step 1e-3 in ln ε̇, 0.05 K
in T, 1e-4 in ε. A derivative counts as a violation when it has the wrong sign beyond a relative
tolerance (|∂ ln σ/∂ ln ε̇| > 1e-5, |∂ ln σ/∂T| > 1e-6 per K), so that a flat (clamped) model is
not flagged. Strain levels from max(box strain low, 0.02) to the box high.
"""
from __future__ import annotations

import numpy as np

DEFAULT_YOUNG_MPA = 1.0e5
MARGIN = 0.1
RATE_TOL = 1e-5         # on ∂ ln σ / ∂ ln ε̇
TEMP_TOL = 1e-6         # on ∂ ln σ / ∂T, 1/K
SLOPE_WARN = 0.1        # max |∂σ/∂ε| / E above which a warning is given


def _grid(lo, hi, margin: float, n_strain: int, n_rate: int, n_temp: int, extras: np.ndarray):
    e_lo = max(float(lo[0]), 0.02) if hi[0] > 0.02 else float(lo[0])
    strains = np.linspace(e_lo, float(hi[0]), n_strain)
    l_lo, l_hi = np.log(lo[1]), np.log(hi[1])
    lr = np.linspace(l_lo - margin * (l_hi - l_lo), l_hi + margin * (l_hi - l_lo), n_rate)
    t_span = float(hi[2] - lo[2])
    ts = np.linspace(lo[2] - margin * t_span, hi[2] + margin * t_span, n_temp)
    E, R, T = np.meshgrid(strains, lr, ts, indexing="ij")
    base = np.column_stack([E.ravel(), np.exp(R.ravel()), T.ravel()])
    eps = 1e-9
    inside = ((R.ravel() >= l_lo - eps) & (R.ravel() <= l_hi + eps)
              & (T.ravel() >= lo[2] - 1e-9) & (T.ravel() <= hi[2] + 1e-9))
    if extras.shape[1] == 0:
        return base, inside
    xs = [np.column_stack([base, np.tile(row, (len(base), 1))]) for row in extras]
    return np.vstack(xs), np.tile(inside, len(extras))


def _where(x: np.ndarray, bad: np.ndarray) -> dict | None:
    if not bad.any():
        return None
    xb = x[bad]
    return {"strain": [float(xb[:, 0].min()), float(xb[:, 0].max())],
            "strain_rate_per_s": [float(xb[:, 1].min()), float(xb[:, 1].max())],
            "temperature_c": [float(xb[:, 2].min()), float(xb[:, 2].max())]}


def _region(x, rate_bad, temp_bad) -> dict:
    n = len(x)
    anyb = rate_bad | temp_bad
    return {"n_points": int(n),
            "share_rate_negative": float(rate_bad.mean()) if n else 0.0,
            "share_temperature_positive": float(temp_bad.mean()) if n else 0.0,
            "share_any": float(anyb.mean()) if n else 0.0,
            "where_rate_negative": _where(x, rate_bad), "where_temperature_positive": _where(x, temp_bad)}


def admissibility(predict, box_lo, box_hi, extras_values=None, margin: float = MARGIN,
                  young_mpa: float = DEFAULT_YOUNG_MPA, n_strain: int = 8, n_rate: int = 13,
                  n_temp: int = 13) -> dict:
    """Admissibility numbers of ``predict`` over the box ``box_lo … box_hi`` (module doc).

    ``extras_values``: rows of extra-feature values to check at (default: the box midpoints)."""
    lo, hi = np.asarray(box_lo, float), np.asarray(box_hi, float)
    n_extra = len(lo) - 3
    if extras_values is None:
        extras = (0.5 * (lo[3:] + hi[3:]))[None, :] if n_extra else np.zeros((1, 0))
    else:
        extras = np.atleast_2d(np.asarray(extras_values, float)).reshape(-1, n_extra)
    x, inside = _grid(lo, hi, margin, n_strain, n_rate, n_temp, extras)
    s0 = np.asarray(predict(x), float)
    hr, ht, he = 1e-3, 0.05, 1e-4
    xp, xm = x.copy(), x.copy()
    xp[:, 1] *= np.exp(hr)
    xm[:, 1] *= np.exp(-hr)
    d_lnrate = (np.asarray(predict(xp), float) - np.asarray(predict(xm), float)) / (2 * hr)
    xp, xm = x.copy(), x.copy()
    xp[:, 2] += ht
    xm[:, 2] -= ht
    d_t = (np.asarray(predict(xp), float) - np.asarray(predict(xm), float)) / (2 * ht)
    xp, xm = x.copy(), x.copy()
    xp[:, 0] += he
    xm[:, 0] = np.maximum(xm[:, 0] - he, 0.0)
    d_e = (np.asarray(predict(xp), float) - np.asarray(predict(xm), float)) / (xp[:, 0] - xm[:, 0])
    finite = np.isfinite(s0) & np.isfinite(d_lnrate) & np.isfinite(d_t) & (s0 > 0)
    scale = np.where(finite, np.abs(s0), 1.0)
    rate_bad = ~finite | (d_lnrate < -RATE_TOL * scale)
    temp_bad = ~finite | (d_t > TEMP_TOL * scale)
    slope = np.abs(d_e[inside & np.isfinite(d_e)])
    max_slope = float(slope.max()) if slope.size else float("nan")
    out = {"box": _region(x[inside], rate_bad[inside], temp_bad[inside]),
           "margin": _region(x[~inside], rate_bad[~inside], temp_bad[~inside]),
           "margin_fraction": float(margin), "max_dsigma_dstrain_mpa": max_slope,
           "young_modulus_mpa": float(young_mpa), "max_slope_over_young": max_slope / float(young_mpa),
           "non_finite_or_non_positive": int((~finite).sum()),
           "grid": {"strain": n_strain, "rate": n_rate, "temperature": n_temp, "extras_rows": int(len(extras))}}
    out["violated_in_box"] = out["box"]["share_any"] > 0
    out["violated_in_margin"] = out["margin"]["share_any"] > 0
    return out


def _fmt_where(w: dict) -> str:
    return (f"strain {w['strain'][0]:.3g}–{w['strain'][1]:.3g}, rate {w['strain_rate_per_s'][0]:.3g}–"
            f"{w['strain_rate_per_s'][1]:.3g} 1/s, T {w['temperature_c'][0]:.4g}–{w['temperature_c'][1]:.4g} °C")


def summary_lines(adm: dict) -> list[str]:
    """Lines for the ``neumat train`` summary: the shares, then a WARNING per violation with where."""
    b, m = adm["box"], adm["margin"]
    lines = [f"admissibility: ∂σ/∂ε̇ < 0 on {100 * b['share_rate_negative']:.1f} % of the training box "
             f"({100 * m['share_rate_negative']:.1f} % of the {100 * adm['margin_fraction']:.0f} % margin), "
             f"∂σ/∂T > 0 on {100 * b['share_temperature_positive']:.1f} % ({100 * m['share_temperature_positive']:.1f} %); "
             f"max |∂σ/∂ε| = {adm['max_dsigma_dstrain_mpa']:.4g} MPa = {adm['max_slope_over_young']:.3g} × E "
             f"(E = {adm['young_modulus_mpa']:.3g} MPa)"]
    for region, r in (("training box", b), ("margin around the box", m)):
        if r["where_rate_negative"]:
            lines.append(f"WARNING: stress falls with strain rate on {100 * r['share_rate_negative']:.1f} % of the "
                         f"{region}: {_fmt_where(r['where_rate_negative'])}")
        if r["where_temperature_positive"]:
            lines.append(f"WARNING: stress rises with temperature on {100 * r['share_temperature_positive']:.1f} % of "
                         f"the {region}: {_fmt_where(r['where_temperature_positive'])}")
    if adm["max_slope_over_young"] > SLOPE_WARN:
        lines.append(f"WARNING: the hardening slope reaches {adm['max_slope_over_young']:.3g} × E inside the box")
    if adm["non_finite_or_non_positive"]:
        lines.append(f"WARNING: {adm['non_finite_or_non_positive']} grid points give a non-finite or non-positive stress")
    return lines


def plot_admissibility(predict, box_lo, box_hi, conditions, path, classical=None, classical_name="Arrhenius",
                       extras=None, title: str = "") -> None:
    """σ over (T, log₁₀ ε̇) at strains 0.1, 0.3, 0.5 (clipped to the box) with the measured
    conditions marked; σ against T and against ε̇ at the middle strain, model (lines) beside the
    classical law ``classical(strain, rate, T)`` (dashed). ``conditions``: (T °C, rate 1/s) rows."""
    import matplotlib  # optional: matplotlib (train extra)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional: matplotlib (train extra)
    lo, hi = np.asarray(box_lo, float), np.asarray(box_hi, float)
    ex = np.asarray(extras if extras is not None else 0.5 * (lo[3:] + hi[3:]), float).ravel()
    conds = np.asarray(conditions, float).reshape(-1, 2)

    def sig(e, r, t):
        e, r, t = np.broadcast_arrays(np.asarray(e, float), np.asarray(r, float), np.asarray(t, float))
        x = np.column_stack([e.ravel(), r.ravel(), t.ravel()] + [np.full(e.size, v) for v in ex])
        return np.asarray(predict(x), float).reshape(e.shape)

    strains = [float(np.clip(s, lo[0], hi[0])) for s in (0.1, 0.3, 0.5)]
    t_span, l_lo, l_hi = hi[2] - lo[2], np.log10(lo[1]), np.log10(hi[1])
    ts = np.linspace(lo[2] - MARGIN * t_span, hi[2] + MARGIN * t_span, 60)
    lr = np.linspace(l_lo - MARGIN * (l_hi - l_lo), l_hi + MARGIN * (l_hi - l_lo), 60)
    T, L = np.meshgrid(ts, lr)
    fig, axes = plt.subplots(2, 3, figsize=(14, 8.5))
    for ax, e in zip(axes[0], strains):
        S = sig(np.full(T.shape, e), 10.0 ** L, T)
        cs = ax.contourf(T, L, S, levels=20, cmap="viridis")
        fig.colorbar(cs, ax=ax, label="σ (MPa)")
        ax.plot(conds[:, 0], np.log10(conds[:, 1]), "wo", mec="k", ms=5, label="measured conditions")
        ax.add_patch(plt.Rectangle((lo[2], l_lo), t_span, l_hi - l_lo, fill=False, ec="w", ls="--", lw=1))
        ax.set_xlabel("temperature (°C)")
        ax.set_ylabel("log₁₀ strain rate (1/s)")
        ax.set_title(f"σ at strain {e:.2g} (dashed: training box)", fontsize=9)
    axes[0][0].legend(fontsize=7, loc="lower right")
    e_mid = strains[1]
    ax = axes[1][0]
    for r in np.unique(conds[:, 1]):
        line, = ax.plot(ts, sig(e_mid, r, ts), "-", label=f"{r:g} 1/s")
        if classical is not None:
            ax.plot(ts, classical(np.full_like(ts, e_mid), np.full_like(ts, r), ts), "--", color=line.get_color(), lw=0.9)
    ax.set_xlabel("temperature (°C)")
    ax.set_ylabel(f"σ at strain {e_mid:.2g} (MPa)")
    ax.set_title(f"σ against T: model (lines), {classical_name} (dashed)", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1][1]
    rates = 10.0 ** lr
    for t in np.unique(conds[:, 0]):
        line, = ax.semilogx(rates, sig(e_mid, rates, t), "-", label=f"{t:g} °C")
        if classical is not None:
            ax.semilogx(rates, classical(np.full_like(rates, e_mid), rates, np.full_like(rates, t)), "--",
                        color=line.get_color(), lw=0.9)
    ax.set_xlabel("strain rate (1/s)")
    ax.set_ylabel(f"σ at strain {e_mid:.2g} (MPa)")
    ax.set_title(f"σ against strain rate: model (lines), {classical_name} (dashed)", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    ax = axes[1][2]
    adm = admissibility(predict, lo, hi, extras_values=ex[None, :] if ex.size else None)
    txt = "\n".join(summary_lines(adm))
    ax.axis("off")
    ax.text(0.0, 1.0, txt.replace("; ", ";\n"), va="top", ha="left", fontsize=7, wrap=True, transform=ax.transAxes)
    fig.suptitle(("physical admissibility" + (f" — {title}" if title else "")), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
