"""The sections of ``benchmarks/README.md`` that benchmarks rewrite in place.

Each benchmark owns the lines between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` (NAME:
``baselines``, ``accuracy``, ``latency``, ``dask``); everything outside the markers is left as
it is.
"""
from __future__ import annotations

from pathlib import Path

from constitutive.errors import NeumatInputError

BENCHMARKS_README = Path(__file__).resolve().parent / "README.md"
MISSING = ("raise", "skip", "append")


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def write_section(name: str, text: str, readme: str | Path = BENCHMARKS_README, *, missing: str = "raise") -> bool:
    """Put ``text`` between the markers of section ``name`` in ``readme``; True when written.

    ``missing`` says what happens when the markers are not there: ``"raise"``
    (NeumatInputError), ``"skip"`` (the file is left alone, False) or ``"append"`` (the section,
    markers included, is added at the end)."""
    if missing not in MISSING:
        raise ValueError(f"missing must be one of {MISSING}, not {missing!r}")
    readme = Path(readme)
    start, end = markers(name)
    src = readme.read_text()
    i, j = src.find(start), src.find(end)
    body = text.rstrip()
    if i < 0 or j < i:
        if missing == "raise":
            raise NeumatInputError(f"{readme}: markers {start} … {end} not found")
        if missing == "skip":
            return False
        readme.write_text(src.rstrip("\n") + "\n\n" + start + "\n" + body + "\n" + end + "\n")
        return True
    readme.write_text(src[: i + len(start)] + "\n" + body + "\n" + src[j:])
    return True
