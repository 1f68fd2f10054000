! Test-only Abaqus UMAT: small-strain J2 plasticity with LINEAR isotropic hardening,
! sigma_y(p) = SY0 + H p, radial return, consistent tangent. Used by tests/test_ccx.py to check
! the deck writer and CalculiX's run-time UMAT loading independently of the generated UMAT.
!   PROPS: 1 E (MPa), 2 nu, 3 SY0 (MPa), 4 H (MPa)
!   STATEV: 1 p, 2..7 plastic strain (Voigt 11 22 33 12 13 23, engineering shear)
! No SAVE, no module state (ccx may call it from several threads).
subroutine umat(stress, statev, ddsdde, sse, spd, scd, rpl, ddsddt, drplde, drpldt, &
                stran, dstran, time, dtime, temp, dtemp, predef, dpred, cmname, &
                ndi, nshr, ntens, nstatv, props, nprops, coords, drot, pnewdt, &
                celent, dfgrd0, dfgrd1, noel, npt, layer, kspt, kstep, kinc)
  implicit none
  integer, intent(in) :: ndi, nshr, ntens, nstatv, nprops, noel, npt, layer, kspt, kinc
  integer, intent(in) :: kstep(*)
  character(len=80), intent(in) :: cmname
  double precision, intent(inout) :: stress(ntens), statev(nstatv), ddsdde(ntens, ntens)
  double precision, intent(inout) :: sse, spd, scd, rpl, drpldt, pnewdt
  double precision, intent(inout) :: ddsddt(ntens), drplde(ntens)
  double precision, intent(in) :: stran(ntens), dstran(ntens), time(2), dtime, temp, dtemp
  double precision, intent(in) :: predef(*), dpred(*), props(nprops), coords(3), drot(3, 3)
  double precision, intent(in) :: celent, dfgrd0(3, 3), dfgrd1(3, 3)

  double precision :: e, nu, sy0, h, g, k, lam, p, q, dp, theta, thetab, trs
  double precision :: s(6), n(6), strial(6)
  integer :: i, j

  e = props(1); nu = props(2); sy0 = props(3); h = props(4)
  g = e / (2d0 * (1d0 + nu)); k = e / (3d0 * (1d0 - 2d0 * nu)); lam = k - 2d0 * g / 3d0
  ddsdde = 0d0
  do i = 1, 3
    do j = 1, 3
      ddsdde(i, j) = lam
    end do
    ddsdde(i, i) = lam + 2d0 * g
    ddsdde(i + 3, i + 3) = g
  end do
  strial = stress + matmul(ddsdde, dstran)
  p = statev(1)
  trs = (strial(1) + strial(2) + strial(3)) / 3d0
  s = strial
  s(1:3) = s(1:3) - trs
  q = sqrt(1.5d0 * (s(1)**2 + s(2)**2 + s(3)**2 + 2d0 * (s(4)**2 + s(5)**2 + s(6)**2)))
  if (q <= sy0 + h * p) then
    stress = strial
    return
  end if
  dp = (q - sy0 - h * p) / (3d0 * g + h)
  n = 1.5d0 * s / q                        ! flow direction, dq/dsigma
  theta = 1d0 - 3d0 * g * dp / q
  stress = strial
  stress(1:3) = trs + theta * s(1:3)
  stress(4:6) = theta * s(4:6)
  statev(1) = p + dp
  statev(2:4) = statev(2:4) + dp * n(1:3)
  statev(5:7) = statev(5:7) + 2d0 * dp * n(4:6)
  ! consistent tangent: K 1x1 + 2G theta Idev - 2G thetab nhat x nhat
  thetab = 1d0 / (1d0 + h / (3d0 * g)) - (1d0 - theta)
  n = n * sqrt(2d0 / 3d0)                  ! unit deviatoric normal
  ddsdde = 0d0
  do i = 1, 3
    do j = 1, 3
      ddsdde(i, j) = k - 2d0 * g * theta / 3d0
    end do
    ddsdde(i, i) = ddsdde(i, i) + 2d0 * g * theta
    ddsdde(i + 3, i + 3) = g * theta
  end do
  do i = 1, 6
    do j = 1, 6
      ddsdde(i, j) = ddsdde(i, j) - 2d0 * g * thetab * n(i) * n(j)
    end do
  end do
end subroutine umat
