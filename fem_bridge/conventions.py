"""The one place for the conventions shared by the Python bridge and the Fortran UMAT.

Voigt order (Abaqus): 11, 22, 33, 12, 13, 23. Strain vectors (STRAN, DSTRAN, plastic strain)
carry *engineering* shear strain γ_ij = 2 ε_ij; stress vectors carry plain shear stress; the
tangent DDSDDE[i, j] = ∂Δσ_i/∂Δε_j in the same order (so its shear-diagonal is G).
Units: stress and E in MPa, temperature °C (the UMAT takes °C only: give TEMP in °C in the
deck; the Python API converts with ``temperature_unit=``), time s, strain rate 1/s.

Element types (``LAYOUTS``: NTENS, NDI, NSHR → the Voigt components the host passes):

| elements | NTENS | NDI | NSHR | components | handled as |
| --- | --- | --- | --- | --- | --- |
| 3-D solids (C3D*) | 6 | 3 | 3 | 11 22 33 12 13 23 | the algorithm below |
| plane strain (CPE*), axisymmetric (CAX*, 1 = r, 2 = z, 3 = θ), generalised plane strain (CPEG*) | 4 | 3 | 1 | 11 22 33 12 | embedded in 6 with ε_13 = ε_23 = 0 = σ_13 = σ_23 (exact: these stay 0 in J2 flow); DDSDDE the 4×4 block |
| plane stress (CPS*), shells | 3 | 2 | 1 | 11 22 12 | refused: BAD_INPUT, stress and state unchanged, elastic plane-stress tangent, PNEWDT = PNEWDT_CUT and one message |

The plastic strain always occupies the 6 STATEV 2–7 (13, 23 stay 0 for NTENS = 4).

PROPS (``*USER MATERIAL, CONSTANTS=n``):

| index (1-based) | name         | meaning |
| --- | --- | --- |
| 1 | E             | Young's modulus, MPa (ccx interpolates PROPS given per temperature) |
| 2 | nu            | Poisson's ratio |
| 3 | temp_mode     | 0: Abaqus convention, T_end = TEMP + DTEMP; 1: CalculiX convention, T_end = TEMP (DTEMP ignored) |
| 4 | rate_floor    | strain-rate floor, 1/s; <= 0 uses the floor stored in the model |
| 5 … | extras     | values of the model's extra features in its order (e.g. direction 0 = axial, 1 = radial) |
| b + 1 | n_T         | optional: rows of an elastic table E(T), ν(T) (b = 4 + number of extras); 0 or absent: none |
| b + 2 … b + 1 + 3 n_T | T_i, E_i, ν_i | the rows: temperature °C (strictly increasing), E MPa, ν |

The elastic table is for hosts that do not interpolate PROPS in temperature (Abaqus); in CalculiX
give the constants once per temperature instead (``*USER MATERIAL`` lines each followed by their
temperature: ccx interpolates every constant linearly at T_end). With a table, E and ν are its
linear interpolation at T_end, constant beyond its first and last temperatures (the rule ccx
uses), and replace PROPS(1), PROPS(2) (which must still be valid: give the first row's values).
NPROPS must be exactly b (no table), b + 1 (n_T = 0) or b + 1 + 3 n_T; a wrong count, n_T not a
whole number ≥ 1, temperatures not strictly increasing, a non-finite entry, E_i <= 0 or ν_i
outside (−1, 0.5) is refused when the deck is written (``check_elastic_table``: NeumatInputError
naming the entry) and, should such a deck reach the solver, is BAD_INPUT at every point (E taken
as −1: identity tangent) with one message from the Fortran UMAT.

STATEV (``*DEPVAR`` = ``NSTATV``):

| index (1-based) | name         | meaning |
| --- | --- | --- |
| 1 | p          | equivalent plastic strain |
| 2–7 | eps_p    | plastic strain, Voigt order, engineering shear |
| 8 | pdot       | equivalent plastic strain rate of the last increment, Δp/Δt, 1/s |
| 9 | n_out_of_box | count of converged plastic increments whose flow-stress evaluation lies outside the *data* (``constitutive.coverage``): farther than the threshold (1 grid spacing) from every measured condition in normalised (T, log10 ε̇, extras) space, or plastic strain beyond the curves' last strain. Plastic strain from 0 to the first measured point and rates below the lowest measured one are inside (the onset of flow). Models without recorded conditions (older files): outside the training box, strain from 0 inside. (Before: any input outside the training box, which flagged first yield and missed gaps between test conditions.) |

The algorithm (identical in ``fem_bridge.j2`` and the generated Fortran), per point:

1. Checks. Bad input — any of STRESS, STATEV(1:NSTATV), DSTRAN, DTIME, TEMP, DTEMP, PROPS not
   finite, Δt <= 0, E <= 0, ν outside (−1, 0.5), T_end below absolute zero (−273.15 °C),
   p = STATEV(1) < 0, a strain-increment component |Δε_i| > MAX_DSTRAN (0.5: far beyond
   small-strain incremental integration) — gives status BAD_INPUT: stress and state returned
   unchanged, tangent = elastic stiffness (the 6×6 identity, in MPa, when E or ν themselves are
   unusable), PNEWDT = PNEWDT_CUT. The UMAT entry points (Python ``umat`` and the Fortran
   ``umat``) return non-finite stress and STATEV entries of a BAD_INPUT point as 0, so the host
   always receives finite values (the step is cut anyway).
   Whole-run problems of the UMAT call (NTENS/NDI/NSHR unsupported, NSTATV or NPROPS too small,
   PROPS E, ν or temp_mode unusable) never stop the host: status BAD_INPUT, PNEWDT = PNEWDT_CUT,
   and the Fortran UMAT prints one message per run and problem on unit 6 (and on unit 7 when the
   host has it open, the Abaqus .msg file). "Once per run" without mutable memory (the UMAT is
   called from many threads and keeps no SAVEd data): the first call that meets the problem
   creates the file ``$TMPDIR/neumat_umat_<pid>_<code>.flag`` with OPEN(STATUS='NEW') (an
   exclusive create: exactly one caller succeeds) and only that caller prints.
2. T_end by PROPS(3) (``temperature_end``: nint(temp_mode) == 1 → CalculiX, else Abaqus); E, ν
   (at T_end when tabulated: by the host, or by the PROPS elastic table, ``elastic_at``); G = E/(2(1+ν)), K = E/(3(1−2ν)); rate floor
   f = PROPS(4) if PROPS(4) > 0 else the model's floor (the model's own floor still applies
   inside the flow-stress evaluation, so the effective floor is max(PROPS(4), model's)).
3. Flow stress σ_y(p, ṗ, T_end, extras) is always evaluated at the rate max(ṗ, f), its
   derivative ∂σ_y/∂ṗ set to 0 where ṗ < f; the box policy is the model's (inside the graph).
4. Elastic trial (incremental, hypoelastic: with E(T) varying the elastic stress is Σ C(T_k) Δε_k, not
   the total C(T)(ε − ε_p) of a host's own *ELASTIC): σ_tr = σ_n + C(T_end) Δε, s_tr its deviator,
   q_tr = √(3/2 s_tr:s_tr), b₀ = q_tr/(3G); r(Δp) = q_tr − 3GΔp − σ_y(p_n + Δp, Δp/Δt, T_end),
   H = ∂σ_y/∂p + ∂σ_y/∂ṗ / Δt. Warm start: g = pdot_n·Δt (STATEV(8) at the start: the previous
   increment's rate); if 0 < g < b₀, r(g) and H(g) are evaluated first ("usable" when both are
   finite). A usable guess with r(g) > 0 or |r(g)| <= RTOL·q_tr proves the step plastic (r falls
   with Δp): no yield check, Newton starts at Δp = g in [a, b] = [g, b₀]. Otherwise the yield
   check with σ_y(p_n, ṗ = 0, T_end): non-finite → STEP_CUT; q_tr <= σ_y → elastic step:
   σ = σ_tr, tangent = C, pdot = 0, p and ε_p unchanged, the out-of-box counter unchanged; a
   plastic step starts at Δp = g in [0, g] after a usable guess (r(0) > 0 >= r(g)), else at
   Δp = 0 in [0, b₀] (the yield check's evaluation is then Newton's first).
5. Plastic: Newton on r(Δp), r' = −3G − H, from that start (its evaluation is iteration 1; the
   iteration count of ``integrate`` and of the Fortran is the number of flow-stress evaluations of
   the call: 1 or 2 before the loop). Per iteration: r or H not finite → STEP_CUT;
   |r| <= RTOL·q_tr → converged; else r > 0 → a = Δp, r <= 0 → b = Δp; Newton candidate
   Δp − r/r', (a + b)/2 instead when it is not strictly inside (a, b); converged as well when
   the bracket cannot shrink any further, b − a <= BRACKET_RTOL·b or the candidate equals Δp
   (Δp is then known to rounding and r is the model's own noise: the stop does not depend on
   how noisy the model is); else Δp = candidate. No convergence within MAX_ITER iterations →
   STEP_CUT (stress and state unchanged, elastic tangent, PNEWDT = PNEWDT_CUT).
6. Converged: θ = 1 − 3GΔp/q_tr, σ = σ_mean 1 + θ s_tr, Δε_p = (3/2)(Δp/q_tr) s_tr (engineering
   shear: ×2 on 12, 13, 23), p += Δp, pdot = Δp/Δt, n_out_of_box += 1 if the evaluated point
   (p_n + Δp, max(Δp/Δt, f), T_end, extras) lies outside the data (``constitutive.coverage``,
   the STATEV table above; the rate raised to the model's floor first; the Fortran has the
   measured conditions as parameters and the same rule, term for term); consistent tangent
   C = K 1⊗1 + 2Gθ I_dev − 2G θ̄ n̂⊗n̂, n̂ = s_tr/|s_tr| (tensor norm), θ̄ = 1/(1 + H/(3G)) − (1 − θ),
   H at the converged Δp; in Voigt form I_dev has 2/3, −1/3 on the normal block and 1/2 on the
   shear diagonal, n̂⊗n̂ uses the plain (stress-like) components of n̂.
"""
from __future__ import annotations

import numpy as np

from constitutive.errors import NeumatInputError

VOIGT = ("11", "22", "33", "12", "13", "23")
NTENS = 6
SHEAR = slice(3, 6)
#: (NTENS, NDI, NSHR) → positions of the host's components in VOIGT; plane stress is not here
LAYOUTS = {(6, 3, 3): (0, 1, 2, 3, 4, 5), (4, 3, 1): (0, 1, 2, 3)}
PLANE_STRESS = (3, 2, 1)
ELEMENT_TYPES = {(6, 3, 3): "3-D solid", (4, 3, 1): "plane strain / axisymmetric / generalised plane strain",
                 (3, 2, 1): "plane stress"}
MAX_DSTRAN = 0.5          # |Δε_i| above this in one increment: BAD_INPUT
ABSOLUTE_ZERO_C = -273.15
TEMPERATURE_UNITS = ("C", "K", "F")

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
RTOL = 1e-11          # |r| <= RTOL * q_trial: converged (early exit; see BRACKET_RTOL for noisy models)
BRACKET_RTOL = 4.0 * float(np.finfo(np.float64).eps)   # b − a <= BRACKET_RTOL·b: the bracket cannot shrink
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


def to_celsius(temperature, unit: str = "C") -> np.ndarray:
    """Temperatures in ``unit`` (C, K or F) → °C (the bridge's and the UMAT's unit)."""
    u = str(unit).upper().replace("°", "")
    t = np.asarray(temperature, dtype=float)
    if u == "C":
        return t
    if u == "K":
        return t + ABSOLUTE_ZERO_C
    if u == "F":
        return (t - 32.0) * (5.0 / 9.0)
    raise NeumatInputError(f"temperature unit '{unit}' unknown; choose one of {', '.join(TEMPERATURE_UNITS)}")


def element_layout(ntens: int, ndi: int, nshr: int):
    """The VOIGT positions of a host's (NTENS, NDI, NSHR), or None when unsupported."""
    return LAYOUTS.get((int(ntens), int(ndi), int(nshr)))


def check_material(E, nu, temp_mode=TEMP_MODE_CALCULIX, props=None, n_props: int | None = None,
                   names=None, where: str = "material") -> None:
    """Whole-run check of the elastic constants and the PROPS list: NeumatInputError naming every
    problem (E > 0 MPa, −1 < ν < 0.5, temp_mode 0 or 1, PROPS length ``n_props``)."""
    bad = []
    if props is not None and n_props is not None and len(props) != n_props:
        bad.append(f"{len(props)} PROPS given, the model needs {n_props} ({', '.join(names or [])})")
    for label, v, ok, allowed in (
            ("E", E, lambda v: v > 0, "> 0 MPa"), ("nu", nu, lambda v: -1.0 < v < 0.5, "-1 < nu < 0.5"),
            ("temp_mode", temp_mode, lambda v: v in (TEMP_MODE_ABAQUS, TEMP_MODE_CALCULIX),
             f"{TEMP_MODE_ABAQUS} (Abaqus) or {TEMP_MODE_CALCULIX} (CalculiX)")):
        try:
            fv = float(v)
        except (TypeError, ValueError):
            bad.append(f"{label} = {v!r} is not a number (allowed: {allowed})")
            continue
        if not (np.isfinite(fv) and ok(fv)):
            bad.append(f"{label} = {v!r} (allowed: {allowed})")
    if bad:
        raise NeumatInputError(f"{where}: " + "; ".join(bad))


def elastic_table_props(temps, E, nu) -> list[float]:
    """The PROPS tail [n_T, T_1, E_1, ν_1, …] of an elastic table (°C, MPa, –), checked."""
    t = np.atleast_1d(np.asarray(temps, dtype=float))
    e = np.broadcast_to(np.asarray(E, dtype=float), t.shape)
    n = np.broadcast_to(np.asarray(nu, dtype=float), t.shape)
    tail = [float(t.size)] + [float(v) for row in zip(t, e, n) for v in row]
    problem = elastic_table_problem(tail, 0)
    if problem:
        raise NeumatInputError(f"elastic table: {problem}")
    return tail


def elastic_table_problem(props, n_base: int) -> str | None:
    """What is wrong with the elastic table that may follow the first ``n_base`` PROPS (None: no
    table or a valid one). Entries are named by their 1-based PROPS index."""
    pr = np.asarray(props, dtype=float).ravel()
    extra = pr.size - n_base
    if extra <= 0:
        return None
    k = n_base + 1                                   # 1-based index of n_T
    nt = pr[n_base]
    if not (np.isfinite(nt) and nt >= 0 and nt == np.rint(nt)):
        return f"PROPS({k}) = {nt:g} must be the number of table rows (a whole number >= 0)"
    nt = int(nt)
    if extra != 1 + 3 * nt:
        return (f"PROPS({k}) = {nt} rows (T, E, nu) need {n_base + 1 + 3 * nt} PROPS in all, "
                f"{pr.size} given")
    rows = pr[n_base + 1:].reshape(nt, 3)
    for i, (T, E, nu) in enumerate(rows):
        j = k + 1 + 3 * i
        if not np.all(np.isfinite(rows[i])):
            return f"row {i + 1} (PROPS({j}…{j + 2})) has a non-finite entry"
        if not E > 0:
            return f"row {i + 1}: E = PROPS({j + 1}) = {E:g} MPa must be > 0"
        if not -1.0 < nu < 0.5:
            return f"row {i + 1}: nu = PROPS({j + 2}) = {nu:g} must lie in (-1, 0.5)"
        if i and not T > rows[i - 1, 0]:
            return (f"row {i + 1}: T = PROPS({j}) = {T:g} °C is not above the previous row's "
                    f"{rows[i - 1, 0]:g} °C (temperatures must increase strictly)")
    return None


def check_elastic_table(props, n_base: int, where: str = "PROPS") -> None:
    """Deck-writing check of the elastic table: NeumatInputError with the problem."""
    problem = elastic_table_problem(props, n_base)
    if problem:
        raise NeumatInputError(f"{where}: elastic table: {problem}")


def elastic_at(props, n_base: int, t_end: float) -> tuple[float, float]:
    """E (MPa), ν at T_end (°C): PROPS(1), PROPS(2) without a table; the table's linear
    interpolation (constant beyond its ends) with one; E = −1 (→ BAD_INPUT) when the table is
    malformed. The generated Fortran (``nm_elastic_table``) computes the same, term for term."""
    pr = np.asarray(props, dtype=float).ravel()
    if pr.size <= n_base or (pr.size == n_base + 1 and pr[n_base] == 0):
        return float(pr[PROP_E]), float(pr[PROP_NU])
    if elastic_table_problem(pr, n_base) is not None:
        return -1.0, float(pr[PROP_NU])
    rows = pr[n_base + 1:].reshape(-1, 3)
    if rows.shape[0] == 0:
        return float(pr[PROP_E]), float(pr[PROP_NU])
    return _interp(t_end, rows[:, 0], rows[:, 1]), _interp(t_end, rows[:, 0], rows[:, 2])


def _interp(x: float, xp: np.ndarray, fp: np.ndarray) -> float:
    """Linear interpolation, constant beyond the ends: fp[i] + slope (x − xp[i]) on
    xp[i] <= x < xp[i+1] (written out so that the Fortran can repeat it operation by operation)."""
    x = float(x)
    if not np.isfinite(x):
        return float("nan")
    if x <= xp[0]:
        return float(fp[0])
    if x >= xp[-1]:
        return float(fp[-1])
    i = int(np.searchsorted(xp, x, side="right")) - 1
    slope = (fp[i + 1] - fp[i]) / (xp[i + 1] - xp[i])
    return float(fp[i] + slope * (x - xp[i]))


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
