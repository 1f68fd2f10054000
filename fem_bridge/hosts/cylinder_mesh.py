"""The mesh of both FE hosts: the 1/8 cylinder (x, y >= 0, 0 <= z <= h0/2) as a three-block
O-grid of the quarter disc extruded in z, 8-node hexahedra. Units: mm.

``quarter_cylinder_mesh`` gives a scikit-fem ``MeshHex``, ``quarter_cylinder_arrays`` plain point
and cell arrays in DOLFINx/basix vertex order; both from the same ``o_grid_blocks``.
"""
from __future__ import annotations

import numpy as np


def o_grid_blocks(radius: float, n_core: int, n_ring: int):
    """The three blocks of the quarter-disc O-grid (x, y >= 0, inside `radius`): square core
    [0, a]² (a = radius/2) and two ring blocks blended linearly from the core edges to the arc,
    as (u values, v values, map (u, v) → (x, y)) on the unit square. Shared by both FE hosts."""
    a = 0.5 * radius
    s = np.linspace(0.0, 1.0, n_core + 1)
    t = np.linspace(0.0, 1.0, n_ring + 1)

    def ring_x(u, v):              # u radial (0 core edge x = a → 1 arc), v along the edge
        th = v * np.pi / 4
        return (1 - u) * a + u * radius * np.cos(th), (1 - u) * a * v + u * radius * np.sin(th)

    def ring_y(u, v):              # u along the edge y = a, v radial
        th = np.pi / 2 - u * np.pi / 4
        return (1 - v) * a * u + v * radius * np.cos(th), (1 - v) * a + v * radius * np.sin(th)

    return [(s, s, lambda u, v: (a * u, a * v)), (t, s, ring_x), (s, t, ring_y)]


def quarter_cylinder_mesh(radius: float, half_height: float, n_core: int, n_ring: int, n_z: int):
    """MeshHex of x, y >= 0, 0 <= z <= half_height inside the cylinder of `radius`: the O-grid of
    :func:`o_grid_blocks` extruded in n_z layers."""
    from skfem import MeshHex  # optional: scikit-fem (the fem extra), the scikit-fem host only
    z = np.linspace(0.0, 1.0, n_z + 1)

    def block(xs, ys, fmap):
        m = MeshHex.init_tensor(xs, ys, z)
        u, v, w = m.p
        x, y = fmap(u, v)
        return MeshHex(np.vstack([x, y, w * half_height]), m.t)

    b0, b1, b2 = (block(*b) for b in o_grid_blocks(radius, n_core, n_ring))
    return b0 + b1 + b2


def quarter_cylinder_arrays(radius: float, half_height: float, n_core: int, n_ring: int, n_z: int):
    """Points (n, 3) and hexahedra (m, 8) (DOLFINx/basix tensor-product vertex order) of the 1/8
    cylinder x, y >= 0, 0 <= z <= half_height: the O-grid of :func:`o_grid_blocks` extruded in
    n_z layers, nodes shared between the blocks merged."""
    z = np.linspace(0.0, 1.0, n_z + 1)

    def block(us, vs, fmap):
        U, V, W = np.meshgrid(us, vs, z, indexing="ij")
        x, y = fmap(U.ravel(), V.ravel())
        pts = np.column_stack([x, y, W.ravel() * half_height])
        nu, nv, nw = len(us), len(vs), len(z)
        idx = np.arange(nu * nv * nw).reshape(nu, nv, nw)
        c = [idx[i:nu - 1 + i, j:nv - 1 + j, k:nw - 1 + k].ravel()
             for k in (0, 1) for j in (0, 1) for i in (0, 1)]
        return pts, np.column_stack(c)

    blocks = [block(*b) for b in o_grid_blocks(radius, n_core, n_ring)]
    pts, cells, off = [], [], 0
    for p, c in blocks:
        pts.append(p)
        cells.append(c + off)
        off += len(p)
    pts, cells = np.vstack(pts), np.vstack(cells)
    key = np.round(pts / (1e-9 * max(radius, half_height))).astype(np.int64)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return pts[first], inverse.ravel()[cells].astype(np.int64)
