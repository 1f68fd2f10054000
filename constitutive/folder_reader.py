"""Reader of a folder of CSVs: one file per curve, the condition of each from ``manifest.csv`` or
from the file name; units converted, every error located."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from .csv_reader import check_column_fields, check_strain_increases
from .csv_table import AUTO_EXTRAS, MIN_POINTS_PER_CURVE, Problems, read_table
from .errors import DataError
from .flow_curves import FIELDS, FlowCurves, exclude_curves
from .units import check_not_kelvin, convert_and_check

FILENAME_PATTERN = r"T(?P<temperature>-?\d+(?:\.\d*)?)_R(?P<strain_rate>\d*\.?\d+(?:[eE][+-]?\d+)?)(?:_D(?P<direction>\d+))?$"


def _first_present(header: list[str], candidates: Sequence[str]) -> str:
    for c in candidates:
        if c in header:
            return c
    return candidates[0]


def load_folder(folder: str | os.PathLike, columns: dict[str, str] | None = None,
                manifest: str | None = "manifest.csv", name_pattern: str = FILENAME_PATTERN,
                temperature_unit: str | None = None, stress_unit: str = "MPa", strain_rate_unit: str = "1/s",
                extras: Sequence[str] = (), min_points: int = MIN_POINTS_PER_CURVE,
                allow_replicates: bool = False, exclude_conditions: Sequence[Sequence[float]] = ()
                ) -> FlowCurves:
    """One CSV per curve (columns ``true_strain`` or ``strain``, ``true_stress_MPa`` or ``stress``,
    or as mapped in ``columns``).

    The condition of each file comes from ``manifest.csv`` in the folder (columns ``file``,
    ``temperature`` or ``temperature_C``, ``strain_rate`` or ``strain_rate_per_s``, plus extra
    features: those in ``extras`` and ``direction``) or, without a manifest, from the file name
    via ``name_pattern`` (default ``...T<°C>_R<1/s>[_D<direction>].csv``, e.g. ``T975_R0.1_D0.csv``).
    Units apply to the manifest and the files (``temperature_unit=None``: °C, values that look
    like kelvin refused, as ``load_csv``). Entries of the folder that are not curves (other
    files, sub-folders) and unused manifest columns are listed in ``excluded``. Bad values are
    reported all at once over the manifest and over all curve files; the strain of each curve
    must increase from row to row.
    """
    folder = Path(folder)
    columns = dict(columns or {})
    check_column_fields(columns, extras)
    if not folder.is_dir():
        raise DataError("not a folder", file=str(folder))
    entries = sorted(folder.iterdir())
    files = [p for p in entries if p.is_file() and p.suffix.lower() == ".csv" and p.name != manifest]
    excluded = [(f"'{p.name}'", "sub-folder, not searched" if p.is_dir() else "not a .csv curve file")
                for p in entries if p not in files and p.name != manifest]
    if not files:
        raise DataError("no *.csv curve files in the folder", file=str(folder))
    man_path = folder / manifest if manifest else None
    # condition of each file: {file name: ({field: value}, where)}; where = (file, line, columns)
    conds: dict[str, dict[str, float]] = {}
    where: dict[str, tuple[str, int | None, str]] = {}
    extra_names: list[str]
    if man_path is not None and man_path.is_file():
        tab = read_table(man_path)
        tab.require("file", "the curve file name")
        tcol = columns.get("temperature") or _first_present(tab.header, ("temperature", "temperature_C"))
        rcol = columns.get("strain_rate") or _first_present(tab.header, ("strain_rate", "strain_rate_per_s"))
        tab.require(tcol, "temperature")
        tab.require(rcol, "strain rate")
        extra_cols = {e: columns.get(e, e) for e in extras}
        extra_cols.update({k: v for k, v in columns.items()
                           if k not in (*FIELDS, "curve") and k not in extra_cols})
        for e in AUTO_EXTRAS:
            if e in tab.header and e not in extra_cols:
                extra_cols[e] = e
        for e, col in extra_cols.items():
            tab.require(col, f"extra feature {e}")
        used = {"file", tcol, rcol, *extra_cols.values()}
        excluded += [(f"manifest column '{h}'", "not used as a feature (name it in --extras to use it)")
                     for h in tab.header if h not in used and h]
        problems = Problems()
        vals = {"temperature": tab.numeric(tcol, problems), "strain_rate": tab.numeric(rcol, problems)}
        colmap = {"temperature": tcol, "strain_rate": rcol}
        ex_vals = {e: tab.numeric(col, problems) for e, col in extra_cols.items()}
        convert_and_check(man_path, vals, tab.lines, colmap, temperature_unit, stress_unit, strain_rate_unit,
                          problems)
        problems.raise_if_any()
        extra_names = list(extra_cols)
        present = {p.name for p in files}
        for i, fname in enumerate(tab.text_column("file")):
            line = int(tab.lines[i])
            if not fname:
                raise DataError("empty file name", file=str(man_path), row=line, column="file")
            if fname in conds:
                raise DataError(f"'{fname}' is listed twice (first on line {where[fname][1]})",
                                file=str(man_path), row=line, column="file")
            if fname not in present:
                raise DataError(f"curve file '{fname}' is not in the folder {folder}",
                                file=str(man_path), row=line, column="file")
            conds[fname] = {"temperature": vals["temperature"][i], "strain_rate": vals["strain_rate"][i],
                            **{e: ex_vals[e][i] for e in extra_names}}
            where[fname] = (str(man_path), line, ", ".join([tcol, rcol, *extra_cols.values()]))
        for p in files:
            if p.name not in conds:
                raise DataError(f"curve file '{p.name}' is in the folder but not in the manifest",
                                file=str(man_path), row=tab.header_line, column="file")
    else:
        rx = re.compile(name_pattern)
        for p in files:
            m = rx.search(p.stem)
            try:
                c = {k: float(v) for k, v in m.groupdict().items() if v is not None} if m else None
            except ValueError:
                c = None
            if not c or "temperature" not in c or "strain_rate" not in c:
                raise DataError(f"the file name does not give the condition (expected e.g. "
                                f"T975_R0.1_D0.csv; pattern {name_pattern}) and there is no "
                                f"{manifest or 'manifest'}", file=str(p), column="file name")
            one = {"temperature": np.array([c["temperature"]]), "strain_rate": np.array([c["strain_rate"]])}
            convert_and_check(p, one, [None], {"temperature": "file name", "strain_rate": "file name"},
                               temperature_unit, stress_unit, strain_rate_unit)
            conds[p.name] = {**c, "temperature": float(one["temperature"][0]),
                             "strain_rate": float(one["strain_rate"][0])}
            where[p.name] = (str(p), None, "file name")
        check_not_kelvin(folder, [c["temperature"] for c in conds.values()], [], "file name", temperature_unit)
        extra_names = sorted({k for c in conds.values() for k in c} - {"temperature", "strain_rate"})
        for p in files:
            for k in extra_names:
                if k not in conds[p.name]:
                    raise DataError(f"no value of '{k}' in the file name (other files give one)",
                                    file=str(p), column="file name")
    parts = []
    where_rows: dict = {}
    problems = Problems()
    for p in files:
        tab = read_table(p)
        scol = columns.get("strain") or _first_present(tab.header, ("true_strain", "strain"))
        tcol = columns.get("stress") or _first_present(tab.header, ("true_stress_MPa", "stress"))
        tab.require(scol, "strain", " (map with --columns strain=<column>)")
        tab.require(tcol, "stress", " (map with --columns stress=<column>)")
        vals = {"strain": tab.numeric(scol, problems), "stress": tab.numeric(tcol, problems)}
        convert_and_check(p, vals, tab.lines, {"strain": scol, "stress": tcol},
                           temperature_unit, stress_unit, strain_rate_unit, problems)
        parts.append((p.name, vals, conds[p.name], len(vals["strain"])))
        where_rows[p.name] = (p, tab.lines, scol)
    problems.raise_if_any()                 # bad values first, then the checks of each curve
    for name, vals, _, n in parts:
        p, lines, scol = where_rows[name]
        if n < min_points:
            problems.add(p, int(lines[0]), scol, f"the curve has {n} points (allowed: at least {min_points})")
        check_strain_increases(p, vals["strain"], lines, scol, name, problems)
    problems.raise_if_any()
    seen: dict = {}
    for name, _, c, _ in parts:
        key = tuple(round(c[k], 9) for k in ("temperature", "strain_rate", *extra_names))
        if key in seen and not allow_replicates:
            f, line, cols = where[name]
            raise DataError(f"'{name}' has the same condition {key} (T °C, rate 1/s, extras) as "
                            f"'{seen[key]}'; replicates need --allow-replicates", file=f, row=line,
                            column=cols)
        seen.setdefault(key, name)
    fc = FlowCurves(
        curve=np.concatenate([np.full(n, i) for i, (*_, n) in enumerate(parts)]),
        strain=np.concatenate([v["strain"] for _, v, _, _ in parts]),
        stress=np.concatenate([v["stress"] for _, v, _, _ in parts]),
        temperature=np.concatenate([np.full(n, c["temperature"]) for _, _, c, n in parts]),
        strain_rate=np.concatenate([np.full(n, c["strain_rate"]) for _, _, c, n in parts]),
        curve_names=[name for name, *_ in parts],
        extras={k: np.concatenate([np.full(n, c[k]) for _, _, c, n in parts]) for k in extra_names},
        source=str(folder), excluded=excluded)
    return exclude_curves(fc, exclude_conditions)
