"""Verify the compiled Fortran UMAT against the Python bridge, increment by increment.

Both are driven along the same strain paths inside the model's training box (uniaxial
compression, shear, a random multiaxial path with random rates and temperatures, loading then
elastic unloading and reloading, a temperature ramp) with the same start state, and every
increment's stress, STATEV and consistent tangent are compared. The Python side is
``fem_bridge.umat.UmatMaterial`` on onnxruntime; the Fortran side is the library that
``fortran_umat.build.build_umat`` generates from the ONNX file alone.

Units: MPa, °C, s, 1/s; strain increments with engineering shear (Voigt 11, 22, 33, 12, 13, 23).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fem_bridge import conventions as cv
from fem_bridge.backends import OnnxBackend
from fem_bridge.umat import UmatMaterial

from .build import build_umat
from .library_binding import CompiledUmat

E_MPA, NU = 1.2e5, 0.3


@dataclass
class Verification:
    paths: int
    increments: int
    plastic_increments: int
    unloading_increments: int
    max_rel_stress: float
    max_rel_statev: float
    max_rel_tangent: float
    pnewdt_mismatches: int
    tolerance: float
    out_of_data_increments: int = 0      # plastic increments evaluated outside the data (STATEV 9 grew, Python)
    out_of_data_mismatches: int = 0      # increments whose STATEV 9 differs between Fortran and Python

    @property
    def passed(self) -> bool:
        return (max(self.max_rel_stress, self.max_rel_statev, self.max_rel_tangent) <= self.tolerance
                and self.pnewdt_mismatches == 0 and self.out_of_data_mismatches == 0 and self.plastic_increments > 0)

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}

    def summary(self) -> str:
        return (f"{self.paths} strain paths, {self.increments} increments ({self.plastic_increments} plastic, "
                f"{self.unloading_increments} elastic after plastic): max relative difference Fortran vs Python "
                f"stress {self.max_rel_stress:.2e}, STATEV {self.max_rel_statev:.2e}, tangent "
                f"{self.max_rel_tangent:.2e} (tolerance {self.tolerance:g}); {self.out_of_data_increments} plastic "
                f"increment(s) evaluated outside the data (STATEV 9), {self.out_of_data_mismatches} where Fortran and "
                f"Python disagree on it; " + ("PASSED" if self.passed else "FAILED"))


def unload_increment(stress, E: float, nu: float) -> np.ndarray:
    """A strain increment (engineering shear) that removes 20 % of the deviatoric stress
    elastically: the "unload" entries of a strain path."""
    dev = np.asarray(stress) - np.r_[np.full(3, np.mean(stress[:3])), np.zeros(3)]
    return -0.2 * dev / (E / (1 + nu)) * np.r_[1, 1, 1, 2, 2, 2]


def _rel(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - b)) / max(np.max(np.abs(b)), 1e-300))


def strain_paths(box_lo, box_hi, feature_names, rng: np.random.Generator, n_inc: int = 20, coverage=None):
    """(label, increments (6,) or "unload", dt (n,), end temperatures (n,)) inside the box; with the
    model's measured conditions (``coverage``) the constant-temperature paths run at the measured
    temperature and rate nearest the box centre, so that they lie inside the data."""
    i_rate, i_temp = feature_names.index("strain_rate"), feature_names.index("temperature")
    t_lo, t_hi = float(box_lo[i_temp]), float(box_hi[i_temp])
    r_lo, r_hi = np.log10(max(box_lo[i_rate], 1e-12)), np.log10(box_hi[i_rate])
    t_mid, r_mid = 0.5 * (t_lo + t_hi), 10 ** (0.5 * (r_lo + r_hi))
    if coverage is not None:
        c = coverage.conditions
        t_mid = float(c[np.argmin(np.abs(c[:, 0] - t_mid)), 0])
        r_mid = float(c[np.argmin(np.abs(np.log10(c[:, 1]) - np.log10(r_mid))), 1])
    d = 0.6 / n_inc / 2                                           # reaches ~0.3 total strain
    uniax = np.array([-d, 0.5 * d, 0.5 * d, 0.0, 0.0, 0.0])
    const = np.full(n_inc, t_mid)
    dt_of = lambda rate: np.full(n_inc, d / rate)
    unload = [uniax] * (n_inc // 2) + ["unload"] * 3 + [uniax] * (n_inc - n_inc // 2 - 3)
    return [
        ("uniaxial compression", [uniax] * n_inc, dt_of(r_mid), const),
        ("simple shear", [np.array([0, 0, 0, 2 * d, 0, 0])] * n_inc, dt_of(r_mid), const),
        ("random multiaxial", [rng.normal(size=6) * d for _ in range(n_inc)],
         d / 10 ** rng.uniform(r_lo, r_hi, n_inc), rng.uniform(t_lo, t_hi, n_inc)),
        ("unloading and reloading", unload, dt_of(r_mid), const),
        ("temperature ramp", [uniax] * n_inc, dt_of(10 ** r_hi), np.linspace(t_lo, t_hi, n_inc + 1)[1:]),
    ]


def verify_umat(onnx_path, *, seed: int = 0, n_inc: int = 20, tolerance: float = 1e-9,
                library=None) -> Verification:
    """Run the Fortran UMAT and the Python UMAT side by side; return the largest differences."""
    backend = OnnxBackend(onnx_path)
    extras = 0.5 * (backend.box_lo[3:] + backend.box_hi[3:])
    props = [E_MPA, NU, 1, 0.0, *extras]                           # TEMP at the end (CalculiX), model's floor
    py = UmatMaterial(backend, props)
    fo = CompiledUmat(library or build_umat(onnx_path).library, props)
    rng = np.random.default_rng(seed)
    paths = strain_paths(backend.box_lo, backend.box_hi, backend.feature_names, rng, n_inc, backend.coverage)
    worst = dict(stress=0.0, statev=0.0, tangent=0.0)
    n = n_plastic = n_unload = mismatches = n_out = out_mismatch = 0
    for _, incs, dts, temps in paths:
        s_p = s_f = np.zeros(6)
        v_p = v_f = np.zeros(cv.NSTATV)
        stran = np.zeros(6)
        was_plastic = False
        for k, (de, dt, t_end) in enumerate(zip(incs, dts, temps)):
            if isinstance(de, str):
                de = unload_increment(s_p, E_MPA, NU)
            kw = dict(time=(k * dt, k * dt), dtime=float(dt), temp=float(t_end), dtemp=0.0, kinc=k + 1)
            s_p1, v_p1, c_p, pn_p = py.call(s_p, v_p, stran, de, **kw)
            s_f1, v_f1, c_f, pn_f = fo.call(s_f, v_f, stran, de, **kw)
            worst["stress"] = max(worst["stress"], _rel(s_f1, s_p1))
            worst["statev"] = max(worst["statev"], _rel(v_f1, v_p1))
            worst["tangent"] = max(worst["tangent"], _rel(c_f, c_p))
            mismatches += pn_p != pn_f
            n_out += v_p1[cv.SV_NOUT] > v_p[cv.SV_NOUT]
            out_mismatch += v_p1[cv.SV_NOUT] != v_f1[cv.SV_NOUT]
            plastic = v_p1[cv.SV_P] > v_p[cv.SV_P]
            n_plastic += plastic
            n_unload += was_plastic and not plastic
            was_plastic = was_plastic or plastic
            n += 1
            s_p, v_p, s_f, v_f = s_p1, v_p1, s_f1, v_f1
            stran = stran + de
    return Verification(len(paths), n, int(n_plastic), int(n_unload), worst["stress"], worst["statev"],
                        worst["tangent"], int(mismatches), tolerance, int(n_out), int(out_mismatch))
