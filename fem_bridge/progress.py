"""A progress bar over rows, shared by ``evaluate_mesh`` and the Dask runner.

``tqdm`` (the ``fem`` and ``train`` extras) draws it when installed; without it, or when
disabled, the bar is a no-op with the same ``update`` / ``close`` methods.
"""
from __future__ import annotations


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, enabled: bool, desc: str):
    """A tqdm bar of ``total`` rows (unit "pt"), hidden when not ``enabled``, or a no-op bar
    when tqdm is not installed."""
    try:
        from tqdm import tqdm  # optional: tqdm (fem/train extras) draws the bar; none without it
    except ImportError:
        return _NoBar()
    return tqdm(total=total, disable=not enabled, desc=desc, unit="pt", unit_scale=True, leave=False)
