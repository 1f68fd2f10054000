"""The latency plot: time per point (s) against the batch size N for every path of every model."""
from __future__ import annotations

from pathlib import Path

from .latency_paths import ARRHENIUS_MODEL, PATHS
from .latency_report import fmt_time


def plot(doc: dict, path: Path) -> None:
    """Time per point against N, one panel per model (the Arrhenius baseline in each); PNG at ``path``."""
    import matplotlib  # optional: matplotlib (the train extra)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional: matplotlib (the train extra)
    models = [m for m in doc["models"] if m != ARRHENIUS_MODEL]
    fig, axes = plt.subplots(1, len(models), figsize=(7.5 * len(models), 8.5), squeeze=False, sharey=True)
    cmap = plt.get_cmap("tab20")
    colors = {p: cmap(i % 20) for i, p in enumerate(PATHS)}
    for ax, model in zip(axes[0], models):
        for e in doc["paths"]:
            if e["model"] not in (model, ARRHENIUS_MODEL) or not e.get("available") or not e.get("points"):
                continue
            ns = [p["n"] for p in e["points"]]
            vmin = [p["min_s_per_point"] for p in e["points"]]
            vmed = [p["median_s_per_point"] for p in e["points"]]
            ls = "-" if e["threads"] == 1 else "--"
            label = f"{e['path']} ({e['threads']} thr)"
            if len(ns) == 1:     # per-call paths: a horizontal marker line
                ax.axhline(vmin[0], color=colors[e["path"]], ls=":", lw=1.2, label=f"{label}: {fmt_time(vmin[0])}/call")
                continue
            ax.plot(ns, vmin, ls, color=colors[e["path"]], marker="o", ms=3, label=label)
            ax.fill_between(ns, vmin, vmed, color=colors[e["path"]], alpha=0.15)
        ax.axhline(5e-6, color="k", lw=0.8, alpha=0.5)
        ax.text(1.2, 5.5e-6, "NEML2 J2 ≈ 5 µs/point-step/thread", fontsize=7, alpha=0.7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N (points per call)")
        ax.set_title(doc["models"][model]["label"], fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    axes[0][0].set_ylabel("time per point (s); line = min, band = min…median")
    fig.suptitle(f"neumat latency ({'quick' if doc['quick'] else 'full'}), {doc['machine']['cpu_model']}, "
                 f"{doc['machine']['logical_cores']} cores, {doc['date'][:16]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

