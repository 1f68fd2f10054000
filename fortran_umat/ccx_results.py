"""What a CalculiX (ccx 2.20) run gives back, read into arrays: the ``.dat`` print output
(``*NODE PRINT`` RF totals and U, ``*EL PRINT`` S, E, SDV or PEEQ per integration point), the
``.frd`` nodal results, the ``.sta`` increment summary and the Newton history in ccx's standard
output; ``CcxResult`` holds one run.

Units: length mm, force N, stress MPa, time s. Stresses and strains are printed with tensor
(not engineering) shear, components in the order ``VOIGT_DAT``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

VOIGT_DAT = ("11", "22", "33", "12", "13", "23")   # .dat prints tensor shear, this order


class CcxError(RuntimeError):
    """ccx ran but failed (input error, no convergence, crash), or wrote output that cannot be read."""


@dataclass
class Increment:
    time: float                                  # step time at the end of the increment, s
    rf_total: np.ndarray | None = None           # (3,) total reaction force on the top face, N
    u_corner: np.ndarray | None = None           # (3,) displacement of the top corner node, mm
    stress: np.ndarray | None = None             # (n_ip, 6) MPa, order 11 22 33 12 13 23
    strain: np.ndarray | None = None             # (n_ip, 6) tensor shear
    sdv: np.ndarray | None = None                # (n_ip, nstatv)
    peeq: np.ndarray | None = None               # (n_ip,)
    ip: np.ndarray | None = None                 # (n_ip, 2) element, integration point
    iterations: int | None = None                # Newton iterations of the converged attempt
    attempts: int | None = None


_HEADER = re.compile(r"^\s*(.+?)\s*for set\s+(\S+)\s+and time\s+(\S+)")


def parse_dat(path: str | Path) -> list[Increment]:
    """Read a ccx ``.dat`` file into one ``Increment`` per output time (all its blocks merged)."""
    lines = Path(path).read_text().splitlines()
    incs: dict[float, Increment] = {}
    i = 0
    while i < len(lines):
        mh = _HEADER.match(lines[i])
        if not mh:
            i += 1
            continue
        what, t = mh.group(1).lower(), float(mh.group(3))
        inc = incs.setdefault(t, Increment(time=t))
        i += 1
        rows = []
        while i < len(lines) and not _HEADER.match(lines[i]):
            s = lines[i].strip()
            if s:
                try:
                    rows.append([float(v) for v in s.split()])
                except ValueError:
                    break
            i += 1
        if what.startswith("total force") or (what.startswith("forces") and "total" in what):
            inc.rf_total = np.asarray(rows[-1][-3:]) if rows else None
        elif what.startswith("displacements"):
            inc.u_corner = np.asarray(rows[0][1:4])
        elif what.startswith("stresses"):
            a = np.asarray(rows)
            inc.ip, inc.stress = a[:, :2].astype(int), a[:, 2:8]
        elif what.startswith("strains"):
            a = np.asarray(rows)
            inc.strain = a[:, 2:8]
        elif what.startswith("internal state variables"):
            inc.sdv = _sdv_rows(rows)
        elif what.startswith("equivalent plastic strain"):
            inc.peeq = np.asarray(rows)[:, 2]
    return [incs[t] for t in sorted(incs)]


def _sdv_rows(rows: list[list[float]]) -> np.ndarray:
    """SDV rows 'elem ip v1 … vn' (ccx prints up to 99 values a line: format i10,1x,i3,99(1x,e13.6))."""
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise CcxError("cannot parse the SDV block of the .dat file (more than 99 state variables?)")
    return np.asarray(rows)[:, 2:]


_INC = re.compile(r"^\s*increment\s+(\d+)\s+attempt\s+(\d+)")
_ITER = re.compile(r"^\s*iteration\s+(\d+)")


def parse_iterations(stdout: str) -> list[tuple[int, int, int, bool]]:
    """(increment, attempt, Newton iterations, converged) for every attempt in ccx's stdout."""
    out: list[list] = []
    for line in stdout.splitlines():
        m = _INC.match(line)
        if m:
            out.append([int(m.group(1)), int(m.group(2)), 0, False])
            continue
        m = _ITER.match(line)
        if m and out:
            out[-1][2] = max(out[-1][2], int(m.group(1)))
            continue
        if out and line.strip().startswith("convergence"):
            out[-1][3] = True
    return [tuple(r) for r in out]


_CORR = re.compile(r"^\s*largest correction to disp=\s*(\S+)")


def parse_corrections(stdout: str) -> list[list[float]]:
    """Largest displacement correction of every Newton iteration (mm), one list per attempt, from
    ccx's stdout — the convergence history (quadratic for a consistent tangent)."""
    out: list[list[float]] = []
    for line in stdout.splitlines():
        if _INC.match(line):
            out.append([])
            continue
        m = _CORR.match(line)
        if m and out:
            out[-1].append(float(m.group(1)))
    return out


def parse_sta(path: str | Path) -> list[tuple[int, int, int, float]]:
    """(increment, attempts, iterations, step time) per converged increment from ccx's ``.sta``."""
    rows = []
    for line in Path(path).read_text().splitlines():
        f = line.split()
        if len(f) == 7 and f[0].isdigit():
            rows.append((int(f[1]), int(f[2]), int(f[3]), float(f[5])))
    return rows


def parse_frd(path: str | Path) -> list[dict]:
    """Nodal result blocks of a ccx ``.frd`` file: [{"name", "time", "components", "values":
    {node: array}}], in file order (ASCII format, as ccx writes it by default; a node's values
    continue on ``-2`` lines when a block has more than 6 components)."""
    blocks: list[dict] = []
    cur: dict | None = None
    t = None
    last = 0
    for line in Path(path).read_text().splitlines():
        if line.startswith("  100C"):
            t = float(line[12:24])
        elif line.startswith(" -4"):
            parts = line.split()
            cur = {"name": parts[1], "time": t, "components": [], "values": {}}
            blocks.append(cur)
        elif line.startswith(" -5") and cur is not None:
            cur["components"].append(line.split()[1])
        elif line.startswith(" -1") and cur is not None:
            node = int(line[3:13])
            rest = line[13:]
            vals = [float(rest[k:k + 12]) for k in range(0, len(rest) - 11, 12)]
            cur["values"][node] = np.asarray(vals)
            last = node
        elif line.startswith(" -2") and cur is not None:
            # continuation line of the last node (blocks of more than 6 components, e.g. SDV)
            rest = line[13:]
            more = [float(rest[k:k + 12]) for k in range(0, len(rest) - 11, 12)]
            cur["values"][last] = np.concatenate([cur["values"][last], more])
        elif line.startswith(" -3"):
            cur = None
    return blocks


@dataclass
class CcxResult:
    """One ccx run: where its files are, its output, and the increments parsed from its ``.dat``
    (with the Newton iterations of each converged attempt read from stdout)."""
    deck: Path
    workdir: Path
    jobname: str
    stdout: str
    stderr: str
    returncode: int
    wall_s: float
    threads: int
    increments: list[Increment] = field(default_factory=list)
    attempts: list[tuple[int, int, int, bool]] = field(default_factory=list)

    @property
    def dat(self) -> Path:
        return self.workdir / f"{self.jobname}.dat"

    @property
    def frd(self) -> Path:
        return self.workdir / f"{self.jobname}.frd"

    @property
    def sta(self) -> Path:
        return self.workdir / f"{self.jobname}.sta"

    def iterations(self) -> np.ndarray:
        """Newton iterations of the converged attempt of every increment."""
        return np.asarray([it for inc, att, it, ok in self.attempts if ok], dtype=int)

    def times(self) -> np.ndarray:
        return np.asarray([i.time for i in self.increments])

    def axial_stress(self) -> np.ndarray:
        """σ_33 (MPa, negative in compression) averaged over the integration points, per increment."""
        return np.asarray([i.stress[:, 2].mean() for i in self.increments])

    def axial_stress_spread(self) -> np.ndarray:
        """max − min of σ_33 over the integration points per increment (0 for a homogeneous field)."""
        return np.asarray([np.ptp(i.stress[:, 2]) for i in self.increments])
