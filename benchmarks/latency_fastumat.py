"""Reference only: the compiled ``umat_`` called from Python with every ctypes argument bound once.

Answers how cheap a single-point Python callback can be when it goes straight to the compiled
UMAT: all 38 arguments (plus the hidden CMNAME length) are pointers into arrays allocated once;
a call copies the start-of-increment stress, state and strain into them, calls ``umat_`` and
returns copies of the results. Same inputs and outputs as ``CompiledUmat.call`` /
``UmatMaterial.call``; not thread-safe (one buffer set per object).
"""
from __future__ import annotations

import ctypes

import numpy as np


class PreboundUmat:
    def __init__(self, library, props, nstatv: int, cmname: str = "@ABAQUS_NEUMAT"):
        lib = ctypes.CDLL(str(library))
        self._f = lib.umat_
        self._f.restype = None
        d = lambda *shape: np.zeros(shape if shape else (1,))
        self.stress, self.statev, self.ddsdde = d(6), d(int(nstatv)), d(6, 6)
        self.stran, self.dstran, self.time, self.dtime = d(6), d(6), d(2), d()
        self.temp, self.dtemp, self.pnewdt = d(), d(), d()
        self.props = np.ascontiguousarray(props, dtype=np.float64)
        scal = [d() for _ in range(5)]                    # sse, spd, scd, rpl, drpldt
        ddsddt, drplde, predef, dpred, coords = d(6), d(6), d(1), d(1), d(3)
        drot, dfgrd0, dfgrd1, celent = np.eye(3), np.eye(3), np.eye(3), np.ones(1)
        ints = np.array([3, 3, 6, int(nstatv), self.props.size, 1, 1, 1, 1, 1, 1], dtype=np.int32)
        self._keep = (scal, ddsddt, drplde, predef, dpred, coords, drot, dfgrd0, dfgrd1, celent, ints)
        p = lambda a: ctypes.c_void_p(a.ctypes.data)
        ip = lambda k: ctypes.c_void_p(ints.ctypes.data + 4 * k)
        self._cm = ctypes.create_string_buffer(cmname.encode().ljust(80)[:80], 80)
        self._args = (p(self.stress), p(self.statev), p(self.ddsdde), p(scal[0]), p(scal[1]), p(scal[2]),
                      p(scal[3]), p(ddsddt), p(drplde), p(scal[4]), p(self.stran), p(self.dstran), p(self.time),
                      p(self.dtime), p(self.temp), p(self.dtemp), p(predef), p(dpred), self._cm, ip(0), ip(1),
                      ip(2), ip(3), p(self.props), ip(4), p(coords), p(drot), p(self.pnewdt), p(celent),
                      p(dfgrd0), p(dfgrd1), ip(5), ip(6), ip(7), ip(8), ip(9), ip(10), ctypes.c_size_t(80))

    def call(self, stress, statev, stran, dstran, time=(0.0, 0.0), dtime=1.0, temp=20.0, dtemp=0.0, **_):
        self.stress[:] = stress
        self.statev[:] = statev
        self.stran[:] = stran
        self.dstran[:] = dstran
        self.time[:] = time
        self.dtime[0], self.temp[0], self.dtemp[0], self.pnewdt[0] = dtime, temp, dtemp, 1.0
        self._f(*self._args)
        return self.stress.copy(), self.statev.copy(), self.ddsdde.T.copy(), float(self.pnewdt[0])
