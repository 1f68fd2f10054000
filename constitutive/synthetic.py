r"""SYNTHETIC flow curves with the design of the DZ411 campaign (method.md, "Data").

Nothing here is measured. The generator reproduces the *design* of the campaign on the
directionally solidified Ni-based superalloy DZ411 (strain rates 0.001/0.01/0.1/1 s⁻¹; 20 °C,
650–900 °C and 950–1170 °C; axial and radial direction; true strain 0 to 0.693; 62 training and
3 test curves) and fills it with curves from a documented, physically motivated flow law plus
measurement-like noise. It is the embedded default of ``make demo`` and the small fixture of the
tests; it is labelled SYNTHETIC wherever it appears (``FlowCurves.synthetic``, curve names
``syn_T<°C>_R<1/s>_D<direction>``, the summary of ``neumat data``).

Units: temperature T in °C (T_K = T + 273.15 in the equations), strain rate ε̇ in 1/s, true
strain ε, true stress σ in MPa. Direction d: 0 = axial (growth direction <001>), 1 = radial.

Design (65 curves; not factorial — the axial high-temperature block is complete, the rest is
thinned the way a campaign is)
-------------------------------------------------------------------------------------------------
=============  ======================================  =====================  =========  ======
block          temperatures (°C)                       rates (1/s)            direction  curves
=============  ======================================  =====================  =========  ======
high T         950, 1000, 1050, 1100, 1140, 1170       0.001, 0.01, 0.1, 1    axial          24
high T         950, 1050, 1170                         0.01, 0.1, 1           radial          9
intermediate   650, 700, 750, 800, 850, 900            0.01, 0.1, 1           axial          18
intermediate   700, 850                                0.01, 0.1, 1           radial          6
room           20                                      0.001, 0.01, 0.1, 1    axial           4
room           20                                      0.1                    radial          1
test           (975, 0.1, axial), (900, 0.1, radial), (800, 0.1, radial)                      3
=============  ======================================  =====================  =========  ======

62 training + 3 test = 65. The 24 high-T axial curves are the set a regime-wise Arrhenius fit
uses (method.md's "24 high-T axial curves"); each test condition lies between training
conditions (975 °C between 950 and 1000; radial 800 °C between radial 700 and 850; radial
900 °C between radial 850 and 950). Every curve has ``points_per_curve`` points evenly spaced in
true strain from 0 to 0.693 (elastic part removed: the curve starts at the initial flow stress).

Flow law (noise-free: :func:`flow_law`)
---------------------------------------
1. Hot working, thermally activated (governs above about 900 °C). Zener–Hollomon parameter

       Z = ε̇ · exp(Q / (R T_K)),   Q = 600 kJ/mol,  R = 8.314 J/(mol K)

   saturation stress of work hardening + dynamic recovery (Sellars–Tegart/Garofalo form)

       σ_sat = (1/α) · asinh((Z/A)^(1/n)),   α = 0.009 MPa⁻¹,  n = 5,  ln(A / s⁻¹) = 43.5

   initial flow stress σ₀ = f₀ σ_sat with f₀ = 0.5 in the hot range, rising to 0.95 at the
   large Z of the intermediate range (less hardening capacity left when recovery is slow):

       f₀ = 0.5 + 0.45 / (1 + exp(−(ln(Z/A) − 24) / 2.5))

   peak strain ε_p = ε_p0 (Z/A)^c (ε_p0 = 0.10, c = 0.06, so ε_p ≈ 0.1 … 0.25 over the hot
   range).
   Work hardening with dynamic recovery (Estrin–Mecking / Laasraoui–Jonas dislocation balance
   dρ/dε = h − Ω ρ with σ ∝ √ρ), integrated:

       σ_WH(ε) = sqrt(σ_sat² + (σ₀² − σ_sat²) · exp(−Ω ε)),   Ω = 4 / ε_p

   Dynamic recrystallisation past the critical strain ε_c = 0.7 ε_p, Avrami kinetics

       X(ε) = 1 − exp(−ln2 · ((ε − ε_c) / ε_½)^m_X)  for ε > ε_c (else 0),
       ε_½ = 1.2 ε_p,  m_X = 2

   softening towards the steady state σ_ss = k_ss σ_sat (k_ss = 0.7):

       σ_hot = σ_WH − (σ_sat − σ_ss) · X

2. Low-temperature (athermal glide, γ' strengthened) regime (20 °C and the intermediate range):

       σ_LT = [σ_y(T) + H(T) (1 − exp(−ε/ε_h)) + θ_IV(T) ε] · (ε̇ / 0.01 s⁻¹)^m(T)

   with the shear-modulus factor μ(T) = 1 − 0.25 (T − 20)/1000,
   yield σ_y(T) = 900 MPa · μ(T) · [1 + 0.15 exp(−((T − 750)/120)²)] (γ' strengthening
   anomaly, peak at 750 °C), hardening H(T) = 500 MPa · μ(T) · exp(−(T − 20)/500), ε_h = 0.12,
   stage-IV slope θ_IV(T) = 400 MPa · exp(−(T − 20)/300), weak rate sensitivity
   m(T) = 0.005 + 0.03 (T/900 °C)³ (0.005 at 20 °C, 0.035 at 900 °C).

3. Both mechanisms act in parallel; the imposed rate is carried by whichever needs less stress.
   For rate sensitivities of power-law order p the combined stress is close to the p-norm
   smooth minimum

       σ_axial = (σ_hot^(−p) + σ_LT^(−p))^(−1/p),   p = 6

   so the hot law takes over smoothly between about 850 and 950 °C.

4. Direction: radial loading crosses the columnar grain boundaries and has a higher Taylor
   factor than the soft <001> axis, so it hardens more; the difference fades at high
   temperature where recovery and recrystallisation erase the texture:

       σ = σ_axial · (1 + d · δ(ε, T)),
       δ(ε, T) = 0.03 + 0.09 · (1 − exp(−ε/0.15)) · φ(T),
       φ(T) = 0.4 + 0.6 / (1 + exp((T − 900)/60))

   i.e. radial is 3 % above axial at ε = 0 and, at large strain, up to ≈ 12 % at 20 °C and
   ≈ 6.5–7.5 % at 1000–1170 °C.

Levels (axial): ≈ 890–1710 MPa at 20 °C, ≈ 160–810 MPa at 650–900 °C (the hot law takes over
from about 750 °C at low rates), ≈ 45–415 MPa at 950–1170 °C (lowest at 1170 °C, 0.001 s⁻¹;
highest at 950 °C, 1 s⁻¹; peaks ≈ 90–415 MPa).

Noise (the only thing a seed changes; ``numpy.random.default_rng(seed)``)
-------------------------------------------------------------------------------------------------
- White noise on every point: σ · (1 + N(0, 0.003²)).
- Periodic oscillation, a sinusoid in test time t = ε/ε̇, on the curves at 1 s⁻¹ (servo
  ringing, period 0.08 s, i.e. a strain wavelength 0.08) and at 0.001 s⁻¹ with T ≥ 1100 °C
  (temperature-controller hunting, period 60 s, strain wavelength 0.06): σ · a · sin(2π t/τ + φ)
  with amplitude a ~ U(1.5 %, 3 %), period τ = τ₀ · U(0.9, 1.1) and phase φ ~ U(0, 2π) drawn
  per curve. The 3 test curves (all at 0.1 s⁻¹) carry white noise only.
"""
from __future__ import annotations

import numpy as np

from .flow_curves import FlowCurves
from .units import celsius_to_kelvin

SOURCE = "synthetic_dz411"
R_GAS = 8.314               # J/(mol K)
MAX_STRAIN = 0.693
RATES = (0.001, 0.01, 0.1, 1.0)

# Test conditions of method.md: (temperature °C, strain rate 1/s, direction 0 axial / 1 radial).
DZ411_TEST_CONDITIONS = [(975.0, 0.1, 0.0), (900.0, 0.1, 1.0), (800.0, 0.1, 1.0)]

# ---- parameters of the flow law (module docstring) ---------------------------------------------
Q_HOT = 600e3               # J/mol
ALPHA = 0.009               # 1/MPa
N_EXP = 5.0
LN_A = 43.5                 # ln(A / s^-1)
F0, F0_MAX, F0_LNZ, F0_WIDTH = 0.5, 0.95, 24.0, 2.5
EPS_P0, C_EPS_P = 0.10, 0.06
EPS_C_RATIO, EPS_HALF_RATIO, M_AVRAMI, K_SS = 0.7, 1.2, 2.0, 0.7
SIGMA_Y0, GAMMA_AMP, GAMMA_T, GAMMA_W = 900.0, 0.15, 750.0, 120.0
H0, EPS_H, THETA_IV0 = 500.0, 0.12, 400.0
P_NORM = 6.0
WHITE_SD = 0.003
OSC_AMPLITUDE = (0.015, 0.03)
OSC_PERIOD_S = {1.0: 0.08, 0.001: 60.0}   # rate → period of the oscillation in seconds


def design() -> list[tuple[float, float, float]]:
    """The 65 conditions (T °C, rate 1/s, direction), sorted; see the module docstring."""
    conds: list[tuple[float, float, float]] = []
    conds += [(t, r, 0.0) for t in (950, 1000, 1050, 1100, 1140, 1170) for r in RATES]
    conds += [(t, r, 1.0) for t in (950, 1050, 1170) for r in RATES[1:]]
    conds += [(t, r, 0.0) for t in (650, 700, 750, 800, 850, 900) for r in RATES[1:]]
    conds += [(t, r, 1.0) for t in (700, 850) for r in RATES[1:]]
    conds += [(20, r, 0.0) for r in RATES] + [(20, 0.1, 1.0)]
    conds += list(DZ411_TEST_CONDITIONS)
    return sorted((float(t), float(r), float(d)) for t, r, d in conds)


def _hot_stress(strain, rate, t_k):
    ln_z_a = np.log(rate) + Q_HOT / (R_GAS * t_k) - LN_A          # ln(Z/A)
    sigma_sat = np.arcsinh(np.exp(ln_z_a / N_EXP)) / ALPHA
    f0 = F0 + (F0_MAX - F0) / (1.0 + np.exp(-(ln_z_a - F0_LNZ) / F0_WIDTH))
    sigma_0 = f0 * sigma_sat
    eps_p = EPS_P0 * np.exp(C_EPS_P * ln_z_a)
    omega = 4.0 / eps_p
    sigma_wh = np.sqrt(sigma_sat ** 2 + (sigma_0 ** 2 - sigma_sat ** 2) * np.exp(-omega * strain))
    eps_c = EPS_C_RATIO * eps_p
    u = np.clip(strain - eps_c, 0.0, None) / (EPS_HALF_RATIO * eps_p)
    x_drx = 1.0 - np.exp(-np.log(2.0) * u ** M_AVRAMI)
    return sigma_wh - (1.0 - K_SS) * sigma_sat * x_drx


def _low_t_stress(strain, rate, t_c):
    mu = 1.0 - 0.25 * (t_c - 20.0) / 1000.0
    sigma_y = SIGMA_Y0 * mu * (1.0 + GAMMA_AMP * np.exp(-((t_c - GAMMA_T) / GAMMA_W) ** 2))
    hard = H0 * mu * np.exp(-(t_c - 20.0) / 500.0)
    theta = THETA_IV0 * np.exp(-(t_c - 20.0) / 300.0)
    m = 0.005 + 0.03 * (np.clip(t_c, 0.0, None) / 900.0) ** 3
    return (sigma_y + hard * (1.0 - np.exp(-strain / EPS_H)) + theta * strain) * (rate / 0.01) ** m


def direction_factor(strain, temperature_c, direction):
    """1 + d·δ(ε, T): ratio of the stress in direction d to the axial stress."""
    phi = 0.4 + 0.6 / (1.0 + np.exp((np.asarray(temperature_c, float) - 900.0) / 60.0))
    delta = 0.03 + 0.09 * (1.0 - np.exp(-np.asarray(strain, float) / 0.15)) * phi
    return 1.0 + np.asarray(direction, float) * delta


def flow_law(strain, rate, temperature_c, direction=0.0):
    """Noise-free true stress (MPa) of the synthetic DZ411 law; arguments broadcast.

    ``strain`` true strain (≥ 0), ``rate`` 1/s (> 0), ``temperature_c`` °C, ``direction``
    0 axial / 1 radial (values in between interpolate the direction factor).
    """
    strain = np.asarray(strain, dtype=float)
    rate = np.asarray(rate, dtype=float)
    t_c = np.asarray(temperature_c, dtype=float)
    hot = _hot_stress(strain, rate, celsius_to_kelvin(t_c))
    low = _low_t_stress(strain, rate, t_c)
    axial = (hot ** -P_NORM + low ** -P_NORM) ** (-1.0 / P_NORM)
    return axial * direction_factor(strain, t_c, direction)


def curve_name(t_c: float, rate: float, direction: float) -> str:
    return f"syn_T{t_c:g}_R{rate:g}_D{direction:g}"


def oscillation_period(t_c: float, rate: float) -> float | None:
    """Period (s) of the periodic oscillation of a curve, or None for curves without one."""
    if np.isclose(rate, 1.0):
        return OSC_PERIOD_S[1.0]
    if np.isclose(rate, 0.001) and t_c >= 1100.0:
        return OSC_PERIOD_S[0.001]
    return None


def generate_dz411(seed: int = 0, points_per_curve: int = 140) -> FlowCurves:
    """The 65 SYNTHETIC curves of the DZ411 design (module docstring), deterministic for ``seed``."""
    if points_per_curve < 10:
        raise ValueError("points_per_curve must be at least 10")
    rng = np.random.default_rng(seed)
    strain = np.linspace(0.0, MAX_STRAIN, points_per_curve)
    conds = design()
    stress = []
    for t_c, rate, d in conds:
        s = flow_law(strain, rate, t_c, d)
        noise = WHITE_SD * rng.standard_normal(points_per_curve)
        # the oscillation draws are made for every curve so that curves do not shift each
        # other's random streams when the design changes
        amp = rng.uniform(*OSC_AMPLITUDE)
        period_factor = rng.uniform(0.9, 1.1)
        phase = rng.uniform(0.0, 2.0 * np.pi)
        period = oscillation_period(t_c, rate)
        if period is not None:
            time_s = strain / rate
            noise = noise + amp * np.sin(2.0 * np.pi * time_s / (period * period_factor) + phase)
        stress.append(s * (1.0 + noise))
    n = points_per_curve
    c = np.asarray(conds)
    return FlowCurves(
        curve=np.repeat(np.arange(len(conds)), n),
        temperature=np.repeat(c[:, 0], n), strain_rate=np.repeat(c[:, 1], n),
        strain=np.tile(strain, len(conds)), stress=np.concatenate(stress),
        curve_names=[curve_name(*k) for k in conds],
        extras={"direction": np.repeat(c[:, 2], n)},
        source=SOURCE, synthetic=True)


def split_dz411(curves: FlowCurves) -> tuple[FlowCurves, FlowCurves]:
    """(train, test): the 3 test conditions of method.md go to test as whole curves."""
    return curves.split_heldout(DZ411_TEST_CONDITIONS)


# =============================================================================================
# A family of SYNTHETIC small campaigns (the leave-one-condition-out benchmark's synthetic part)
# =============================================================================================
# Each campaign is a sparse grid (3-4 temperatures x 3-4 strain rates) filled from one flow-law
# shape with measurement-like flaws. Nothing here is measured; every campaign is labelled
# SYNTHETIC (``FlowCurves.synthetic``, source ``synthetic_<name>``, curve names ``syn_...``).
#
# Shapes (σ in MPa, ε true strain, ε̇ 1/s, T °C; Z = ε̇ exp(Q/(R T_K))):
#   "peak"      hot working with a peak and a steady state: the hot law of the DZ411 generator
#               (work hardening + dynamic recovery, then Avrami softening to k_ss·σ_sat) with
#               the campaign's own Q, α, n, ln A;
#   "hardening" pure work hardening without softening (Voce saturation plus a linear stage):
#               σ = [σ₀ + (σ_s − σ₀)(1 − e^{−ε/ε_r}) + θ ε]·(ε̇/ε̇₀)^m · exp(−k (T − T₀)),
#               σ₀ = f₀ σ_s, with m rising with temperature;
#   "regimes"   two regimes in parallel (athermal glide at low T, thermally activated flow at
#               high T), combined by the p-norm smooth minimum (p = 6) as in the DZ411 law.
# Flaws (each campaign lists its own, see CAMPAIGNS): white noise 0.4 %; "oscillation": a sinusoid
# in test time on the curves at the highest rate (amplitude 1.5-3 %); "replicate": a second test of
# two conditions, one of them offset by +6 %; "corner": the (highest T, lowest rate) corner missing;
# "uneven": curves end at different strains (a random 55-100 % of the campaign's largest strain).

CAMPAIGNS = {
    "peak_4x3": dict(shape="peak", temps=(900, 1000, 1100, 1200), rates=(0.01, 0.1, 1.0),
                     law=dict(Q=380e3, alpha=0.012, n=4.5, lnA=31.0), max_strain=0.8,
                     flaws=("oscillation",)),
    "peak_4x4_corner": dict(shape="peak", temps=(950, 1025, 1100, 1175), rates=(0.001, 0.01, 0.1, 1.0),
                            law=dict(Q=450e3, alpha=0.010, n=5.0, lnA=36.0), max_strain=0.7,
                            flaws=("corner", "uneven")),
    "hardening_3x4": dict(shape="hardening", temps=(300, 400, 500), rates=(0.001, 0.01, 0.1, 1.0),
                          law=dict(sigma_s=320.0, f0=0.45, eps_r=0.12, theta=60.0, m0=0.01, m1=0.06,
                                   k=0.0025, t0=300.0), max_strain=0.6, flaws=("replicate",)),
    "hardening_4x3_uneven": dict(shape="hardening", temps=(200, 275, 350, 425), rates=(0.01, 0.1, 1.0),
                                 law=dict(sigma_s=450.0, f0=0.55, eps_r=0.08, theta=120.0, m0=0.005,
                                          m1=0.04, k=0.0018, t0=200.0), max_strain=0.5,
                                 flaws=("uneven", "oscillation")),
    "regimes_4x3": dict(shape="regimes", temps=(600, 750, 900, 1050), rates=(0.001, 0.1, 10.0),
                        law=dict(Q=420e3, alpha=0.011, n=4.8, lnA=33.0, sigma_y=420.0, m=0.02),
                        max_strain=0.6, flaws=("oscillation", "corner")),
    "regimes_3x4_replicate": dict(shape="regimes", temps=(700, 850, 1000), rates=(0.001, 0.01, 0.1, 1.0),
                                  law=dict(Q=500e3, alpha=0.009, n=5.2, lnA=38.0, sigma_y=380.0, m=0.025),
                                  max_strain=0.7, flaws=("replicate", "uneven")),
}


def _peak_law(strain, rate, t_c, p):
    ln_z_a = np.log(rate) + p["Q"] / (R_GAS * celsius_to_kelvin(t_c)) - p["lnA"]
    sigma_sat = np.arcsinh(np.exp(ln_z_a / p["n"])) / p["alpha"]
    sigma_0 = 0.5 * sigma_sat
    eps_p = 0.12 * np.exp(0.04 * ln_z_a)
    sigma_wh = np.sqrt(sigma_sat ** 2 + (sigma_0 ** 2 - sigma_sat ** 2) * np.exp(-4.0 / eps_p * strain))
    u = np.clip(strain - 0.7 * eps_p, 0.0, None) / (1.2 * eps_p)
    x_drx = 1.0 - np.exp(-np.log(2.0) * u ** 2)
    return sigma_wh - 0.3 * sigma_sat * x_drx


def _hardening_law(strain, rate, t_c, p):
    m = p["m0"] + p["m1"] * (t_c - p["t0"]) / 300.0
    s_s = p["sigma_s"] * np.exp(-p["k"] * (t_c - p["t0"]))
    s0 = p["f0"] * s_s
    base = s0 + (s_s - s0) * (1.0 - np.exp(-strain / p["eps_r"])) + p["theta"] * strain
    return base * (rate / 0.01) ** m


def _regimes_law(strain, rate, t_c, p):
    hot = _peak_law(strain, rate, t_c, p)
    mu = 1.0 - 0.3 * (t_c - 20.0) / 1000.0
    low = (p["sigma_y"] * mu + 250.0 * mu * (1.0 - np.exp(-strain / 0.1))) * (rate / 0.01) ** p["m"]
    return (hot ** -P_NORM + low ** -P_NORM) ** (-1.0 / P_NORM)


_SHAPES = {"peak": _peak_law, "hardening": _hardening_law, "regimes": _regimes_law}


def campaign_law(name: str, strain, rate, temperature_c):
    """Noise-free stress (MPa) of campaign ``name`` (see ``CAMPAIGNS``); arguments broadcast."""
    c = CAMPAIGNS[name]
    return _SHAPES[c["shape"]](np.asarray(strain, float), np.asarray(rate, float),
                               np.asarray(temperature_c, float), c["law"])


def generate_campaign(name: str, seed: int = 0, points_per_curve: int = 60) -> FlowCurves:
    """SYNTHETIC small campaign ``name`` of ``CAMPAIGNS``, deterministic for ``seed``."""
    if name not in CAMPAIGNS:
        raise ValueError(f"unknown synthetic campaign '{name}'; known: {', '.join(CAMPAIGNS)}")
    spec = CAMPAIGNS[name]
    flaws = spec["flaws"]
    rng = np.random.default_rng([seed, sorted(CAMPAIGNS).index(name)])
    conds = [(float(t), float(r)) for t in spec["temps"] for r in spec["rates"]]
    if "corner" in flaws:
        conds.remove((float(max(spec["temps"])), float(min(spec["rates"]))))
    tests = [(t, r, 0) for t, r in conds]
    if "replicate" in flaws:
        mid = conds[len(conds) // 2]
        other = conds[1]
        tests += [(mid[0], mid[1], 1), (other[0], other[1], 1)]
    e_max = spec["max_strain"]
    cols = {k: [] for k in ("curve", "t", "r", "e", "s")}
    names = []
    for k, (t_c, rate, rep) in enumerate(tests):
        end = e_max * (rng.uniform(0.55, 1.0) if "uneven" in flaws else 1.0)
        e = np.linspace(0.0, end, points_per_curve)
        s = campaign_law(name, e, rate, t_c)
        noise = 0.004 * rng.standard_normal(points_per_curve)
        if "oscillation" in flaws and np.isclose(rate, max(spec["rates"])):
            amp, ph = rng.uniform(0.015, 0.03), rng.uniform(0, 2 * np.pi)
            noise = noise + amp * np.sin(2 * np.pi * e / 0.08 + ph)
        offset = 1.06 if (rep == 1 and (t_c, rate) == tests[len(conds) // 2][:2]) else 1.0
        cols["curve"].append(np.full(points_per_curve, k))
        cols["t"].append(np.full(points_per_curve, t_c))
        cols["r"].append(np.full(points_per_curve, rate))
        cols["e"].append(e)
        cols["s"].append(s * offset * (1.0 + noise))
        names.append(f"syn_{name}_T{t_c:g}_R{rate:g}" + (f"_rep{rep}" if rep else ""))
    return FlowCurves(curve=np.concatenate(cols["curve"]), temperature=np.concatenate(cols["t"]),
                      strain_rate=np.concatenate(cols["r"]), strain=np.concatenate(cols["e"]),
                      stress=np.concatenate(cols["s"]), curve_names=names, extras={},
                      source=f"synthetic_{name}", synthetic=True)
