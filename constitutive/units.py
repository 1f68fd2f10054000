"""Units of neumat (the one place they are fixed) and the conversion of read values into them.

| quantity       | unit  | field           |
| -------------- | ----- | --------------- |
| temperature    | °C    | ``temperature`` |
| strain rate    | 1/s   | ``strain_rate`` |
| true strain    | –     | ``strain``      |
| true stress    | MPa   | ``stress``      |

A reader converts what a file holds with :func:`convert_and_check`: each table below maps an
accepted unit to the factor (and, for temperature, the offset) that gives the internal unit;
values outside the physical / plausible ranges raise, naming file, line and column (all of them
in one error). A temperature unit left unsaid (``None``) means °C, but values that look like
kelvin (:func:`looks_like_kelvin`: above ``KELVIN_HINT_C``, or every value 273.15 + a multiple
of 25) are refused with a hint to say ``K`` (or ``C``, which accepts them).
"""
from __future__ import annotations

import numpy as np

from .csv_table import Problems
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
# Above this a temperature said to be °C only by default is taken for kelvin (an error asking for
# --temperature-unit K, or an explicit --temperature-unit C).
KELVIN_HINT_C = 1800.0


def celsius_to_kelvin(t_c):
    return np.asarray(t_c, dtype=float) + KELVIN_OFFSET


def kelvin_to_celsius(t_k):
    return np.asarray(t_k, dtype=float) - KELVIN_OFFSET


def _check_unit(kind: str, unit: str, table: dict) -> None:
    if unit not in table:
        raise NeumatInputError(f"{kind} unit '{unit}' unknown; use one of {', '.join(table)}")


def looks_like_kelvin(t_c) -> str | None:
    """Why temperatures read as °C look like kelvin, or None: one above ``KELVIN_HINT_C``, or
    (two or more distinct values, all >= 273, none a multiple of 5) every value minus 273.15 or
    273 a multiple of 25 — nominal test temperatures (900, 950, 1000 °C) written in kelvin."""
    u = np.unique(np.round(np.asarray(t_c, dtype=float), 6))
    u = u[np.isfinite(u)]
    if not len(u):
        return None
    if u.max() > KELVIN_HINT_C:
        return f"{u.max():g} °C is above {KELVIN_HINT_C:g} °C"

    def multiple(v, k):
        return np.abs(v / k - np.round(v / k)) < 1e-6
    if len(u) >= 2 and u.min() >= 273.0 and not multiple(u, 5.0).any():
        for off in (KELVIN_OFFSET, 273.0):
            if multiple(u - off, 25.0).all():
                shown = ", ".join(f"{v:g}" for v in u[:6]) + (", ..." if len(u) > 6 else "")
                return (f"the temperatures {shown} are all {off:g} + a multiple of 25 "
                        f"({u[0] - off:g} … {u[-1] - off:g} °C as kelvin)")
    return None


def check_not_kelvin(path, t_c, lines, column: str, temperature_unit: str | None) -> None:
    """With the temperature unit left unsaid (``None``: °C), temperatures that look like kelvin
    (:func:`looks_like_kelvin`) are an error naming the file, the first row and the column; an
    explicit ``"C"`` accepts them."""
    if temperature_unit is not None:
        return
    why = looks_like_kelvin(t_c)
    if why is None:
        return
    t = np.asarray(t_c, dtype=float)
    k = int(np.nanargmax(t)) if "above" in why else 0
    line = lines[k] if len(lines) else None
    raise DataError(f"temperatures read as °C look like kelvin: {why}; use --temperature-unit K "
                    f"(temperature_unit='K'), or --temperature-unit C if they really are °C",
                    file=str(path), row=None if line is None else int(line), column=column)


def convert_and_check(path, values: dict[str, np.ndarray], lines, columns: dict[str, str],
                      temperature_unit: str | None, stress_unit: str, strain_rate_unit: str,
                      problems: Problems | None = None) -> None:
    """Convert the fields present in ``values`` to internal units in place and check their
    physical ranges. Every bad value is recorded in ``problems`` (or, without it, raised at the
    end, all of them in one error naming file, line and column); NaN values (cells that did not
    parse, already recorded) are skipped. ``temperature_unit=None`` means °C, with temperatures
    that look like kelvin refused (:func:`check_not_kelvin`); ``"C"`` says °C explicitly."""
    implicit_c = temperature_unit is None
    temperature_unit = "C" if implicit_c else temperature_unit
    _check_unit("temperature", temperature_unit, TEMPERATURE_UNITS)
    _check_unit("stress", stress_unit, STRESS_UNITS)
    _check_unit("strain-rate", strain_rate_unit, STRAIN_RATE_UNITS)
    own = problems is None
    problems = Problems() if own else problems

    def bad(name, mask, msg):
        for i in np.flatnonzero(mask):
            line = lines[i]
            problems.add(path, None if line is None else int(line), columns[name], msg(values[name][i]))

    if "temperature" in values:
        a, b = TEMPERATURE_UNITS[temperature_unit]
        t = np.round(values["temperature"] * a + b, 9)
        values["temperature"] = t
        bad("temperature", t <= ABSOLUTE_ZERO_C,
            lambda v: f"temperature {v:g} °C is at or below absolute zero (allowed: > "
                      f"{ABSOLUTE_ZERO_C} °C, i.e. > 0 K; unit given: {temperature_unit})")
        bad("temperature", (t > PLAUSIBLE_TEMPERATURE_C[1]) & ~(implicit_c & (t > KELVIN_HINT_C)),
            lambda v: f"temperature {v:g} °C is above {PLAUSIBLE_TEMPERATURE_C[1]:g} °C "
                      f"(allowed: {ABSOLUTE_ZERO_C} … {PLAUSIBLE_TEMPERATURE_C[1]:g} °C): wrong "
                      f"unit? (given: {temperature_unit}; use --temperature-unit)")
    if "strain_rate" in values:
        values["strain_rate"] = values["strain_rate"] * STRAIN_RATE_UNITS[strain_rate_unit]
        bad("strain_rate", values["strain_rate"] <= 0,
            lambda v: f"strain rate {v:g} 1/s is not > 0 (allowed: > 0; give magnitudes)")
    if "strain" in values:
        bad("strain", values["strain"] < 0,
            lambda v: f"true strain {v:g} is negative (allowed: >= 0; give magnitudes for "
                      f"compression)")
    if "stress" in values:
        s = values["stress"] = values["stress"] * STRESS_UNITS[stress_unit]
        bad("stress", s <= 0,
            lambda v: f"stress {v:g} MPa is not > 0 (allowed: > 0 MPa; give magnitudes for "
                      f"compression)")
    if own:
        problems.raise_if_any()
    if "temperature" in values and implicit_c:
        check_not_kelvin(path, values["temperature"], lines, columns["temperature"], None)
    if "stress" in values and np.isfinite(s).any():
        med = float(np.nanmedian(s))
        if not PLAUSIBLE_STRESS_MPA[0] <= med <= PLAUSIBLE_STRESS_MPA[1]:
            i = int(np.nanargmax(s)) if med > PLAUSIBLE_STRESS_MPA[1] else int(np.nanargmin(s))
            problems.raise_if_any()
            raise DataError(f"median stress {med:g} MPa is outside the plausible {PLAUSIBLE_STRESS_MPA[0]:g} … "
                            f"{PLAUSIBLE_STRESS_MPA[1]:g} MPa: wrong unit? (given: {stress_unit}; use "
                            f"--stress-unit Pa|kPa|MPa|GPa|psi|ksi)", file=str(path),
                            row=int(lines[i]), column=columns["stress"])
