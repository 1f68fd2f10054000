"""Mesh files in and out: ``read_mesh`` / ``write_mesh`` (any meshio format, clear errors) and
``write_vtu_raw``, a streaming VTU writer for large meshes.

XDMF holds 2-D attributes of widths 1, 2, 3, 6, 9 only: ``write_mesh`` stores other widths (e.g.
per-quadrature-point scalars (n_cells, n_qp)) as (n, width, 1) and writes XDMF's HDF5 data
uncompressed. ``.vtu`` with numeric fields is written by ``write_vtu_raw`` (raw appended binary,
array by array) instead of meshio's writer, which holds every array base64-encoded until the end.
"""
from __future__ import annotations

import os
from pathlib import Path

import meshio
import numpy as np
from meshio._vtk_common import meshio_to_vtk_order, meshio_to_vtk_type

from constitutive.errors import NeumatInputError


def read_mesh(path: str | Path):
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


def check_writable_folder(folder: str | Path, what: str) -> None:
    """Before any work: ``folder`` exists as a writable folder or can be created (its first existing
    ancestor is a writable folder). NeumatInputError naming ``what`` otherwise."""
    p = Path(folder).absolute()
    if p.exists() and not p.is_dir():
        raise NeumatInputError(f"{what}: {p} exists and is not a folder")
    q = p
    while not q.exists():
        q = q.parent
    if not q.is_dir():
        raise NeumatInputError(f"{what}: cannot create {p}: {q} is not a folder")
    if not os.access(q, os.W_OK | os.X_OK):
        raise NeumatInputError(f"{what}: folder {q} is not writable")


def check_mesh_output(path: str | Path) -> None:
    """Before any work: the output mesh format (from the suffix) is one meshio writes, and its
    folder is writable."""
    p = Path(path)
    name = p.name.lower()
    if not any(name.endswith(ext) for ext in meshio.extension_to_filetypes):
        raise NeumatInputError(f"--out {p}: unknown mesh format '{p.suffix or p.name}'; use a meshio suffix "
                               f"such as .vtu, .xdmf, .vtk, .msh (all: "
                               f"{', '.join(sorted(meshio.extension_to_filetypes))})")
    check_writable_folder(p.parent, f"--out {p}")


def write_mesh(path: str | Path, mesh) -> None:
    """meshio.write with clear errors. XDMF holds 2-D attributes of widths 1, 2, 3, 6, 9 only:
    other widths (e.g. (n_cells, n_qp) scalars) are written as (n, width, 1). XDMF's HDF5 data is
    written uncompressed (meshio's default gzip level 4 made writing 10⁷ points ten times slower);
    VTU with numeric fields is streamed as raw appended binary."""
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
    if any(b.type not in meshio_to_vtk_type or b.type.startswith("polyhedron") for b in mesh.cells):
        return False
    arrays = list(mesh.point_data.values()) + [b for v in mesh.cell_data.values() for b in v]
    return all(np.asarray(a).dtype in [np.dtype(t) for t in _VTK_TYPES.values()] for a in arrays)


def write_vtu_raw(path: Path, mesh) -> None:
    """VTU with raw appended binary data, written array by array. meshio's own VTU writer keeps
    every array base64-encoded in an XML tree until the end (2.5 GB peak for 10⁷ points with 8
    fields); this one holds no copy beyond one cell block's offsets. meshio reads the result.
    Arrays of more than 2 dimensions are stored flattened per point/cell (as meshio does)."""
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
