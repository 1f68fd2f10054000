!@@SPEC
! ---------------------------------------------------------------------------------------------
! J2 return mapping with the neural flow stress, and the Abaqus/CalculiX UMAT entry point.
! Same algorithm, PROPS and STATEV layout as the Python bridge (fem_bridge.conventions, j2):
! the positions below and the NM_PROP_* / NM_SV_* constants are filled in from conventions.
! Extra features: @@EXTRAS@@. Plastic strain: the 6 STATEV from NM_SV_EPS_P, Voigt order, engineering shear.
!@@LAYOUT@@
! Units: MPa, 1/s, degC (TEMP in degC only), s.   Voigt order 11, 22, 33, 12, 13, 23; engineering shear
! strain. The UMAT also takes NTENS = 4 (NDI = 3, NSHR = 1: 11, 22, 33, 12; plane strain, axisymmetric,
! generalised plane strain), embedded here with zero 13, 23; other layouts (plane stress) are refused.
! Out of data (STATEV 9): nm_out_of_box of the flow module (constitutive.coverage).
! ---------------------------------------------------------------------------------------------
  public :: nm_j2_update, NM_NSTATV, NM_NPROPS, NM_OK, NM_STEP_CUT, NM_BAD_INPUT, NM_PNEWDT_CUT
  public :: NM_PROP_E, NM_PROP_NU, NM_PROP_TEMP_MODE, NM_PROP_RATE_FLOOR, NM_TEMP_MODE_CALCULIX
  public :: NM_SV_P, NM_SV_EPS_P, NM_SV_PDOT, NM_SV_NOUT, nm_message_once, nm_elastic, nm_elastic_table

  integer, parameter :: NM_NSTATV = @@NSTATV@@
  integer, parameter :: NM_NPROPS = @@NFIXED@@ + NM_NEXTRA
  integer, parameter :: NM_OK = @@OK@@, NM_STEP_CUT = @@STEP_CUT@@, NM_BAD_INPUT = @@BAD_INPUT@@
  real(c_double), parameter :: NM_RTOL = @@RTOL@@          ! |r| <= RTOL * q_trial
  integer, parameter :: NM_MAX_ITER = @@MAX_ITER@@
  real(c_double), parameter :: NM_BRACKET_RTOL = @@BRACKET_RTOL@@   ! b - a <= it * b: the bracket cannot shrink
  real(c_double), parameter :: NM_PNEWDT_CUT = @@PNEWDT_CUT@@
  integer, parameter :: NM_TEMP_MODE_CALCULIX = @@TEMP_MODE_CALCULIX@@
  real(c_double), parameter :: NM_ABS_ZERO = @@ABS_ZERO@@        ! degC: T_end below it is bad input
  real(c_double), parameter :: NM_MAX_DSTRAN = @@MAX_DSTRAN@@    ! |DSTRAN(i)| above it is bad input
  ! PROPS and STATEV positions (1-based); NM_SV_EPS_P is the first of the 6 plastic strains
  integer, parameter :: NM_PROP_E = @@PROP_E@@, NM_PROP_NU = @@PROP_NU@@
  integer, parameter :: NM_PROP_TEMP_MODE = @@PROP_TEMP_MODE@@, NM_PROP_RATE_FLOOR = @@PROP_RATE_FLOOR@@
  integer, parameter :: NM_SV_P = @@SV_P@@, NM_SV_EPS_P = @@SV_EPS_P@@, NM_SV_PDOT = @@SV_PDOT@@, NM_SV_NOUT = @@SV_NOUT@@
!@@CONTAINS

  pure subroutine nm_elastic(E, nu, c)
    real(c_double), intent(in) :: E, nu
    real(c_double), intent(out) :: c(6, 6)
    real(c_double) :: lam, g
    integer :: i
    lam = E * nu / ((1.0d0 + nu) * (1.0d0 - 2.0d0 * nu))
    g = E / (2.0d0 * (1.0d0 + nu))
    c = 0.0d0
    c(1:3, 1:3) = lam
    do i = 1, 3
      c(i, i) = c(i, i) + 2.0d0 * g
      c(3 + i, 3 + i) = g
    end do
  end subroutine nm_elastic

  pure subroutine nm_flow(p, pdot, temp, extras, floor, sig, dsig_dp, dsig_dpdot, x)
    ! sigma_y(p, pdot, T, extras) with the rate floor `floor` (1/s); d/dpdot is 0 below the floor.
    ! x: the model input actually evaluated (rate raised to the floor)
    real(c_double), intent(in) :: p, pdot, temp, extras(NM_NEXTRA), floor
    real(c_double), intent(out) :: sig, dsig_dp, dsig_dpdot, x(NM_NF)
    real(c_double) :: ds(NM_NF)
    x(1) = p
    x(2) = max(pdot, floor)
    x(3) = temp
    x(4:) = extras
    call neumat_flow(x, sig, ds)
    dsig_dp = ds(1)
    dsig_dpdot = ds(2)
    if (pdot < floor) dsig_dpdot = 0.0d0
  end subroutine nm_flow

  pure subroutine nm_j2_update(props, stress, statev, dstran, dtime, temp, dtemp, ddsdde, status, niter)
    ! One stress update. stress(6), statev(NM_NSTATV): start values in, end values out
    ! (unchanged unless status == NM_OK). ddsdde(6,6): consistent tangent (elastic if not OK).
    real(c_double), intent(in) :: props(NM_NPROPS), dstran(6), dtime, temp, dtemp
    real(c_double), intent(inout) :: stress(6), statev(NM_NSTATV)
    real(c_double), intent(out) :: ddsdde(6, 6)
    integer, intent(out) :: status, niter
    real(c_double) :: E, nu, g, k, tend, floor, extras(NM_NEXTRA)
    real(c_double) :: str(6), s(6), mean, q, nrm(6), pn, dp, a, b, r
    real(c_double) :: sy, hp, hr, h, theta, thetab, dpn, x(NM_NF)
    real(c_double) :: gs, rg, hg, xg(NM_NF)
    real(c_double) :: snew(6), svnew(NM_NSTATV), d(6, 6)
    integer :: i, j, it
    logical :: conv, usable, proven

    niter = 0
    status = NM_OK
    E = props(NM_PROP_E)
    nu = props(NM_PROP_NU)
    extras = props(@@NFIXED@@ + 1:)
    ! ---- input checks: nothing is changed, an elastic (finite) tangent is returned
    if (.not. (all(ieee_is_finite(props)) .and. E > 0.0d0 .and. nu > -1.0d0 .and. nu < 0.5d0)) then
      call nm_fallback_tangent(E, nu, ddsdde)
      status = NM_BAD_INPUT
      return
    end if
    call nm_elastic(E, nu, ddsdde)
    if (.not. (all(ieee_is_finite(stress)) .and. all(ieee_is_finite(statev)) &
               .and. all(ieee_is_finite(dstran)) .and. ieee_is_finite(dtime) &
               .and. ieee_is_finite(temp) .and. ieee_is_finite(dtemp)) .or. .not. dtime > 0.0d0) then
      status = NM_BAD_INPUT
      return
    end if
    if (props(NM_PROP_TEMP_MODE) == real(NM_TEMP_MODE_CALCULIX, c_double)) then
      tend = temp
    else
      tend = temp + dtemp
    end if
    ! physically impossible states: below absolute zero, negative p, a strain increment beyond small strain
    if (tend < NM_ABS_ZERO .or. statev(NM_SV_P) < 0.0d0 .or. any(abs(dstran) > NM_MAX_DSTRAN)) then
      status = NM_BAD_INPUT
      return
    end if
    floor = props(NM_PROP_RATE_FLOOR)
    if (.not. floor > 0.0d0) floor = NM_RATE_FLOOR
    g = E / (2.0d0 * (1.0d0 + nu))
    k = E / (3.0d0 * (1.0d0 - 2.0d0 * nu))
    pn = statev(NM_SV_P)

    ! ---- elastic trial
    str = stress + matmul(ddsdde, dstran)
    mean = (str(1) + str(2) + str(3)) / 3.0d0
    s = str
    s(1:3) = s(1:3) - mean
    q = sqrt(1.5d0 * (s(1)**2 + s(2)**2 + s(3)**2 + 2.0d0 * (s(4)**2 + s(5)**2 + s(6)**2)))
    ! ---- warm start: the previous increment's rate gives the guess g = pdot_n * dtime; r(g) > 0
    ! proves the step plastic (r decreases in dp), so the yield check is then skipped
    b = q / (3.0d0 * g)
    a = 0.0d0
    gs = statev(NM_SV_PDOT) * dtime
    usable = .false.
    proven = .false.
    if (gs > 0.0d0 .and. gs < b) then
      call nm_flow(pn + gs, gs / dtime, tend, extras, floor, sy, hp, hr, x)
      rg = q - 3.0d0 * g * gs - sy
      hg = hp + hr / dtime
      xg = x
      usable = ieee_is_finite(rg) .and. ieee_is_finite(hg)
      if (usable) proven = rg > 0.0d0 .or. abs(rg) <= NM_RTOL * q
    end if
    niter = 0
    if (proven) then
      dp = gs
      a = gs
      r = rg
      h = hg
      niter = 1
    else
      ! yield check at (p_n, pdot = 0 -> floor, T_end); for a cold start also the Newton start dp = 0
      call nm_flow(pn, 0.0d0, tend, extras, floor, sy, hp, hr, x)
      if (.not. ieee_is_finite(sy)) then
        status = NM_STEP_CUT
        return
      end if
      if (.not. q > sy) then
        stress = str
        statev(NM_SV_PDOT) = 0.0d0
        return
      end if
      if (usable) then             ! r(0) > 0 >= r(g): the root is in (0, g), Newton from g
        dp = gs
        b = gs
        r = rg
        h = hg
        x = xg
        niter = 2
      else
        dp = 0.0d0
        r = q - sy
        h = hp + hr / dtime
        niter = 1
      end if
    end if

    ! ---- plastic: safeguarded Newton on dp in the bracket [a, b], bisection when Newton leaves it
    conv = .false.
    do it = 1, NM_MAX_ITER
      if (it > 1) then
        call nm_flow(pn + dp, dp / dtime, tend, extras, floor, sy, hp, hr, x)
        r = q - 3.0d0 * g * dp - sy
        h = hp + hr / dtime
        niter = niter + 1
      end if
      if (.not. (ieee_is_finite(r) .and. ieee_is_finite(h))) exit
      if (abs(r) <= NM_RTOL * q) then
        conv = .true.
        exit
      end if
      if (r > 0.0d0) then
        a = dp
      else
        b = dp
      end if
      dpn = dp - r / (-3.0d0 * g - h)
      if (.not. (dpn > a .and. dpn < b)) dpn = 0.5d0 * (a + b)
      ! the bracket cannot shrink any further: dp is known to rounding, r is the model's noise
      if (b - a <= NM_BRACKET_RTOL * b .or. dpn == dp) then
        conv = .true.
        exit
      end if
      dp = dpn
    end do
    if (.not. conv) then
      status = NM_STEP_CUT
      return
    end if

    ! ---- converged: new stress, state and the consistent tangent (committed only if finite)
    theta = 1.0d0 - 3.0d0 * g * dp / q
    nrm = s / (sqrt(2.0d0 / 3.0d0) * q)                 ! unit deviatoric direction (tensor norm 1)
    snew(1:3) = mean + theta * s(1:3)
    snew(4:6) = theta * s(4:6)
    svnew = statev
    svnew(NM_SV_P) = pn + dp
    svnew(NM_SV_EPS_P:NM_SV_EPS_P + 2) = statev(NM_SV_EPS_P:NM_SV_EPS_P + 2) + (1.5d0 * dp / q) * s(1:3)
    svnew(NM_SV_EPS_P + 3:NM_SV_EPS_P + 5) = statev(NM_SV_EPS_P + 3:NM_SV_EPS_P + 5) &
                                           + (1.5d0 * dp / q) * s(4:6) * 2.0d0     ! engineering shear
    svnew(NM_SV_PDOT) = dp / dtime
    if (nm_out_of_box(x)) svnew(NM_SV_NOUT) = statev(NM_SV_NOUT) + 1.0d0
    thetab = 1.0d0 / (1.0d0 + h / (3.0d0 * g)) - (1.0d0 - theta)
    do j = 1, 6
      do i = 1, 6
        d(i, j) = -2.0d0 * (g * thetab) * nrm(i) * nrm(j)
      end do
    end do
    do j = 1, 3
      do i = 1, 3
        d(i, j) = d(i, j) + (k - 2.0d0 * g * theta / 3.0d0)
      end do
    end do
    do i = 1, 3
      d(i, i) = d(i, i) + 2.0d0 * g * theta
      d(3 + i, 3 + i) = d(3 + i, 3 + i) + g * theta
    end do
    if (.not. (all(ieee_is_finite(snew)) .and. all(ieee_is_finite(svnew)) .and. all(ieee_is_finite(d)))) then
      status = NM_STEP_CUT
      return
    end if
    stress = snew
    statev = svnew
    ddsdde = d
  end subroutine nm_j2_update

  pure subroutine nm_fallback_tangent(E, nu, c)
    ! a finite tangent when E or nu is unusable: the elastic one if it is finite, else identity
    real(c_double), intent(in) :: E, nu
    real(c_double), intent(out) :: c(6, 6)
    integer :: i
    if (ieee_is_finite(E) .and. ieee_is_finite(nu) .and. E > 0.0d0 .and. nu > -1.0d0 .and. nu < 0.5d0) then
      call nm_elastic(E, nu, c)
    else
      c = 0.0d0
      do i = 1, 6
        c(i, i) = 1.0d0
      end do
    end if
  end subroutine nm_fallback_tangent

  pure subroutine nm_elastic_table(props, nprops, tend, e, nu, ok)
    ! The optional elastic table after the model's PROPS (fem_bridge.conventions.elastic_at):
    ! PROPS(NM_NPROPS+1) = n_T, then n_T rows (T degC, E MPa, nu). With a valid table e, nu become its
    ! linear interpolation at tend (constant beyond the ends); a malformed one gives e = -1 (bad input)
    ! and ok = .false.; without a table (or n_T = 0 alone) e, nu are left as they are.
    integer, intent(in) :: nprops
    real(c_double), intent(in) :: props(nprops), tend
    real(c_double), intent(inout) :: e, nu
    logical, intent(out) :: ok
    integer :: b, nt, i, j
    real(c_double) :: cnt, slope
    b = NM_NPROPS
    ok = .true.
    if (nprops <= b) return
    cnt = props(b + 1)
    if (nprops == b + 1 .and. cnt == 0.0d0) return
    ok = .false.
    if (.not. (ieee_is_finite(cnt) .and. cnt >= 0.0d0 .and. cnt == anint(cnt))) then
      e = -1.0d0
      return
    end if
    nt = nint(cnt)
    if (nprops /= b + 1 + 3 * nt) then
      e = -1.0d0
      return
    end if
    do i = 1, nt
      j = b + 2 + 3 * (i - 1)                   ! T_i at j, E_i at j + 1, nu_i at j + 2
      if (.not. (all(ieee_is_finite(props(j:j + 2))) .and. props(j + 1) > 0.0d0 &
                 .and. props(j + 2) > -1.0d0 .and. props(j + 2) < 0.5d0)) then
        e = -1.0d0
        return
      end if
      if (i > 1) then
        if (.not. props(j) > props(j - 3)) then
          e = -1.0d0
          return
        end if
      end if
    end do
    ok = .true.
    if (.not. ieee_is_finite(tend)) then
      e = tend
      nu = tend
      return
    end if
    j = b + 2
    if (tend <= props(j)) then
      e = props(j + 1)
      nu = props(j + 2)
      return
    end if
    j = b + 2 + 3 * (nt - 1)
    if (tend >= props(j)) then
      e = props(j + 1)
      nu = props(j + 2)
      return
    end if
    do i = 1, nt - 1
      j = b + 2 + 3 * i                         ! row i + 1
      if (tend < props(j)) exit
    end do
    j = b + 2 + 3 * (i - 1)                     ! row i: T_i <= tend < T_(i+1)
    slope = (props(j + 4) - props(j + 1)) / (props(j + 3) - props(j))
    e = props(j + 1) + slope * (tend - props(j))
    slope = (props(j + 5) - props(j + 2)) / (props(j + 3) - props(j))
    nu = props(j + 2) + slope * (tend - props(j))
  end subroutine nm_elastic_table

  subroutine nm_message_once(code, text)
    ! Print `text` on unit 6 (and on unit 7, the Abaqus .msg file, when the host has it open) once
    ! per process and `code`, without mutable memory (threads call the UMAT at once; no SAVEd
    ! data): the caller that creates $TMPDIR/neumat_umat_<pid>_<code>.flag with STATUS='NEW' (an
    ! exclusive create, exactly one succeeds) prints; every other call is silent.
    integer, intent(in) :: code
    character(len=*), intent(in) :: text
    character(len=2048) :: dir, fname
    integer :: u, ios, n
    logical :: op
    interface
      function nm_getpid() bind(C, name="getpid") result(pid)     ! POSIX getpid(2)
        use, intrinsic :: iso_c_binding, only: c_int
        integer(c_int) :: pid
      end function nm_getpid
    end interface
    call get_environment_variable("TMPDIR", dir, n, ios)
    if (ios /= 0 .or. n == 0) dir = "/tmp"
    write(fname, '(a, "/neumat_umat_", i0, "_", i0, ".flag")') trim(dir), nm_getpid(), code
    open(newunit=u, file=trim(fname), status="new", action="write", iostat=ios)
    if (ios /= 0) return
    write(u, '(a)', iostat=ios) text
    close(u, iostat=ios)
    write(6, '(a)', iostat=ios) text
    flush(6, iostat=ios)
    inquire(unit=7, opened=op, iostat=ios)
    if (ios == 0 .and. op) write(7, '(a)', iostat=ios) text
  end subroutine nm_message_once

  subroutine neumat_j2_batch(n, nprops, props, nstatv, stress, statev, dstran, dtime, temp, ddsdde, &
                             status, niter, nthreads) bind(C, name="neumat_j2_batch")
    ! The return mapping of nm_j2_update for n independent points in one call (from C/numpy,
    ! row-major per point): props (n, nprops), stress (n, 6), statev (n, nstatv), dstran (n, 6),
    ! dtime (n), temp (n) = T_end (with PROPS(3) = CalculiX mode), ddsdde (n, 6, 6) written as
    ! ddsdde(i, j) = d dsigma_i / d deps_j in Fortran order, status and niter (n).
    ! OpenMP over the points with nthreads threads (static schedule: results do not depend on it).
    use, intrinsic :: iso_c_binding, only: c_int
    integer(c_int64_t), value, intent(in) :: n
    integer(c_int), value, intent(in) :: nprops, nstatv, nthreads
    real(c_double), intent(in) :: props(nprops, n), dstran(6, n), dtime(n), temp(n)
    real(c_double), intent(inout) :: stress(6, n), statev(nstatv, n)
    real(c_double), intent(out) :: ddsdde(6, 6, n)
    integer(c_int), intent(out) :: status(n), niter(n)
    integer(c_int64_t) :: i
    integer :: st, it
    !$omp parallel do num_threads(max(nthreads, 1)) schedule(static) private(st, it)
    do i = 1, n
      call nm_j2_update(props(1:NM_NPROPS, i), stress(:, i), statev(1:NM_NSTATV, i), dstran(:, i), dtime(i), &
                        temp(i), 0.0d0, ddsdde(:, :, i), st, it)
      status(i) = st
      niter(i) = it
    end do
    !$omp end parallel do
  end subroutine neumat_j2_batch
!@@EXTERNAL
subroutine umat(stress, statev, ddsdde, sse, spd, scd, rpl, ddsddt, drplde, drpldt, &
                stran, dstran, time, dtime, temp, dtemp, predef, dpred, cmname, ndi, nshr, &
                ntens, nstatv, props, nprops, coords, drot, pnewdt, celent, dfgrd0, dfgrd1, &
                noel, npt, layer, kspt, jstep, kinc)
  ! Abaqus UMAT argument list (gfortran exports it as umat_). Reentrant: no SAVEd data, all
  ! locals on the stack (built with -frecursive), so solvers may call it from many threads.
  use, intrinsic :: iso_c_binding, only: c_double
  use, intrinsic :: ieee_arithmetic, only: ieee_is_finite
  use @@FLOWMOD@@
  implicit none
  integer, intent(in) :: ndi, nshr, ntens, nstatv, nprops, noel, npt, layer, kspt, jstep, kinc
  character(len=80), intent(in) :: cmname
  real(c_double), intent(inout) :: stress(ntens), statev(nstatv), sse, spd, scd, pnewdt
  real(c_double), intent(out) :: ddsdde(ntens, ntens), rpl, ddsddt(ntens), drplde(ntens), drpldt
  real(c_double), intent(in) :: stran(ntens), dstran(ntens), time(2), dtime, temp, dtemp
  real(c_double), intent(in) :: predef(*), dpred(*), props(nprops), coords(3), drot(3, 3)
  real(c_double), intent(in) :: celent, dfgrd0(3, 3), dfgrd1(3, 3)
  real(c_double) :: c(6, 6), sv(NM_NSTATV), st(6), de(6), dp, mean, seq, e, nu, pr(NM_NPROPS), tt
  logical :: table_ok
  integer :: status, niter, nt, i

  rpl = 0.0d0
  drpldt = 0.0d0
  ddsddt = 0.0d0
  drplde = 0.0d0
  ! ---- whole-run problems: never stop the host. Status BAD_INPUT (stress and state unchanged,
  ! elastic tangent), PNEWDT cut, one message per run (nm_message_once).
  if (ntens == 6 .and. ndi == 3 .and. nshr == 3) then
    nt = 6                                  ! 3-D solids: 11 22 33 12 13 23
  else if (ntens == 4 .and. ndi == 3 .and. nshr == 1) then
    nt = 4                                  ! plane strain, axisymmetric, generalised plane strain: 11 22 33 12
  else
    call nm_message_once(1, "neumat UMAT: element type not supported (NTENS = 3, NDI = 2 is plane stress / shells);" &
      // " use 3-D (NTENS = 6), plane strain or axisymmetric (NTENS = 4) elements. Every call is refused (PNEWDT cut).")
    call nm_refuse(ntens, ndi, props, nprops, stress, statev, nstatv, ddsdde, pnewdt)
    return
  end if
  if (nstatv < NM_NSTATV) then
    call nm_message_once(2, "neumat UMAT: *DEPVAR must be at least @@NSTATV@@ (see the STATEV table of material.inp);" &
      // " every call is refused (PNEWDT cut).")
    call nm_refuse(ntens, ndi, props, nprops, stress, statev, nstatv, ddsdde, pnewdt)
    return
  end if
  if (nprops < NM_NPROPS) then
    call nm_message_once(3, "neumat UMAT: *USER MATERIAL, CONSTANTS must be at least @@NPROPS@@ (see the PROPS table" &
      // " of material.inp); every call is refused (PNEWDT cut).")
    call nm_refuse(ntens, ndi, props, nprops, stress, statev, nstatv, ddsdde, pnewdt)
    return
  end if
  if (.not. (all(ieee_is_finite(props(1:NM_NPROPS))) .and. props(NM_PROP_E) > 0.0d0 &
             .and. props(NM_PROP_NU) > -1.0d0 .and. props(NM_PROP_NU) < 0.5d0)) then
    call nm_message_once(4, "neumat UMAT: PROPS unusable (E must be > 0 MPa, -1 < nu < 0.5, all PROPS finite);" &
      // " every call is refused (PNEWDT cut).")
  end if
  st = 0.0d0
  de = 0.0d0
  st(1:nt) = stress(1:nt)
  de(1:nt) = dstran(1:nt)
  sv = statev(1:NM_NSTATV)
  ! E(T), nu(T) from the optional PROPS table (hosts that do not interpolate PROPS: Abaqus)
  pr = props(1:NM_NPROPS)
  if (nprops > NM_NPROPS) then
    if (props(NM_PROP_TEMP_MODE) == real(NM_TEMP_MODE_CALCULIX, c_double)) then
      tt = temp
    else
      tt = temp + dtemp
    end if
    call nm_elastic_table(props, nprops, tt, pr(NM_PROP_E), pr(NM_PROP_NU), table_ok)
    if (.not. table_ok) call nm_message_once(5, "neumat UMAT: the elastic table in PROPS after the model's " &
      // "constants is malformed (count, increasing temperatures, E > 0, -1 < nu < 0.5); every call is refused (PNEWDT cut).")
  end if
  call nm_j2_update(pr, st, sv, de, dtime, temp, dtemp, c, status, niter)
  ddsdde = c(1:nt, 1:nt)
  if (status == NM_OK) then
    ! SPD += sigma_eq * dp (plastic dissipation), SSE = 1/2 sigma : C^-1 : sigma (MPa = MJ/m^3)
    dp = sv(NM_SV_P) - statev(NM_SV_P)
    mean = (st(1) + st(2) + st(3)) / 3.0d0
    seq = sqrt(1.5d0 * ((st(1) - mean)**2 + (st(2) - mean)**2 + (st(3) - mean)**2 &
                        + 2.0d0 * (st(4)**2 + st(5)**2 + st(6)**2)))
    spd = spd + seq * dp
    e = pr(NM_PROP_E)
    nu = pr(NM_PROP_NU)
    sse = 0.5d0 / e * (st(1)**2 + st(2)**2 + st(3)**2 + 2.0d0 * (1.0d0 + nu) * (st(4)**2 + st(5)**2 + st(6)**2) &
                       - 2.0d0 * nu * (st(1) * st(2) + st(2) * st(3) + st(1) * st(3)))
    stress = st(1:nt)
    statev(1:NM_NSTATV) = sv
  else
    ! the host always gets finite values: non-finite entries of a refused point become 0
    do i = 1, nt
      if (.not. ieee_is_finite(stress(i))) stress(i) = 0.0d0
    end do
    do i = 1, NM_NSTATV
      if (.not. ieee_is_finite(statev(i))) statev(i) = 0.0d0
    end do
    ! ask for a smaller increment. CalculiX passes PNEWDT = -1 ("no request"), Abaqus a large
    ! value: keep a smaller positive request made by an earlier point, else PNEWDT_CUT.
    if (.not. (pnewdt > 0.0d0 .and. pnewdt <= NM_PNEWDT_CUT)) pnewdt = NM_PNEWDT_CUT
  end if
contains

  subroutine nm_refuse(ntens, ndi, props, nprops, stress, statev, nstatv, ddsdde, pnewdt)
    ! a call the UMAT cannot serve: stress and state kept (non-finite entries -> 0), a finite
    ! elastic tangent (plane stress for NTENS = 3, NDI = 2; identity when E, nu are unusable), PNEWDT cut
    integer, intent(in) :: ntens, ndi, nprops, nstatv
    real(c_double), intent(in) :: props(nprops)
    real(c_double), intent(inout) :: stress(ntens), statev(nstatv), pnewdt
    real(c_double), intent(out) :: ddsdde(ntens, ntens)
    real(c_double) :: ee, vv, f, cc(6, 6)
    integer :: j
    ddsdde = 0.0d0
    do j = 1, ntens
      ddsdde(j, j) = 1.0d0
    end do
    if (nprops >= 2) then
      ee = props(1)
      vv = props(2)
      if (ieee_is_finite(ee) .and. ieee_is_finite(vv) .and. ee > 0.0d0 .and. vv > -1.0d0 .and. vv < 0.5d0) then
        if (ntens == 3 .and. ndi == 2) then
          f = ee / (1.0d0 - vv * vv)
          ddsdde(1, 1) = f
          ddsdde(2, 2) = f
          ddsdde(1, 2) = f * vv
          ddsdde(2, 1) = f * vv
          ddsdde(3, 3) = f * 0.5d0 * (1.0d0 - vv)
        else if (ntens == 6 .or. ntens == 4) then
          call nm_elastic(ee, vv, cc)
          ddsdde = cc(1:ntens, 1:ntens)
        end if
      end if
    end if
    do j = 1, ntens
      if (.not. ieee_is_finite(stress(j))) stress(j) = 0.0d0
    end do
    do j = 1, nstatv
      if (.not. ieee_is_finite(statev(j))) statev(j) = 0.0d0
    end do
    if (.not. (pnewdt > 0.0d0 .and. pnewdt <= NM_PNEWDT_CUT)) pnewdt = NM_PNEWDT_CUT
  end subroutine nm_refuse
end subroutine umat
