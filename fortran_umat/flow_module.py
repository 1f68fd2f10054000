"""The generated Fortran flow module: ONNX file → Fortran 2008 text, one integration point at
a time (``neumat_flow``) or in blocks (``neumat_flow_batch``).

The translator reads the ONNX file alone (graph, initializers, metadata through
``export.contract.read_model_info``; no torch, no model JSON). ``graph_walk`` turns the graph
into the kernel body, with one rule per operator from ``onnx_ops``; this module wraps that
body into the two kernels (one point, a block of points), the C-callable entry points, the
model's constants (feature count, box, rate floor, policy) and the helpers of
``templates/flow_helpers.f90``.

Anything outside the supported operator set is refused with a :class:`NeumatInputError` that
names the operator and the node. The generated module has no mutable module state: only
``parameter`` constants and pure procedures.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from constitutive.errors import NeumatInputError
from export.contract import INPUT_NAME, OUTPUT_GRAD, OUTPUT_SIGMA, ModelInfo, read_model_info

from .fortran_text import f_literal, f_real
from .graph_walk import GraphWalker

HELPERS = Path(__file__).with_name("templates") / "flow_helpers.f90"
BLOCK_MAX = 32                 # points per block of the batch kernel ...
BLOCK_BYTES = 256 * 1024       # ... fewer when a block's local arrays would exceed this (stack)


@dataclass
class Translation:
    """The Fortran module text and what a consumer needs to know about the model."""
    module: str                      # Fortran module name
    flow_source: str                 # module text (parameters + neumat_flow + neumat_flow_batch)
    n_features: int
    metadata: dict                   # the contract's metadata (short names, JSON values decoded)
    sha256: str                      # of the ONNX file
    op_counts: dict = field(default_factory=dict)   # op type -> nodes turned into Fortran


def coverage_parameters(info: ModelInfo) -> str:
    """The measured conditions of ``constitutive.coverage`` as module parameters (nothing for a
    model without them: the box fallback needs only NM_BOX_LO/HI)."""
    cov = info.coverage
    if cov is None:
        return "  ! no measured conditions in the model: out-of-data by the training box (strain from 0 inside)"
    c = cov.scaled_conditions                      # (M, D), u / spacing
    m, d = c.shape
    lits = lambda v: "[" + ", ".join(f_real(t) for t in v) + "]"
    return "\n".join([
        "  ! data coverage (constitutive.coverage): conditions (T, log10 rate, extras) / spacing, one column each",
        f"  integer, parameter :: NM_NCOND = {m}, NM_NU = {d}",
        f"  real(c_double), parameter :: NM_COV_C({d}, {m}) = reshape({lits(c.ravel())}, [{d}, {m}])",
        f"  real(c_double), parameter :: NM_COV_SPACING({d}) = {lits(cov.spacing)}",
        f"  real(c_double), parameter :: NM_COV_STRAIN_MAX({m}) = {lits(cov.strain_max)}",
        f"  real(c_double), parameter :: NM_COV_THRESHOLD2 = {f_real(cov.threshold_squared)}   ! threshold squared",
        f"  real(c_double), parameter :: NM_COV_RATE_MIN = {f_real(cov.rate_min)}   ! 1/s, lowest measured rate"])


def out_of_data_function(info: ModelInfo) -> str:
    """``nm_out_of_box(x)``: the rule of ``constitutive.coverage`` (``outside_data``), term for
    term in the same order as the Python, so both flag the same points."""
    head = """\
  pure logical function nm_out_of_box(x)
    ! the evaluation x lies outside the data (constitutive.coverage); the rate is raised to the floor first
    real(c_double), intent(in) :: x(NM_NF)
"""
    if info.coverage is None:
        return head + """\
    real(c_double) :: y(NM_NF), lo(NM_NF)
    y = x
    y(2) = max(y(2), NM_RATE_FLOOR)
    lo = NM_BOX_LO
    lo(1) = min(0.0d0, lo(1))                 ! plastic strain from 0 is inside
    nm_out_of_box = .not. all(y >= lo .and. y <= NM_BOX_HI)
  end function nm_out_of_box
"""
    return head + """\
    real(c_double) :: u(NM_NU), d2
    logical :: covered
    integer :: m, k
    u(1) = x(3) / NM_COV_SPACING(1)
    u(2) = log10(max(max(x(2), NM_RATE_FLOOR), NM_COV_RATE_MIN)) / NM_COV_SPACING(2)
    do k = 3, NM_NU
      u(k) = x(k + 1) / NM_COV_SPACING(k)
    end do
    covered = .false.
    do m = 1, NM_NCOND
      d2 = 0.0d0
      do k = 1, NM_NU
        d2 = d2 + (u(k) - NM_COV_C(k, m))**2
      end do
      if (d2 <= NM_COV_THRESHOLD2 .and. x(1) <= NM_COV_STRAIN_MAX(m)) then
        covered = .true.
        exit
      end if
    end do
    nm_out_of_box = .not. (covered .and. x(1) >= 0.0d0)
  end function nm_out_of_box
"""


def translate(path, module: str | None = None) -> tuple[Translation, ModelInfo]:
    """Translate the ONNX file at ``path``; returns (Translation, the file's ModelInfo)."""
    info = read_model_info(path)
    sha = info.sha256
    F = info.n_features
    lo, hi = info.box_lo, info.box_hi
    sample = (0.5 * (lo + hi)).reshape(1, F)
    tr = GraphWalker(info.model, INPUT_NAME, sample, info.opset).run()
    module = module or f"neumat_{sha[:10]}"
    sig, dsig = OUTPUT_SIGMA, OUTPUT_GRAD
    outs = []
    for oname, target, size in ((sig, "sig", 1), (dsig, "dsig", F)):
        if oname in tr.const:
            val = np.broadcast_to(np.asarray(tr.const[oname], dtype=np.float64).ravel(), (size,))
            outs += [f"    {target}(:{', ' + str(i + 1) if target == 'dsig' else ''}) = {f_literal(v, np.float64)}"
                     for i, v in enumerate(val)]
        else:
            var = tr.dyn[oname]
            if var.size != size:
                raise NeumatInputError(f"{path}: output '{oname}' has {var.size} values per point, expected {size}")
            outs.append(f"    {target} = {var.name}(:, 1)" if target == "sig" else f"    {target} = {var.name}")
    body = "\n".join(tr.decls + tr.body + outs)
    per_point = sum(int(d.split("(nb, ")[1].split(")")[0]) for d in tr.decls) + 2 * F + 1
    block = max(4, min(BLOCK_MAX, BLOCK_BYTES // (8 * per_point) // 4 * 4))

    def kernel(name: str, nb: str, what: str) -> str:
        return f"""\
  pure subroutine {name}(x, sig, dsig)
    ! {what}: flow stress sig (MPa) and d sig / d x of nb points x (physical units)
    integer, parameter :: nb = {nb}
    real(c_double), intent(in) :: x(nb, NM_NF)
    real(c_double), intent(out) :: sig(nb), dsig(nb, NM_NF)
    integer :: j, k, m, n
{body}
  end subroutine {name}
"""

    lits = lambda v: "[" + ", ".join(f_real(t) for t in v) + "]"
    policy = 1 if info.box_policy == "clamp" else 0
    src = f"""\
! Generated by neumat (fortran_umat.flow_module) from an ONNX flow-stress model. Do not edit.
! ONNX file sha256: {sha}
! Features (x columns, physical units): {', '.join(info.feature_names)}
! Output: flow stress sigma (MPa) and d sigma / d x, with the model's input policy
! (rate floor {info.rate_floor!r} 1/s, box policy '{info.box_policy}') applied inside, as in the graph.
! Thread safety: the module holds named constants (parameters) only; every procedure keeps its
! data in arguments and locals. Build with -frecursive (or -fopenmp) so that gfortran keeps all
! locals, large arrays included, on the stack instead of static memory.
module {module}
  use, intrinsic :: iso_c_binding, only: c_double, c_int64_t
  use, intrinsic :: ieee_arithmetic, only: ieee_is_nan, ieee_is_finite
  implicit none
  private
  public :: neumat_flow, neumat_flow_c, neumat_flow_batch, nm_out_of_box
  public :: NM_NF, NM_NEXTRA, NM_RATE_FLOOR, NM_BOX_LO, NM_BOX_HI, NM_CLAMP

  ! Only named constants at module level: no mutable state (the UMAT runs in many threads).
  integer, parameter :: NM_NF = {F}                 ! number of inputs (strain, rate, T, extras)
  integer, parameter :: NM_NEXTRA = {F - 3}         ! extra features after strain, rate, temperature
  real(c_double), parameter :: NM_RATE_FLOOR = {f_real(info.rate_floor)}   ! 1/s
  real(c_double), parameter :: NM_BOX_LO({F}) = {lits(lo)}
  real(c_double), parameter :: NM_BOX_HI({F}) = {lits(hi)}
  logical, parameter :: NM_CLAMP = {'.true.' if policy else '.false.'}   ! box policy: clamp (else extrapolate)
  integer, parameter :: NM_BLOCK = {block}              ! points per block in neumat_flow_batch

  ! ---- weights and other constants of the graph ----
{chr(10).join(tr.params)}
{coverage_parameters(info)}
!@@J2_SPEC@@

contains

{HELPERS.read_text()}
{out_of_data_function(info)}
{kernel("nm_kernel_1", "1", "one point")}
{kernel("nm_kernel_block", "NM_BLOCK", "a block of NM_BLOCK points")}
  pure subroutine neumat_flow(x, sigma, dsig)
    ! flow stress sigma (MPa) and d sigma / d x at one point x (physical units)
    real(c_double), intent(in) :: x(NM_NF)
    real(c_double), intent(out) :: sigma, dsig(NM_NF)
    real(c_double) :: xb(1, NM_NF), sb(1), db(1, NM_NF)
    xb(1, :) = x
    call nm_kernel_1(xb, sb, db)
    sigma = sb(1)
    dsig = db(1, :)
  end subroutine neumat_flow

  subroutine neumat_flow_c(x, sigma, dsig) bind(C, name="neumat_flow")
    ! one point from C: x (NM_NF), sigma, dsig (NM_NF) — the kernel the UMAT uses
    real(c_double), intent(in) :: x(NM_NF)
    real(c_double), intent(out) :: sigma, dsig(NM_NF)
    call neumat_flow(x, sigma, dsig)
  end subroutine neumat_flow_c

  subroutine neumat_flow_batch(n, x, sigma, dsig) bind(C, name="neumat_flow_batch")
    ! n points; from C/numpy: x (n, NM_NF) row-major, sigma (n), dsig (n, NM_NF) row-major.
    ! Blocks of NM_BLOCK points; every operation of the kernel is a loop over the block's points
    ! (vectorised; gfortran then calls glibc's vector exp/log/pow/tanh, which may differ from the
    ! scalar ones of neumat_flow in the last bit or two).
    integer(c_int64_t), value, intent(in) :: n
    real(c_double), intent(in) :: x(NM_NF, n)
    real(c_double), intent(out) :: sigma(n), dsig(NM_NF, n)
    real(c_double) :: xb(NM_BLOCK, NM_NF), sb(NM_BLOCK), db(NM_BLOCK, NM_NF)
    integer(c_int64_t) :: i0, i, m
    do i0 = 1, n, NM_BLOCK
      m = min(int(NM_BLOCK, c_int64_t), n - i0 + 1)
      xb(1:m, :) = transpose(x(:, i0:i0 + m - 1))
      do i = m + 1, NM_BLOCK
        xb(i, :) = xb(1, :)              ! pad a partial block with a valid point
      end do
      call nm_kernel_block(xb, sb, db)
      sigma(i0:i0 + m - 1) = sb(1:m)
      dsig(:, i0:i0 + m - 1) = transpose(db(1:m, :))
    end do
  end subroutine neumat_flow_batch
!@@J2_CONTAINS@@
end module {module}
!@@J2_EXTERNAL@@
"""
    return Translation(module, src, F, info.metadata, sha, tr.op_counts), info
