"""The strain operator of the scikit-fem host: 8-node hexahedra, 2×2×2 Gauss points, B-bar.

The B-bar (mean-dilatation) operator replaces the volumetric part of B by its element mean,
which avoids volumetric locking of the plastically incompressible flow. Stiffness and internal
force are assembled by hand-vectorised einsums (COO); strain in Voigt order 11, 22, 33, 12, 13, 23
with engineering shear. Units: mm, MPa, N.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class BBarKinematics:
    """Gradients of the 8 shape functions at the 2×2×2 Gauss points of the hexahedra ``t`` (8, ne)
    on the configuration ``p`` (3, nn) mm, the (B-bar) strain operator, weights ``w`` (ne, nq)
    (mm³) and the dof numbering (3 per node) for assembly."""

    def __init__(self, p: np.ndarray, t: np.ndarray, bbar: bool = True):
        from skfem import Basis, ElementHex1, MeshHex  # optional: scikit-fem (the fem extra)
        basis = Basis(MeshHex(p, t, validate=False), ElementHex1(), intorder=3)
        G = np.stack([basis.basis[a][0].grad for a in range(8)], axis=0)     # (8, 3, ne, nq)
        self.G = np.ascontiguousarray(G.transpose(2, 3, 0, 1))             # (ne, nq, 8, 3)
        self.w = np.asarray(basis.dx)                                       # (ne, nq)
        ne, nq = self.w.shape
        B = np.zeros((ne, nq, 6, 8, 3))
        g = self.G
        for i in range(3):
            B[:, :, i, :, i] = g[:, :, :, i]
        B[:, :, 3, :, 0], B[:, :, 3, :, 1] = g[:, :, :, 1], g[:, :, :, 0]    # γ12
        B[:, :, 4, :, 0], B[:, :, 4, :, 2] = g[:, :, :, 2], g[:, :, :, 0]    # γ13
        B[:, :, 5, :, 1], B[:, :, 5, :, 2] = g[:, :, :, 2], g[:, :, :, 1]    # γ23
        if bbar:       # replace the volumetric part by its element mean (mean dilatation)
            gbar = np.einsum("eq,eqaj->eaj", self.w, g) / self.w.sum(axis=1)[:, None, None]
            corr = (gbar[:, None] - g) / 3.0                                 # (ne, nq, 8, 3)
            for i in range(3):
                B[:, :, i] += corr
        self.B = B.reshape(ne, nq, 6, 24)
        dofs = (3 * t.T[:, :, None] + np.arange(3)).reshape(ne, 24)          # (ne, 24)
        self.dofs = dofs
        self.rows = np.repeat(dofs, 24, axis=1).ravel()
        self.cols = np.tile(dofs, (1, 24)).ravel()

    @property
    def n_points(self) -> int:
        return self.w.size

    def strain(self, u: np.ndarray) -> np.ndarray:
        """(N, 6) Voigt strain (engineering shear) of the nodal vector u, N = ne·nq."""
        return np.einsum("eqij,ej->eqi", self.B, u[self.dofs]).reshape(-1, 6)

    def internal_force(self, stress: np.ndarray, ndof: int) -> np.ndarray:
        ne, nq = self.w.shape
        fe = np.einsum("eqij,eqi,eq->ej", self.B, stress.reshape(ne, nq, 6), self.w)
        return np.bincount(self.dofs.ravel(), weights=fe.ravel(), minlength=ndof)

    def stiffness(self, ddsdde: np.ndarray, ndof: int) -> sp.csr_matrix:
        ne, nq = self.w.shape
        C = ddsdde.reshape(ne, nq, 6, 6)
        CB = np.einsum("eqkl,eqlj->eqkj", C, self.B)
        Ke = np.einsum("eqki,eqkj->eij", self.B, CB * self.w[:, :, None, None])
        return sp.coo_matrix((Ke.ravel(), (self.rows, self.cols)), shape=(ndof, ndof)).tocsr()
