"""The Gleeble hot-compression problem both FE hosts solve: its parameters (``CompressionSetup``),
the platen schedule and the columns of ``force_displacement.csv``.

A cylinder Ø ``diameter`` × ``height`` mm, isothermal at ``temperature`` °C, compressed between
two platens closing at the constant speed v = ε̇_nom · h0 (mm/s) until ln(h0/h) = ``strain``,
in ``increments`` equal time steps. Units: mm, s, MPa, °C.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from constitutive.errors import NeumatInputError

CSV_COLUMNS = ("increment", "time_s", "dt_s", "platen_displacement_mm", "height_mm", "true_strain",
               "nominal_strain", "force_N", "area_mm2", "true_stress_MPa", "mean_p", "newton_iterations",
               "cuts", "contact_nodes")


@dataclass(frozen=True)
class PlatenSchedule:
    """The platen motion of a setup: closing speed (mm/s), total travel h0 (1 − e^(−strain)) (mm),
    end time (s) and the nominal time step (s)."""
    speed: float
    travel: float
    end_time: float
    nominal_dt: float


@dataclass
class CompressionSetup:
    temperature: float = 1100.0          # °C
    strain_rate: float = 0.1             # nominal strain rate ε̇_nom = v/h0, 1/s
    strain: float = 0.5                  # final logarithmic height strain ln(h0/h)
    increments: int = 25
    friction: str = "none"               # "none" (frictionless, homogeneous) or "stick"
    E: float = 150000.0                  # MPa
    nu: float = 0.3
    diameter: float = 10.0               # mm
    height: float = 15.0                 # mm
    divisions: tuple[int, int, int] = (4, 3, 6)   # O-grid core, ring, layers over the half height
    extras: dict = field(default_factory=dict)    # extra model features by name
    rtol: float = 1e-10
    max_newton: int = 25
    max_cuts: int = 8

    def check(self) -> None:
        def bad(msg):
            raise NeumatInputError(msg)
        for name in ("temperature", "strain_rate", "strain", "E", "nu", "diameter", "height"):
            if not np.isfinite(getattr(self, name)):
                bad(f"{name} must be finite, got {getattr(self, name)!r}")
        if self.strain_rate <= 0:
            bad(f"strain rate must be > 0 1/s, got {self.strain_rate}")
        if not 0 < self.strain < 3:
            bad(f"strain (logarithmic height strain) must be in (0, 3), got {self.strain}")
        if self.increments < 1:
            bad(f"increments must be >= 1, got {self.increments}")
        if self.friction not in ("none", "stick"):
            bad(f"friction must be 'none' or 'stick', got {self.friction!r}")
        if self.E <= 0 or not -1 < self.nu < 0.5:
            bad(f"need E > 0 MPa and -1 < nu < 0.5, got E={self.E}, nu={self.nu}")
        if self.diameter <= 0 or self.height <= 0:
            bad("diameter and height must be > 0 mm")
        if len(self.divisions) != 3 or min(self.divisions) < 1:
            bad(f"divisions must be three positive integers (core, ring, layers), got {self.divisions}")

    def extras_for(self, flow) -> np.ndarray | None:
        """The model's extra features (beyond strain, rate, temperature) in its order, from
        ``extras``; None when it has none. Names missing or unknown to the model: an error."""
        names = list(flow.feature_names)[3:]
        unknown = sorted(set(self.extras) - set(names))
        missing = [e for e in names if e not in self.extras]
        if unknown or missing:
            raise NeumatInputError(f"the model's extra features are {names or 'none'}; missing {missing or 'none'}, "
                                   f"unknown {unknown or 'none'} (give --extra NAME=VALUE)")
        return np.array([float(self.extras[e]) for e in names]) if names else None

    def schedule(self) -> PlatenSchedule:
        """Platen speed v = ε̇_nom · h0, travel, end time and nominal step of this setup."""
        v = self.strain_rate * self.height
        s_end = self.height * (1.0 - np.exp(-self.strain))
        t_end = s_end / v
        return PlatenSchedule(v, s_end, t_end, t_end / self.increments)


def parse_divisions(text: str) -> tuple[int, ...]:
    """``--divisions`` "4,3,6" → (4, 3, 6) (O-grid core, ring, layers over the half height)."""
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise NeumatInputError(f"--divisions takes three integers like 4,3,6, got '{text}'") from None
