"""The per-chunk evaluators of ``evaluate_mesh``: the Python functions that turn one chunk of rows
into results, by mode name in ``CHUNK_EVALUATORS``.

The single process and the Dask workers (``fem_bridge.dask_runner``) run the same functions on the
same chunk boundaries, so their results are bitwise equal. (The Fortran routines of
``fortran_umat`` are the *kernels*; these are plain Python over a flow-stress backend.)
"""
from __future__ import annotations

import numpy as np

from .j2 import integrate


def flow_stress_chunk(flow, x: np.ndarray):
    """One chunk in flow-stress mode. ``x`` (m, F): the model features per row (p, ε̇ in 1/s, T in
    °C, extras). Returns σ_y (m,) in MPa, dσ_y/dx (m, F), out-of-box flags (m,) and the number of
    finite rows. Rows with a non-finite input give NaN and are not flagged out of the box."""
    finite = np.all(np.isfinite(x), axis=1)
    s, d = flow.evaluate(x)
    s, d = np.where(finite, s, np.nan), np.where(finite[:, None], d, np.nan)
    oob = flow.out_of_box(np.where(finite[:, None], x, np.asarray(flow.box_lo)))
    return s, d, oob, int(finite.sum())


def update_chunk(flow, s0, v0, dstran, T, ex, *, dt: float, elastic):
    """One chunk in update mode (``fem_bridge.j2.integrate``): start stress (m, 6) MPa, STATEV
    (m, 9), strain increment (m, 6), temperature (m,) °C, extras (m, E) or None; ``dt`` in s.
    Returns the end stress, STATEV, status and pnewdt."""
    up = integrate(flow, s0, v0, dstran, dt, T, elastic, extras=ex)
    return up.stress, up.statev, up.status, up.pnewdt


# the per-chunk work, by mode name (the Dask workers run the same functions on the same chunks)
CHUNK_EVALUATORS = {"flow_stress": flow_stress_chunk, "update": update_chunk}
