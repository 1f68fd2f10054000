"""Reader of a long CSV: one row per point, the curve given by a curve-id column or by runs of
one condition; columns mapped to the canonical fields, units converted, every error located."""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .csv_table import AUTO_EXTRAS, MIN_POINTS_PER_CURVE, Problems, read_table
from .errors import DataError, NeumatInputError
from .flow_curves import FIELDS, FlowCurves, exclude_curves
from .units import convert_and_check

DEFAULT_COLUMNS = {"curve": "curve", "temperature": "temperature_C", "strain_rate": "strain_rate_per_s",
                   "strain": "true_strain", "stress": "true_stress_MPa"}


def parse_columns(text: str | None) -> dict[str, str]:
    """``"strain=true_strain,stress=sig"`` → mapping of canonical field to CSV column (the
    fields are checked by the readers, :func:`check_column_fields`)."""
    if not text:
        return {}
    out = {}
    for part in text.split(","):
        if "=" not in part:
            raise NeumatInputError(f"--columns: '{part}' is not FIELD=COLUMN")
        k, v = (s.strip() for s in part.split("=", 1))
        if not k or not v:
            raise NeumatInputError(f"--columns: '{part}' is not FIELD=COLUMN")
        out[k] = v
    return out


def check_column_fields(columns: dict[str, str], extras: Sequence[str] = ()) -> None:
    """Every key of a ``--columns`` mapping is a field neumat knows: ``FIELDS``, ``curve``, an
    extra named in ``extras`` or a declared extra (``AUTO_EXTRAS``). Anything else (a typo such as
    ``temprature``) is an error naming the known fields, the closest one first."""
    known = [*FIELDS, "curve"]
    declared = [*extras, *(e for e in AUTO_EXTRAS if e not in extras)]
    unknown = [k for k in columns if k not in known and k not in declared]
    if not unknown:
        return
    k = unknown[0]
    close = difflib.get_close_matches(k, known + declared, n=1, cutoff=0.6)
    raise NeumatInputError(
        f"--columns: unknown field '{k}'" + (f" (did you mean '{close[0]}'?)" if close else "")
        + f"; known fields: {', '.join(known)}; extra features: {', '.join(declared)} or a name "
          f"given in --extras (e.g. --extras {k} --columns {k}={columns[k]} makes column "
          f"'{columns[k]}' an input of the model)")


def check_strain_increases(path, strain: np.ndarray, lines: np.ndarray, column: str, curve: str,
                           problems: Problems) -> None:
    """Record every row of one curve (rows in file order) whose strain does not exceed the
    previous row's: a repeated strain or a strain that falls back."""
    for i in np.flatnonzero(np.diff(strain) <= 0) + 1:
        what = "repeats" if strain[i] == strain[i - 1] else "falls below"
        problems.add(path, int(lines[i]), column,
                     f"curve '{curve}': strain {strain[i]:g} {what} the previous row's {strain[i - 1]:g} "
                     f"(line {int(lines[i - 1])}); the strain of a curve must increase from row to row")


def _curve_label(cond, extra_names) -> str:
    return "T{:g}_R{:g}".format(*cond[:2]) + "".join(f"_{k}{v:g}" for k, v in zip(extra_names, cond[2:]))


def load_csv(path: str | os.PathLike, columns: dict[str, str] | None = None,
             temperature_unit: str | None = None, stress_unit: str = "MPa", strain_rate_unit: str = "1/s",
             extras: Sequence[str] = (), allow_replicates: bool = False,
             min_points: int = MIN_POINTS_PER_CURVE, exclude_conditions: Sequence[Sequence[float]] = ()
             ) -> FlowCurves:
    """Load a long CSV (one row per point).

    ``columns`` maps canonical fields (``temperature``, ``strain_rate``, ``strain``, ``stress``,
    optional ``curve``) to CSV headers; unmapped fields use ``DEFAULT_COLUMNS``. ``extras`` are
    further numeric columns used as features (``columns`` may map an extra's name to its
    column: a name in ``extras`` or a declared one, ``direction``); any other key of ``columns``
    is an error naming the known fields (a typo such as ``temprature`` never becomes an input).
    Without ``extras``, the columns named in a ``# extras:`` comment line (written by
    ``FlowCurves.to_csv``) and a column ``direction`` are used. Columns left unused are listed
    in ``excluded``. ``temperature_unit`` ``None`` (default) means °C with values that look like
    kelvin refused (``units.check_not_kelvin``); ``"C"`` says °C explicitly.

    Without a curve-id column a curve is one condition (T, rate, extras) in consecutive rows; a
    condition that comes back after other rows, or a strain that falls back to the start within
    a condition, is a second curve of the same condition: an error. With a curve-id column, two
    curves with the same condition are an error unless ``allow_replicates`` (or the file says
    ``# replicates: true``, as ``FlowCurves.to_csv`` writes for data with replicates). Within a
    curve the strain must increase from row to row (a repeated or falling strain is an error).
    Every error names the file, the 1-based line in the file and the column; bad values are
    reported all at once (the first ``Problems.MAX_LISTED`` listed, the rest counted).
    """
    path = Path(path)
    tab = read_table(path)
    columns = dict(columns or {})
    check_column_fields(columns, extras)
    extra_cols: dict[str, str] = {e: columns.pop(e, e) for e in extras}
    for k in list(columns):
        if k not in (*FIELDS, "curve"):
            extra_cols[k] = columns.pop(k)
    mapping = {k: columns.get(k, DEFAULT_COLUMNS[k]) for k in FIELDS}
    hint = " (map columns with --columns FIELD=COLUMN, e.g. strain=eps)"
    for name, col in mapping.items():
        tab.require(col, name, hint)
    for name, col in extra_cols.items():
        tab.require(col, f"extra feature {name}", " (--extras / --columns name=column)")
    if not extra_cols:
        auto = [e.strip() for e in tab.meta.get("extras", "").split(",") if e.strip()]
        auto += [e for e in AUTO_EXTRAS if e in tab.header and e not in auto]
        for e in auto:
            tab.require(e, f"extra feature {e} (named in the file's '# extras:' line)")
            extra_cols[e] = e
    if "curve" in columns:
        curve_col = columns["curve"]
        tab.require(curve_col, "the curve id")
    else:
        curve_col = DEFAULT_COLUMNS["curve"] if DEFAULT_COLUMNS["curve"] in tab.header else None
    used = {*mapping.values(), *extra_cols.values(), curve_col}
    excluded = [(f"column '{h}'", "not used (map it with --columns or --extras to use it)")
                for h in tab.header if h not in used and h]
    lines = tab.lines
    problems = Problems()
    values = {k: tab.numeric(col, problems) for k, col in mapping.items()}
    extra_vals = {k: tab.numeric(col, problems) for k, col in extra_cols.items()}
    col_names = {**mapping, **extra_cols}
    convert_and_check(path, values, lines, col_names, temperature_unit, stress_unit, strain_rate_unit,
                      problems)
    problems.raise_if_any()

    # --- identify curves ---------------------------------------------------------------------
    cond = np.column_stack([values["temperature"], values["strain_rate"], *extra_vals.values()])
    keys = [tuple(r) for r in np.round(cond, 9).tolist()]
    n = len(keys)
    curve_of_row = np.empty(n, dtype=np.int64)
    names: list[str] = []
    strain = values["strain"]
    cond_cols = ", ".join([mapping["temperature"], mapping["strain_rate"], *extra_cols.values()])
    allow_replicates = allow_replicates or tab.meta.get("replicates", "").lower().startswith("true")
    if curve_col is not None:
        ids = tab.text_column(curve_col)
        first_row: dict[str, int] = {}
        for i in range(n):
            cid = ids[i]
            if cid == "":
                raise DataError("empty curve id", file=str(path), row=int(lines[i]), column=curve_col)
            f = first_row.setdefault(cid, i)
            if f == i:
                names.append(cid)
            elif keys[i] != keys[f]:
                raise DataError(f"curve '{cid}' changes its condition here from {keys[f]} (line "
                                f"{lines[f]}) to {keys[i]} (T °C, rate 1/s, extras); one curve has "
                                f"one condition", file=str(path), row=int(lines[i]), column=cond_cols)
        index = {cid: c for c, cid in enumerate(names)}
        curve_of_row[:] = [index[cid] for cid in ids]
        if not allow_replicates:
            seen: dict = {}
            for c, cid in enumerate(names):
                f = first_row[cid]
                if keys[f] in seen:
                    raise DataError(f"curves '{seen[keys[f]]}' and '{cid}' have the same condition "
                                    f"{keys[f]} (T °C, rate 1/s, extras); replicates need "
                                    f"--allow-replicates", file=str(path), row=int(lines[f]),
                                    column=curve_col)
                seen[keys[f]] = cid
    else:
        block_of_key: dict = {}
        block_min = 0.0
        for i in range(n):
            if i == 0 or keys[i] != keys[i - 1]:
                if keys[i] in block_of_key:
                    c = block_of_key[keys[i]]
                    raise DataError(
                        f"condition {keys[i]} (T °C, rate 1/s, extras) comes back after other rows: "
                        f"a second curve '{names[c]}' with the same condition? (add a curve-id "
                        f"column, --columns curve=<column>, and --allow-replicates for replicates)",
                        file=str(path), row=int(lines[i]), column=cond_cols)
                block_of_key[keys[i]] = len(names)
                names.append(_curve_label(keys[i], extra_cols))
                block_min = strain[i]
            elif strain[i] < strain[i - 1] - 0.05 and strain[i] <= block_min + 0.02:
                raise DataError(f"strain falls back from {strain[i - 1]:g} to {strain[i]:g}: a second "
                                f"curve with the same condition {keys[i]} (T °C, rate 1/s, extras)? "
                                f"(add a curve-id column, --columns curve=<column>)",
                                file=str(path), row=int(lines[i]), column=mapping["strain"])
            block_min = min(block_min, strain[i])
            curve_of_row[i] = len(names) - 1

    # --- per-curve checks ----------------------------------------------------------------------
    counts = np.bincount(curve_of_row, minlength=len(names))
    for c in np.flatnonzero(counts < min_points):
        first = int(lines[np.flatnonzero(curve_of_row == c)[0]])
        problems.add(path, first, mapping["strain"],
                     f"curve '{names[c]}' has {counts[c]} points (allowed: at least {min_points})")
    for c in range(len(names)):
        rows = np.flatnonzero(curve_of_row == c)
        check_strain_increases(path, strain[rows], lines[rows], mapping["strain"], names[c], problems)
    problems.raise_if_any()
    fc = FlowCurves(curve=curve_of_row, temperature=values["temperature"],
                    strain_rate=values["strain_rate"], strain=strain, stress=values["stress"],
                    curve_names=names, extras=extra_vals, source=str(path),
                    synthetic=tab.meta.get("synthetic", "").lower().startswith("true"),
                    excluded=excluded)
    return exclude_curves(fc, exclude_conditions)
