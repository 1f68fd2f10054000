!@@SPEC
! ---------------------------------------------------------------------------------------------
! J2 return mapping with the neural flow stress, and the Abaqus/CalculiX UMAT entry point.
! Same algorithm, PROPS and STATEV layout as the Python bridge (fem_bridge.conventions, j2):
! the positions below and the NM_PROP_* / NM_SV_* constants are filled in from conventions.
! Extra features: @@EXTRAS@@. Plastic strain: the 6 STATEV from NM_SV_EPS_P, Voigt order, engineering shear.
!@@LAYOUT@@
! Units: MPa, 1/s, degC, s.   Voigt order 11, 22, 33, 12, 13, 23; engineering shear strain.
! ---------------------------------------------------------------------------------------------
  public :: nm_j2_update, NM_NSTATV, NM_NPROPS, NM_OK, NM_STEP_CUT, NM_BAD_INPUT, NM_PNEWDT_CUT
  public :: NM_PROP_E, NM_PROP_NU, NM_PROP_TEMP_MODE, NM_PROP_RATE_FLOOR
  public :: NM_SV_P, NM_SV_EPS_P, NM_SV_PDOT, NM_SV_NOUT

  integer, parameter :: NM_NSTATV = @@NSTATV@@
  integer, parameter :: NM_NPROPS = @@NFIXED@@ + NM_NEXTRA
  integer, parameter :: NM_OK = @@OK@@, NM_STEP_CUT = @@STEP_CUT@@, NM_BAD_INPUT = @@BAD_INPUT@@
  real(c_double), parameter :: NM_RTOL = @@RTOL@@          ! |r| <= RTOL * q_trial
  integer, parameter :: NM_MAX_ITER = @@MAX_ITER@@
  real(c_double), parameter :: NM_PNEWDT_CUT = @@PNEWDT_CUT@@
  integer, parameter :: NM_TEMP_MODE_CALCULIX = @@TEMP_MODE_CALCULIX@@
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
    real(c_double) :: snew(6), svnew(NM_NSTATV), d(6, 6)
    integer :: i, j, it
    logical :: conv

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
    ! yield check at (p_n, pdot = 0 -> floor, T_end); it is also Newton iteration 1 (dp = 0)
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

    ! ---- plastic: Newton on dp in the bracket [0, q/(3G)], bisection when Newton leaves it
    a = 0.0d0
    b = q / (3.0d0 * g)
    dp = 0.0d0
    r = q - sy
    h = hp + hr / dtime
    conv = .false.
    do it = 1, NM_MAX_ITER
      if (it > 1) then
        call nm_flow(pn + dp, dp / dtime, tend, extras, floor, sy, hp, hr, x)
        r = q - 3.0d0 * g * dp - sy
        h = hp + hr / dtime
      end if
      niter = it
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
!@@EXTERNAL
subroutine umat(stress, statev, ddsdde, sse, spd, scd, rpl, ddsddt, drplde, drpldt, &
                stran, dstran, time, dtime, temp, dtemp, predef, dpred, cmname, ndi, nshr, &
                ntens, nstatv, props, nprops, coords, drot, pnewdt, celent, dfgrd0, dfgrd1, &
                noel, npt, layer, kspt, jstep, kinc)
  ! Abaqus UMAT argument list (gfortran exports it as umat_). Reentrant: no SAVEd data, all
  ! locals on the stack (built with -frecursive), so solvers may call it from many threads.
  use, intrinsic :: iso_c_binding, only: c_double
  use @@FLOWMOD@@
  implicit none
  integer, intent(in) :: ndi, nshr, ntens, nstatv, nprops, noel, npt, layer, kspt, jstep, kinc
  character(len=80), intent(in) :: cmname
  real(c_double), intent(inout) :: stress(ntens), statev(nstatv), sse, spd, scd, pnewdt
  real(c_double), intent(out) :: ddsdde(ntens, ntens), rpl, ddsddt(ntens), drplde(ntens), drpldt
  real(c_double), intent(in) :: stran(ntens), dstran(ntens), time(2), dtime, temp, dtemp
  real(c_double), intent(in) :: predef(*), dpred(*), props(nprops), coords(3), drot(3, 3)
  real(c_double), intent(in) :: celent, dfgrd0(3, 3), dfgrd1(3, 3)
  real(c_double) :: c(6, 6), sv(NM_NSTATV), st(6), dp, mean, seq, e, nu
  integer :: status, niter

  if (ntens /= 6 .or. ndi /= 3 .or. nshr /= 3) then
    error stop "neumat UMAT: only 3-D solid elements (NTENS = 6, NDI = NSHR = 3) are supported"
  end if
  if (nstatv < NM_NSTATV) then
    error stop "neumat UMAT: *DEPVAR must be at least @@NSTATV@@ (see the STATEV table)"
  end if
  if (nprops < NM_NPROPS) then
    error stop "neumat UMAT: *USER MATERIAL, CONSTANTS must be at least @@NPROPS@@ (see the PROPS table)"
  end if
  rpl = 0.0d0
  drpldt = 0.0d0
  ddsddt = 0.0d0
  drplde = 0.0d0
  st = stress
  sv = statev(1:NM_NSTATV)
  call nm_j2_update(props(1:NM_NPROPS), st, sv, dstran, dtime, temp, dtemp, c, status, niter)
  ddsdde = c
  if (status == NM_OK) then
    ! SPD += sigma_eq * dp (plastic dissipation), SSE = 1/2 sigma : C^-1 : sigma (MPa = MJ/m^3)
    dp = sv(NM_SV_P) - statev(NM_SV_P)
    mean = (st(1) + st(2) + st(3)) / 3.0d0
    seq = sqrt(1.5d0 * ((st(1) - mean)**2 + (st(2) - mean)**2 + (st(3) - mean)**2 &
                        + 2.0d0 * (st(4)**2 + st(5)**2 + st(6)**2)))
    spd = spd + seq * dp
    e = props(NM_PROP_E)
    nu = props(NM_PROP_NU)
    sse = 0.5d0 / e * (st(1)**2 + st(2)**2 + st(3)**2 + 2.0d0 * (1.0d0 + nu) * (st(4)**2 + st(5)**2 + st(6)**2) &
                       - 2.0d0 * nu * (st(1) * st(2) + st(2) * st(3) + st(1) * st(3)))
    stress = st
    statev(1:NM_NSTATV) = sv
  else
    ! ask for a smaller increment. CalculiX passes PNEWDT = -1 ("no request"), Abaqus a large
    ! value: keep a smaller positive request made by an earlier point, else PNEWDT_CUT.
    if (.not. (pnewdt > 0.0d0 .and. pnewdt <= NM_PNEWDT_CUT)) pnewdt = NM_PNEWDT_CUT
  end if
end subroutine umat
