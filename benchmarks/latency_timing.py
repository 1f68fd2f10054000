"""Timing and memory measurement for the latency benchmark.

Timing: one warm-up call, then ``repeats`` samples; each sample runs the call ``inner`` times in
a tight loop (``inner`` chosen so a sample lasts about ``target_s``) and gives the time per call;
the figures are the minimum and the median of the samples (perf_counter, wall clock), and the
same for the process CPU time (process_time: all threads of the process together), which is less
sensitive to other work on a shared machine.

Memory: ``tracemalloc`` peak of one call above the traced memory before it — this sees every
allocation made through Python's and numpy's allocators (arrays, temporaries), not memory that a
native library (onnxruntime's arena, a Fortran stack) takes for itself; and, in a fresh child
process, the rise of the peak resident set size (``ru_maxrss``) over one call, which sees all.
"""
from __future__ import annotations

import gc
import resource
import statistics
import time
import tracemalloc
from typing import Callable


def time_call(fn: Callable[[], object], repeats: int, target_s: float, max_total_s: float) -> dict:
    """min / median seconds per call of ``fn()`` over ``repeats`` samples."""
    t0 = time.perf_counter()
    fn()                                   # warm-up (first-call set-up, caches, page faults)
    first = time.perf_counter() - t0
    if first > target_s:                   # slow call: the warm-up already tells its size
        single = first
    else:
        t0 = time.perf_counter()
        fn()
        single = max(time.perf_counter() - t0, 1e-9)
    inner = max(1, int(target_s / single))
    # fewer samples when one sample is long, never fewer than 3
    repeats = max(3, min(repeats, int(max_total_s / max(single * inner, 1e-9))))
    samples, cpu = [], []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            c0 = time.process_time()
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples.append((time.perf_counter() - t0) / inner)
            cpu.append((time.process_time() - c0) / inner)
    finally:
        if gc_was:
            gc.enable()
    return dict(min_s=min(samples), median_s=statistics.median(samples), repeats=repeats,
                inner=inner, first_call_s=first, cpu_min_s=min(cpu), cpu_median_s=statistics.median(cpu))


def traced_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes allocated through Python/numpy allocators during one call (above the start)."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        peak = tracemalloc.get_traced_memory()[1]
        del out
    finally:
        tracemalloc.stop()
    return max(0, peak - base)


def maxrss_bytes() -> int:
    """Peak resident set size of this process so far (Linux: ru_maxrss is in KiB). Beware: on
    Linux it is inherited across exec from a big parent; ``peak_rss`` below is not."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _status_kib(field: str) -> int | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux ≥ 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def rss_bytes() -> int | None:
    v = _status_kib("VmRSS")
    return None if v is None else v * 1024


def peak_rss_bytes() -> int | None:
    """Peak resident set size since the last reset (VmHWM), bytes."""
    v = _status_kib("VmHWM")
    return None if v is None else v * 1024
