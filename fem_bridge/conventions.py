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

The algorithm (identical in ``fem_bridge.j2`` and the generated Fortran), per point:

1. Checks. Bad input — any of STRESS, STATEV(1:NSTATV), DSTRAN, DTIME, TEMP, DTEMP, PROPS not
   finite, Δt <= 0, E <= 0, ν outside (−1, 0.5) — gives status BAD_INPUT: stress and state
   returned unchanged, tangent = elastic stiffness (the 6×6 identity, in MPa, when E or ν
   themselves are unusable), PNEWDT = PNEWDT_CUT.
2. T_end by PROPS(3) (``temperature_end``: nint(temp_mode) == 1 → CalculiX, else Abaqus); E, ν
   (at T_end when tabulated); G = E/(2(1+ν)), K = E/(3(1−2ν)); rate floor
   f = PROPS(4) if PROPS(4) > 0 else the model's floor (the model's own floor still applies
   inside the flow-stress evaluation, so the effective floor is max(PROPS(4), model's)).
3. Flow stress σ_y(p, ṗ, T_end, extras) is always evaluated at the rate max(ṗ, f), its
   derivative ∂σ_y/∂ṗ set to 0 where ṗ < f; the box policy is the model's (inside the graph).
4. Elastic trial (incremental): σ_tr = σ_n + C(T_end) Δε, s_tr its deviator,
   q_tr = √(3/2 s_tr:s_tr). Yield check with σ_y(p_n, ṗ = 0, T_end): non-finite → STEP_CUT;
   q_tr <= σ_y → elastic step: σ = σ_tr, tangent = C, pdot = 0, p and ε_p unchanged, the
   out-of-box counter unchanged.
5. Plastic: Newton on r(Δp) = q_tr − 3GΔp − σ_y(p_n + Δp, Δp/Δt, T_end), r' = −3G − H,
   H = ∂σ_y/∂p + ∂σ_y/∂ṗ / Δt, in the bracket [a, b] = [0, q_tr/(3G)], starting at Δp = 0
   (iteration 1 is the evaluation at Δp = 0, iteration k evaluates at the k-th iterate). Per
   iteration: r or H not finite → STEP_CUT; |r| <= RTOL·q_tr → converged; else r > 0 → a = Δp,
   r <= 0 → b = Δp; Newton candidate Δp − r/r'; if it is not strictly inside (a, b) take
   (a + b)/2 instead. No convergence within MAX_ITER iterations → STEP_CUT (stress and state
   unchanged, elastic tangent, PNEWDT = PNEWDT_CUT).
6. Converged: θ = 1 − 3GΔp/q_tr, σ = σ_mean 1 + θ s_tr, Δε_p = (3/2)(Δp/q_tr) s_tr (engineering
   shear: ×2 on 12, 13, 23), p += Δp, pdot = Δp/Δt, n_out_of_box += 1 if the evaluated point
   (p_n + Δp, max(Δp/Δt, f), T_end, extras) is outside the training box (out-of-box test as
   ``FlowNet.out_of_box``: the rate raised to the model's floor first); consistent tangent
   C = K 1⊗1 + 2Gθ I_dev − 2G θ̄ n̂⊗n̂, n̂ = s_tr/|s_tr| (tensor norm), θ̄ = 1/(1 + H/(3G)) − (1 − θ),
   H at the converged Δp; in Voigt form I_dev has 2/3, −1/3 on the normal block and 1/2 on the
   shear diagonal, n̂⊗n̂ uses the plain (stress-like) components of n̂.
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
RTOL = 1e-11          # |r| <= RTOL * q_trial (flow-stress evaluations carry ~1e-12 relative noise)
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
    return np.where(np.rint(np.asarray(temp_mode, dtype=float)) == TEMP_MODE_CALCULIX, temp, temp + dtemp)


# Mandel notation, the natural 6-vector of the DOLFINx host (fem_bridge.hosts.dolfinx_problem):
# the SAME component order as Abaqus (VOIGT_INDEX: 11, 22, 33, 12, 13, 23), stress and strain shear both
# scaled by √2, so σ_M·ε_M = σ:ε and the tangent is C_M = M C_A M, M = diag(1, 1, 1, √2, √2, √2).
# Abaqus strain carries γ = 2ε = √2 ε_M on the shear rows, Abaqus stress plain τ = σ_M/√2.
VOIGT_INDEX = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))    # tensor indices of the 6 rows
_MANDEL = np.array([1.0, 1.0, 1.0, np.sqrt(2.0), np.sqrt(2.0), np.sqrt(2.0)])


def mandel_to_abaqus_strain(e):
    """(..., 6) Mandel strain → Abaqus strain (engineering shear)."""
    return np.asarray(e, dtype=float) * _MANDEL


def abaqus_to_mandel_strain(e):
    return np.asarray(e, dtype=float) / _MANDEL


def mandel_to_abaqus_stress(s):
    """(..., 6) Mandel stress → Abaqus stress (plain shear)."""
    return np.asarray(s, dtype=float) / _MANDEL


def abaqus_to_mandel_stress(s):
    return np.asarray(s, dtype=float) * _MANDEL


def abaqus_to_mandel_tangent(C):
    """(..., 6, 6) DDSDDE (∂σ_A/∂ε_A, engineering shear) → Mandel tangent ∂σ_M/∂ε_M."""
    return np.asarray(C, dtype=float) * _MANDEL[:, None] * _MANDEL[None, :]


def mandel_to_abaqus_tangent(C):
    return np.asarray(C, dtype=float) / (_MANDEL[:, None] * _MANDEL[None, :])


def statev_table() -> str:
    return "\n".join(f"STATEV({i + 1}) = {name}" for i, name in enumerate(STATEV))
