"""The compiled UMAT library (lib<NAME>.so) bound to Python with ctypes: a flow-stress backend for
the Python bridge and a one-point UMAT caller (used by the tests to compare the Fortran UMAT with
the Python one).

``CompiledBackend(onnx_path)`` builds (or reuses from the cache) the library of
:func:`fortran_umat.build.build_umat` and evaluates through ``neumat_flow_batch``; its
metadata (feature names, box, rate floor, policy) comes from the ONNX file itself. It is the
``compiled`` backend kind of ``fem_bridge.backends.load_backend``, registered as the
``neumat.backends`` entry point ``fortran_umat.library_binding:CompiledBackend``.
"""
from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import numpy as np

from constitutive.errors import NeumatInputError
from fem_bridge import conventions as cv
from fem_bridge.backends import FlowStressBackend

from .build import BuildResult, build_umat


class CompiledBackend(FlowStressBackend):
    """Flow stress σ(x) and dσ/dx from the gfortran-compiled translation of the ONNX graph."""

    kind = "compiled"

    def __init__(self, onnx_path, build: BuildResult | None = None, threads: int = 1):
        """``build``: a ready ``BuildResult`` (default: build or reuse the cached one);
        ``threads`` is accepted for the common backend signature (the kernel runs on the caller's thread)."""
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


class _UmatBuffers:
    """Arrays of one ``umat_`` call, allocated once, and the ctypes argument tuple pointing at them."""

    def __init__(self, props: np.ndarray, nstatv: int, cmname: bytes):
        z = lambda *shape: np.zeros(shape if shape else (1,))
        self.stress, self.statev, self.ddsdde = z(6), z(nstatv), z(6, 6)   # ddsdde: Fortran order = transpose
        self.stran, self.dstran, self.time = z(6), z(6), z(2)
        self.dtime, self.temp, self.dtemp, self.pnewdt = z(), z(), z(), z()
        self.props = props
        scalars = [z() for _ in range(5)]                                   # sse, spd, scd, rpl, drpldt
        ddsddt, drplde, predef, dpred, coords = z(6), z(6), z(1), z(1), z(3)
        drot, dfgrd0, dfgrd1, celent = np.eye(3), np.eye(3), np.eye(3), np.ones(1)
        # ndi, nshr, ntens, nstatv, nprops, noel, npt, layer, kspt, kstep, kinc
        self.ints = np.array([3, 3, 6, nstatv, props.size, 1, 1, 1, 1, 1, 1], dtype=np.int32)
        self._keep = (scalars, ddsddt, drplde, predef, dpred, coords, drot, dfgrd0, dfgrd1, celent)
        self._cmname = ctypes.create_string_buffer(cmname, 80)
        p = lambda a: ctypes.c_void_p(a.ctypes.data)
        i = lambda k: ctypes.c_void_p(self.ints.ctypes.data + 4 * k)
        self.args = (p(self.stress), p(self.statev), p(self.ddsdde), p(scalars[0]), p(scalars[1]),
                     p(scalars[2]), p(scalars[3]), p(ddsddt), p(drplde), p(scalars[4]), p(self.stran),
                     p(self.dstran), p(self.time), p(self.dtime), p(self.temp), p(self.dtemp), p(predef),
                     p(dpred), self._cmname, i(0), i(1), i(2), i(3), p(props), i(4), p(coords), p(drot),
                     p(self.pnewdt), p(celent), p(dfgrd0), p(dfgrd1), i(5), i(6), i(7), i(8), i(9), i(10),
                     ctypes.c_size_t(80))


class CompiledUmat:
    """Call the compiled ``umat_`` for one integration point with the Abaqus argument list.

    ``call`` mirrors ``fem_bridge.umat.UmatMaterial.call``: start-of-increment stress (6),
    statev (NSTATV), total strain and its increment (6, engineering shear), time (2), dtime,
    temp, dtemp → (stress, statev, ddsdde (6, 6), pnewdt). Inputs are not modified.

    The 38 arguments are bound once (per thread: the buffers live in a ``threading.local``), so a
    call costs a few copies and the Fortran itself, not the building of ctypes objects."""

    def __init__(self, library, props, nstatv: int = cv.NSTATV, cmname: str = "@ABAQUS_NEUMAT"):
        self._lib = ctypes.CDLL(str(library))
        self._f = self._lib.umat_
        self._f.restype = None
        self.props = np.ascontiguousarray(props, dtype=np.float64)
        self.nstatv = int(nstatv)
        self.cmname = cmname.encode().ljust(80)[:80]
        self._local = threading.local()

    def _buffers(self) -> _UmatBuffers:
        b = getattr(self._local, "buffers", None)
        if b is None:
            b = self._local.buffers = _UmatBuffers(self.props, self.nstatv, self.cmname)
        return b

    def call(self, stress, statev, stran, dstran, time=(0.0, 0.0), dtime=1.0, temp=20.0, dtemp=0.0,
             kinc: int = 1, pnewdt: float = 1.0, noel: int = 1, npt: int = 1):
        b = self._buffers()
        b.stress[:] = stress
        b.statev[:] = statev
        b.stran[:] = stran
        b.dstran[:] = dstran
        b.time[:] = time
        b.dtime[0], b.temp[0], b.dtemp[0], b.pnewdt[0] = dtime, temp, dtemp, pnewdt
        b.ints[5], b.ints[6], b.ints[10] = noel, npt, kinc
        b.ddsdde[:] = 0.0
        self._f(*b.args)
        return b.stress.copy(), b.statev.copy(), b.ddsdde.T.copy(), float(b.pnewdt[0])
