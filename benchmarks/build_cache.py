"""Compiled benchmark programs kept between runs: ``<cache_root>/bench/<key hash>/``.

A build is run once per key (a text naming every input of the build: sources, flags, library
paths); a finished build is marked by a stamp file, a failed one leaves nothing behind. Used by
the Fortran UMAT driver (``latency_umat``), the reference kernels (``latency_refkernel``) and the
``-march=native`` variant of the product's library (``latency_paths.native_variant``).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from constitutive.paths import cache_root


def bench_cache_root() -> Path:
    """Where compiled benchmark programs are kept (beside the UMAT cache)."""
    return cache_root() / "bench"


def cached_build(key: str, build: Callable[[Path], None]) -> Path:
    """Run ``build(folder)`` once per ``key`` and return the finished folder."""
    root = bench_cache_root()
    final = root / hashlib.sha256(key.encode()).hexdigest()[:20]
    if (final / "done").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="build-", dir=root))
    try:
        build(tmp)
        (tmp / "done").write_text(key[:2000])
        try:
            os.replace(tmp, final)
        except OSError:                       # someone else finished the same build first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def file_hash(path: str | Path) -> str:
    """sha256 of a file's bytes (hex), for build keys."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
