"""neumat: fortran_umat."""
