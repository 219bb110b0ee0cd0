"""analysis/plots.py: the figures' shared style (legend placement, one line style per method)."""

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.plots import LEGEND_INSIDE, method_axes, save_figure

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
