  elemental real(c_double) function nm_max(a, b)
    ! max with NaN propagation (Fortran's MAX may return the non-NaN argument)
    real(c_double), intent(in) :: a, b
    if (ieee_is_nan(a) .or. ieee_is_nan(b)) then
      nm_max = a + b
    else
      nm_max = max(a, b)
    end if
  end function nm_max

  elemental real(c_double) function nm_min(a, b)
    real(c_double), intent(in) :: a, b
    if (ieee_is_nan(a) .or. ieee_is_nan(b)) then
      nm_min = a + b
    else
      nm_min = min(a, b)
    end if
  end function nm_min

  elemental real(c_double) function nm_sigmoid(x)
    real(c_double), intent(in) :: x
    real(c_double) :: e
    e = exp(-abs(x))
    if (x >= 0.0d0) then
      nm_sigmoid = 1.0d0 / (1.0d0 + e)
    else
      nm_sigmoid = e / (1.0d0 + e)
    end if
  end function nm_sigmoid

  elemental real(c_double) function nm_softplus(x)
    real(c_double), intent(in) :: x
    nm_softplus = nm_max(x, 0.0d0) + nm_log1p(exp(-abs(x)))
  end function nm_softplus

  elemental real(c_double) function nm_elu(x, alpha)
    real(c_double), intent(in) :: x, alpha
    if (x > 0.0d0) then
      nm_elu = x
    else
      nm_elu = alpha * (exp(x) - 1.0d0)
    end if
  end function nm_elu

  elemental real(c_double) function nm_leaky(x, alpha)
    real(c_double), intent(in) :: x, alpha
    if (x >= 0.0d0) then
      nm_leaky = x
    else
      nm_leaky = alpha * x
    end if
  end function nm_leaky

  elemental real(c_double) function nm_sign(x)
    real(c_double), intent(in) :: x
    if (x > 0.0d0) then
      nm_sign = 1.0d0
    else if (x < 0.0d0) then
      nm_sign = -1.0d0
    else
      nm_sign = 0.0d0
    end if
  end function nm_sign

  elemental real(c_double) function nm_log1p(x)
    ! log(1 + x) without cancellation for small x (Fortran 2008 has no log1p intrinsic)
    real(c_double), intent(in) :: x
    real(c_double) :: u
    u = 1.0d0 + x
    if (u == 1.0d0) then
      nm_log1p = x
    else
      nm_log1p = log(u) * (x / (u - 1.0d0))
    end if
  end function nm_log1p
