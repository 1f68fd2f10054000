"""neumat: constitutive."""
