"""``neumat data``: load flow curves, print what was read, optionally plot them and write them
as a long CSV (internal units: °C, 1/s, true strain, MPa) that loads back identically."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from .cli_common import add_data_arguments, load_from_args
from .datasets import NAMED_DATASETS
from .errors import NeumatInputError
from .jsonio import write_atomic
from .synthetic import DZ411_TEST_CONDITIONS
from .flow_curves import FlowCurves, exclude_curves, parse_heldout


def register(sub) -> None:
    p = sub.add_parser("data", help="summary (and plot / long CSV) of a flow-curve data set",
                       description="Load flow curves (a named data set, a long CSV or a folder of "
                                   "one-CSV-per-curve files), check them, print a summary with "
                                   "everything excluded and why. Units after loading: °C, 1/s, MPa, "
                                   "true strain (K/F, Pa/kPa/GPa/psi/ksi and 1/min/1/ms are converted).",
                       epilog="examples:\n"
                              "  neumat data --data gleeble_3cr2mo --plot curves.png\n"
                              "  neumat data --data my_curves.csv --columns temperature=T,strain_rate=rate,"
                              "strain=eps,stress=sig --temperature-unit K --stress-unit Pa")
    add_data_arguments(p)
    p.add_argument("--exclude", default=None,
                   help='drop whole curves of these conditions "T:rate[:extra...],..." (°C, 1/s); '
                        "they are listed as excluded")
    p.add_argument("--list", action="store_true", help="one line per curve")
    p.add_argument("--plot", metavar="PNG", help="plot stress vs strain, one panel per strain rate")
    p.add_argument("--write-csv", metavar="PATH", help="write the points as a long CSV (internal units)")
    p.set_defaults(func=run)


def attribution(fc: FlowCurves) -> str | None:
    info = NAMED_DATASETS.get(fc.source)
    return info.get("attribution") if info else None


def describe(fc: FlowCurves, per_curve: bool = False) -> str:
    """The summary ``neumat data`` prints: label, counts, ranges, extras, excluded items."""
    lines = []
    if fc.synthetic:
        lines.append("SYNTHETIC data (generated, not measured)")
    lines.append(fc.summary())
    if fc.synthetic and fc.source == "synthetic_dz411":
        lines.append("  design of the DZ411 campaign (method.md); test conditions (T °C, rate 1/s, "
                     "direction): " + ", ".join(f"({t:g}, {r:g}, {d:g})" for t, r, d in DZ411_TEST_CONDITIONS))
    conds = fc.conditions()
    counts = np.bincount(fc.curve, minlength=fc.n_curves)
    n_cond = len(np.unique(conds, axis=0))
    lines.append(f"  {n_cond} conditions; points per curve {counts.min()} … {counts.max()}"
                 + (f"; {fc.n_curves - n_cond} replicate curve(s)" if n_cond < fc.n_curves else ""))
    if not fc.excluded:
        lines.append("  excluded: nothing")
    att = attribution(fc)
    if att:
        lines.append(f"  data: {att}")
    if per_curve:
        lines.append("  curves (name: T °C, rate 1/s[, extras]; points; strain range; max stress MPa):")
        for c in range(fc.n_curves):
            i = fc.curve_points(c)
            lines.append(f"    {fc.curve_names[c]}: {fc.condition_label(c)}; {len(i)}; "
                         f"{fc.strain[i].min():.3g} … {fc.strain[i].max():.3g}; {fc.stress[i].max():.4g}")
    return "\n".join(lines)


def plot_curves(fc: FlowCurves, path: str | Path) -> None:
    """All curves, stress vs strain, one panel per strain rate, colour = temperature,
    dashed = direction 1 (radial) when the data has a direction feature."""
    try:
        import matplotlib  # optional: matplotlib (train extra)
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # optional: matplotlib (train extra)
        from matplotlib.cm import ScalarMappable  # optional: matplotlib (train extra)
        from matplotlib.colors import Normalize  # optional: matplotlib (train extra)
    except ImportError:
        raise NeumatInputError("--plot needs matplotlib (install the 'train' extra)") from None
    conds = fc.conditions()
    rates = np.unique(conds[:, 1])
    ncol = min(3, len(rates))
    nrow = math.ceil(len(rates) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.6 * nrow), squeeze=False,
                             sharex=True, constrained_layout=True)
    norm = Normalize(conds[:, 0].min(), max(conds[:, 0].max(), conds[:, 0].min() + 1))
    cmap = matplotlib.colormaps["plasma"]
    has_dir = "direction" in fc.extras
    for k, rate in enumerate(rates):
        ax = axes.flat[k]
        for c in np.flatnonzero(np.isclose(conds[:, 1], rate)):
            i = fc.curve_points(c)
            ls = "--" if has_dir and fc.extras["direction"][i[0]] >= 0.5 else "-"
            ax.plot(fc.strain[i], fc.stress[i], ls, lw=1.0, color=cmap(norm(conds[c, 0])))
        ax.set_title(f"strain rate {rate:g} 1/s")
        ax.set_xlabel("true strain")
        ax.set_ylabel("true stress (MPa)")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(rates):]:
        ax.set_visible(False)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, label="temperature (°C)")
    title = f"{fc.source or 'flow curves'}: {fc.n_curves} curves"
    if fc.synthetic:
        title = "SYNTHETIC — " + title
    if has_dir:
        title += " (solid: direction 0 axial, dashed: 1 radial)"
    att = attribution(fc)
    fig.suptitle(title + (f"\ndata: {att}" if att else ""), fontsize=10)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=110, format=Path(path).suffix.lstrip(".").lower() or "png")
        write_atomic(path, buf.getvalue())          # temporary file, then rename
    except OSError as exc:
        raise NeumatInputError(f"--plot: cannot write {path}: {exc.strerror}") from None
    except ValueError as exc:                       # a format matplotlib does not write
        raise NeumatInputError(f"--plot {path}: {exc}") from None
    finally:
        plt.close(fig)


def run(args) -> int:
    fc = load_from_args(args)
    try:
        exclude = parse_heldout(args.exclude)
    except NeumatInputError as exc:
        raise NeumatInputError(str(exc).replace("--heldout", "--exclude")) from None
    fc = exclude_curves(fc, exclude)
    print(describe(fc, per_curve=args.list))
    if args.plot:
        plot_curves(fc, args.plot)
        print(f"plot: {args.plot}")
    if args.write_csv:
        try:
            fc.to_csv(args.write_csv, attribution=attribution(fc))
        except OSError as exc:
            raise NeumatInputError(f"--write-csv: cannot write {args.write_csv}: {exc.strerror}") from None
        print(f"long CSV: {args.write_csv} ({len(fc)} rows)")
    return 0
