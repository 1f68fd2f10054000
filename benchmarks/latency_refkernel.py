"""A reference kernel for "at the limit": the FlowNet written straight to Fortran by the benchmark.

Not part of the product. It answers one question the goals of issue 6 raise: how fast can σ and
dσ/dx of *this* network be on *this* machine when the code is straight-line scalar Fortran with
inlined weights, forward-mode tangents in small fixed arrays, no temporaries beyond those, no
library calls except exp/log/pow — compiled with the same gfortran flags as the product
(``fortran_umat.build.FFLAGS``)? The gap between it and the generated kernel is the room left in
the generator. Supported: columns identity/log/inv_kelvin (optional power transform), ops
linear/act/push/add, output affine/exp, rate floor and clamp policy; no hybrid base.

``build_reference(net, workdir)`` → shared library exporting ``neumat_ref_batch(n, x, sigma,
dsig)`` (same calling convention as ``neumat_flow_batch``); ``RefBackend(lib, net)`` evaluates
through ctypes; ``time_in_fortran(lib, net, workdir)`` times n = 1 and a batch from Fortran.

A second variant, ``neumat_refv_batch`` (``RefBackend(lib, net, blocked=True)``), evaluates blocks
of 32 points with every array indexed by point first, so each statement vectorises across points
(vector exp/log from glibc's libmvec), compiled with ``-march=native`` in addition: the "few tens
of ns per point when a loop over points vectorises" of anchors.md, measured.
"""
from __future__ import annotations

import ctypes
import shutil
import statistics
import subprocess
from pathlib import Path

import numpy as np

from constitutive.flownet import KELVIN, FlowNet
from fortran_umat.build import FFLAGS

from . import latency_subjects as subj
from .build_cache import cached_build


def supported(net: FlowNet) -> str | None:
    """None when the reference generator handles the model, else the reason."""
    if net.base is not None:
        return "hybrid Arrhenius base not handled by the reference generator"
    for c in net.columns:
        if c["kind"] not in ("identity", "log", "inv_kelvin"):
            return f"column kind {c['kind']} not handled by the reference generator"
    for op in net.ops:
        if op["op"] == "act" and op["fn"] not in ("elu", "sigmoid", "tanh"):
            return f"activation {op['fn']} not handled by the reference generator"
    return None


def _r(v: float) -> str:
    return f"{float(v):.17e}".replace("e", "d")


def _arr(vals) -> str:
    vals = [_r(v) for v in np.ravel(vals)]
    lines, line = [], []
    for v in vals:
        line.append(v)
        if len(line) == 3:
            lines.append(", ".join(line))
            line = []
    if line:
        lines.append(", ".join(line))
    return "[ &\n      " + ", &\n      ".join(lines) + "]"


def fortran_source(net: FlowNet) -> str:
    F, C = net.n_features, len(net.columns)
    decl, body, params = [], [], []
    # input policy
    body.append("    xu = x; m = 1.0d0")
    body.append(f"    if (xu(2) < {_r(net.rate_floor)}) then\n      xu(2) = {_r(net.rate_floor)}; m(2) = 0.0d0\n    end if")
    if net.box_policy == "clamp":
        for k in range(F):
            lo, hi = net.box_lo[k], net.box_hi[k]
            body.append(f"    if (xu({k + 1}) < {_r(lo)}) then\n      xu({k + 1}) = {_r(lo)}; m({k + 1}) = 0.0d0\n"
                        f"    else if (xu({k + 1}) > {_r(hi)}) then\n      xu({k + 1}) = {_r(hi)}; m({k + 1}) = 0.0d0\n    end if")
    # columns: z(c) and dz(c) = dz_c / dx_feature(c) (each column depends on one feature)
    feat = []
    for j, c in enumerate(net.columns):
        k = c["feature"] + 1
        feat.append(k)
        kind = c["kind"]
        if kind == "identity":
            body.append(f"    u = xu({k}); du = 1.0d0")
        elif kind == "log":
            body.append(f"    u = log(xu({k})); du = 1.0d0 / xu({k})")
        else:
            body.append(f"    u = 1.0d0 / (xu({k}) + {_r(KELVIN)}); du = -u * u")
        p = c.get("power")
        if p:
            g, b = p["gamma"], p["beta"]
            if abs(b - 0.5) < 1e-15:
                body.append(f"    t = sqrt(u + {_r(g)}); v = (t - 1.0d0) / {_r(b)}; du = du / t")
            else:
                body.append(f"    t = (u + {_r(g)})**{_r(b - 1.0)}; v = (t * (u + {_r(g)}) - 1.0d0) / {_r(b)}; du = du * t")
        else:
            body.append("    v = u")
        body.append(f"    h0({j + 1}) = (v - {_r(c['shift'])}) / {_r(c['scale'])}; dz({j + 1}) = du / {_r(c['scale'])}")
    # network: h (width) and J (C, width): J(c, o) = d h(o) / d z(c)
    width, cur, li, stack = C, "0", 0, []
    decl.append(f"    real(c_double) :: h0({C}), J0({C}, {C})")
    body.append("    J0 = 0.0d0")
    for j in range(C):
        body.append(f"    J0({j + 1}, {j + 1}) = 1.0d0")
    vid = 0
    for op in net.ops:
        kind = op["op"]
        if kind == "linear":
            W, b = np.asarray(op["W"], dtype=float), np.asarray(op["b"], dtype=float)
            out, inp = W.shape
            li += 1
            vid += 1
            params.append(f"  real(c_double), parameter :: W{li}({inp}, {out}) = reshape({_arr(W)}, [{inp}, {out}])")
            params.append(f"  real(c_double), parameter :: B{li}({out}) = {_arr(b)}")
            decl.append(f"    real(c_double) :: h{vid}({out}), J{vid}({C}, {out})")
            body.append(f"    do o = 1, {out}\n      h{vid}(o) = B{li}(o)\n      J{vid}(:, o) = 0.0d0\n"
                        f"      do i = 1, {inp}\n        h{vid}(o) = h{vid}(o) + W{li}(i, o) * h{cur}(i)\n"
                        f"        J{vid}(:, o) = J{vid}(:, o) + W{li}(i, o) * J{cur}(:, i)\n      end do\n    end do")
            cur, width = str(vid), out
        elif kind == "act":
            fn = op["fn"]
            if fn == "elu":
                upd = "if (h{v}(o) <= 0.0d0) then\n        e = exp(h{v}(o)); h{v}(o) = e - 1.0d0; J{v}(:, o) = J{v}(:, o) * e\n      end if"
            elif fn == "sigmoid":
                upd = "e = 1.0d0 / (1.0d0 + exp(-h{v}(o))); h{v}(o) = e; J{v}(:, o) = J{v}(:, o) * (e * (1.0d0 - e))"
            else:
                upd = "e = tanh(h{v}(o)); h{v}(o) = e; J{v}(:, o) = J{v}(:, o) * (1.0d0 - e * e)"
            body.append(f"    do o = 1, {width}\n      " + upd.format(v=cur) + "\n    end do")
        elif kind == "push":
            vid += 1
            decl.append(f"    real(c_double) :: h{vid}({width}), J{vid}({C}, {width})")
            body.append(f"    h{vid} = h{cur}\n    J{vid} = J{cur}")
            stack.append(str(vid))
        elif kind == "add":
            s = stack.pop()
            body.append(f"    h{cur} = h{cur} + h{s}\n    J{cur} = J{cur} + J{s}")
    o = net.output
    body.append(f"    y = {_r(o['scale'])} * h{cur}(1) + {_r(o['shift'])}\n    dy = {_r(o['scale'])} * J{cur}(:, 1)")
    if o["kind"] == "exp":
        body.append("    y = exp(y); dy = y * dy")
    body.append("    sigma = y\n    dsig = 0.0d0")
    for j, k in enumerate(feat):
        body.append(f"    dsig({k}) = dsig({k}) + dy({j + 1}) * dz({j + 1})")
    body.append("    dsig = dsig * m")
    return f"""! Reference kernel written by benchmarks/latency_refkernel.py (benchmark only, not the product).
module neumat_ref
  use, intrinsic :: iso_c_binding, only: c_double, c_int64_t
  implicit none
  private
  public :: neumat_ref_point, neumat_ref_batch
{chr(10).join(params)}
contains
  pure subroutine neumat_ref_point(x, sigma, dsig)
    real(c_double), intent(in) :: x({F})
    real(c_double), intent(out) :: sigma, dsig({F})
    real(c_double) :: xu({F}), m({F}), dz({C}), dy({C}), u, du, v, t, e, y
    integer :: o, i
{chr(10).join(decl)}
{chr(10).join(body)}
  end subroutine neumat_ref_point

  subroutine neumat_ref_batch(n, x, sigma, dsig) bind(C, name="neumat_ref_batch")
    integer(c_int64_t), value, intent(in) :: n
    real(c_double), intent(in) :: x({F}, n)
    real(c_double), intent(out) :: sigma(n), dsig({F}, n)
    integer(c_int64_t) :: k
    do k = 1, n
      call neumat_ref_point(x(:, k), sigma(k), dsig(:, k))
    end do
  end subroutine neumat_ref_batch
end module neumat_ref
"""


DRIVER = r"""
program ref_bench
  use, intrinsic :: iso_fortran_env, only: int64, real64
  use, intrinsic :: iso_c_binding, only: c_int64_t, c_double
  use neumat_ref, only: neumat_ref_batch
  implicit none
  integer :: nfeat, nbatch, ncalls, nrep, rep, i, k
  real(real64), allocatable :: xb(:), sb(:), db(:)
  real(real64) :: x1(8), s1(1), d1(8), checksum
  integer(int64) :: c0, c1, crate
  read(*, *) nfeat, nbatch, ncalls, nrep
  allocate(xb(nfeat * nbatch), sb(nbatch), db(nfeat * nbatch))
  read(*, *) xb
  call system_clock(count_rate=crate)
  checksum = 0
  do rep = 1, nrep
    call system_clock(c0)
    do i = 1, ncalls
      x1(1:nfeat) = xb(1 + nfeat * mod(i, nbatch): nfeat * (1 + mod(i, nbatch)))
      call neumat_ref_batch(1_c_int64_t, x1, s1, d1)
      checksum = checksum + s1(1)
    end do
    call system_clock(c1)
    write(*, '(a, es23.15)') 'REF1 ', real(c1 - c0, real64) / real(crate, real64) / real(ncalls, real64)
  end do
  k = max(1, ncalls / nbatch)
  do rep = 1, nrep
    call system_clock(c0)
    do i = 1, k
      call neumat_ref_batch(int(nbatch, c_int64_t), xb, sb, db)
      checksum = checksum + sb(1)
    end do
    call system_clock(c1)
    write(*, '(a, es23.15)') 'REFB ', real(c1 - c0, real64) / real(crate, real64) / real(k * nbatch, real64)
  end do
  write(*, '(a, es23.15)') 'CHECKSUM ', checksum
end program
"""


SIMD_FLAGS = ["-march=native"]      # the blocked kernel: AVX-512/AVX2 vector exp from glibc's libmvec


def _flags() -> list[str]:
    """The product's gfortran flags (``fortran_umat.build.FFLAGS``) without ``-shared``."""
    return [f for f in FFLAGS if f != "-shared"]


def build_reference(net: FlowNet, workdir: Path | None = None) -> Path:
    """Compile the reference kernels (scalar: same flags as the product's UMAT; blocked: plus
    ``SIMD_FLAGS``) and the scalar kernel's timing driver; cached by source and flags. Returns
    the scalar library's path (the blocked one and ``ref_bench`` lie beside it)."""
    fc = shutil.which("gfortran")
    if fc is None:
        raise RuntimeError("gfortran not found")
    text, textv, flags = fortran_source(net), fortran_source_blocked(net), _flags()

    def build(folder: Path) -> None:
        (folder / "neumat_ref.f90").write_text(text)
        (folder / "ref_bench.f90").write_text(DRIVER)
        (folder / "neumat_refv.f90").write_text(textv)
        for cmd in ([fc, *flags, "-c", "neumat_ref.f90", "-o", "neumat_ref.o"],
                    [fc, *flags, "-shared", "neumat_ref.o", "-o", "libneumat_ref.so"],
                    [fc, *flags, "neumat_ref.o", "ref_bench.f90", "-o", "ref_bench"],
                    [fc, *flags, *SIMD_FLAGS, "-shared", "neumat_refv.f90", "-o", "libneumat_refv.so"]):
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=folder)
            if r.returncode != 0:
                raise RuntimeError(f"reference kernel build failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")

    key = "\0".join(["refkernel", text, textv, DRIVER, " ".join(flags), " ".join(SIMD_FLAGS)])
    return cached_build(key, build) / "libneumat_ref.so"


class RefBackend:
    """evaluate(x) → (σ, dσ/dx) through the reference kernel (outputs preallocated per N)."""

    def __init__(self, lib: Path, net: FlowNet, blocked: bool = False):
        if blocked:
            lib = Path(lib).with_name("libneumat_refv.so")
        self._lib = ctypes.CDLL(str(lib))
        self._f = getattr(self._lib, "neumat_refv_batch" if blocked else "neumat_ref_batch")
        self._f.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self._f.restype = None
        self.nf = net.n_features

    def evaluate(self, x):
        x = np.ascontiguousarray(x, dtype=np.float64)
        n = x.shape[0]
        s, d = np.empty(n), np.empty((n, self.nf))
        self._f(n, x.ctypes.data, s.ctypes.data, d.ctypes.data)
        return s, d


def time_in_fortran(workdir: Path, net: FlowNet, nbatch: int = 1000, ncalls: int = 200_000, nrep: int = 5) -> dict:
    xb = subj.in_box_points(net, nbatch, seed=7)
    inp = f"{net.n_features} {nbatch} {ncalls} {nrep}\n" + " ".join(f"{v:.17g}" for v in xb.ravel()) + "\n"
    r = subprocess.run([str(workdir / "ref_bench")], input=inp, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"reference driver failed: {r.stderr[-1000:]}")
    one, batch = [], []
    for line in r.stdout.splitlines():
        f = line.split()
        if f and f[0] == "REF1":
            one.append(float(f[1]))
        elif f and f[0] == "REFB":
            batch.append(float(f[1]))
    return dict(n1=dict(min_s=min(one), median_s=statistics.median(one)),
                batch=dict(min_s=min(batch), median_s=statistics.median(batch), n=nbatch),
                flags=_flags())


# ---- the same network, evaluated on blocks of points (SIMD across points) -------------------------
BLOCK = 32


def fortran_source_blocked(net: FlowNet, block: int = BLOCK) -> str:
    """``neumat_refv_batch``: points in blocks of ``block``, every array indexed (point, …) so each
    statement is a loop over the points of the block that gfortran vectorises (exp/log through
    glibc's vector math library). The last partial block is padded with the box centre."""
    F, C, B = net.n_features, len(net.columns), block
    decl, body, params = [], [], []
    mid = 0.5 * (np.asarray(net.box_lo, dtype=float) + np.asarray(net.box_hi, dtype=float))
    body.append("    xu = 0.0d0")
    for k in range(F):
        body.append(f"    xu(:, {k + 1}) = {_r(mid[k])}")
    body.append("    do k = 1, nb\n      xu(k, :) = x(:, k)\n    end do\n    m = 1.0d0")
    fl = _r(net.rate_floor)
    body.append(f"    where (xu(:, 2) < {fl}) m(:, 2) = 0.0d0\n    xu(:, 2) = max(xu(:, 2), {fl})")
    if net.box_policy == "clamp":
        for k in range(F):
            lo, hi = _r(net.box_lo[k]), _r(net.box_hi[k])
            body.append(f"    where (xu(:, {k + 1}) < {lo} .or. xu(:, {k + 1}) > {hi}) m(:, {k + 1}) = 0.0d0\n"
                        f"    xu(:, {k + 1}) = min(max(xu(:, {k + 1}), {lo}), {hi})")
    feat = []
    for j, c in enumerate(net.columns):
        k = c["feature"] + 1
        feat.append(k)
        if c["kind"] == "identity":
            body.append(f"    u = xu(:, {k}); du = 1.0d0")
        elif c["kind"] == "log":
            body.append(f"    u = log(xu(:, {k})); du = 1.0d0 / xu(:, {k})")
        else:
            body.append(f"    u = 1.0d0 / (xu(:, {k}) + {_r(KELVIN)}); du = -u * u")
        p = c.get("power")
        if p:
            g, b = p["gamma"], p["beta"]
            if abs(b - 0.5) < 1e-15:
                body.append(f"    t = sqrt(u + {_r(g)}); u = (t - 1.0d0) / {_r(b)}; du = du / t")
            else:
                body.append(f"    t = (u + {_r(g)})**{_r(b - 1.0)}; u = (t * (u + {_r(g)}) - 1.0d0) / {_r(b)}; du = du * t")
        body.append(f"    h0(:, {j + 1}) = (u - {_r(c['shift'])}) / {_r(c['scale'])}; dz(:, {j + 1}) = du / {_r(c['scale'])}")
    decl.append(f"    real(c_double) :: h0({B}, {C}), J0({B}, {C}, {C})")
    body.append("    J0 = 0.0d0")
    for j in range(C):
        body.append(f"    J0(:, {j + 1}, {j + 1}) = 1.0d0")
    cur, width, li, vid, stack = "0", C, 0, 0, []
    for op in net.ops:
        kind = op["op"]
        if kind == "linear":
            W, b = np.asarray(op["W"], dtype=float), np.asarray(op["b"], dtype=float)
            out, inp = W.shape
            li += 1
            vid += 1
            params.append(f"  real(c_double), parameter :: V{li}({inp}, {out}) = reshape({_arr(W)}, [{inp}, {out}])")
            params.append(f"  real(c_double), parameter :: C{li}({out}) = {_arr(b)}")
            decl.append(f"    real(c_double) :: h{vid}({B}, {out}), J{vid}({B}, {C}, {out})")
            body.append(f"    do o = 1, {out}\n      h{vid}(:, o) = C{li}(o)\n      J{vid}(:, :, o) = 0.0d0\n"
                        f"      do i = 1, {inp}\n        h{vid}(:, o) = h{vid}(:, o) + V{li}(i, o) * h{cur}(:, i)\n"
                        f"        J{vid}(:, :, o) = J{vid}(:, :, o) + V{li}(i, o) * J{cur}(:, :, i)\n      end do\n    end do")
            cur, width = str(vid), out
        elif kind == "act":
            fn = op["fn"]
            if fn == "elu":
                upd = ("e = exp(min(h{v}(:, o), 0.0d0)); d = merge(1.0d0, e, h{v}(:, o) > 0.0d0)\n"
                       "      h{v}(:, o) = merge(h{v}(:, o), e - 1.0d0, h{v}(:, o) > 0.0d0)")
            elif fn == "sigmoid":
                upd = "e = 1.0d0 / (1.0d0 + exp(-h{v}(:, o))); h{v}(:, o) = e; d = e * (1.0d0 - e)"
            else:
                upd = "e = tanh(h{v}(:, o)); h{v}(:, o) = e; d = 1.0d0 - e * e"
            body.append(f"    do o = 1, {width}\n      " + upd.format(v=cur) +
                        f"\n      do c = 1, {C}\n        J{cur}(:, c, o) = J{cur}(:, c, o) * d\n      end do\n    end do")
        elif kind == "push":
            vid += 1
            decl.append(f"    real(c_double) :: h{vid}({B}, {width}), J{vid}({B}, {C}, {width})")
            body.append(f"    h{vid} = h{cur}\n    J{vid} = J{cur}")
            stack.append(str(vid))
        elif kind == "add":
            s = stack.pop()
            body.append(f"    h{cur} = h{cur} + h{s}\n    J{cur} = J{cur} + J{s}")
    o = net.output
    body.append(f"    y = {_r(o['scale'])} * h{cur}(:, 1) + {_r(o['shift'])}")
    body.append(f"    do c = 1, {C}\n      dy(:, c) = {_r(o['scale'])} * J{cur}(:, c, 1)\n    end do")
    if o["kind"] == "exp":
        body.append(f"    y = exp(y)\n    do c = 1, {C}\n      dy(:, c) = y * dy(:, c)\n    end do")
    body.append("    g = 0.0d0")
    for j, k in enumerate(feat):
        body.append(f"    g(:, {k}) = g(:, {k}) + dy(:, {j + 1}) * dz(:, {j + 1})")
    body.append("    g = g * m\n    do k = 1, nb\n      sigma(k) = y(k)\n      dsig(:, k) = g(k, :)\n    end do")
    return f"""! Blocked reference kernel written by benchmarks/latency_refkernel.py (benchmark only).
module neumat_refv
  use, intrinsic :: iso_c_binding, only: c_double, c_int64_t
  implicit none
  private
  public :: neumat_refv_batch
{chr(10).join(params)}
contains
  pure subroutine refv_block(nb, x, sigma, dsig)
    integer, intent(in) :: nb
    real(c_double), intent(in) :: x({F}, nb)
    real(c_double), intent(out) :: sigma(nb), dsig({F}, nb)
    real(c_double) :: xu({B}, {F}), m({B}, {F}), g({B}, {F}), dz({B}, {C}), dy({B}, {C})
    real(c_double) :: u({B}), du({B}), t({B}), e({B}), d({B}), y({B})
    integer :: o, i, c, k
{chr(10).join(decl)}
{chr(10).join(body)}
  end subroutine refv_block

  subroutine neumat_refv_batch(n, x, sigma, dsig) bind(C, name="neumat_refv_batch")
    integer(c_int64_t), value, intent(in) :: n
    real(c_double), intent(in) :: x({F}, n)
    real(c_double), intent(out) :: sigma(n), dsig({F}, n)
    integer(c_int64_t) :: k0
    integer :: nb
    do k0 = 1, n, {B}
      nb = int(min(int({B}, c_int64_t), n - k0 + 1))
      call refv_block(nb, x(:, k0:k0 + nb - 1), sigma(k0:k0 + nb - 1), dsig(:, k0:k0 + nb - 1))
    end do
  end subroutine neumat_refv_batch
end module neumat_refv
"""
