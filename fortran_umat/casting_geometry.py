"""A blade-like casting for ``neumat casting``: a thick rectangular root and a thin blade of
airfoil cross-section standing on it, meshed with gmsh (Python API, OpenCASCADE kernel) into
quadratic (C3D10, default) or linear (C3D4) tetrahedra, node order as CalculiX/Abaqus number it.

Units: mm. Axes: x along the chord, y across the blade thickness, z up the blade (the root's
bottom face z = 0 is the face the mould holds).

The blade section is a NACA four-digit airfoil (camber ``camber`` of the chord at ``camber_pos``,
thickness ``thickness`` of the chord), cut at ``te_cut`` of the chord so that the trailing edge is
blunt (about 1 mm thick by default) instead of a wedge that would need tiny elements. Defaults:
root 34 × 16 × 12 mm, blade chord 28 mm, 15 % thick (4.2 mm at most), 36 mm tall — the thick/thin
pair (16 mm against 1–4 mm) that makes a casting cool unevenly.

gmsh is optional (``pip install 'neumat[casting]'``): it is imported inside ``mesh_blade`` only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from constitutive.errors import NeumatInputError

ELEMENT_TYPES = ("C3D10", "C3D4")
# gmsh element type codes and the permutation gmsh → Abaqus/CalculiX node order: gmsh numbers the
# tet10 mid-edge nodes (0-1, 1-2, 2-0, 3-0, 3-2, 3-1), Abaqus (1-2, 2-3, 3-1, 1-4, 2-4, 3-4)
_GMSH_TYPE = {"C3D4": 4, "C3D10": 11}
_GMSH_TO_CCX = {"C3D4": [0, 1, 2, 3], "C3D10": [0, 1, 2, 3, 4, 5, 6, 7, 9, 8]}
# corner-node triples of the four faces of a tetrahedron in ccx's face numbering F1..F4
TET_FACES = ((0, 1, 2), (0, 3, 1), (1, 3, 2), (2, 3, 0))


@dataclass(frozen=True)
class BladeGeometry:
    """Dimensions of the part (mm) and the airfoil section (fractions of the chord)."""
    root_length: float = 34.0      # x
    root_width: float = 16.0       # y
    root_height: float = 12.0      # z
    chord: float = 28.0
    thickness: float = 0.15
    camber: float = 0.04
    camber_pos: float = 0.4
    te_cut: float = 0.92
    blade_height: float = 36.0

    def check(self) -> None:
        for name in ("root_length", "root_width", "root_height", "chord", "blade_height"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise NeumatInputError(f"casting geometry: {name} = {v} mm must be > 0")
        if not 0.04 <= self.thickness <= 0.4:
            raise NeumatInputError(f"casting geometry: thickness {self.thickness} of the chord is out of range [0.04, 0.4]")
        if not 0 <= self.camber <= 0.1 or not 0.1 <= self.camber_pos <= 0.9:
            raise NeumatInputError("casting geometry: camber in [0, 0.1], camber position in [0.1, 0.9]")
        if not 0.6 <= self.te_cut <= 0.98:
            raise NeumatInputError(f"casting geometry: te_cut {self.te_cut} out of range [0.6, 0.98]")
        if self.chord * self.te_cut > self.root_length:
            raise NeumatInputError(f"casting geometry: the blade section ({self.chord * self.te_cut:g} mm) is longer "
                                   f"than the root ({self.root_length:g} mm)")
        if self.chord * self.thickness > self.root_width:
            raise NeumatInputError("casting geometry: the blade is thicker than the root")

    def section(self, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
        """Upper and lower surface points (n, 2) from the leading edge to the cut trailing edge, x
        centred on the root (mm)."""
        beta = np.linspace(0.0, math.acos(1.0 - 2.0 * self.te_cut), n)
        xc = 0.5 * (1.0 - np.cos(beta))                       # cosine spacing, 0 … te_cut
        t, m, p = self.thickness, self.camber, self.camber_pos
        yt = 5 * t * (0.2969 * np.sqrt(xc) - 0.1260 * xc - 0.3516 * xc ** 2 + 0.2843 * xc ** 3 - 0.1036 * xc ** 4)
        if m > 0:
            yc = np.where(xc < p, m / p ** 2 * (2 * p * xc - xc ** 2), m / (1 - p) ** 2 * (1 - 2 * p + 2 * p * xc - xc ** 2))
            dyc = np.where(xc < p, 2 * m / p ** 2 * (p - xc), 2 * m / (1 - p) ** 2 * (p - xc))
        else:
            yc, dyc = np.zeros_like(xc), np.zeros_like(xc)
        th = np.arctan(dyc)
        x0 = -0.5 * self.te_cut * self.chord
        up = np.column_stack([xc - yt * np.sin(th), yc + yt * np.cos(th)]) * self.chord
        lo = np.column_stack([xc + yt * np.sin(th), yc - yt * np.cos(th)]) * self.chord
        ymid = 0.5 * (up[:, 1].max() + lo[:, 1].min())
        up[:, 0] += x0
        lo[:, 0] += x0
        up[:, 1] -= ymid
        lo[:, 1] -= ymid
        return up, lo

    @property
    def height(self) -> float:
        return self.root_height + self.blade_height


@dataclass
class PartMesh:
    """A tetrahedral mesh in CalculiX numbering: node ids 1…n (row i is node i + 1), element ids
    1…m, ``cells`` (m, 4 or 10) 0-based node rows in Abaqus order; ``sets`` node sets (0-based
    rows); ``faces`` the boundary faces as (element row, ccx face number 1…4)."""
    element_type: str
    points: np.ndarray                    # (n, 3) mm
    cells: np.ndarray                     # (m, k) int
    sets: dict[str, np.ndarray] = field(default_factory=dict)
    faces: np.ndarray | None = None       # (f, 2) int
    probes: dict[str, int] = field(default_factory=dict)    # name -> node row
    geometry: BladeGeometry | None = None
    size: float = 0.0

    @property
    def n_nodes(self) -> int:
        return len(self.points)

    @property
    def n_elements(self) -> int:
        return len(self.cells)

    def volumes(self) -> np.ndarray:
        """Volume of each element's corner tetrahedron (mm³; exact for straight-sided C3D10)."""
        x = self.points[self.cells[:, :4]]
        return np.einsum("ij,ij->i", np.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0]), x[:, 3] - x[:, 0]) / 6.0

    def meshio_cell_type(self) -> str:
        return "tetra10" if self.element_type == "C3D10" else "tetra"


def boundary_faces(cells: np.ndarray) -> np.ndarray:
    """(element row, ccx face 1…4) of the faces that belong to one element only."""
    corners = cells[:, :4]
    keys = np.sort(np.concatenate([corners[:, list(f)] for f in TET_FACES]), axis=1)
    owner = np.tile(np.arange(len(cells)), 4)
    face_no = np.repeat(np.arange(1, 5), len(cells))
    _, inv, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    once = counts[inv.ravel()] == 1
    return np.column_stack([owner[once], face_no[once]])


def mesh_blade(geometry: BladeGeometry | None = None, *, element_type: str = "C3D10", size: float = 4.0,
               blade_size: float | None = None, threads: int = 1) -> PartMesh:
    """Mesh the part with gmsh. ``size``: target element size in the root (mm); ``blade_size``:
    in the blade (default min(size, 0.6 × the blade's largest thickness)). Deterministic for the
    same inputs and gmsh version."""
    geometry = geometry or BladeGeometry()
    geometry.check()
    if element_type not in ELEMENT_TYPES:
        raise NeumatInputError(f"--element {element_type}: choose one of {', '.join(ELEMENT_TYPES)}")
    if not (math.isfinite(size) and 0.5 <= size <= 20):
        raise NeumatInputError(f"--size {size} mm: allowed 0.5 … 20 mm")
    t_max = geometry.thickness * geometry.chord
    blade_size = float(blade_size) if blade_size else min(size, 0.6 * t_max)
    if not (math.isfinite(blade_size) and 0.3 <= blade_size <= 20):
        raise NeumatInputError(f"--blade-size {blade_size} mm: allowed 0.3 … 20 mm")
    try:
        import gmsh  # optional: meshing needs the gmsh wheel (extra 'casting')
    except ImportError as exc:                         # pragma: no cover - depends on the install
        raise NeumatInputError("neumat casting needs gmsh: pip install 'gmsh>=4.11' "
                               "(or the project's extra: pip install -e '.[casting]')") from exc
    g = geometry
    gmsh.initialize(["-noenv"], readConfigFiles=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.option.setNumber("General.NumThreads", int(threads))
        gmsh.option.setNumber("Mesh.RandomSeed", 1)
        gmsh.model.add("blade")
        occ = gmsh.model.occ
        root = occ.addBox(-g.root_length / 2, -g.root_width / 2, 0.0, g.root_length, g.root_width, g.root_height)
        up, lo = g.section()
        z0 = g.root_height
        pu = [occ.addPoint(x, y, z0) for x, y in up]
        pl = [pu[0]] + [occ.addPoint(x, y, z0) for x, y in lo[1:]]
        c_up = occ.addSpline(pu)
        c_lo = occ.addSpline(pl)
        c_te = occ.addLine(pu[-1], pl[-1])
        loop = occ.addCurveLoop([c_up, c_te, -c_lo])
        surf = occ.addPlaneSurface([loop])
        ext = occ.extrude([(2, surf)], 0.0, 0.0, g.blade_height)
        blade = [t for d, t in ext if d == 3][0]
        fused, _ = occ.fuse([(3, root)], [(3, blade)])
        occ.synchronize()
        vols = [t for d, t in fused if d == 3]
        if len(vols) != 1:
            raise RuntimeError(f"gmsh: the fused part has {len(vols)} volumes")
        # size field: blade_size above the root's top face, size below
        f = gmsh.model.mesh.field
        box = f.add("Box")
        f.setNumber(box, "VIn", blade_size)
        f.setNumber(box, "VOut", size)
        f.setNumber(box, "XMin", -g.root_length)
        f.setNumber(box, "XMax", g.root_length)
        f.setNumber(box, "YMin", -g.root_width)
        f.setNumber(box, "YMax", g.root_width)
        f.setNumber(box, "ZMin", g.root_height - 0.5 * size)
        f.setNumber(box, "ZMax", 2 * g.height)
        f.setNumber(box, "Thickness", size)
        f.setAsBackgroundMesh(box)
        gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
        gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
        gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
        gmsh.option.setNumber("Mesh.ElementOrder", 2 if element_type == "C3D10" else 1)
        gmsh.option.setNumber("Mesh.SecondOrderLinear", 1)     # straight edges: exact on the flat faces
        gmsh.option.setNumber("Mesh.Algorithm3D", 1)
        gmsh.model.mesh.generate(3)
        tags, coords, _ = gmsh.model.mesh.getNodes()
        etags, enodes = gmsh.model.mesh.getElementsByType(_GMSH_TYPE[element_type])
    finally:
        gmsh.finalize()
    return _assemble(g, element_type, size, np.asarray(tags, dtype=np.int64),
                     np.asarray(coords, dtype=float).reshape(-1, 3), np.asarray(enodes, dtype=np.int64))


def _assemble(g: BladeGeometry, element_type: str, size: float, tags, coords, enodes) -> PartMesh:
    """gmsh nodes/elements → PartMesh: only nodes used by the volume elements, renumbered 1…n."""
    k = len(_GMSH_TO_CCX[element_type])
    conn = enodes.reshape(-1, k)[:, _GMSH_TO_CCX[element_type]]
    used = np.unique(conn)
    row_of_tag = {int(t): i for i, t in enumerate(tags)}
    keep = np.array([row_of_tag[int(t)] for t in used])
    pts = coords[keep]
    new = {int(t): i for i, t in enumerate(used)}
    cells = np.vectorize(new.__getitem__)(conn).astype(np.int64)
    mesh = PartMesh(element_type, pts, cells, geometry=g, size=size)
    vol = mesh.volumes()
    neg = vol < 0
    if np.any(neg):                                   # orient every element positively
        c = cells[neg]
        c[:, [1, 2]] = c[:, [2, 1]]
        if k == 10:                                   # mid-edge nodes follow the swap of corners 2, 3
            c[:, [4, 6, 8, 9, 5]] = c[:, [6, 4, 9, 8, 5]]
        cells[neg] = c
    mesh.faces = boundary_faces(cells)
    tol = 1e-6 * g.height
    z = pts[:, 2]
    mesh.sets["NFIX"] = np.flatnonzero(np.abs(z) <= tol)
    mesh.sets["NALL"] = np.arange(len(pts))
    mesh.probes = _probes(g, pts)
    return mesh


def _probes(g: BladeGeometry, pts: np.ndarray) -> dict[str, int]:
    """Nodes nearest to a few points of interest (history output): blade tip, blade mid-height,
    the blade-root junction at the leading edge, root centre, root bottom corner."""
    up, lo = g.section()
    le = up[0]
    mid_chord = 0.5 * (up[len(up) // 2] + lo[len(lo) // 2])
    targets = {
        "blade_tip": (mid_chord[0], mid_chord[1], g.height),
        "blade_mid": (mid_chord[0], mid_chord[1], g.root_height + 0.5 * g.blade_height),
        "junction_le": (le[0], le[1], g.root_height),
        "root_centre": (0.0, 0.0, 0.5 * g.root_height),
        "root_corner": (g.root_length / 2, g.root_width / 2, 0.0),
    }
    return {k: int(np.argmin(np.sum((pts - np.asarray(v)) ** 2, axis=1))) for k, v in targets.items()}
