"""The text layer both readers share: a delimited file read as header, rows and the 1-based line
number of every row (so that an error names the line of the file), plus the reading rules
common to ``csv_reader`` and ``folder_reader``."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

MIN_POINTS_PER_CURVE = 5
# Extra-feature columns used automatically when present (method.md's record has ``direction``);
# any other extra must be asked for (``extras=[...]``, ``--extras``, ``--columns name=column``).
AUTO_EXTRAS = ("direction",)


@dataclass
class CsvTable:
    """A CSV file read as text: header, data rows and their 1-based line numbers in the file."""
    path: Path
    header: list[str]
    header_line: int
    rows: list[list[str]]
    lines: np.ndarray
    meta: dict[str, str]
    decimal_comma: bool

    def where(self, column: str) -> int:
        if self.header.count(column) > 1:
            raise DataError(f"column '{column}' appears {self.header.count(column)} times in the header",
                            file=str(self.path), row=self.header_line, column=column)
        return self.header.index(column)

    def require(self, column: str, what: str, hint: str = "") -> None:
        if column not in self.header:
            raise DataError(f"missing column '{column}' (for {what}); the file has: "
                            f"{', '.join(self.header)}{hint}", file=str(self.path),
                            row=self.header_line, column=column)

    def text_column(self, column: str) -> list[str]:
        j = self.where(column)
        return [r[j].strip() if j < len(r) else "" for r in self.rows]

    def numeric(self, column: str, problems: "Problems | None" = None) -> np.ndarray:
        """Finite floats of a column. A bad cell raises naming file, line and column; with
        ``problems`` every bad cell is recorded there instead (its value becomes NaN) so that the
        caller reports them all at once (:meth:`Problems.raise_if_any`)."""
        j = self.where(column)
        own = problems is None
        problems = Problems() if own else problems
        out = np.empty(len(self.rows))
        for i, r in enumerate(self.rows):
            cell = r[j].strip() if j < len(r) else ""
            out[i] = np.nan
            if cell == "":
                more = "" if j < len(r) else f" (the row has {len(r)} fields, the header {len(self.header)})"
                problems.add(self.path, int(self.lines[i]), column, "empty value" + more)
                continue
            try:
                v = float(cell.replace(",", ".") if self.decimal_comma else cell)
            except ValueError:
                problems.add(self.path, int(self.lines[i]), column, f"'{cell}' is not a number")
                continue
            if not math.isfinite(v):
                problems.add(self.path, int(self.lines[i]), column,
                             f"value '{cell}' is not finite (allowed: a finite number)")
                continue
            out[i] = v
        if own:
            problems.raise_if_any()
        return out


class Problems:
    """Bad values collected over a file (or a folder) so that one error lists them all: each
    (file, 1-based line, column, message); :meth:`raise_if_any` raises one ``DataError`` located
    at the first of them (by file, then line) that lists the first ``MAX_LISTED`` and counts the
    rest."""
    MAX_LISTED = 20

    def __init__(self):
        self.items: list[tuple[str, int | None, str | None, str]] = []

    def __len__(self) -> int:
        return len(self.items)

    def add(self, file, row: int | None, column: str | None, message: str) -> None:
        self.items.append((str(file), None if row is None else int(row), column, message))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        items = sorted(self.items, key=lambda t: (t[0], -1 if t[1] is None else t[1]))
        file, row, column, message = items[0]
        if len(items) == 1:
            raise DataError(message, file=file, row=row, column=column)
        files = {t[0] for t in items}
        listed = items[:self.MAX_LISTED]
        text = [f"{len(items)} problems" + (f"; the first {len(listed)}:" if len(listed) < len(items) else ":")]
        for f, r, c, m in listed:
            where = ([f"file {f}"] if len(files) > 1 else []) + ([f"row {r}"] if r is not None else []) \
                + ([f"column '{c}'"] if c is not None else [])
            text.append(f"  {', '.join(where)}: {m}")
        if len(listed) < len(items):
            text.append(f"  ... and {len(items) - len(listed)} more")
        err = DataError("\n".join(text), file=file if len(files) == 1 else None)
        err.file, err.row, err.column = file, row, column        # the first one, for programs
        err.problems = items
        raise err


def read_table(path: Path) -> CsvTable:
    """Read a delimited text file (``,``, ``;`` or tab, chosen from the header line).

    Blank lines and ``#`` comment lines are skipped (line numbers stay those of the file);
    ``# key: value`` lines above the header are kept as metadata. With ``;`` or tab as the
    delimiter a decimal comma is accepted. Quoted fields may not span lines.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror}", file=str(path)) from None
    except UnicodeDecodeError:
        raise DataError("not a UTF-8 text (CSV) file", file=str(path)) from None
    meta: dict[str, str] = {}
    data_lines: list[str] = []
    numbers: list[int] = []
    for k, line in enumerate(text.splitlines(), start=1):
        st = line.strip()
        if not st:
            continue
        if st.startswith("#"):
            if not data_lines and ":" in st:
                key, val = st[1:].split(":", 1)
                meta[key.strip().lower()] = val.strip()
            continue
        data_lines.append(line)
        numbers.append(k)
    if not data_lines:
        raise DataError("the file is empty (no header line)", file=str(path))
    delim = max((",", ";", "\t"), key=lambda d: data_lines[0].count(d))
    if data_lines[0].count(delim) == 0:
        delim = ","
    rows = list(csv.reader(data_lines, delimiter=delim))
    header = [h.strip() for h in rows[0]]
    if len(rows) < 2:
        raise DataError("no data rows below the header", file=str(path), row=numbers[0] + 1)
    return CsvTable(path, header, numbers[0], rows[1:], np.asarray(numbers[1:]), meta,
                    decimal_comma=delim != ",")
