"""Fortran 2008 source text: literals that read back exactly, wrapped lists, parameter arrays
split into chunks short enough for the standard's continuation-line limit."""
from __future__ import annotations

import numpy as np

CHUNK = 800      # values per parameter chunk: at 4 a line, 200 continuation lines (< 255, F2008)
PER_LINE = 4     # values per source line in a wrapped list


def f_real(v: float) -> str:
    """A double-precision literal that reads back to exactly ``v`` (round trip); a non-finite
    value as the ``transfer`` of its bit pattern."""
    v = float(v)
    if not np.isfinite(v):
        bits = int(np.asarray(v, dtype=np.float64).view(np.int64))
        return f"transfer({bits}_c_int64_t, 1.0_c_double)"
    s = repr(v)
    if "e" in s:
        m, e = s.split("e")
        if "." not in m:
            m += ".0"
        return f"{m}d{int(e)}"
    return s + "d0" if "." in s else s + ".0d0"


def f_literal(v, dtype) -> str:
    """A literal usable inside an expression (negative values parenthesised); ``dtype``
    ``np.bool_`` gives ``.true.``/``.false.``."""
    if dtype == np.bool_:
        return ".true." if bool(v) else ".false."
    s = f_real(v)
    return f"({s})" if s.startswith("-") else s


def wrap_list(items: list[str], indent: str = "      ", per_line: int = PER_LINE) -> str:
    """``items`` joined by commas, ``per_line`` a line, continued with ``&``."""
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return (", &\n" + indent).join(lines)


def parameter_lines(name: str, ftype: str, literals: list[str], dims: tuple[int, ...]) -> list[str]:
    """Declarations of the named constant ``name(dims)`` holding ``literals`` in Fortran
    (column-major) order: one array constructor, or, past :data:`CHUNK` values, chunk
    parameters ``<name>_p<k>`` first and ``name`` built from them."""
    shape = ",".join(str(d) for d in dims)
    chunks = [literals[i:i + CHUNK] for i in range(0, len(literals), CHUNK)]
    lines = []
    if len(chunks) == 1:
        init = "[" + wrap_list(chunks[0]) + "]"
    else:
        parts = []
        for k, ch in enumerate(chunks):
            pn = f"{name}_p{k + 1}"
            lines.append(f"  {ftype}, parameter :: {pn}({len(ch)}) = [ &\n      " + wrap_list(ch) + "]")
            parts.append(pn)
        init = "[" + ", ".join(parts) + "]"
    if len(dims) > 1:
        init = f"reshape({init}, [{shape}])"
    lines.append(f"  {ftype}, parameter :: {name}({shape}) = &\n      {init}")
    return lines
