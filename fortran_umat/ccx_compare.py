"""The references the UMAT in ccx is compared with: the same homogeneous uniaxial-stress path
integrated in Python (``uniaxial_stress_path``, with the Python bridge of the same ONNX file as
``bridge_update``), the flow stress for ccx's ``*PLASTIC`` table straight from the ONNX file
(``onnx_flow_stress``), and the agreement figure ``relative_difference``.

Units: stress MPa, time s, temperature °C, strain rate 1/s; strains with engineering shear
(Abaqus Voigt order 11, 22, 33, 12, 13, 23).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from fem_bridge.backends import load_backend
from fem_bridge.umat import UmatMaterial

from .ccx_deck import Deck


def uniaxial_stress_path(update, *, deck: Deck, tol: float = 1e-11):
    """Integrate a material on the deck's homogeneous path, independently of ccx.

    Per increment the axial strain increment is prescribed (Δε_33 = −ε̇ Δt: the strain measure
    the material sees grows at the constant rate ε̇, see ``fortran_umat.ccx_deck``), the shear
    strains are 0 and the lateral strain increments Δε_11 = Δε_22 are found by Newton with the
    material's tangent so that σ_11 = σ_22 = 0 — the uniaxial stress state of the cube.

    ``update(stress, statev, stran, dstran, time, dtime, temp_end) -> (stress, statev, ddsdde)``
    for one point, values at the start of the increment in (``statev`` None on the first call,
    ``time`` the step time at the start), vectors in Abaqus Voigt order with engineering shear.
    Returns the step times, stresses (n_inc, 6) and state variables (n_inc, nstatv) at the
    increment ends.
    """
    dt = deck.step_time / deck.n_increments
    stress, statev, stran = np.zeros(6), None, np.zeros(6)
    times, stresses, states = [], [], []
    d33 = -deck.strain_rate * dt
    lateral = 0.5 * -d33                       # plastic incompressibility as the first guess
    for k in range(deck.n_increments):
        for _ in range(50):
            de = np.array([lateral, lateral, d33, 0.0, 0.0, 0.0])
            s, sv, C = update(stress, statev, stran, de, k * dt, dt, deck.temperature_c)
            r = 0.5 * (s[0] + s[1])
            if abs(r) <= tol * max(1.0, abs(s[2])):
                break
            lateral -= r / (0.5 * (C[0, 0] + C[0, 1] + C[1, 0] + C[1, 1]))
        else:
            raise RuntimeError(f"uniaxial stress driver: no equilibrium in increment {k + 1}")
        stress, statev, stran = np.asarray(s, dtype=float), np.asarray(sv, dtype=float), stran + de
        times.append((k + 1) * dt)
        stresses.append(stress.copy())
        states.append(statev.copy())
    return np.asarray(times), np.asarray(stresses), np.asarray(states)


def bridge_update(onnx_path: str | Path, props: Sequence[float]):
    """The Python bridge (``fem_bridge.umat.UmatMaterial`` on the onnxruntime backend of the
    same ONNX file) as an ``update`` for :func:`uniaxial_stress_path`; ``props`` as for the UMAT."""
    mat = UmatMaterial(load_backend(onnx_path), props=list(props))

    def update(stress, statev, stran, dstran, time, dtime, temp_end):
        sv = mat.initial_state() if statev is None else statev
        s, sv, C, pnewdt = mat.call(stress, sv, stran, dstran, time=(time, time), dtime=dtime,
                                    temp=temp_end, dtemp=0.0)
        if not pnewdt >= 1.0:
            raise RuntimeError(f"Python bridge: step cut requested at step time {time} s")
        return s, sv, C
    return update


def relative_difference(a, b) -> float:
    """max over the path of |a − b| / |b| (the ‘agreement along the path’ figure)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.abs(b)))


def onnx_flow_stress(onnx_path: str | Path):
    """σ(x) from an exported model through onnxruntime (for the ``*PLASTIC`` table)."""
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float64)})[0]
