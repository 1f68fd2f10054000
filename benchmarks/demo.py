"""The computations of ``neumat demo`` that are not a subcommand of their own: the held-out
comparison (Arrhenius vs plain MLP vs seed method vs the default model, laid out like method.md's result table), the
learning curve, the demo mesh, the figures and the report.

Every number in the report is read back from files written by the steps of the same run.
Units: °C, 1/s, MPa, true strain.
"""
from __future__ import annotations

import csv
from pathlib import Path

import meshio
import numpy as np

from constitutive.baselines import Arrhenius, without_zero_strain
from constitutive.flow_curves import FlowCurves
from constitutive.metrics import scores
from fem_bridge.backends import OnnxBackend

# method.md's first result column: high temperature, axial direction, strain below 0.21
HIGH_T_C, LOW_STRAIN_MAX = 950.0, 0.21


def plain_spec(spec: str) -> str:
    """The same widths without residual connections: the plain (BP) network of the comparison."""
    return "-".join(t for t in spec.split("-") if t != "R")


def _high_t_axial(curves: FlowCurves) -> np.ndarray:
    """Curve indices at T >= 950 °C in the axial direction (direction = 0): the regime of
    method.md's Arrhenius fit. Only for data with a direction input, the DZ411 design; other
    data: none (the Arrhenius fit then takes all training curves)."""
    if "direction" not in curves.extra_names:
        return np.zeros(0, dtype=int)
    conds = curves.conditions()
    keep = (conds[:, 0] >= HIGH_T_C) & (conds[:, 2 + curves.extra_names.index("direction")] == 0)
    return np.flatnonzero(keep)


def comparison(train: FlowCurves, test: FlowCurves, network, plain, seed_method, order: int = 9) -> dict:
    """Scores on the held-out curves of: Arrhenius fitted regime-wise on the high-T axial training
    curves (as the method does; all training curves when that regime has fewer than 6),
    the plain MLP, the seed method and the default model (``TrainedModel``s). MAPE over the whole held-out range and, for DZ411-like data,
    over the high-T axial held-out curves at strain < 0.21."""
    te = without_zero_strain(test)
    regime = _high_t_axial(train)
    fit_on = train.subset(regime) if len(regime) >= 6 else train
    arr = Arrhenius(order=order).fit(without_zero_strain(fit_on))
    high = _high_t_axial(te)
    mask = np.zeros(len(te), bool)
    for c in high:
        i = te.curve_points(c)
        mask[i[te.strain[i] < LOW_STRAIN_MAX]] = True
    rows = []
    for name, trained_on, pred in (
            ("Arrhenius", f"{fit_on.n_curves} curves" + (" (high T, axial)" if len(regime) >= 6 else ""),
             arr.predict_curves(te)),
            ("plain MLP (one network, no residual, no transfer)", f"{train.n_curves} curves", plain.predict_curves(te)),
            ("seed method (residual + SMOTE + transfer, --method network)", f"{train.n_curves} curves",
             seed_method.predict_curves(te)),
            ("neumat default (5 plain networks averaged, distilled into one)", f"{train.n_curves} curves",
             network.predict_curves(te))):
        row = {"model": name, "trained_on": trained_on, "whole": scores(pred, te.stress)}
        if mask.any():
            row["high_t_axial_low_strain"] = scores(pred[mask], te.stress[mask])
        rows.append(row)
    return {"heldout": [te.condition_label(c) for c in range(te.n_curves)],
            "high_t_axial_heldout": [te.condition_label(int(c)) for c in high], "rows": rows}


def comparison_markdown(comp: dict) -> str:
    has_low = any("high_t_axial_low_strain" in r for r in comp["rows"])
    head = "| model | trained on |" + (" MAPE %, high T, axial, ε < 0.21 |" if has_low else "") + \
           " MAPE %, whole held-out range | R², held-out |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in comp["rows"]:
        low = f" {r['high_t_axial_low_strain']['mare_pct']:.3f} |" if has_low else ""
        lines.append(f"| {r['model']} | {r['trained_on']} |{low} {r['whole']['mare_pct']:.3f} | "
                     f"{r['whole']['r2']:.4f} |")
    return "\n".join(lines)


def learning_curve(train: FlowCurves, test: FlowCurves, config, sizes: list[int], seed: int,
                   progress: bool = False) -> list[dict]:
    """Test MARE of the network trained on nested random subsets of the training curves (the
    subset of size n contains the one of each smaller size); same configuration and seed."""
    from tqdm.auto import tqdm  # optional: tqdm comes with the train extra
    from constitutive.training import fit  # optional: torch (train extra)
    order = np.random.default_rng(seed).permutation(train.n_curves)
    te = without_zero_strain(test)
    out = []
    for n in tqdm(sizes, desc="learning curve", unit="fit", disable=not progress):
        sub = train.subset(sorted(order[:n].tolist()))
        model = fit(sub, config, seed=seed)
        out.append({"training_curves": n, "heldout": scores(model.predict_curves(te), te.stress)})
    return out


def learning_sizes(n_train: int, quick: bool) -> list[int]:
    base = [6, 12] if quick else [12, 24, 36, 48]
    return sorted({n for n in base if n < n_train} | {n_train})


def demo_mesh(path: Path, temperature: tuple[float, float], rate: tuple[float, float], n: int = 16) -> Path:
    """A 10 × 10 × 15 mm block of hexahedra with point fields to evaluate on: temperature (°C)
    varying linearly in x over the range, strain rate (1/s) log-linearly in y, equivalent plastic
    strain 0…0.5 in z."""
    g = np.linspace(0.0, 1.0, n + 1)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    pts = np.column_stack([10 * x.ravel(), 10 * y.ravel(), 15 * z.ravel()])
    idx = np.arange((n + 1) ** 3).reshape(n + 1, n + 1, n + 1)
    c = idx[:-1, :-1, :-1].ravel()
    s1, s2 = (n + 1) ** 2, n + 1
    hexes = np.column_stack([c, c + s1, c + s1 + s2, c + s2, c + 1, c + s1 + 1, c + s1 + s2 + 1, c + s2 + 1])
    fields = {"temperature": temperature[0] + (temperature[1] - temperature[0]) * x.ravel(),
              "strain_rate": np.exp(np.log(rate[0]) + (np.log(rate[1]) - np.log(rate[0])) * y.ravel()),
              "plastic_strain": 0.5 * z.ravel()}
    path.parent.mkdir(parents=True, exist_ok=True)
    meshio.write(path, meshio.Mesh(pts, [("hexahedron", hexes)], point_data=fields))
    return path


def mesh_summary(path: Path) -> dict:
    m = meshio.read(path)
    s = np.asarray(m.point_data["flow_stress_MPa"])
    return {"points": int(len(m.points)), "cells": int(sum(len(b.data) for b in m.cells)),
            "flow_stress_min_mpa": float(np.nanmin(s)), "flow_stress_max_mpa": float(np.nanmax(s)),
            "out_of_box_points": int(np.count_nonzero(m.point_data["out_of_box"]))
            if "out_of_box" in m.point_data else None, "fields": sorted(m.point_data)}


# ---- figures ---------------------------------------------------------------------------------
def _plt():
    import matplotlib  # optional: matplotlib (train extra)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional: matplotlib (train extra)
    return plt


def plot_flow_curves(train: FlowCurves, test: FlowCurves, model, path: Path) -> Path:
    """One panel per strain rate: measured points and the ``model``'s curves; held-out curves in
    red, thick, labelled."""
    plt = _plt()
    tr, te = without_zero_strain(train), without_zero_strain(test)
    rates = sorted(set(np.round(tr.conditions()[:, 1], 12)) | set(np.round(te.conditions()[:, 1], 12)))
    ncol = min(3, len(rates))
    nrow = int(np.ceil(len(rates) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(5 * ncol, 4 * nrow), squeeze=False)
    tmin, tmax = tr.conditions()[:, 0].min(), tr.conditions()[:, 0].max()
    cmap = plt.get_cmap("viridis")
    for ax, rate in zip(axes.ravel(), rates):
        for curves, held in ((tr, False), (te, True)):
            for c in range(curves.n_curves):
                cond = curves.conditions()[c]
                if not np.isclose(cond[1], rate):
                    continue
                i = curves.curve_points(c)
                i = i[np.argsort(curves.strain[i])]
                colour = "red" if held else cmap((cond[0] - tmin) / max(tmax - tmin, 1e-9))
                dashed = len(cond) > 2 and cond[2] != 0
                ax.plot(curves.strain[i][::3], curves.stress[i][::3], "o" if held else ".", ms=3 if held else 1.5,
                        color=colour, alpha=0.9 if held else 0.5)
                ax.plot(curves.strain[i], model.predict(curves.features()[i]), "--" if dashed else "-",
                        color=colour, lw=2.2 if held else 0.8,
                        label=("held out: " + curves.condition_label(c)) if held else None)
        ax.set_title(f"{rate:g} 1/s", fontsize=9)
        ax.set_xlabel("true strain")
        ax.set_ylabel("true stress (MPa)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    for ax in axes.ravel()[len(rates):]:
        ax.axis("off")
    tag = " (SYNTHETIC data)" if train.synthetic else ""
    fig.suptitle(f"{train.source}{tag}: measured (dots) vs network (lines); colour = temperature "
                 f"{tmin:g}–{tmax:g} °C, red = held out" + (", dashed = direction ≠ 0" if train.extras else ""),
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_learning_curve(rows: list[dict], path: Path, synthetic: bool) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    n = [r["training_curves"] for r in rows]
    ax.plot(n, [r["heldout"]["mare_pct"] for r in rows], "o-")
    ax.set_xlabel("training curves")
    ax.set_ylabel("held-out MAPE (%)")
    ax.set_title("learning curve" + (" (SYNTHETIC data)" if synthetic else ""), fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_compression(out: Path, network_onnx: Path, temperature: float, rate: float, extras: list[float],
                     path: Path) -> Path | None:
    """True stress vs true strain of the FE host and CalculiX (when present) with the network's
    flow curve σ(ε, ε̇, T) at the test condition."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    drawn = False
    for label, f, xs, ys in (("scikit-fem host, frictionless cylinder", out / "simulate" / "force_displacement.csv",
                              "true_strain", "true_stress_MPa"),
                             ("CalculiX + generated UMAT", out / "ccx" / "results.csv", "strain", "stress_MPa")):
        if f.is_file():
            rows = list(csv.DictReader(f.open()))
            ax.plot([float(r[xs]) for r in rows], [float(r[ys]) for r in rows], "o", ms=3, label=label)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    b = OnnxBackend(network_onnx)
    e = np.linspace(0.0, 0.5, 101)
    x = np.column_stack([e, np.full_like(e, rate), np.full_like(e, temperature),
                         *[np.full_like(e, v) for v in extras]])
    ax.plot(e, b.evaluate(x)[0], "k-", lw=1, label="network flow curve σ(ε, ε̇, T)")
    ax.set_xlabel("true strain")
    ax.set_ylabel("true stress (MPa)")
    ax.set_title(f"hot compression at {temperature:g} °C, {rate:g} 1/s", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
