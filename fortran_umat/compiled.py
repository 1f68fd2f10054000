"""The generated Fortran, loaded with ctypes: a flow-stress backend for the Python bridge and a
one-point UMAT caller (used by the tests to compare the Fortran UMAT with the Python one).

``CompiledBackend(onnx_path)`` builds (or reuses from the cache) the library of
:func:`fortran_umat.build.build_umat` and evaluates through ``neumat_flow_batch``; its
metadata (feature names, box, rate floor, policy) comes from the ONNX file itself.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from constitutive.errors import NeumatInputError
from fem_bridge import conventions as cv

from .build import BuildResult, build_umat

from fem_bridge.backends import FlowStressBackend

_D = ctypes.POINTER(ctypes.c_double)
_I = ctypes.POINTER(ctypes.c_int)


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(_D)


class CompiledBackend(FlowStressBackend):
    """Flow stress σ(x) and dσ/dx from the gfortran-compiled translation of the ONNX graph."""

    kind = "compiled"

    def __init__(self, onnx_path, build: BuildResult | None = None):
        self.path = Path(onnx_path)
        self.build = build or build_umat(self.path)
        info = self.build.info
        self.feature_names = list(info["feature_names"])
        self.feature_units = info.get("feature_units")
        self.box_lo = np.asarray(info["box_lo"], dtype=float)
        self.box_hi = np.asarray(info["box_hi"], dtype=float)
        self.rate_floor = float(info["rate_floor"])
        self.box_policy = info["box_policy"]
        self.metadata = info.get("metadata", {})
        self._lib = ctypes.CDLL(str(self.build.library))
        f = self._lib.neumat_flow_batch
        f.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        f.restype = None
        self._batch = f
        self._point = self._lib.neumat_flow
        self._point.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self._point.restype = None

    def evaluate(self, x) -> tuple[np.ndarray, np.ndarray]:
        """σ (N,) in MPa and dσ/dx (N, F), input policy of the model applied (as in the graph)."""
        x = self.check_x(np.atleast_2d(np.asarray(x, dtype=np.float64)))
        if x.shape[0] == 0:
            return np.zeros(0), np.zeros((0, self.n_features))
        return self._evaluate(x)

    def _evaluate(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = x.shape[0]
        sigma = np.empty(n)
        dsig = np.empty((n, self.n_features))
        self._batch(n, x.ctypes.data, sigma.ctypes.data, dsig.ctypes.data)
        return sigma, dsig

    def evaluate_point(self, x) -> tuple[float, np.ndarray]:
        """One point through the one-point kernel (the one the UMAT calls): (σ, dσ/dx (F,))."""
        x = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
        if x.size != self.n_features:
            raise NeumatInputError(f"x has {x.size} values; expected {self.n_features}: {', '.join(self.feature_names)}")
        sigma = ctypes.c_double()
        dsig = np.empty(self.n_features)
        self._point(x.ctypes.data, ctypes.byref(sigma), dsig.ctypes.data)
        return sigma.value, dsig

    def __call__(self, x) -> np.ndarray:
        return self.evaluate(x)[0]

    def __repr__(self) -> str:
        return f"CompiledBackend({str(self.path)!r}, library={str(self.build.library)!r})"


class CompiledUmat:
    """Call the compiled ``umat_`` for one integration point with the Abaqus argument list.

    ``call`` mirrors ``fem_bridge.umat.UmatMaterial.call``: start-of-increment stress (6),
    statev (NSTATV), total strain and its increment (6, engineering shear), time (2), dtime,
    temp, dtemp → (stress, statev, ddsdde (6, 6), pnewdt). Inputs are not modified."""

    def __init__(self, library, props, nstatv: int = cv.NSTATV, cmname: str = "@ABAQUS_NEUMAT"):
        self._lib = ctypes.CDLL(str(library))
        self._f = self._lib.umat_
        self._f.restype = None
        self.props = np.ascontiguousarray(props, dtype=np.float64)
        self.nstatv = int(nstatv)
        self.cmname = cmname.encode().ljust(80)[:80]

    def call(self, stress, statev, stran, dstran, time=(0.0, 0.0), dtime=1.0, temp=20.0, dtemp=0.0,
             kinc: int = 1, pnewdt: float = 1.0, noel: int = 1, npt: int = 1):
        stress = np.array(stress, dtype=np.float64, copy=True)
        statev = np.array(statev, dtype=np.float64, copy=True)
        ddsdde = np.zeros((6, 6))                   # Fortran (ntens, ntens): C order = transpose
        stran = np.ascontiguousarray(stran, dtype=np.float64)
        dstran = np.ascontiguousarray(dstran, dtype=np.float64)
        time = np.ascontiguousarray(time, dtype=np.float64)
        dbl = lambda v: ctypes.byref(ctypes.c_double(v))
        sse, spd, scd, rpl, drpldt = (ctypes.c_double(0.0) for _ in range(5))
        ddsddt, drplde = np.zeros(6), np.zeros(6)
        predef, dpred = np.zeros(1), np.zeros(1)
        coords, drot = np.zeros(3), np.eye(3)
        dfgrd = np.eye(3)
        pn = ctypes.c_double(pnewdt)
        ints = {k: ctypes.c_int(v) for k, v in dict(ndi=3, nshr=3, ntens=6, nstatv=self.nstatv,
                                                       nprops=self.props.size, noel=noel, npt=npt,
                                                       layer=1, kspt=1, kstep=1, kinc=kinc).items()}
        r = lambda k: ctypes.byref(ints[k])
        self._f(_ptr(stress), _ptr(statev), _ptr(ddsdde), ctypes.byref(sse), ctypes.byref(spd),
                ctypes.byref(scd), ctypes.byref(rpl), _ptr(ddsddt), _ptr(drplde), ctypes.byref(drpldt),
                _ptr(stran), _ptr(dstran), _ptr(time), dbl(dtime), dbl(temp), dbl(dtemp),
                _ptr(predef), _ptr(dpred), ctypes.c_char_p(self.cmname), r("ndi"), r("nshr"), r("ntens"),
                r("nstatv"), _ptr(self.props), r("nprops"), _ptr(coords), _ptr(drot), ctypes.byref(pn),
                dbl(1.0), _ptr(dfgrd), _ptr(dfgrd), r("noel"), r("npt"), r("layer"), r("kspt"),
                r("kstep"), r("kinc"), ctypes.c_size_t(80))
        return stress, statev, ddsdde.T.copy(), pn.value
