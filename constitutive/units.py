"""Units of neumat (the one place they are fixed) and the conversion of read values into them.

| quantity       | unit  | field           |
| -------------- | ----- | --------------- |
| temperature    | °C    | ``temperature`` |
| strain rate    | 1/s   | ``strain_rate`` |
| true strain    | –     | ``strain``      |
| true stress    | MPa   | ``stress``      |

A reader converts what a file holds with :func:`convert_and_check`: each table below maps an
accepted unit to the factor (and, for temperature, the offset) that gives the internal unit;
values outside the physical / plausible ranges raise, naming file, line and column.
"""
from __future__ import annotations

import numpy as np

from .errors import DataError, NeumatInputError

KELVIN_OFFSET = 273.15
ABSOLUTE_ZERO_C = -KELVIN_OFFSET

# Accepted units of the fields (factor, offset to the internal unit).
TEMPERATURE_UNITS = {"C": (1.0, 0.0), "K": (1.0, -KELVIN_OFFSET), "F": (5.0 / 9.0, -32.0 * 5.0 / 9.0)}
STRESS_UNITS = {"MPa": 1.0, "Pa": 1e-6, "kPa": 1e-3, "GPa": 1e3, "psi": 6.894757e-3, "ksi": 6.894757}
STRAIN_RATE_UNITS = {"1/s": 1.0, "1/min": 1.0 / 60.0, "1/ms": 1e3}
# Plausibility range of a hot-working flow stress in MPa; outside it the unit is most likely wrong.
PLAUSIBLE_STRESS_MPA = (1e-3, 2e4)
PLAUSIBLE_TEMPERATURE_C = (ABSOLUTE_ZERO_C, 3500.0)


def celsius_to_kelvin(t_c):
    return np.asarray(t_c, dtype=float) + KELVIN_OFFSET


def kelvin_to_celsius(t_k):
    return np.asarray(t_k, dtype=float) - KELVIN_OFFSET


def _check_unit(kind: str, unit: str, table: dict) -> None:
    if unit not in table:
        raise NeumatInputError(f"{kind} unit '{unit}' unknown; use one of {', '.join(table)}")


def convert_and_check(path, values: dict[str, np.ndarray], lines, columns: dict[str, str],
                      temperature_unit: str, stress_unit: str, strain_rate_unit: str) -> None:
    """Convert the fields present in ``values`` to internal units in place and check their
    physical ranges; the first bad value raises naming file, line and column."""
    _check_unit("temperature", temperature_unit, TEMPERATURE_UNITS)
    _check_unit("stress", stress_unit, STRESS_UNITS)
    _check_unit("strain-rate", strain_rate_unit, STRAIN_RATE_UNITS)

    def first_bad(name, mask, msg):
        bad = np.flatnonzero(mask)
        if len(bad):
            line = lines[bad[0]]
            raise DataError(msg(values[name][bad[0]]), file=str(path),
                            row=None if line is None else int(line), column=columns[name])

    if "temperature" in values:
        a, b = TEMPERATURE_UNITS[temperature_unit]
        t = np.round(values["temperature"] * a + b, 9)
        values["temperature"] = t
        first_bad("temperature", t <= ABSOLUTE_ZERO_C,
                  lambda v: f"temperature {v:g} °C is at or below absolute zero (allowed: > "
                            f"{ABSOLUTE_ZERO_C} °C, i.e. > 0 K; unit given: {temperature_unit})")
        first_bad("temperature", t > PLAUSIBLE_TEMPERATURE_C[1],
                  lambda v: f"temperature {v:g} °C is above {PLAUSIBLE_TEMPERATURE_C[1]:g} °C "
                            f"(allowed: {ABSOLUTE_ZERO_C} … {PLAUSIBLE_TEMPERATURE_C[1]:g} °C): wrong "
                            f"unit? (given: {temperature_unit}; use --temperature-unit)")
    if "strain_rate" in values:
        values["strain_rate"] = values["strain_rate"] * STRAIN_RATE_UNITS[strain_rate_unit]
        first_bad("strain_rate", values["strain_rate"] <= 0,
                  lambda v: f"strain rate {v:g} 1/s is not > 0 (allowed: > 0; give magnitudes)")
    if "strain" in values:
        first_bad("strain", values["strain"] < 0,
                  lambda v: f"true strain {v:g} is negative (allowed: >= 0; give magnitudes for "
                            f"compression)")
    if "stress" in values:
        s = values["stress"] = values["stress"] * STRESS_UNITS[stress_unit]
        first_bad("stress", s <= 0,
                  lambda v: f"stress {v:g} MPa is not > 0 (allowed: > 0 MPa; give magnitudes for "
                            f"compression)")
        med = float(np.median(s))
        if not PLAUSIBLE_STRESS_MPA[0] <= med <= PLAUSIBLE_STRESS_MPA[1]:
            i = int(np.argmax(s)) if med > PLAUSIBLE_STRESS_MPA[1] else int(np.argmin(s))
            raise DataError(f"median stress {med:g} MPa is outside the plausible {PLAUSIBLE_STRESS_MPA[0]:g} … "
                            f"{PLAUSIBLE_STRESS_MPA[1]:g} MPa: wrong unit? (given: {stress_unit}; use "
                            f"--stress-unit Pa|kPa|MPa|GPa|psi|ksi)", file=str(path),
                            row=int(lines[i]), column=columns["stress"])

