"""Flow stress, its derivatives, or a full J2 stress update, evaluated over a mesh file.

The workflow of ``evaluate_mesh``, one module per step: read the mesh (``mesh_io``), resolve the
inputs to per-row arrays (``mesh_fields.InputFields``), gather them per chunk for the mode
(``mesh_modes.FlowStressRows`` / ``UpdateRows``), evaluate each chunk (``mesh_chunks``, here or on
Dask workers: ``dask_runner``), attach the outputs to the mesh (``mesh_fields.attach_field``) and
write it (``mesh_io.write_mesh``).

``evaluate_mesh`` (and ``neumat mesh`` on top of it) reads any format meshio reads (VTU, XDMF,
…), takes the model inputs from point data, cell data or constants, evaluates the flow-stress
backend on every point or cell (or on every quadrature point of every cell, for cell data of
shape (n_cells, n_qp)), and writes the results as new fields of the same location.

Inputs (each a field name or a constant):

| input            | unit | shape per point/cell | mode |
| ---              | ---  | --- | --- |
| temperature      | °C   | scalar            | both |
| strain rate      | 1/s  | scalar            | flow stress only (the update uses Δp/Δt) |
| plastic strain   | -    | scalar            | flow stress; update: initial p when no state field |
| extra NAME       | model's unit | scalar    | both |
| strain increment | -    | 6 (Voigt 11,22,33,12,13,23, engineering shear) | update |
| stress           | MPa  | 6 (Voigt, Abaqus order) | update (default 0) |
| state            | -    | 9 (STATEV layout of ``fem_bridge.conventions``) | update (default 0) |

Cell data may carry several quadrature points per cell: scalars (n_cells, n_qp) or
(n_cells, n_qp, 1), 6-vectors (n_cells, n_qp, 6); the outputs then have the same layout. XDMF
accepts 2-D attributes of widths 1, 2, 3, 6, 9 and 3-D arrays only, so per-quadrature-point
scalars go to XDMF as (n_cells, n_qp, 1) and tensors as (n_cells, n_qp, 6), never (n, 6·n_qp).

Outputs, flow-stress mode:

| field | unit | meaning |
| --- | --- | --- |
| ``flow_stress_MPa``          | MPa | σ_y(p, ε̇, T, extras) after the model's rate floor and box policy |
| ``dflow_stress_d_<feature>`` | MPa per unit of the feature (MPa; MPa·s; MPa/°C; …) | ∂σ_y/∂x_k, 0 for a clamped input |
| ``out_of_box``               | 0/1 | the evaluation lies outside the *data* (``constitutive.coverage``): farther than the threshold from every measured condition in normalised (T, log10 ε̇, extras) space or strain beyond the curves' end (strain from 0 to the first measured point inside); models without recorded conditions: outside the training box, strain from 0 inside |

Outputs, update mode (``strain_increment`` and ``dt`` given; ``fem_bridge.j2.integrate``):

| field | unit | meaning |
| --- | --- | --- |
| ``stress_MPa``                | MPa | stress at the end of the increment, Voigt 11,22,33,12,13,23 |
| ``mises_stress_MPa``          | MPa | von Mises equivalent of ``stress_MPa`` |
| ``equivalent_plastic_strain`` | -   | p at the end of the increment (STATEV 1) |
| ``state``                     | -   | the 9 STATEV of the end of the increment |
| ``status``                    | -   | 0 ok, 1 step cut requested, 2 bad input (state/stress unchanged there) |

(update mode: STATEV 9 of ``state`` counts the plastic increments evaluated outside the data; the
summary reports how many rows it grew in.)

Temperature: °C by default; ``temperature_unit="K"`` or ``"F"`` (``--temperature-unit``) converts
the field or constant first. When most rows lie outside the data in temperature alone (a field in
K read as °C, say), ``MeshEvaluation.warnings`` says so (and ``neumat mesh`` prints it).
Whole-run settings (dt > 0 s, E > 0 MPa, −1 < ν < 0.5, the output format and folder) are checked
before any work: ``NeumatInputError`` (``neumat mesh``: exit 2).
| ``pnewdt``                    | -   | suggested time-step ratio (Abaqus PNEWDT) |

Memory: the rows are processed in chunks (default 2**16 rows, about 70 MB of onnxruntime
working memory); besides the mesh only the input and output fields are held (flow-stress mode:
8 bytes × (3 + F) per row and a 4-byte flag; update mode about 330 bytes per row). ``.vtu`` output
is streamed as raw appended binary, array by array. Measured on 10⁷ vertex points, 3 input fields
(2 shared cores): XDMF/HDF5 in and out 1.16 GB peak RSS, 66 s; VTU in and out 2.23 GB peak,
40 s — that peak is meshio's VTU reader, which holds the whole base64 file text while decoding,
so use XDMF (HDF5) for meshes of 10⁷ points and more. 10⁶ points VTU → VTU: 3.9 s, 0.34 GB.

Dask (``dask=`` / ``neumat mesh --dask local[:N]|ADDRESS``, ``fem_bridge.dask_runner``): the same
per-chunk functions (``mesh_chunks.CHUNK_EVALUATORS``) run on the workers of a Dask cluster,
tasks of many chunks cut at the same chunk boundaries, so the outputs are bitwise those of the
single process; a failed task leaves its rows NaN (update mode: status −1) and adds the field
``evaluation_failed`` (1 there).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from constitutive.errors import NeumatInputError

from . import conventions as cv
from .backends import load_backend
from .dask_runner import DaskRunner
from .mesh_chunks import CHUNK_EVALUATORS
from .mesh_fields import InputFields, RowLayout, attach_field
from .mesh_io import check_mesh_output, read_mesh, write_mesh
from .mesh_modes import (FAILED, FLOW_STRESS, MISES, NOT_EVALUATED, OUT_OF_BOX, PEEQ, PNEWDT, STATE, STATUS,
                         STRESS, FlowStressRows, UpdateRows, derivative_field_name)
from .progress import progress_bar

__all__ = ["evaluate_mesh", "MeshEvaluation", "DEFAULT_CHUNK", "derivative_field_name", "FLOW_STRESS",
           "OUT_OF_BOX", "STRESS", "MISES", "PEEQ", "STATE", "STATUS", "PNEWDT", "FAILED", "NOT_EVALUATED"]

DEFAULT_CHUNK = 2 ** 16


@dataclass
class MeshEvaluation:
    """What ``evaluate_mesh`` did."""
    mode: str                        # "flow_stress" or "update"
    location: str                    # "points" or "cells"
    n_entities: int
    values_per_entity: int
    rows: int
    fields_written: list[str]
    overwritten: list[str]
    n_out_of_box: int = 0            # flow stress: rows outside the data; update: rows whose STATEV 9 grew
    n_nonfinite: int = 0
    warnings: list = field(default_factory=list)      # whole-run warnings (e.g. temperatures off the data)
    status_counts: dict = field(default_factory=dict)
    seconds: float = 0.0
    failures: list = field(default_factory=list)      # fem_bridge.dask_runner.ChunkFailure, Dask only

    @property
    def n_failed(self) -> int:
        return sum(f.stop - f.start for f in self.failures)

    def summary(self) -> str:
        s = (f"{self.mode.replace('_', ' ')}: {self.rows} evaluations on {self.n_entities} "
             f"{self.location}" + (f" × {self.values_per_entity}" if self.values_per_entity > 1 else "")
             + f" in {self.seconds:.2f} s; wrote {', '.join(self.fields_written)}")
        if self.mode == "flow_stress":
            s += f"; {self.n_out_of_box} outside the data (out_of_box = 1); {self.n_nonfinite} non-finite"
        else:
            s += "; status " + ", ".join(f"{cv.STATUS_NAMES.get(k, 'not evaluated')}: {v}"
                                         for k, v in self.status_counts.items())
            s += f"; {self.n_out_of_box} evaluated outside the data (STATEV 9 grew)"
        if self.overwritten:
            s += f"; replaced existing fields {', '.join(self.overwritten)}"
        if self.failures:
            s += (f"; {len(self.failures)} chunk(s) FAILED, {self.n_failed} rows not evaluated "
                  f"(NaN, {FAILED} = 1)")
        return s


def evaluate_mesh(model, mesh_in, mesh_out=None, *, temperature=None, strain_rate=None,
                  plastic_strain=None, extras: dict | None = None, strain_increment=None,
                  dt: float | None = None, stress=None, state=None, E: float | None = None,
                  nu: float | None = None, location: str | None = None, chunk: int = DEFAULT_CHUNK,
                  backend: str = "onnxruntime", progress: bool = False, dask=None,
                  dask_task_rows: int | None = None, temperature_unit: str = "C"):
    """Evaluate the model on every point or cell of ``mesh_in`` and write ``mesh_out``.

    ``model``: an ONNX file path or an already loaded backend (``fem_bridge.backends``).
    ``mesh_in``: a path or a ``meshio.Mesh`` (modified in place when given as an object).
    Inputs: a field name or a number each (see the module docstring for units and shapes).
    Flow-stress mode needs temperature, strain rate, plastic strain and every extra feature of
    the model; update mode (``strain_increment`` and ``dt`` in s given) needs temperature, E (MPa)
    and ν and the extras, and takes stress and state from fields (zero when not given).
    ``dask``: evaluate the chunks on a Dask cluster (``fem_bridge.dask_runner``): ``"local"`` or
    ``"local:N"`` (a LocalCluster of N one-thread worker processes, started and stopped here),
    a scheduler address (``"tcp://host:8786"``) or a ``distributed.Client``. Tasks of
    ``dask_task_rows`` rows (default ``dask_runner.DEFAULT_TASK_ROWS``, rounded up to a multiple of
    ``chunk``) are split at the same ``chunk`` boundaries as here, so the results are bitwise those
    of the single-process run. A failed task does not raise: its rows are NaN (update mode:
    status -1), a field ``evaluation_failed`` marks them and ``MeshEvaluation.failures`` lists the
    row ranges, worker and error; the other tasks' results and the output file are written.
    ``temperature_unit``: "C" (default), "K" or "F" for the temperature field or constant.
    Returns (``MeshEvaluation``, the meshio mesh with the new fields).
    """
    t0 = time.perf_counter()
    cv.to_celsius(0.0, temperature_unit)                  # unknown unit: an error before any work
    if mesh_out is not None:
        check_mesh_output(mesh_out)
    update = strain_increment is not None
    if update:
        _check_update_args(dt, strain_rate, plastic_strain, state, E, nu, temperature)
    runner = _dask_runner(dask, dask_task_rows, backend)
    flow = load_backend(model, kind=backend) if isinstance(model, (str, Path)) else model
    path, mesh = (str(mesh_in), read_mesh(mesh_in)) if isinstance(mesh_in, (str, Path)) else ("mesh", mesh_in)
    chunk = _chunk_rows(chunk)
    names = list(flow.feature_names)
    extras = _checked_extras(names[3:], extras)
    if not update:
        _check_flow_stress_args(dt, stress, state, temperature, strain_rate, plastic_strain)

    specs = {"temperature": temperature, "strain_rate": strain_rate, "plastic_strain": plastic_strain,
             "strain_increment": strain_increment, "stress": stress, "state": state,
             **{f"extra {k}": v for k, v in extras.items()}}
    inp = InputFields(mesh, path, location, specs)
    if update:
        rows = UpdateRows(inp, names[3:], temperature, extras, strain_increment=strain_increment,
                          stress=stress, state=state, plastic_strain=plastic_strain, dt=dt, E=E, nu=nu,
                          temperature_unit=temperature_unit)
    else:
        rows = FlowStressRows(inp, names, temperature, extras, plastic_strain, strain_rate,
                              temperature_unit=temperature_unit)
    lay = inp.layout

    result = MeshEvaluation(rows.mode, lay.location, lay.n, lay.k, lay.rows, [], [])
    result.warnings += _temperature_warning(flow, rows.T, temperature_unit)
    for w in result.warnings:
        warnings.warn(w, RuntimeWarning, stacklevel=2)
    if runner is None:
        _run_here(flow, rows, lay.rows, chunk, progress)
        failed = None
    else:
        failed = _run_on_dask(runner, flow, rows, lay.rows, chunk, progress, result)
    rows.record(result)
    outputs = rows.outputs()
    if failed is not None and result.failures:
        outputs[FAILED] = failed
    _attach_all(mesh, lay, outputs, result)
    result.seconds = time.perf_counter() - t0
    if mesh_out is not None:
        write_mesh(mesh_out, mesh)
        result.seconds = time.perf_counter() - t0
    return result, mesh


# ---------------------------------------------------------------------------------------------
# the steps of evaluate_mesh
# ---------------------------------------------------------------------------------------------
def _dask_runner(dask, task_rows: int | None, backend: str) -> DaskRunner | None:
    """The Dask runner for ``dask`` (spec checked now, connected when the chunks run), or None."""
    if dask is None:
        return None
    runner = DaskRunner(dask, task_rows=task_rows)
    if backend != "onnxruntime":
        raise NeumatInputError(f"--dask runs the onnxruntime backend only, not '{backend}'")
    return runner


def _chunk_rows(chunk) -> int:
    if chunk is None or int(chunk) < 1:
        raise NeumatInputError(f"chunk must be a positive number of rows, not {chunk!r}")
    return int(chunk)


def _checked_extras(extra_names: list[str], extras: dict | None) -> dict:
    """The extra-feature specs, exactly one for each extra feature of the model."""
    extras = dict(extras or {})
    unknown = sorted(set(extras) - set(extra_names))
    if unknown:
        raise NeumatInputError(f"the model has no extra feature {', '.join(unknown)}; its extras: "
                               f"{', '.join(extra_names) or 'none'}")
    missing = [e for e in extra_names if e not in extras]
    if missing:
        raise NeumatInputError(f"the model needs the extra feature(s) {', '.join(missing)}: "
                               f"give --extra NAME=FIELD|VALUE for each")
    return extras


def _temperature_warning(flow, T, unit: str) -> list[str]:
    """A warning when most rows lie outside the data in temperature alone (wrong unit?)."""
    t = np.atleast_1d(np.asarray(T, dtype=float))
    t = t[np.isfinite(t)]
    if t.size == 0:
        return []
    off = flow.temperature_outside(t)
    if off.mean() <= 0.5:
        return []
    cov = getattr(flow, "coverage", None)
    where = (f"measured at {', '.join(f'{v:g}' for v in np.unique(cov.conditions[:, 0]))} °C" if cov is not None
             else f"training box {flow.box_lo[2]:g} … {flow.box_hi[2]:g} °C")
    return [f"{int(off.sum())} of {t.size} rows ({100 * off.mean():.0f} %) have a temperature outside the data "
            f"(model {where}; temperatures here {t.min():g} … {t.max():g} °C after reading them in {unit}): "
            f"is the temperature unit right? (--temperature-unit C|K|F)"]


def _check_update_args(dt, strain_rate, plastic_strain, state, E, nu, temperature) -> None:
    if dt is None or not np.isfinite(dt) or dt <= 0:
        raise NeumatInputError(f"update mode needs the increment time --dt > 0 s, got {dt!r}")
    if E is not None and nu is not None:
        cv.check_material(E, nu, where="update mode (--E MPa, --nu)")
    if strain_rate is not None:
        raise NeumatInputError("update mode takes no strain rate: the rate is Δp/Δt of the update")
    if plastic_strain is not None and state is not None:
        raise NeumatInputError("give either a state field (p is STATEV 1) or a plastic strain, not both")
    if E is None or nu is None:
        raise NeumatInputError("update mode needs the elastic constants --E (MPa) and --nu")
    if temperature is None:
        raise NeumatInputError("update mode needs the temperature (°C): a field name or a value")


def _check_flow_stress_args(dt, stress, state, temperature, strain_rate, plastic_strain) -> None:
    if dt is not None or stress is not None or state is not None:
        raise NeumatInputError("--dt, --stress and --state belong to update mode: give --strain-increment too")
    need = {"temperature": temperature, "strain rate": strain_rate, "plastic strain": plastic_strain}
    lacking = [k for k, v in need.items() if v is None]
    if lacking:
        raise NeumatInputError(f"flow-stress mode needs {', '.join(lacking)} (a field name or a value each)")


def _run_here(flow, rows, n_rows: int, chunk: int, progress: bool) -> None:
    """Every chunk in this process, in order."""
    evaluate = CHUNK_EVALUATORS[rows.evaluator]
    bar = progress_bar(n_rows, progress, "neumat mesh")
    for start in range(0, n_rows, chunk):
        sl = slice(start, min(start + chunk, n_rows))
        rows.store(sl, evaluate(flow, *rows.inputs(sl), **rows.params))
        bar.update(sl.stop - sl.start)
    bar.close()


def _run_on_dask(runner: DaskRunner, flow, rows, n_rows: int, chunk: int, progress: bool,
                 result: MeshEvaluation) -> np.ndarray:
    """The chunks on the Dask cluster; the rows of failed tasks marked. Returns the 0/1 flag per
    row of ``evaluation_failed``."""
    failed = np.zeros(n_rows, dtype=np.int32)
    for f in runner.run(flow, rows.evaluator, rows.params, rows.inputs, rows.store, n_rows, chunk, progress):
        result.failures.append(f)
        sl = slice(f.start, f.stop)
        rows.mark_failed(sl)
        failed[sl] = 1
    return failed


def _attach_all(mesh, lay: RowLayout, outputs: dict[str, np.ndarray], result: MeshEvaluation) -> None:
    for name, arr in outputs.items():
        if attach_field(mesh, lay, name, arr):
            result.overwritten.append(name)
        result.fields_written.append(name)
