"""Closed-form flow laws evaluated in float64 (value and, where asked, input gradient).

Inputs everywhere: strain (true), strain rate (1/s), temperature (°C); stress in MPa.

Strain-compensated Arrhenius (Sellars–Tegart), parameters as a dict:
``alpha`` (1/MPa), ``n`` (–), ``Q`` (J/mol), ``lnA`` (ln 1/s): polynomial coefficients in strain,
lowest order first; ``strain_min``/``strain_max``: the fitted strain range — the polynomials
are evaluated at the strain clamped to it (they explode outside).

    σ = (1/α) · asinh( (Z/A)^(1/n) ),   Z = ε̇ · exp(Q / (R T)),   T in K
"""
from __future__ import annotations

import numpy as np

GAS_CONSTANT = 8.314      # J/(mol K)
KELVIN = 273.15


def _poly(coeffs, e):
    c = np.asarray(coeffs, dtype=float)
    v = np.polynomial.polynomial.polyval(e, c)
    dv = np.polynomial.polynomial.polyval(e, np.polynomial.polynomial.polyder(c)) if len(c) > 1 else np.zeros_like(e)
    return v, dv


def arrhenius_stress(params: dict, strain, rate, temperature_c, grad: bool = False):
    """σ (MPa); with ``grad`` also dσ/d[strain, rate, temperature] as an (n, 3) array."""
    strain = np.asarray(strain, dtype=float)
    rate = np.asarray(rate, dtype=float)
    tk = np.asarray(temperature_c, dtype=float) + KELVIN
    lo, hi = params.get("strain_min", -np.inf), params.get("strain_max", np.inf)
    e = np.clip(strain, lo, hi)
    inside = ((strain >= lo) & (strain <= hi)).astype(float)
    alpha, da = _poly(params["alpha"], e)
    n, dn = _poly(params["n"], e)
    q, dq = _poly(params["Q"], e)
    lna, dlna = _poly(params["lnA"], e)
    lnx = (np.log(rate) + q / (GAS_CONSTANT * tk) - lna) / n
    # asinh(e^u) = u + ln 2 + O(e^-2u): the same law without overflow for very large Z/A
    sigma = np.where(lnx > 20.0, lnx + np.log(2.0), np.arcsinh(np.exp(np.minimum(lnx, 20.0)))) / alpha
    if not grad:
        return sigma
    dsig_dlnx = 1.0 / (alpha * np.sqrt(1.0 + np.exp(-2.0 * lnx)))     # x/√(1+x²)/α
    dlnx_de = (-lnx * dn + dq / (GAS_CONSTANT * tk) - dlna) / n
    d_strain = (-sigma / alpha * da + dsig_dlnx * dlnx_de) * inside
    d_rate = dsig_dlnx / (n * rate)
    d_temp = dsig_dlnx * (-q / (GAS_CONSTANT * tk**2 * n))
    return sigma, np.stack([d_strain, d_rate, d_temp], axis=-1)
