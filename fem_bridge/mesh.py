"""Flow stress, its derivatives, or a full J2 stress update, evaluated over a mesh file.

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
| ``out_of_box``               | 0/1 | any input outside the training box (rate below the floor not counted) |

Outputs, update mode (``strain_increment`` and ``dt`` given; ``fem_bridge.j2.integrate``):

| field | unit | meaning |
| --- | --- | --- |
| ``stress_MPa``                | MPa | stress at the end of the increment, Voigt 11,22,33,12,13,23 |
| ``mises_stress_MPa``          | MPa | von Mises equivalent of ``stress_MPa`` |
| ``equivalent_plastic_strain`` | -   | p at the end of the increment (STATEV 1) |
| ``state``                     | -   | the 9 STATEV of the end of the increment |
| ``status``                    | -   | 0 ok, 1 step cut requested, 2 bad input (state/stress unchanged there) |
| ``pnewdt``                    | -   | suggested time-step ratio (Abaqus PNEWDT) |

Memory: the rows are processed in chunks (default 2**16 rows, about 70 MB of onnxruntime
working memory); besides the mesh only the input and output fields are held (flow-stress mode:
8 bytes × (3 + F) per row and a 4-byte flag; update mode about 330 bytes per row). ``.vtu`` output
is streamed as raw appended binary, array by array. Measured on 10⁷ vertex points, 3 input fields
(2 shared cores): XDMF/HDF5 in and out 1.16 GB peak RSS, 66 s; VTU in and out 2.23 GB peak,
40 s — that peak is meshio's VTU reader, which holds the whole base64 file text while decoding,
so use XDMF (HDF5) for meshes of 10⁷ points and more. 10⁶ points VTU → VTU: 3.9 s, 0.34 GB.

Dask (``dask=`` / ``neumat mesh --dask local[:N]|ADDRESS``, ``fem_bridge.dask_runner``): the same
per-chunk functions (``KERNELS``) run on the workers of a Dask cluster, tasks of many chunks cut at
the same chunk boundaries, so the outputs are bitwise those of the single process; a failed task
leaves its rows NaN (update mode: status −1) and adds the field ``evaluation_failed`` (1 there).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from constitutive.errors import NeumatInputError

from . import conventions as cv

DEFAULT_CHUNK = 2 ** 16
FLOW_STRESS = "flow_stress_MPa"
OUT_OF_BOX = "out_of_box"
STRESS, MISES, PEEQ, STATE, STATUS, PNEWDT = (
    "stress_MPa", "mises_stress_MPa", "equivalent_plastic_strain", "state", "status", "pnewdt")
FAILED = "evaluation_failed"      # written only when chunks failed on a Dask cluster (1 = failed row)
NOT_EVALUATED = -1                # update-mode status of the rows of a failed chunk


def derivative_field_name(feature: str) -> str:
    return f"dflow_stress_d_{feature}"


# ---------------------------------------------------------------------------------------------
# reading and locating fields
# ---------------------------------------------------------------------------------------------
def read_mesh(path: str | Path):
    import meshio
    p = Path(path)
    if not p.is_file():
        raise NeumatInputError(f"mesh file {p} not found")
    try:
        return meshio.read(p)
    except (Exception, SystemExit) as exc:   # meshio raises many types, and exits on unreadable files
        detail = f"{type(exc).__name__}: {exc}" if not isinstance(exc, SystemExit) else "not a readable mesh"
        raise NeumatInputError(f"cannot read mesh {p} ({detail}; meshio formats by suffix: "
                               ".vtu, .vtk, .xdmf, .msh, ...)") from None


XDMF_WIDTHS = (1, 2, 3, 6, 9)


def write_mesh(path: str | Path, mesh) -> None:
    """meshio.write with clear errors. XDMF holds 2-D attributes of widths 1, 2, 3, 6, 9 only:
    other widths (e.g. (n_cells, n_qp) scalars) are written as (n, width, 1). XDMF's HDF5 data is
    written uncompressed (meshio's default gzip level 4 made writing 10⁷ points ten times slower);
    VTU with numeric fields is streamed as raw appended binary."""
    import meshio
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix.lower() in (".xdmf", ".xmf"):
        for name, blocks in mesh.cell_data.items():
            mesh.cell_data[name] = [b[:, :, None] if (b.ndim == 2 and b.shape[1] not in XDMF_WIDTHS) else b
                                    for b in blocks]
        for name, a in mesh.point_data.items():
            if a.ndim == 2 and a.shape[1] not in XDMF_WIDTHS:
                mesh.point_data[name] = a[:, :, None]
    try:
        if p.suffix.lower() == ".vtu" and _streamable(mesh):
            write_vtu_raw(p, mesh)
        elif p.suffix.lower() in (".xdmf", ".xmf"):
            meshio.xdmf.write(p, mesh, compression=None)
        else:
            meshio.write(p, mesh)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NeumatInputError(f"cannot write mesh {p}: {type(exc).__name__}: {exc}") from None


_VTK_TYPES = {"Float64": np.float64, "Float32": np.float32, "Int64": np.int64, "Int32": np.int32,
              "Int16": np.int16, "Int8": np.int8, "UInt64": np.uint64, "UInt32": np.uint32,
              "UInt16": np.uint16, "UInt8": np.uint8}


def _vtk_type(a: np.ndarray) -> str:
    for name, t in _VTK_TYPES.items():
        if a.dtype == t:
            return name
    raise TypeError(f"array of dtype {a.dtype} cannot go to VTU")


def _streamable(mesh) -> bool:
    from meshio._vtk_common import meshio_to_vtk_type
    if any(b.type not in meshio_to_vtk_type or b.type.startswith("polyhedron") for b in mesh.cells):
        return False
    arrays = list(mesh.point_data.values()) + [b for v in mesh.cell_data.values() for b in v]
    return all(np.asarray(a).dtype in [np.dtype(t) for t in _VTK_TYPES.values()] for a in arrays)


def write_vtu_raw(path: Path, mesh) -> None:
    """VTU with raw appended binary data, written array by array. meshio's own VTU writer keeps
    every array base64-encoded in an XML tree until the end (2.5 GB peak for 10⁷ points with 8
    fields); this one holds no copy beyond one cell block's offsets. meshio reads the result.
    Arrays of more than 2 dimensions are stored flattened per point/cell (as meshio does)."""
    from meshio._vtk_common import meshio_to_vtk_order, meshio_to_vtk_type
    blocks = []                          # (header xml, writer callable) in order of the offsets
    offset = 0

    def add(attrs: str, arr_or_parts) -> str:
        nonlocal offset
        parts = arr_or_parts if isinstance(arr_or_parts, list) else [arr_or_parts]
        nbytes = sum(int(a.nbytes) for a in parts)
        tag = f'<DataArray {attrs} format="appended" offset="{offset}"/>'
        blocks.append(parts)
        offset += 8 + nbytes
        return tag

    def flat(a):
        a = np.asarray(a)
        return a.reshape(len(a), -1) if a.ndim > 1 else a

    def comps(a):
        return f' NumberOfComponents="{a.shape[1]}"' if a.ndim == 2 else ""

    pts = np.asarray(mesh.points)
    if pts.shape[1] == 2:
        pts = np.column_stack([pts, np.zeros(len(pts))])
    n_cells = sum(len(b.data) for b in mesh.cells)
    xml = ['<?xml version="1.0"?>',
           '<VTKFile type="UnstructuredGrid" version="1.0" byte_order="LittleEndian" header_type="UInt64">',
           "<UnstructuredGrid>", f'<Piece NumberOfPoints="{len(pts)}" NumberOfCells="{n_cells}">',
           "<Points>", add(f'type="{_vtk_type(pts)}" NumberOfComponents="3"', pts), "</Points>", "<Cells>"]
    conn, offs, types, end = [], [], [], 0
    for b in mesh.cells:
        d = np.asarray(b.data, dtype=np.int64)
        order = meshio_to_vtk_order(b.type)
        conn.append(d[:, order] if order is not None else d)
        offs.append(end + d.shape[1] * np.arange(1, len(d) + 1, dtype=np.int64))
        end += d.size
        types.append(np.full(len(d), meshio_to_vtk_type[b.type], dtype=np.uint8))
    xml += [add('type="Int64" Name="connectivity"', conn), add('type="Int64" Name="offsets"', offs),
            add('type="UInt8" Name="types"', types), "</Cells>", "<PointData>"]
    for name, a in mesh.point_data.items():
        a = flat(a)
        xml.append(add(f'type="{_vtk_type(a)}" Name="{name}"{comps(a)}', a))
    xml += ["</PointData>", "<CellData>"]
    for name, bl in mesh.cell_data.items():
        parts = [flat(x) for x in bl]
        xml.append(add(f'type="{_vtk_type(parts[0])}" Name="{name}"{comps(parts[0])}', parts))
    xml += ["</CellData>", "</Piece>", "</UnstructuredGrid>", '<AppendedData encoding="raw">']
    with open(path, "wb") as fh:
        fh.write(("\n".join(xml) + "\n_").encode())
        for parts in blocks:
            fh.write(np.uint64(sum(int(a.nbytes) for a in parts)).tobytes())
            for a in parts:
                fh.write(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False).data)
        fh.write(b"\n</AppendedData>\n</VTKFile>\n")


def _available(mesh) -> str:
    pts = ", ".join(f"{k} {tuple(np.shape(v))}" for k, v in mesh.point_data.items()) or "none"
    cells = ", ".join(f"{k} {tuple(np.shape(v[0])) if len(v) == 1 else [tuple(np.shape(b)) for b in v]}"
                      for k, v in mesh.cell_data.items()) or "none"
    return f"point data: {pts}; cell data: {cells}"


def _parse_constant(spec) -> float | None:
    if isinstance(spec, (int, float, np.floating, np.integer)):
        return float(spec)
    try:
        return float(spec)
    except (TypeError, ValueError):
        return None


@dataclass
class _Layout:
    """Where the evaluation happens: 'points' or 'cells', n entities × k values per entity."""
    location: str
    n: int
    k: int | None = None              # values per entity (quadrature points); None = not yet fixed
    scalar_1d: bool = True            # scalars were given as (n,) (written back as (n,))
    block_sizes: list[int] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.n * (self.k or 1)


class _Inputs:
    """Resolves FIELD|VALUE specs to flat per-row arrays (views where possible)."""

    def __init__(self, mesh, path: str, location: str | None, specs: dict[str, object]):
        self.mesh, self.path = mesh, path
        fields = {name: s for name, s in specs.items() if s is not None and self._is_field(s)}
        locs = {name: self._location_of(name, str(s)) for name, s in fields.items()}
        wanted = set(locs.values())
        if location is None:
            if len(wanted) > 1:
                detail = ", ".join(f"{n}='{fields[n]}' ({l} data)" for n, l in locs.items())
                raise NeumatInputError(f"{path}: the input fields live at different locations ({detail}); "
                                       "all must be point data or all cell data")
            location = wanted.pop() if wanted else "points"
        elif wanted - {location}:
            bad = [f"{n}='{fields[n]}'" for n, l in locs.items() if l != location]
            raise NeumatInputError(f"{path}: {', '.join(bad)} is not {location[:-1]} data; {_available(mesh)}")
        if location == "points":
            self.layout = _Layout("points", len(mesh.points))
        elif location == "cells":
            sizes = [len(b.data) for b in mesh.cells]
            self.layout = _Layout("cells", int(sum(sizes)), block_sizes=sizes)
        else:
            raise NeumatInputError(f"location must be 'points' or 'cells', not '{location}'")

    def _is_field(self, spec) -> bool:
        if isinstance(spec, str) and (spec in self.mesh.point_data or spec in self.mesh.cell_data):
            return True
        if _parse_constant(spec) is not None:
            return False
        if not isinstance(spec, str):
            raise NeumatInputError(f"input {spec!r} is neither a field name nor a number")
        return True

    def _location_of(self, what: str, name: str) -> str:
        if name in self.mesh.point_data:
            return "points"
        if name in self.mesh.cell_data:
            return "cells"
        raise NeumatInputError(f"{self.path}: no field '{name}' for the {what.replace('_', ' ')}; "
                               f"available {_available(self.mesh)}")

    def _raw(self, name: str) -> np.ndarray:
        if self.layout.location == "points":
            return np.asarray(self.mesh.point_data[name])
        blocks = [np.asarray(b) for b in self.mesh.cell_data[name]]
        trailing = {b.shape[1:] for b in blocks}
        if len(trailing) > 1:
            raise NeumatInputError(f"{self.path}: cell field '{name}' has different shapes per cell block "
                                   f"({sorted(trailing)})")
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)

    def _fix_k(self, name: str, k: int, one_d: bool) -> None:
        lay = self.layout
        if lay.k is None:
            lay.k, lay.scalar_1d = k, one_d
        elif lay.k != k:
            raise NeumatInputError(f"{self.path}: field '{name}' has {k} value(s) per "
                                   f"{lay.location[:-1]}, other inputs {lay.k}")

    def scalar(self, what: str, spec) -> np.ndarray | float:
        """A flat (rows,) float array view, or a float for a constant."""
        c = None if self._is_field(spec) else _parse_constant(spec)
        if c is not None:
            if not np.isfinite(c):
                raise NeumatInputError(f"{what.replace('_', ' ')} constant {spec!r} is not finite")
            return c
        name = str(spec)
        a = self._rows_checked(name)
        n = self.layout.n
        if a.ndim == 1:
            self._fix_k(name, 1, True)
        elif a.ndim == 2 and (a.shape[1] == 1 or self.layout.location == "cells"):
            self._fix_k(name, a.shape[1], a.shape[1] == 1 and self.layout.scalar_1d)
        elif a.ndim == 3 and a.shape[2] == 1 and self.layout.location == "cells":
            self._fix_k(name, a.shape[1], False)          # XDMF's form of per-point scalars
        else:
            raise NeumatInputError(f"{self.path}: field '{name}' for the {what.replace('_', ' ')} has shape "
                                   f"{a.shape}; expected a scalar per {self.layout.location[:-1]}: ({n},)"
                                   + (f", ({n}, n_qp) or ({n}, n_qp, 1)" if self.layout.location == "cells" else ""))
        return np.asarray(a, dtype=float).reshape(-1)

    def _rows_checked(self, name: str) -> np.ndarray:
        """The raw field, after checking it has one row per point/cell of the mesh."""
        a = self._raw(name)
        if a.shape[0] != self.layout.n:
            raise NeumatInputError(f"{self.path}: field '{name}' has {a.shape[0]} rows, the mesh has "
                                   f"{self.layout.n} {self.layout.location}")
        return a

    def tensor(self, what: str, spec, width: int) -> np.ndarray:
        """A (rows, width) float array for a field of `width` components per value."""
        if not self._is_field(spec):
            raise NeumatInputError(f"the {what.replace('_', ' ')} must be a field name "
                                   f"({width} components per value), not {spec!r}")
        name = str(spec)
        a = self._rows_checked(name)
        n = self.layout.n
        if a.ndim == 2 and a.shape[1] == width:
            self._fix_k(name, 1, self.layout.scalar_1d)
        elif a.ndim == 3 and a.shape[2] == width and self.layout.location == "cells":
            self._fix_k(name, a.shape[1], False)
        else:
            expect = f"({n}, {width})" + (f" or ({n}, n_qp, {width})" if self.layout.location == "cells" else "")
            raise NeumatInputError(f"{self.path}: field '{name}' for the {what.replace('_', ' ')} has shape "
                                   f"{a.shape}; expected {expect}")
        return np.asarray(a, dtype=float).reshape(-1, width)


# ---------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------
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
    n_out_of_box: int = 0
    n_nonfinite: int = 0
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
            s += f"; {self.n_out_of_box} outside the training box; {self.n_nonfinite} non-finite"
        else:
            s += "; status " + ", ".join(f"{cv.STATUS_NAMES.get(k, 'not evaluated')}: {v}"
                                         for k, v in self.status_counts.items())
        if self.overwritten:
            s += f"; replaced existing fields {', '.join(self.overwritten)}"
        if self.failures:
            s += (f"; {len(self.failures)} chunk(s) FAILED, {self.n_failed} rows not evaluated "
                  f"(NaN, {FAILED} = 1)")
        return s


def _progress(total: int, enabled: bool, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:          # tqdm is optional; no bar then
        class _Null:
            def update(self, n):
                pass

            def close(self):
                pass
        return _Null()
    return tqdm(total=total, disable=not enabled, desc=desc, unit="pt", unit_scale=True, leave=False)


def _take(src, sl: slice, m: int) -> np.ndarray:
    return np.full(m, src) if isinstance(src, float) else src[sl]


def _flow_stress_kernel(flow, x: np.ndarray):
    """One chunk in flow-stress mode: σ (m,), dσ/dx (m, F), out-of-box flags (m,), finite rows.
    Rows with a non-finite input give NaN and are not flagged out of the box."""
    finite = np.all(np.isfinite(x), axis=1)
    s, d = flow.evaluate(x)
    s, d = np.where(finite, s, np.nan), np.where(finite[:, None], d, np.nan)
    oob = flow.out_of_box(np.where(finite[:, None], x, np.asarray(flow.box_lo)))
    return s, d, oob, int(finite.sum())


def _update_kernel(flow, s0, v0, dstran, T, ex, *, dt: float, elastic):
    """One chunk in update mode (``fem_bridge.j2.integrate``): stress, STATEV, status, pnewdt."""
    from .j2 import integrate
    up = integrate(flow, s0, v0, dstran, dt, T, elastic, extras=ex)
    return up.stress, up.statev, up.status, up.pnewdt


# the per-chunk work, by name (the Dask workers run the same functions on the same chunks)
KERNELS = {"flow_stress": _flow_stress_kernel, "update": _update_kernel}


def evaluate_mesh(model, mesh_in, mesh_out=None, *, temperature=None, strain_rate=None,
                  plastic_strain=None, extras: dict | None = None, strain_increment=None,
                  dt: float | None = None, stress=None, state=None, E: float | None = None,
                  nu: float | None = None, location: str | None = None, chunk: int = DEFAULT_CHUNK,
                  backend: str = "onnxruntime", progress: bool = False, dask=None,
                  dask_task_rows: int | None = None):
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
    Returns (``MeshEvaluation``, the meshio mesh with the new fields).
    """
    t0 = time.perf_counter()
    runner = None
    if dask is not None:
        from .dask_runner import DaskRunner
        runner = DaskRunner(dask, task_rows=dask_task_rows)      # checks the spec; connects later
        if backend != "onnxruntime":
            raise NeumatInputError(f"--dask runs the onnxruntime backend only, not '{backend}'")
    if isinstance(model, (str, Path)):
        from .backends import load_backend
        flow = load_backend(model, kind=backend)
    else:
        flow = model
    if isinstance(mesh_in, (str, Path)):
        path = str(mesh_in)
        mesh = read_mesh(mesh_in)
    else:
        path, mesh = "mesh", mesh_in
    if chunk is None or int(chunk) < 1:
        raise NeumatInputError(f"chunk must be a positive number of rows, not {chunk!r}")
    chunk = int(chunk)

    names = list(flow.feature_names)
    extra_names = names[3:]
    extras = dict(extras or {})
    unknown = sorted(set(extras) - set(extra_names))
    if unknown:
        raise NeumatInputError(f"the model has no extra feature {', '.join(unknown)}; its extras: "
                               f"{', '.join(extra_names) or 'none'}")
    missing = [e for e in extra_names if e not in extras]
    if missing:
        raise NeumatInputError(f"the model needs the extra feature(s) {', '.join(missing)}: "
                               f"give --extra NAME=FIELD|VALUE for each")
    update = strain_increment is not None
    if update:
        if dt is None or not np.isfinite(dt) or dt <= 0:
            raise NeumatInputError(f"update mode needs the increment time --dt > 0 s, got {dt!r}")
        if strain_rate is not None:
            raise NeumatInputError("update mode takes no strain rate: the rate is Δp/Δt of the update")
        if plastic_strain is not None and state is not None:
            raise NeumatInputError("give either a state field (p is STATEV 1) or a plastic strain, not both")
        if E is None or nu is None:
            raise NeumatInputError("update mode needs the elastic constants --E (MPa) and --nu")
        if temperature is None:
            raise NeumatInputError("update mode needs the temperature (°C): a field name or a value")
    else:
        if dt is not None or stress is not None or state is not None:
            raise NeumatInputError("--dt, --stress and --state belong to update mode: give --strain-increment too")
        need = {"temperature": temperature, "strain rate": strain_rate, "plastic strain": plastic_strain}
        lacking = [k for k, v in need.items() if v is None]
        if lacking:
            raise NeumatInputError(f"flow-stress mode needs {', '.join(lacking)} (a field name or a value each)")

    specs = {"temperature": temperature, "strain_rate": strain_rate, "plastic_strain": plastic_strain,
             "strain_increment": strain_increment, "stress": stress, "state": state,
             **{f"extra {k}": v for k, v in extras.items()}}
    inp = _Inputs(mesh, path, location, specs)
    lay = inp.layout

    T = inp.scalar("temperature", temperature)
    X = {e: inp.scalar(f"extra {e}", extras[e]) for e in extra_names}
    if update:
        dstran = inp.tensor("strain_increment", strain_increment, cv.NTENS)
        sig0 = inp.tensor("stress", stress, cv.NTENS) if stress is not None else None
        sv0 = inp.tensor("state", state, cv.NSTATV) if state is not None else None
        p0 = inp.scalar("plastic_strain", plastic_strain) if plastic_strain is not None else None
    else:
        P = inp.scalar("plastic_strain", plastic_strain)
        R = inp.scalar("strain_rate", strain_rate)
    if lay.k is None:
        lay.k = 1
    rows = lay.rows

    result = MeshEvaluation("update" if update else "flow_stress", lay.location, lay.n, lay.k, rows, [], [])
    if not update:
        F = len(names)
        sig_out = np.empty(rows)
        d_out = np.empty((F, rows))
        oob = np.zeros(rows, dtype=np.int32)
        kernel, params = "flow_stress", {}

        def inputs(sl: slice) -> tuple:
            m = sl.stop - sl.start
            x = np.empty((m, F))
            x[:, 0] = _take(P, sl, m)
            x[:, 1] = _take(R, sl, m)
            x[:, 2] = _take(T, sl, m)
            for j, e in enumerate(extra_names):
                x[:, 3 + j] = _take(X[e], sl, m)
            return (x,)

        def store(sl: slice, out: tuple) -> None:
            s, d, o, n_finite = out
            sig_out[sl] = s
            d_out[:, sl] = d.T
            oob[sl] = o
            result.n_nonfinite += int((sl.stop - sl.start) - n_finite)

        def mark_failed(sl: slice) -> None:
            sig_out[sl] = np.nan
            d_out[:, sl] = np.nan
            oob[sl] = 0
    else:
        from .j2 import Elasticity
        kernel, params = "update", {"dt": float(dt), "elastic": Elasticity(float(E), float(nu))}
        sig_new = np.empty((rows, cv.NTENS))
        sv_new = np.empty((rows, cv.NSTATV))
        status = np.empty(rows, dtype=np.int32)
        pnewdt = np.empty(rows)

        def inputs(sl: slice) -> tuple:
            m = sl.stop - sl.start
            s0 = sig0[sl] if sig0 is not None else np.zeros((m, cv.NTENS))
            if sv0 is not None:
                v0 = sv0[sl]
            else:
                v0 = np.zeros((m, cv.NSTATV))
                if p0 is not None:
                    v0[:, cv.SV_P] = _take(p0, sl, m)
            ex = None
            if extra_names:
                ex = np.stack([_take(X[e], sl, m) for e in extra_names], axis=1)
            return (s0, v0, dstran[sl], _take(T, sl, m), ex)

        def store(sl: slice, out: tuple) -> None:
            sig_new[sl], sv_new[sl], status[sl], pnewdt[sl] = out

        def mark_failed(sl: slice) -> None:
            sig_new[sl], sv_new[sl], pnewdt[sl] = np.nan, np.nan, np.nan
            status[sl] = NOT_EVALUATED

    if runner is None:
        bar = _progress(rows, progress, "neumat mesh")
        for start in range(0, rows, chunk):
            sl = slice(start, min(start + chunk, rows))
            store(sl, KERNELS[kernel](flow, *inputs(sl), **params))
            bar.update(sl.stop - sl.start)
        bar.close()
    else:
        failed = np.zeros(rows, dtype=np.int32)
        for f in runner.run(flow, kernel, params, inputs, store, rows, chunk, progress):
            result.failures.append(f)
            sl = slice(f.start, f.stop)
            mark_failed(sl)
            failed[sl] = 1

    if not update:
        result.n_out_of_box = int(oob.sum())
        outputs = {FLOW_STRESS: sig_out, OUT_OF_BOX: oob}
        for j, nm in enumerate(names):
            outputs[derivative_field_name(nm)] = d_out[j]
    else:
        s = sig_new
        mises = np.sqrt(0.5 * ((s[:, 0] - s[:, 1]) ** 2 + (s[:, 1] - s[:, 2]) ** 2 + (s[:, 2] - s[:, 0]) ** 2)
                        + 3.0 * (s[:, 3] ** 2 + s[:, 4] ** 2 + s[:, 5] ** 2))
        codes, counts = np.unique(status, return_counts=True)
        result.status_counts = {int(c): int(n) for c, n in zip(codes, counts)}
        outputs = {STRESS: sig_new, MISES: mises, PEEQ: sv_new[:, cv.SV_P].copy(), STATE: sv_new,
                   STATUS: status, PNEWDT: pnewdt}
    if result.failures:
        outputs[FAILED] = failed

    for name, arr in outputs.items():
        _attach(mesh, lay, name, arr, result)
    result.seconds = time.perf_counter() - t0
    if mesh_out is not None:
        write_mesh(mesh_out, mesh)
        result.seconds = time.perf_counter() - t0
    return result, mesh


def _attach(mesh, lay: _Layout, name: str, arr: np.ndarray, result: MeshEvaluation) -> None:
    """Reshape a flat (rows, ...) result to the input layout and store it on the mesh."""
    trailing = arr.shape[1:]
    if lay.k == 1:
        shaped = arr.reshape((lay.n,) + trailing) if (trailing or lay.scalar_1d) else arr.reshape(lay.n, 1)
    else:
        shaped = arr.reshape((lay.n, lay.k) + trailing)
    if name in mesh.point_data or name in mesh.cell_data:
        result.overwritten.append(name)
        mesh.point_data.pop(name, None)
        mesh.cell_data.pop(name, None)
    if lay.location == "points":
        mesh.point_data[name] = shaped
    else:
        bounds = np.cumsum([0] + lay.block_sizes)
        mesh.cell_data[name] = [shaped[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    result.fields_written.append(name)
