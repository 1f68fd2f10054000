"""The two modes of ``evaluate_mesh``: for each, the chunk inputs gathered from the mesh fields,
the result buffers, and the output fields (names and units: see ``fem_bridge.mesh``).

A mode object reads its inputs once (``InputFields``), then serves ``inputs(slice)`` (the
arguments of its chunk evaluator in ``CHUNK_EVALUATORS[mode.evaluator]``), ``store(slice,
results)``, ``mark_failed(slice)`` (rows of a failed Dask task) and, at the end, ``outputs()``
(the fields to attach, in order) and ``record(result)`` (its counts in the ``MeshEvaluation``).
"""
from __future__ import annotations

import numpy as np

from . import conventions as cv
from .j2 import Elasticity
from .mesh_fields import InputFields

FLOW_STRESS = "flow_stress_MPa"
OUT_OF_BOX = "out_of_box"
STRESS, MISES, PEEQ, STATE, STATUS, PNEWDT = (
    "stress_MPa", "mises_stress_MPa", "equivalent_plastic_strain", "state", "status", "pnewdt")
FAILED = "evaluation_failed"      # written only when chunks failed on a Dask cluster (1 = failed row)
NOT_EVALUATED = -1                # update-mode status of the rows of a failed chunk


def derivative_field_name(feature: str) -> str:
    """The output field of ∂σ_y/∂``feature`` (MPa per unit of the feature)."""
    return f"dflow_stress_d_{feature}"


def _take(src, sl: slice, m: int) -> np.ndarray:
    """Rows ``sl`` (m of them) of a per-row array, or a constant repeated m times."""
    return np.full(m, src) if isinstance(src, float) else src[sl]


class _ModeRows:
    """Inputs both modes read first, in this order: temperature (°C), then the extra features."""

    def __init__(self, inp: InputFields, extra_names: list[str], temperature, extras: dict,
                 temperature_unit: str = "C"):
        self.extra_names = extra_names
        t = inp.scalar("temperature", temperature)
        self.T = float(cv.to_celsius(t, temperature_unit)) if isinstance(t, float) else cv.to_celsius(t, temperature_unit)
        self.X = {e: inp.scalar(f"extra {e}", extras[e]) for e in extra_names}


class FlowStressRows(_ModeRows):
    """Flow-stress mode: rows (p, ε̇ in 1/s, T in °C, extras) → σ_y (MPa), ∂σ_y/∂x, out-of-box flag."""
    mode = evaluator = "flow_stress"

    def __init__(self, inp: InputFields, feature_names: list[str], temperature, extras: dict,
                 plastic_strain, strain_rate, temperature_unit: str = "C"):
        self.names = list(feature_names)
        super().__init__(inp, self.names[3:], temperature, extras, temperature_unit)
        self.P = inp.scalar("plastic_strain", plastic_strain)
        self.R = inp.scalar("strain_rate", strain_rate)
        rows = inp.finish().rows
        self.params: dict = {}
        self.sigma = np.empty(rows)
        self.dsigma = np.empty((len(self.names), rows))
        self.oob = np.zeros(rows, dtype=np.int32)
        self.n_nonfinite = 0

    def inputs(self, sl: slice) -> tuple:
        m = sl.stop - sl.start
        x = np.empty((m, len(self.names)))
        x[:, 0] = _take(self.P, sl, m)
        x[:, 1] = _take(self.R, sl, m)
        x[:, 2] = _take(self.T, sl, m)
        for j, e in enumerate(self.extra_names):
            x[:, 3 + j] = _take(self.X[e], sl, m)
        return (x,)

    def store(self, sl: slice, out: tuple) -> None:
        s, d, o, n_finite = out
        self.sigma[sl] = s
        self.dsigma[:, sl] = d.T
        self.oob[sl] = o
        self.n_nonfinite += int((sl.stop - sl.start) - n_finite)

    def mark_failed(self, sl: slice) -> None:
        self.sigma[sl] = np.nan
        self.dsigma[:, sl] = np.nan
        self.oob[sl] = 0

    def outputs(self) -> dict[str, np.ndarray]:
        out = {FLOW_STRESS: self.sigma, OUT_OF_BOX: self.oob}
        for j, name in enumerate(self.names):
            out[derivative_field_name(name)] = self.dsigma[j]
        return out

    def record(self, result) -> None:
        result.n_nonfinite = self.n_nonfinite
        result.n_out_of_box = int(self.oob.sum())


class UpdateRows(_ModeRows):
    """Update mode (``fem_bridge.j2.integrate``): start stress (MPa), STATEV, strain increment
    over ``dt`` s → end stress, STATEV, status, pnewdt. Stress and state default to 0; a
    ``plastic_strain`` without a state field gives the initial p (STATEV 1)."""
    mode = evaluator = "update"

    def __init__(self, inp: InputFields, extra_names: list[str], temperature, extras: dict, *,
                 strain_increment, stress, state, plastic_strain, dt: float, E: float, nu: float,
                 temperature_unit: str = "C"):
        super().__init__(inp, extra_names, temperature, extras, temperature_unit)
        self.dstran = inp.tensor("strain_increment", strain_increment, cv.NTENS)
        self.sig0 = inp.tensor("stress", stress, cv.NTENS) if stress is not None else None
        self.sv0 = inp.tensor("state", state, cv.NSTATV) if state is not None else None
        self.p0 = inp.scalar("plastic_strain", plastic_strain) if plastic_strain is not None else None
        rows = inp.finish().rows
        self.params = {"dt": float(dt), "elastic": Elasticity(float(E), float(nu))}
        self.sig_new = np.empty((rows, cv.NTENS))
        self.sv_new = np.empty((rows, cv.NSTATV))
        self.status = np.empty(rows, dtype=np.int32)
        self.pnewdt = np.empty(rows)
        self.n_out = 0                       # rows whose STATEV 9 (evaluations outside the data) grew

    def inputs(self, sl: slice) -> tuple:
        m = sl.stop - sl.start
        s0 = self.sig0[sl] if self.sig0 is not None else np.zeros((m, cv.NTENS))
        if self.sv0 is not None:
            v0 = self.sv0[sl]
        else:
            v0 = np.zeros((m, cv.NSTATV))
            if self.p0 is not None:
                v0[:, cv.SV_P] = _take(self.p0, sl, m)
        ex = None
        if self.extra_names:
            ex = np.stack([_take(self.X[e], sl, m) for e in self.extra_names], axis=1)
        return (s0, v0, self.dstran[sl], _take(self.T, sl, m), ex)

    def store(self, sl: slice, out: tuple) -> None:
        self.sig_new[sl], self.sv_new[sl], self.status[sl], self.pnewdt[sl] = out
        v0 = self.inputs(sl)[1]
        self.n_out += int(np.count_nonzero(self.sv_new[sl, cv.SV_NOUT] > v0[:, cv.SV_NOUT]))

    def mark_failed(self, sl: slice) -> None:
        self.sig_new[sl], self.sv_new[sl], self.pnewdt[sl] = np.nan, np.nan, np.nan
        self.status[sl] = NOT_EVALUATED

    def outputs(self) -> dict[str, np.ndarray]:
        s = self.sig_new
        mises = np.sqrt(0.5 * ((s[:, 0] - s[:, 1]) ** 2 + (s[:, 1] - s[:, 2]) ** 2 + (s[:, 2] - s[:, 0]) ** 2)
                        + 3.0 * (s[:, 3] ** 2 + s[:, 4] ** 2 + s[:, 5] ** 2))
        return {STRESS: s, MISES: mises, PEEQ: self.sv_new[:, cv.SV_P].copy(), STATE: self.sv_new,
                STATUS: self.status, PNEWDT: self.pnewdt}

    def record(self, result) -> None:
        codes, counts = np.unique(self.status, return_counts=True)
        result.status_counts = {int(c): int(n) for c, n in zip(codes, counts)}
        result.n_out_of_box = self.n_out
