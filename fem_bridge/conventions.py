"""The one place for the conventions shared by the Python bridge and the Fortran UMAT.

Voigt order (Abaqus): 11, 22, 33, 12, 13, 23. Strain vectors (STRAN, DSTRAN, plastic strain)
carry *engineering* shear strain γ_ij = 2 ε_ij; stress vectors carry plain shear stress; the
tangent DDSDDE[i, j] = ∂Δσ_i/∂Δε_j in the same order (so its shear-diagonal is G).
Units: stress and E in MPa, temperature °C, time s, strain rate 1/s.

PROPS (``*USER MATERIAL, CONSTANTS=n``):

| index (1-based) | name         | meaning |
| --- | --- | --- |
| 1 | E             | Young's modulus, MPa (ccx interpolates PROPS given per temperature) |
| 2 | nu            | Poisson's ratio |
| 3 | temp_mode     | 0: Abaqus convention, T_end = TEMP + DTEMP; 1: CalculiX convention, T_end = TEMP (DTEMP ignored) |
| 4 | rate_floor    | strain-rate floor, 1/s; <= 0 uses the floor stored in the model |
| 5 … | extras     | values of the model's extra features in its order (e.g. direction 0 = axial, 1 = radial) |

STATEV (``*DEPVAR`` = ``NSTATV``):

| index (1-based) | name         | meaning |
| --- | --- | --- |
| 1 | p          | equivalent plastic strain |
| 2–7 | eps_p    | plastic strain, Voigt order, engineering shear |
| 8 | pdot       | equivalent plastic strain rate of the last increment, Δp/Δt, 1/s |
| 9 | n_out_of_box | count of converged flow-stress evaluations with an input outside the training box |

The algorithm (identical in ``fem_bridge.j2`` and the generated Fortran):
flow stress at the end of the increment, σ_y(p_n + Δp, Δp/Δt, T_end, extras), rate floor and
box policy of the model applied; elastic trial; if q_trial <= σ_y(p_n, 0, T_end) the step is
elastic (tangent = elastic stiffness, pdot = 0); else Newton on
r(Δp) = q_trial − 3GΔp − σ_y(p_n + Δp, Δp/Δt, T_end) within the bracket [0, q_trial/(3G)],
bisection whenever a Newton step leaves the bracket; converged when |r| <= RTOL·q_trial;
consistent tangent with H = ∂σ_y/∂p + ∂σ_y/∂ṗ / Δt:
C = K 1⊗1 + 2Gθ I_dev − 2G θ̄ n̂⊗n̂, θ = 1 − 3GΔp/q_trial, θ̄ = 1/(1 + H/(3G)) − (1 − θ).
Bad input (NaN/inf, Δt <= 0, E <= 0, ν outside (−1, 0.5)) or no convergence: stress and state
returned unchanged, elastic tangent (finite), status BAD_INPUT / STEP_CUT and PNEWDT = PNEWDT_CUT.
"""
from __future__ import annotations

import numpy as np

VOIGT = ("11", "22", "33", "12", "13", "23")
NTENS = 6
SHEAR = slice(3, 6)

PROPS = ("E", "nu", "temp_mode", "rate_floor")      # then the model's extra features
PROP_E, PROP_NU, PROP_TEMP_MODE, PROP_RATE_FLOOR = range(4)
N_FIXED_PROPS = len(PROPS)
TEMP_MODE_ABAQUS, TEMP_MODE_CALCULIX = 0, 1

STATEV = ("p", "eps_p_11", "eps_p_22", "eps_p_33", "eps_p_12", "eps_p_13", "eps_p_23",
          "pdot", "n_out_of_box")
SV_P, SV_EPS_P, SV_PDOT, SV_NOUT = 0, slice(1, 7), 7, 8
NSTATV = len(STATEV)

# per-point status of a batch update
OK, STEP_CUT, BAD_INPUT = 0, 1, 2
STATUS_NAMES = {OK: "ok", STEP_CUT: "step cut requested", BAD_INPUT: "bad input"}
PNEWDT_CUT = 0.5

# return mapping
RTOL = 1e-13          # |r| <= RTOL * q_trial
MAX_ITER = 60


def elastic_stiffness(E, nu) -> np.ndarray:
    """Isotropic elastic stiffness in Voigt order with engineering shear, (..., 6, 6)."""
    E, nu = np.asarray(E, dtype=float), np.asarray(nu, dtype=float)
    lam = E * nu / ((1 + nu) * (1 - 2 * nu))
    G = E / (2 * (1 + nu))
    C = np.zeros(E.shape + (6, 6))
    C[..., :3, :3] = lam[..., None, None]
    for i in range(3):
        C[..., i, i] += 2 * G
        C[..., 3 + i, 3 + i] = G
    return C


def temperature_end(temp, dtemp, temp_mode) -> np.ndarray:
    """Temperature at the end of the increment under the PROPS(3) convention."""
    temp, dtemp = np.asarray(temp, dtype=float), np.asarray(dtemp, dtype=float)
    return np.where(np.asarray(temp_mode) == TEMP_MODE_CALCULIX, temp, temp + dtemp)


def statev_table() -> str:
    return "\n".join(f"STATEV({i + 1}) = {name}" for i, name in enumerate(STATEV))
