"""The figures of a run's analysis, in one style that the report shares.

The run analysis draws each for one run (``bkg_recall.png``, ``anchor_scores.png``); the report
draws the same figures with one line or panel per method (reports/errors.py), and its own plots
in the same style (``method_axes``, ``save_figure``). Every figure is saved by ``save_png``: a
PNG of 256 colours, ~2.7x smaller than matplotlib's RGBA (the committed results hold ~100).

Figures are built with ``matplotlib.figure.Figure`` and saved through the Agg renderer, not
pyplot: no global backend is switched and nothing needs a display, so they can be drawn from
inside a running sweep (the Hydra callbacks) as well as from the command line.
"""

import io

import numpy as np
from matplotlib import colormaps, cycler  # matplotlib's re-export of cycler: no dependency of ours
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image  # Pillow: matplotlib's and torchvision's dependency

HISTOGRAM_COLUMNS = 4  # plot_histograms' panels per row: a sweep of 23 methods drew one 10,000 px wide row
LEGEND_INSIDE = 6  # a legend of more entries would cover the curves: it goes under the axes
# one line per method: 10 colours, then the same colours dashed, then dotted, so a sweep of up
# to 30 methods draws no two alike (matplotlib's default cycle repeats after 10)
METHOD_LINES = cycler(linestyle=["-", "--", ":"]) * cycler(color=colormaps["tab10"].colors)


def method_axes(fig: Figure, *args) -> Axes:
    """``fig.add_subplot(*args)`` drawing its lines in METHOD_LINES."""
    ax = fig.add_subplot(*args)
    ax.set_prop_cycle(METHOD_LINES)
    return ax


def save_png(fig: Figure, path, dpi: int = 110, **savefig) -> None:
    """``fig`` saved to ``path`` as a PNG of 256 colours (Pillow's median cut of matplotlib's
    RGBA render; ``savefig``: more of ``Figure.savefig``'s arguments). A plot is a few line
    colours and their antialiased edges: most pixels keep their colour, the edges move by a few
    levels (tests/analysis/test_plots.py), and the file is ~2.7x smaller (the committed plots:
    10.3 MB -> 3.8 MB); a gallery of photographs, 3.5x (coco_person's: 1.1 MB -> 0.34 MB)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, **savefig)
    buf.seek(0)
    with Image.open(buf) as im:
        im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, format="PNG", optimize=True)


def save_figure(fig: Figure, path, legend_axes=(), loc: str = "best", fontsize: float = 7, dpi: int = 110) -> None:
    """Lays out and saves ``fig`` as PNG, with a legend on each of ``legend_axes`` that has
    labelled artists: inside at ``loc`` up to LEGEND_INSIDE entries, else under the axes.

    A sweep's method labels are its overrides, often wider than the figure: the layout is made
    before a legend under the axes is added (so it does not squeeze the axes), and the saved
    area grows to hold the labels ("tight") rather than cutting them at the edge.
    """
    fig.tight_layout()
    for ax in legend_axes:
        n = len(ax.get_legend_handles_labels()[1])
        if 0 < n <= LEGEND_INSIDE:
            ax.legend(fontsize=fontsize, loc=loc)
        elif n:
            ax.legend(fontsize=fontsize, loc="upper left", bbox_to_anchor=(0, -0.14), frameon=False)
    save_png(fig, path, dpi=dpi, bbox_inches="tight")


def plot_bkg_vs_recall(curves: dict[str, dict], path, title: str | None = None) -> None:
    """Background false positives per image against recall: ``label -> bkg_vs_recall dict``."""
    fig = Figure(figsize=(6, 4.2))
    ax = method_axes(fig)
    for label, c in curves.items():
        pts = [(r, b) for r, b in zip(c["recall"], c["bkg_per_image"]) if b is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label or None)
    ax.set(xlabel="recall (IoU .5, all classes pooled)", ylabel="background false positives / image",
           xlim=(0, 1), title=title or "Background false positives paid for recall")
    ax.set_yscale("symlog", linthresh=0.1)  # the low-recall end (hundredths) and the tail (tens) both readable
    save_figure(fig, path, legend_axes=[ax], loc="upper left")


def plot_histograms(panels: dict[str, dict], path, score_thresh: float | None = None) -> None:
    """One panel per label, HISTOGRAM_COLUMNS to a row, all on one scale: the share of
    foreground and of background anchors in each score bin (log scales: the background's mass is near 0 and its
    tail is what matters).
    ``panels``: label -> {"edges", "fg", "bg"} (counts)."""
    n = max(len(panels), 1)
    cols = min(n, HISTOGRAM_COLUMNS)
    rows = -(-n // cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows))
    grid = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False).ravel()  # one scale: comparable
    for ax in grid[n:]:
        ax.remove()
    for i, ((label, h), ax) in enumerate(zip(panels.items(), grid)):
        edges = np.asarray(h["edges"])
        edges[0] = edges[1] / 10  # the [0, 1e-6) bin drawn one decade wide on the log axis
        for key, color in (("bg", "tab:gray"), ("fg", "tab:green")):
            counts = np.asarray(h[key], dtype=np.float64)
            if counts.sum() > 0:
                ax.stairs(counts / counts.sum(), edges, color=color,
                          label=f"{'background' if key == 'bg' else 'foreground'} ({int(counts.sum()):,})")
        if score_thresh:
            ax.axvline(score_thresh, color="tab:red", lw=0.8, ls="--", label=f"score_thresh {score_thresh}")
        ax.set(xscale="log", yscale="log", xlabel="highest foreground score of the anchor" if i + cols >= n else None,
               ylabel="share of anchors" if i % cols == 0 else None, title=label)
        ax.xaxis.set_tick_params(labelbottom=True)  # shared axes hide the labels of all but the last row
        ax.minorticks_off()  # a decade a tick is enough here, and the minor ones were half the drawing time
        ax.legend(fontsize=7, loc="upper center")
    fig.tight_layout()
    save_png(fig, path)
