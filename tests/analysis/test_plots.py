"""analysis/plots.py: the figures' shared style (legend placement, one line style per method)
and format (PNGs of 256 colours)."""

import io

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from analysis.plots import LEGEND_INSIDE, method_axes, save_figure, save_png

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("entries, under", [(3, False), (7, True)])
def test_a_legend_of_many_entries_goes_under_the_axes(tmp_path, entries, under):
    assert (entries > LEGEND_INSIDE) == under
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)  # a renderer to measure the legend with
    ax = fig.add_subplot()
    for i in range(entries):
        ax.plot([0, 1], [i, i + 1], label=f"method {i}")
    save_figure(fig, tmp_path / "p.png", legend_axes=[ax])
    renderer = fig.canvas.get_renderer()
    legend, axes = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert (legend.y1 < axes.y0) == under  # under: wholly below the axes (and the x labels)
    assert (tmp_path / "p.png").read_bytes().startswith(PNG)


def test_a_sweep_of_many_methods_draws_no_two_lines_alike():
    ax = method_axes(Figure())
    lines = [ax.plot([0, 1], [i, i])[0] for i in range(30)]
    styles = {(line.get_color(), line.get_linestyle()) for line in lines}
    assert len(styles) == 30


def test_a_figure_is_saved_in_256_colours_that_keep_its_drawing(tmp_path):
    fig = Figure(figsize=(6, 4))
    ax = method_axes(fig)
    x = np.linspace(0, 1, 200)
    for i in range(12):  # more colours than tab10, dashed ones too: every line antialiased
        ax.plot(x, np.sin(6 * x + i) + i / 4, label=f"method {i}")
    ax.fill_between(x, 0, x, alpha=0.3)
    ax.legend(fontsize=6)
    rgba = io.BytesIO()
    fig.savefig(rgba, format="png", dpi=110)
    save_png(fig, tmp_path / "p.png")
    with Image.open(rgba) as a, Image.open(tmp_path / "p.png") as p:
        assert a.mode == "RGBA" and p.mode == "P" and a.size == p.size
        before = np.asarray(a.convert("RGB"), dtype=np.int16)
        after = np.asarray(p.convert("RGB"), dtype=np.int16)
    error = np.abs(after - before).max(axis=2)
    assert (before != 255).any(axis=2).mean() > 0.05  # the drawing covers the figure, not a blank page
    # 4,300 colours in: most pixels keep theirs, the antialiased edges move (0.31 levels of 255 on
    # average, 98.8% within 8, 99.8% within 16, measured with Pillow 13)
    assert error.mean() < 1.0 and (error <= 8).mean() > 0.98 and (error <= 16).mean() > 0.995
    assert (tmp_path / "p.png").stat().st_size < 0.6 * len(rgba.getvalue())
