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

from constitutive.coverage import Coverage
from constitutive.errors import NeumatInputError
from fem_bridge import conventions as cv
from fem_bridge.backends import FlowStressBackend

from .build import BuildResult, build_umat


class CompiledBackend(FlowStressBackend):
    """Flow stress σ(x) and dσ/dx from the gfortran-compiled translation of the ONNX graph."""

    kind = "compiled"

    def __init__(self, onnx_path, build: BuildResult | None = None, threads: int = 1):
        """``build``: a ready ``BuildResult`` (default: build or reuse the cached one);
        ``threads``: OpenMP threads of the N-point return mapping (:meth:`j2_update`); the flow
        kernel runs on the caller's thread."""
        self.path = Path(onnx_path)
        self.build = build or build_umat(self.path)
        info = self.build.info
        self.feature_names = list(info["feature_names"])
        self.feature_units = info.get("feature_units")
        self.box_lo = np.asarray(info["box_lo"], dtype=float)
        self.box_hi = np.asarray(info["box_hi"], dtype=float)
        self.rate_floor = float(info["rate_floor"])
        self.box_policy = info["box_policy"]
        cov = info.get("coverage")
        self.coverage = None if cov is None else Coverage.from_dict(cov, len(self.feature_names))
        self.metadata = info.get("metadata", {})
        self._lib = ctypes.CDLL(str(self.build.library))
        f = self._lib.neumat_flow_batch
        f.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        f.restype = None
        self._batch = f
        self._point = self._lib.neumat_flow
        self._point.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self._point.restype = None
        self.threads = max(int(threads), 1)
        self._umat = self._lib.umat_
        self._umat.restype = None
        self._local = threading.local()                # per-thread umat_ argument buffers
        self._j2 = getattr(self._lib, "neumat_j2_batch", None)    # libraries of older generators lack it
        if self._j2 is not None:
            vp, i32 = ctypes.c_void_p, ctypes.c_int32
            self._j2.argtypes = [ctypes.c_int64, i32, vp, i32, vp, vp, vp, vp, vp, vp, vp, vp, i32]
            self._j2.restype = None

    def umat_direct(self, stress, statev, ddsdde, sse, spd, stran, dstran, time, dtime, temp, dtemp,
                    ntens: int, nstatv: int, props, noel: int, npt: int, kinc: int, pnewdt: float) -> float:
        """``fem_bridge.umat.umat`` through the library's own ``umat_`` (the same algorithm, one
        Fortran call instead of the numpy bridge): ``stress`` (NTENS,), ``statev`` (>= NSTATV,),
        ``ddsdde`` (NTENS, NTENS) and ``sse``/``spd`` (1-element arrays, or anything else to
        leave them) updated in place; returns PNEWDT. The argument buffers are bound once per
        thread and (NTENS, NSTATV, NPROPS)."""
        cache = getattr(self._local, "umat", None)
        if cache is None:
            cache = self._local.umat = {}
        props = np.asarray(props, dtype=np.float64).ravel()
        key = (int(ntens), int(nstatv), props.size)
        b = cache.get(key)
        if b is None:
            b = cache[key] = _UmatBuffers(np.zeros(props.size), key[1], b"@ABAQUS_NEUMAT".ljust(80), key[0])
        b.props[:] = props
        b.stress[:] = stress
        b.statev[:] = statev[:key[1]]
        b.stran[:] = stran
        b.dstran[:] = dstran
        b.time[:] = time
        b.dtime[0], b.temp[0], b.dtemp[0], b.pnewdt[0] = dtime, temp, dtemp, pnewdt
        b.ints[5], b.ints[6], b.ints[10] = noel, npt, kinc
        has_sse, has_spd = (isinstance(a, np.ndarray) and a.size == 1 for a in (sse, spd))
        b.sse[0] = sse.flat[0] if has_sse else 0.0
        b.spd[0] = spd.flat[0] if has_spd else 0.0
        b.ddsdde[:] = 0.0
        self._umat(*b.args)
        stress[...] = b.stress
        statev[:key[1]] = b.statev
        ddsdde[...] = b.ddsdde.T
        if has_sse:
            sse.flat[0] = b.sse[0]
        if has_spd:
            spd.flat[0] = b.spd[0]
        return float(b.pnewdt[0])

    @property
    def has_j2_update(self) -> bool:
        """True when the library has the compiled N-point return mapping (``fem_bridge.j2.integrate``
        then makes one call into Fortran for all points)."""
        return self._j2 is not None

    def j2_update(self, props, stress, statev, dstran, dtime, temp):
        """The Fortran return mapping (``nm_j2_update``, the UMAT's) on n valid points at once, on
        ``self.threads`` OpenMP threads. props (n, NPROPS) with PROPS(3) = CalculiX mode (``temp``
        is T_end, °C), stress (n, 6) MPa, statev (n, NSTATV), dstran (n, 6) engineering shear,
        dtime (n,) s. Returns (stress, statev, ddsdde (n, 6, 6) ∂Δσ_i/∂Δε_j, status (n,),
        flow-stress evaluations (n,)) as ``fem_bridge.j2.integrate`` defines them."""
        if self._j2 is None:
            raise NeumatInputError(f"{self.build.library} has no neumat_j2_batch (built by an older neumat); "
                                   "rebuild it with `neumat umat --force`")
        f64 = lambda a: np.ascontiguousarray(a, dtype=np.float64)
        props, dstran, dtime, temp = f64(props), f64(dstran), f64(dtime), f64(temp)
        stress = np.array(stress, dtype=np.float64, order="C", copy=True)
        statev = np.array(statev, dtype=np.float64, order="C", copy=True)
        n = stress.shape[0]
        if not (props.ndim == 2 and props.shape[0] == n and stress.shape == (n, 6) and dstran.shape == (n, 6)
                and statev.ndim == 2 and statev.shape[0] == n and statev.shape[1] >= cv.NSTATV
                and dtime.shape == (n,) and temp.shape == (n,)):
            raise NeumatInputError("j2_update: props (n, nprops), stress (n, 6), statev (n, >= NSTATV), "
                                   "dstran (n, 6), dtime (n,), temp (n,) expected")
        ddsdde = np.empty((n, 6, 6))
        status = np.empty(n, dtype=np.int32)
        niter = np.empty(n, dtype=np.int32)
        if n:
            self._j2(n, props.shape[1], props.ctypes.data, statev.shape[1], stress.ctypes.data, statev.ctypes.data,
                     dstran.ctypes.data, dtime.ctypes.data, temp.ctypes.data, ddsdde.ctypes.data,
                     status.ctypes.data, niter.ctypes.data, self.threads)
        # Fortran ddsdde(i, j, p) lies at [p, j, i] of the row-major buffer
        return stress, statev, ddsdde.transpose(0, 2, 1), status.astype(int), niter.astype(int)

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


# NTENS → (NDI, NSHR) of the element families (fem_bridge.conventions.ELEMENT_TYPES)
_LAYOUT_OF_NTENS = {6: (3, 3), 4: (3, 1), 3: (2, 1)}


class _UmatBuffers:
    """Arrays of one ``umat_`` call, allocated once, and the ctypes argument tuple pointing at them."""

    def __init__(self, props: np.ndarray, nstatv: int, cmname: bytes, ntens: int = 6):
        z = lambda *shape: np.zeros(shape if shape else (1,))
        nt = int(ntens)
        ndi, nshr = _LAYOUT_OF_NTENS[nt]
        self.stress, self.statev, self.ddsdde = z(nt), z(nstatv), z(nt, nt)   # ddsdde: Fortran order = transpose
        self.stran, self.dstran, self.time = z(nt), z(nt), z(2)
        self.dtime, self.temp, self.dtemp, self.pnewdt = z(), z(), z(), z()
        self.props = props
        scalars = [z() for _ in range(5)]                                   # sse, spd, scd, rpl, drpldt
        self.sse, self.spd = scalars[0], scalars[1]
        ddsddt, drplde, predef, dpred, coords = z(nt), z(nt), z(1), z(1), z(3)
        drot, dfgrd0, dfgrd1, celent = np.eye(3), np.eye(3), np.eye(3), np.ones(1)
        # ndi, nshr, ntens, nstatv, nprops, noel, npt, layer, kspt, kstep, kinc
        self.ints = np.array([ndi, nshr, nt, nstatv, props.size, 1, 1, 1, 1, 1, 1], dtype=np.int32)
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

    def __init__(self, library, props, nstatv: int = cv.NSTATV, cmname: str = "@ABAQUS_NEUMAT", ntens: int = 6):
        """``ntens``: 6 (3-D), 4 (plane strain / axisymmetric, NDI = 3, NSHR = 1) or 3 (plane stress,
        NDI = 2: the UMAT refuses it)."""
        if int(ntens) not in _LAYOUT_OF_NTENS:
            raise NeumatInputError(f"ntens {ntens}: choose one of {', '.join(map(str, _LAYOUT_OF_NTENS))}")
        self.ntens = int(ntens)
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
            b = self._local.buffers = _UmatBuffers(self.props, self.nstatv, self.cmname, self.ntens)
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
