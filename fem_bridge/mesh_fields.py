"""The mesh fields of ``evaluate_mesh``: model inputs looked up, results attached.

``InputFields`` resolves each input spec (a point/cell field name or a constant) to a flat
per-row array; its ``RowLayout`` says where the rows are (points or cells, n entities × k values
per entity, k > 1 for cell data of several quadrature points) and ``attach_field`` shapes a flat
result back to that layout. Shapes accepted: see ``fem_bridge.mesh``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from constitutive.errors import NeumatInputError


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
class RowLayout:
    """Where the evaluation happens: 'points' or 'cells', n entities × k values per entity."""
    location: str
    n: int
    k: int | None = None              # values per entity (quadrature points); None = not yet fixed
    scalar_1d: bool = True            # scalars were given as (n,) (written back as (n,))
    block_sizes: list[int] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.n * (self.k or 1)


class InputFields:
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
            self.layout = RowLayout("points", len(mesh.points))
        elif location == "cells":
            sizes = [len(b.data) for b in mesh.cells]
            self.layout = RowLayout("cells", int(sum(sizes)), block_sizes=sizes)
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

    def finish(self) -> RowLayout:
        """The layout once every input is read (one value per entity when all were constants)."""
        if self.layout.k is None:
            self.layout.k = 1
        return self.layout


def attach_field(mesh, lay: RowLayout, name: str, arr: np.ndarray) -> bool:
    """Reshape a flat (rows, ...) result to the input layout and store it on the mesh as point or
    cell data ``name``. Returns True when a field of that name was there (and is replaced)."""
    trailing = arr.shape[1:]
    if lay.k == 1:
        shaped = arr.reshape((lay.n,) + trailing) if (trailing or lay.scalar_1d) else arr.reshape(lay.n, 1)
    else:
        shaped = arr.reshape((lay.n, lay.k) + trailing)
    replaced = name in mesh.point_data or name in mesh.cell_data
    if replaced:
        mesh.point_data.pop(name, None)
        mesh.cell_data.pop(name, None)
    if lay.location == "points":
        mesh.point_data[name] = shaped
    else:
        bounds = np.cumsum([0] + lay.block_sizes)
        mesh.cell_data[name] = [shaped[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    return replaced
