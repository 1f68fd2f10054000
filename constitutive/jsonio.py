"""JSON in and out, one convention for the whole project: numpy scalars and arrays become
Python numbers and lists, paths become strings, dict keys strings. ``nonfinite="null"`` writes
NaN/inf as ``null`` (strict JSON, for result files read by other tools); the default keeps
them (Python's ``NaN``/``Infinity`` tokens, read back by :func:`read_json`)."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np


def to_jsonable(obj, nonfinite: str = "keep"):
    """``obj`` with only dict/list/str/int/float/bool/None inside; ``nonfinite``: ``"keep"`` or
    ``"null"`` (NaN and ±inf become None)."""
    if nonfinite not in ("keep", "null"):
        raise ValueError(f"nonfinite must be 'keep' or 'null', not {nonfinite!r}")
    return _convert(obj, nonfinite == "null")


def _convert(obj, null_nonfinite: bool):
    if isinstance(obj, dict):
        return {str(k): _convert(v, null_nonfinite) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_convert(v, null_nonfinite) for v in obj]
    if isinstance(obj, np.ndarray):
        return _convert(obj.tolist(), null_nonfinite)
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and null_nonfinite and not math.isfinite(obj):
        return None
    return obj


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``: a reader
    never sees a half-written file, and a failed write leaves the old file as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())         # mkstemp's 0600 -> what open() would give
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj, nonfinite: str = "keep", indent: int | None = 1) -> Path:
    """``obj`` as JSON at ``path`` (atomically), with a final newline."""
    return write_atomic(path, json.dumps(to_jsonable(obj, nonfinite), indent=indent) + "\n")


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())
