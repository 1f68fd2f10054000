"""The Abaqus UMAT interface in Python, for one integration point, built on
:func:`fem_bridge.j2.integrate` (the generated Fortran UMAT implements the same thing).

Arguments and meaning as in Abaqus (PROPS and STATEV layout in :mod:`fem_bridge.conventions`):
``stress`` (NTENS,), ``statev`` (NSTATV,) and ``ddsdde`` (NTENS, NTENS) are numpy float arrays
updated in place; ``sse``, ``spd``, ``scd`` are updated in place when given as 1-element float
arrays (plain floats cannot be); ``rpl``, ``ddsddt``, ``drplde``, ``drpldt`` are zeroed when they
are arrays. The function returns the new PNEWDT: the given one when the update succeeded; when it did not
(bad input such as NaN, or no convergence) the given one if it is already a request in
(0, PNEWDT_CUT] (made by another point), else PNEWDT_CUT (CalculiX passes −1 for "no request",
Abaqus a large value). The outputs are then finite wherever the inputs were (stress and state
unchanged, elastic tangent).
Element types (``conventions.LAYOUTS``), as in the Fortran UMAT: 3-D solids (NTENS = 6, NDI = NSHR
= 3) and plane strain / axisymmetric / generalised plane strain (NTENS = 4, NDI = 3, NSHR = 1:
11, 22, 33, 12, embedded in the 6-component update with zero 13, 23). Plane stress (NTENS = 3,
NDI = 2) is refused: stress and state unchanged, an elastic plane-stress tangent, PNEWDT cut and
one warning (``warnings.warn``, shown once per run by Python's default filter).

``DDSDDE[i, j] = ∂Δσ_i/∂Δε_j`` (row i = stress component), engineering shear strain.
"""
from __future__ import annotations

import warnings

import numpy as np

from constitutive.errors import NeumatInputError

from . import conventions as cv
from .backends import as_backend
from .j2 import Elasticity, integrate


def _props_needed(flow) -> int:
    return cv.N_FIXED_PROPS + int(flow.n_features) - 3


def _end_temperature(temp, dtemp, temp_mode):
    """T_end (°C) under the PROPS(3) convention; NaN (→ bad input) if any of them is not finite."""
    if not (np.isfinite(temp) and np.isfinite(dtemp) and np.isfinite(temp_mode)):
        return np.nan
    return float(cv.temperature_end(temp, dtemp, temp_mode))


def _energies(sse, spd, stress_new, dp, sigma_eq, E, nu):
    """SSE: elastic strain energy density ½ σ:C⁻¹:σ at the end; SPD += σ_eq Δp (MJ/m³ = MPa)."""
    if isinstance(spd, np.ndarray) and spd.size == 1:
        spd.flat[0] += sigma_eq * dp
    if isinstance(sse, np.ndarray) and sse.size == 1:
        s = stress_new
        ss = s[0] ** 2 + s[1] ** 2 + s[2] ** 2 + 2.0 * (1.0 + nu) * (s[3] ** 2 + s[4] ** 2 + s[5] ** 2)
        sse.flat[0] = 0.5 / E * (ss - 2.0 * nu * (s[0] * s[1] + s[1] * s[2] + s[0] * s[2])) \
            if np.isfinite(E) and E > 0 else sse.flat[0]


def umat(stress, statev, ddsdde, sse, spd, scd, rpl, ddsddt, drplde, drpldt, stran, dstran, time,
         dtime, temp, dtemp, predef, dpred, cmname, ndi, nshr, ntens, nstatv, props, nprops, coords,
         drot, pnewdt, celent, dfgrd0, dfgrd1, noel, npt, layer, kspt, kstep, kinc, *, flow):
    """One Abaqus UMAT call; ``flow`` is a flow-stress backend or a model path. Returns PNEWDT."""
    flow = as_backend(flow)
    key = (int(ntens), int(ndi), int(nshr))
    layout = cv.element_layout(*key)
    nt = key[0]
    if layout is None and key != cv.PLANE_STRESS:
        raise NeumatInputError(f"NTENS={ntens}, NDI={ndi}, NSHR={nshr}: not an Abaqus continuum layout; supported "
                               f"(NTENS, NDI, NSHR): {', '.join(f'{k} {v}' for k, v in cv.ELEMENT_TYPES.items())}")
    for name, arr, shape in (("STRESS", stress, (nt,)), ("DDSDDE", ddsdde, (nt, nt)), ("DSTRAN", dstran, (nt,))):
        if not isinstance(arr, np.ndarray) or arr.shape != shape:
            raise NeumatInputError(f"{name} must be a numpy array of shape {shape}, got "
                                   f"{getattr(arr, 'shape', type(arr).__name__)}")
    if not isinstance(statev, np.ndarray) or statev.ndim != 1 or statev.size < int(nstatv):
        raise NeumatInputError(f"STATEV must be a 1-D numpy array of at least NSTATV={nstatv} values")
    if int(nstatv) < cv.NSTATV:
        raise NeumatInputError(f"NSTATV={nstatv}: *DEPVAR must be at least {cv.NSTATV} "
                               f"({', '.join(cv.STATEV)})")
    need = _props_needed(flow)
    props = np.asarray(props, dtype=float).ravel()
    if int(nprops) < need or props.size < need:
        names = list(cv.PROPS) + list(flow.feature_names[3:])
        raise NeumatInputError(f"NPROPS={nprops}: *USER MATERIAL, CONSTANTS must be at least {need} "
                               f"({', '.join(names)})")
    pr = props[:need]
    E, nu, temp_mode, floor = pr[cv.PROP_E], pr[cv.PROP_NU], pr[cv.PROP_TEMP_MODE], pr[cv.PROP_RATE_FLOOR]
    for a in (rpl, ddsddt, drplde, drpldt):
        if isinstance(a, np.ndarray):
            a[...] = 0.0
    if layout is None:                                   # plane stress: refused, never a crash
        warnings.warn("neumat UMAT: plane stress (NTENS = 3, NDI = 2: CPS*, shells) is not supported; "
                      "use plane strain (CPE*), axisymmetric (CAX*) or 3-D elements. The step is cut.",
                      RuntimeWarning, stacklevel=2)
        ddsdde[...] = _plane_stress_elastic(E, nu)
        _finite_in_place(stress, statev[:int(nstatv)])
        return _cut(pnewdt)
    direct = getattr(flow, "umat_direct", None)
    if direct is not None:               # a compiled model: its own UMAT, the same algorithm in Fortran
        pn = direct(stress, statev, ddsdde, sse, spd, np.asarray(stran, float), np.asarray(dstran, float),
                    np.asarray(time, float), float(dtime), float(temp), float(dtemp), nt, int(nstatv),
                    props[:int(nprops)], int(noel), int(npt), int(kinc), float(pnewdt))
        _finite_in_place(stress, statev[:int(nstatv)])
        return pn
    idx = list(layout)
    s6, d6 = np.zeros(cv.NTENS), np.zeros(cv.NTENS)
    s6[idx], d6[idx] = stress, np.asarray(dstran, float)
    t_end = _end_temperature(temp, dtemp, temp_mode)
    E, nu = cv.elastic_at(props[:int(nprops)], need, t_end)     # the PROPS elastic table, if any
    if E == -1.0 and int(nprops) > need:
        warnings.warn(f"neumat UMAT: {cv.elastic_table_problem(props[:int(nprops)], need)} (PROPS elastic table); "
                      "every call is refused (PNEWDT cut)", RuntimeWarning, stacklevel=2)
    ns = int(nstatv)
    upd = integrate(flow, s6[None, :], statev[None, :ns], d6[None, :],
                    dtime, t_end, Elasticity(E, nu), extras=pr[cv.N_FIXED_PROPS:] if need > cv.N_FIXED_PROPS else None,
                    rate_floor=floor)
    ok = upd.status[0] == cv.OK
    p_old = statev[cv.SV_P]
    ddsdde[...] = upd.ddsdde[0][np.ix_(idx, idx)]
    if ok:
        snew = upd.stress[0]
        stress[...] = snew[idx]
        statev[:ns] = upd.statev[0]
        dp = statev[cv.SV_P] - p_old
        s = snew - np.r_[np.full(3, snew[:3].mean()), np.zeros(3)]
        sigma_eq = float(np.sqrt(1.5 * (s[:3] @ s[:3] + 2.0 * s[3:] @ s[3:])))
        _energies(sse, spd, snew, dp, sigma_eq, E, nu)
        return float(pnewdt)
    _finite_in_place(stress, statev[:ns])
    return _cut(pnewdt)


def _cut(pnewdt) -> float:
    """PNEWDT of a point that was not updated: keep an earlier request in (0, PNEWDT_CUT]."""
    pnewdt = float(pnewdt)
    return pnewdt if 0.0 < pnewdt <= cv.PNEWDT_CUT else cv.PNEWDT_CUT


def _finite_in_place(*arrays) -> None:
    """Non-finite entries → 0, so that the host always receives finite values (the step is cut)."""
    for a in arrays:
        a[~np.isfinite(a)] = 0.0


def _plane_stress_elastic(E, nu) -> np.ndarray:
    """3×3 plane-stress elastic tangent (11, 22, 12; engineering shear), identity if E, ν are unusable."""
    if not (np.isfinite(E) and np.isfinite(nu) and E > 0 and -1.0 < nu < 0.5):
        return np.eye(3)
    f = E / (1.0 - nu * nu)
    return f * np.array([[1.0, nu, 0.0], [nu, 1.0, 0.0], [0.0, 0.0, 0.5 * (1.0 - nu)]])


class UmatMaterial:
    """A material = flow model + PROPS, called like a UMAT for one point at a time.

    ``props``: E (MPa), ν, temp_mode (0 Abaqus / 1 CalculiX), rate floor (1/s, <= 0: the
    model's), then the model's extra features (see ``conventions.PROPS``)."""

    def __init__(self, flow, props, nstatv: int = cv.NSTATV):
        self.flow = as_backend(flow)
        self.props = np.array(props, dtype=float).ravel()
        self.nstatv = int(nstatv)
        need = _props_needed(self.flow)
        if self.props.size < need:
            names = list(cv.PROPS) + list(self.flow.feature_names[3:])
            raise NeumatInputError(f"props has {self.props.size} values; expected {need}: {', '.join(names)}")

    def initial_state(self) -> np.ndarray:
        return np.zeros(self.nstatv)

    def call(self, stress, statev, stran, dstran, time=(0.0, 0.0), dtime=1.0, temp=20.0, dtemp=0.0,
             kinc: int = 1, pnewdt: float = 1.0, noel: int = 1, npt: int = 1):
        """→ (stress (NTENS,), statev (NSTATV,), ddsdde (NTENS, NTENS), pnewdt); the inputs are not
        modified. NTENS is the length of ``stress``: 6 (3-D), 4 (plane strain / axisymmetric:
        11, 22, 33, 12) or 3 (plane stress, refused)."""
        stress = np.array(stress, dtype=float, copy=True).reshape(-1)
        statev = np.array(statev, dtype=float, copy=True).reshape(-1)
        nt = stress.size
        ndi, nshr = {6: (3, 3), 4: (3, 1), 3: (2, 1)}.get(nt, (3, nt - 3))
        ddsdde = np.zeros((nt, nt))
        pn = umat(stress, statev, ddsdde, np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(nt),
                  np.zeros(nt), np.zeros(1), np.asarray(stran, float), np.asarray(dstran, float),
                  np.asarray(time, float), float(dtime), float(temp), float(dtemp), np.zeros(1), np.zeros(1),
                  "NEUMAT", ndi, nshr, nt, self.nstatv, self.props, self.props.size, np.zeros(3), np.eye(3),
                  float(pnewdt), 1.0, np.eye(3), np.eye(3), noel, npt, 1, 1, 1, kinc, flow=self.flow)
        return stress, statev, ddsdde, pn
