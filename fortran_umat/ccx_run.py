"""Running CalculiX: the ccx 2.20 binary built once by ``make ccx`` (fortran_umat/build_ccx.sh,
with run-time UMAT loading) in the neumat cache, and ``run_ccx`` that runs a deck with it and
parses what it wrote (``fortran_umat.ccx_results``).

Units: time s (wall clock and timeouts).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Sequence

from constitutive.errors import NeumatInputError
from constitutive.paths import cache_root

from .ccx_results import CcxError, CcxResult, parse_dat, parse_iterations

CCX_VERSION = "2.20"


class CcxNotBuilt(NeumatInputError):
    """The CalculiX binary with run-time UMAT loading is not in the cache."""


def cache_dir() -> Path:
    """``${NEUMAT_CACHE:-~/.cache/neumat}/ccx-2.20`` — where fortran_umat/build_ccx.sh puts ccx."""
    return cache_root() / f"ccx-{CCX_VERSION}"


def ccx_binary() -> Path:
    """Path of the cached ccx 2.20 built with run-time UMAT loading; a clear error when missing."""
    d = cache_dir()
    exe = d / "ccx"
    if not (exe.is_file() and os.access(exe, os.X_OK) and (d / ".complete").is_file()):
        raise CcxNotBuilt(
            f"CalculiX ccx {CCX_VERSION} with run-time UMAT loading is not built ({exe} missing). "
            "Run `make ccx` (or `bash fortran_umat/build_ccx.sh`) once on this machine; it takes "
            "a few minutes and is cached outside git.")
    return exe


def run_ccx(deck: str | Path, workdir: str | Path | None = None, library_dir: str | Path | None = None,
            threads: int = 1, timeout_s: float = 600.0, env: dict | None = None,
            prefix: Sequence[str] = ()) -> CcxResult:
    """Run ccx on ``deck`` (``.inp``) in ``workdir`` (default: the deck's folder).

    ``library_dir`` is prepended to LD_LIBRARY_PATH (ccx dlopens ``lib<LIB>.so`` from there);
    ``threads`` sets OMP_NUM_THREADS and CCX_NPROC_{STIFFNESS,RESULTS,EQUATION_SOLVER}; ``env``
    adds variables; ``prefix`` is put before the ccx command line (e.g. a profiler: ``perf record``).
    Raises ``CcxError`` (with the end of ccx's output) when ccx reports an error or does not finish.
    """
    exe = ccx_binary()
    deck = Path(deck).resolve()
    if not deck.is_file():
        raise NeumatInputError(f"ccx deck {deck} not found")
    workdir = Path(workdir).resolve() if workdir else deck.parent
    workdir.mkdir(parents=True, exist_ok=True)
    job = deck.stem
    if deck.parent != workdir:
        shutil.copyfile(deck, workdir / deck.name)
    for ext in (".dat", ".frd", ".sta", ".cvg"):
        (workdir / f"{job}{ext}").unlink(missing_ok=True)
    env = {**os.environ, **(env or {})}
    if library_dir is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            [str(Path(library_dir).resolve())] + ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else []))
    nt = str(int(threads))
    env.update(OMP_NUM_THREADS=nt, CCX_NPROC_STIFFNESS=nt, CCX_NPROC_RESULTS=nt,
               CCX_NPROC_EQUATION_SOLVER=nt)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([*map(str, prefix), str(exe), "-i", job], cwd=workdir, env=env, capture_output=True,
                              text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise CcxError(f"ccx on {deck} did not finish within {timeout_s} s") from exc
    wall = time.perf_counter() - t0
    res = CcxResult(deck, workdir, job, proc.stdout, proc.stderr, proc.returncode, wall, int(threads))
    (workdir / f"{job}.stdout").write_text(proc.stdout + ("\n--- stderr ---\n" + proc.stderr if proc.stderr else ""))
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
    if proc.returncode != 0 or "*ERROR" in proc.stdout or "Job finished" not in proc.stdout:
        hint = ""
        m = re.search(r"(lib\S+\.so): cannot open shared object", proc.stdout + proc.stderr)
        if m:
            hint = (f" (UMAT library {m.group(1)} not found on LD_LIBRARY_PATH; library_dir = "
                    f"{library_dir})")
        raise CcxError(f"ccx failed on {deck} (exit {proc.returncode}){hint}; its output ends with:\n{tail}")
    res.attempts = parse_iterations(proc.stdout)
    res.increments = parse_dat(res.dat)
    conv = [(inc, it) for inc, att, it, ok in res.attempts if ok]
    if len(conv) == len(res.increments):
        for rec, (_, it) in zip(res.increments, conv):
            rec.iterations = it
    return res
