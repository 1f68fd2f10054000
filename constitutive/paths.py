"""Where neumat keeps what it builds once per machine: ``${NEUMAT_CACHE:-~/.cache/neumat}``
(the CalculiX build in ``ccx-2.20/``, compiled UMATs in ``umat/<sha256>/``, benchmark programs in
``bench/``). Read at each call so that a test can point ``NEUMAT_CACHE`` elsewhere."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("NEUMAT_CACHE") or Path.home() / ".cache" / "neumat")
