"""What a benchmark records about where it ran: the CPU, the library versions, the commit of
the checkout measured and the machine's load (used by every benchmark and the demo report)."""
from __future__ import annotations

import importlib.metadata as md
import os
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
MEASURED_PACKAGES = ("export", "fem_bridge", "fortran_umat", "constitutive", "benchmarks")


def machine_info() -> dict:
    """CPU model, logical/usable cores, threads per core, SIMD flags, platform, Python."""
    cpu, flags = None, ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu is None:
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1]
    except OSError:
        pass
    simd = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f") if f" {f} " in f" {flags} "]
    tpc = None
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Thread(s) per core"):
                tpc = int(line.split(":")[1])
    except (OSError, ValueError):
        pass
    return dict(cpu_model=cpu or platform.processor() or "unknown", logical_cores=os.cpu_count(), threads_per_core=tpc,
                usable_cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                simd=simd, platform=platform.platform(), python=platform.python_version())


def gfortran_version() -> str | None:
    """First line of ``gfortran --version``; None without gfortran."""
    fc = shutil.which("gfortran")
    if fc is None:
        return None
    out = subprocess.run([fc, "--version"], capture_output=True, text=True).stdout.splitlines()
    return out[0] if out else None


def library_versions() -> dict:
    """numpy, onnxruntime, onnx, torch (None when not installed) and gfortran."""
    v = {"numpy": np.__version__}
    for pkg in ("onnxruntime", "onnx", "torch"):
        try:
            v[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            v[pkg] = None
    v["gfortran"] = gfortran_version()
    return v


def git_state() -> dict:
    """Commit of the checkout measured, and whether the measured files differ from it."""
    def git(*a):
        r = subprocess.run(["git", *a], capture_output=True, text=True, cwd=REPO)
        return r.stdout.rstrip("\n") if r.returncode == 0 else None
    dirty = git("status", "--porcelain", "--", *MEASURED_PACKAGES)
    return dict(commit=(git("rev-parse", "HEAD") or "").strip() or None,
                modified_files=[l[3:] for l in (dirty or "").splitlines() if l[:2].strip()][:30])


def load_now() -> dict:
    """1/5/15-minute load averages and the ``uptime`` line."""
    la = os.getloadavg()
    return dict(loadavg_1_5_15=[round(x, 2) for x in la],
                uptime=subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
