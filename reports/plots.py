"""The report's plots, as PNG files.

Figures are built with ``matplotlib.figure.Figure`` and saved through the Agg renderer, not
pyplot: no global backend is switched and nothing needs a display, so the report can be
written from inside a running sweep (the Hydra callback) as well as from the command line. Their
style (one line style per method, the legend's place) is analysis/plots.py's.
"""

import math
import statistics

import numpy as np
from matplotlib.figure import Figure

from analysis.plots import method_axes, save_figure
from reports.cdf import cumulative_loss


def plot_ap(labels: list[str], ap_per_run: list[list[float]], path) -> None:
    """AP per method: mean with sample-std error bars, and each seed as a dot.

    ``ap_per_run[i]``: the AP (percent) of method i's runs counted in the means; a method
    without any (all diverged, say) gets an empty row, labelled so.
    """
    n = len(labels)
    label_width = 0.055 * max((len(label) + 6 for label in labels), default=0)  # inches at 8 pt
    fig = Figure(figsize=(max(7.0, 4.5 + label_width), 1.2 + 0.45 * n))
    ax = fig.add_subplot()
    y = np.arange(n)
    means = [statistics.fmean(a) if a else math.nan for a in ap_per_run]
    errs = [statistics.stdev(a) if len(a) > 1 else 0.0 for a in ap_per_run]
    ax.barh(y, means, xerr=errs, color="#8fb3d9", capsize=4)
    for i, a in enumerate(ap_per_run):
        ax.plot(a, [i] * len(a), "o", color="#1f3d63", ms=4)
        if not a:
            ax.text(0, i, " no AP (see the runs table)", va="center", fontsize=8)
    ax.set_yticks(y, [f"{label} (n={len(a)})" for label, a in zip(labels, ap_per_run)], fontsize=8)
    ax.invert_yaxis()  # first method on top, as in the tables
    ax.set_xlabel("COCO AP (%), mean ± std over seeds; dots: seeds")
    ax.set_xlim(left=0)
    save_figure(fig, path)


def plot_curves(curves: dict[str, tuple[list, list, list]], path) -> None:
    """Training curves per method: ``label -> (iters, mean cls loss, mean bg share)``."""
    fig = Figure(figsize=(11, 4))
    ax_loss, ax_bg = method_axes(fig, 1, 2, 1), method_axes(fig, 1, 2, 2)
    for label, (iters, loss, bg) in curves.items():
        marker = "o" if len(iters) < 3 else None  # a line of one point would not show
        ax_loss.plot(iters, loss, label=label, marker=marker)
        ax_bg.plot(iters, bg, label=label, marker=marker)
    if all(v > 0 for _, loss, _ in curves.values() for v in loss if v is not None):
        ax_loss.set_yscale("log")  # the variants' losses differ by orders of magnitude
    ax_loss.set(xlabel="iteration", ylabel="classification loss", title="Classification loss (mean over seeds)")
    ax_bg.set(xlabel="iteration", ylabel="share of the classification loss", ylim=(0, 1),
              title="From background anchors (mean over seeds)")
    save_figure(fig, path, legend_axes=[ax_loss])


def plot_ap_curves(curves: dict[str, dict[int, float]], path) -> None:
    """AP against iteration per method: ``label -> {iteration: AP (%), mean over seeds}``."""
    fig = Figure(figsize=(7, 4))
    ax = method_axes(fig)
    for label, curve in curves.items():
        ax.plot(list(curve), list(curve.values()), label=label, marker="o" if len(curve) < 3 else ".")
    ax.set(xlabel="iteration", ylabel="COCO AP (%)", title="AP against iteration (mean over seeds)")
    save_figure(fig, path, legend_axes=[ax], fontsize=8)


def plot_loss_cdf(samples: dict[str, tuple], path, max_points: int = 2000) -> None:
    """Figure 4: ``label -> (fg losses, bg losses)`` as cumulative normalized loss curves."""
    fig = Figure(figsize=(11, 4))
    axes = method_axes(fig, 1, 2, 1), method_axes(fig, 1, 2, 2)
    for label, pair in samples.items():
        for ax, losses in zip(axes, pair):
            x, y = cumulative_loss(losses, max_points)
            if len(x):
                ax.plot(x.numpy(), y.numpy(), label=f"{label} ({len(losses)} anchors)")
    for ax, name in zip(axes, ("foreground", "background")):
        ax.set(xlabel=f"fraction of {name} anchors (sorted by loss)", ylabel="cumulative normalized loss",
               xlim=(0, 1), ylim=(0, 1), title=f"Loss over {name} anchors (validation)")
        if not ax.lines:
            ax.text(0.5, 0.5, "no checkpoint to plot (see the report)", ha="center", fontsize=8)
    save_figure(fig, path, legend_axes=axes)


def focal_loss_of_pt(p_t: np.ndarray, gamma: float) -> np.ndarray:
    """FL(p_t) = -(1 - p_t)^gamma log(p_t), the focal loss of one binary target."""
    return -((1.0 - p_t) ** gamma) * np.log(p_t)


def plot_focal_loss(path, gammas=(0, 0.5, 1, 2, 5)) -> None:
    """Figure 1: focal loss against the probability of the ground-truth class."""
    p_t = np.linspace(0.005, 1.0, 400)
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    for g in gammas:
        ax.plot(p_t, focal_loss_of_pt(p_t, g), label=f"γ = {g}" + (" (CE)" if g == 0 else ""))
    ax.axvspan(0.6, 1.0, color="0.92")
    ax.text(0.8, 4.6, "well-classified\nexamples", ha="center", va="top", fontsize=8)
    ax.set(xlabel="probability of ground truth class $p_t$", ylabel="loss", xlim=(0, 1), ylim=(0, 5),
           title="Focal loss $-(1 - p_t)^\\gamma \\log p_t$")
    save_figure(fig, path, legend_axes=[ax], fontsize=10)
