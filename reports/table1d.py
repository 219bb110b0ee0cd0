"""The report's Table 1d section: online hard example mining against the focal loss, the
focal-loss paper's Table 1d beside ours (issue 15, ``make followups ARGS="--study table1d"``).

A group (method) of the sweep is placed at a row of the table by its loss config: an OHEM
row by ``losses.ohem.OHEMLoss`` on the softmax base (the paper's OHEM) with the row's NMS
threshold, batch per image and ratio (none, or 3 background anchors per foreground one);
the FL row by a ``losses.focal.FocalLoss`` at gamma 2. Groups at no row (the other losses,
OHEM on the sigmoid base) follow the table, so the comparison shows what else the sweep ran.
Each row: mean ± std [95% t interval] of AP (%) over the finished seeds, the runs not averaged
counted; the paired difference to the FL row over the seeds both have, with what its interval
supports (``reports.stats.verdict``); the paper's order against ours by Spearman's rho.

    md_lines = table1d_section(groups_of(runs))   # [] unless >= MIN_ROWS rows of the table are in the sweep
"""

import math

from analysis.markdown import markdown_table
from reports.runs import Run, ap_by_seed, config_loss_name, on_tuning_split
from reports.stats import cell_stats, n_cell, ours_cell, paired_difference, spearman, verdict

# (label, nms threshold, batch per image, background per foreground) -> the paper's AP (%):
# Lin et al. 2017, Table 1d (ResNet-101-FPN, COCO minival). FL's row has no OHEM setting.
TABLE_1D = {
    ("OHEM", 0.7, 128, None): 31.1, ("OHEM", 0.7, 256, None): 31.8, ("OHEM", 0.7, 512, None): 30.6,
    ("OHEM", 0.5, 128, None): 32.8, ("OHEM", 0.5, 256, None): 31.0, ("OHEM", 0.5, 512, None): 27.6,
    ("OHEM 1:3", 0.5, 128, 3.0): 31.1, ("OHEM 1:3", 0.5, 256, 3.0): 28.3, ("OHEM 1:3", 0.5, 512, 3.0): 24.0,
    ("FL", None, None, None): 36.0,
}
FL_ROW = ("FL", None, None, None)
MIN_ROWS = 3
# the setup of the paper's Table 1d (Table 1a/1b: the same with ResNet-50, reports/paper.py)
PAPER_1D_SETUP = ("COCO (trainval35k, evaluated on minival), ResNet-101-FPN at 600 px, ~100k anchors per image, "
                  "90k iterations")


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return isinstance(a, (int, float)) and math.isclose(float(a), float(b), abs_tol=1e-6)


def row_of(config: dict | None) -> tuple | None:
    """The Table 1d row a run's config is at, or None."""
    name, loss = config_loss_name(config), (config or {}).get("loss")
    if name == "focal":
        return FL_ROW if _same(loss.get("gamma"), 2.0) else None
    if name != "ohem" or loss.get("base") != "softmax":
        return None
    for row in TABLE_1D:
        if row != FL_ROW and all(_same(loss.get(k), v) for k, v in
                                 zip(("nms_thresh", "batch_per_image", "neg_per_pos"), row[1:])):
            return row
    return None


def _tuning(runs: list[Run]) -> bool:
    """Runs evaluated on the tuning split (a study's lr tuning): not rows of the comparison."""
    return any(map(on_tuning_split, runs))


def _group_row(runs: list[Run]) -> tuple | None:
    found = {row_of(r.config) for r in runs if r.config}
    return found.pop() if len(found) == 1 else None


def _cells(label: str, runs: list[Run], fl: list[Run] | None) -> list[str]:
    stats = cell_stats(runs)
    if fl is None or runs is fl:
        diff = "–"
    else:
        d = paired_difference(ap_by_seed(runs), ap_by_seed(fl))
        diff = verdict(label, "FL", d).split(" = ", 1)[1]
    return [ours_cell(stats), n_cell(stats), diff]


def table1d_section(groups: dict[str, list[Run]]) -> list[str]:
    """``## Against the paper (Table 1d)`` as markdown lines; [] unless at least MIN_ROWS rows
    of the table have a group in the sweep."""
    at: dict[tuple, str] = {}
    also: dict[tuple, list[str]] = {}
    groups = {label: runs for label, runs in groups.items() if not _tuning(runs)}
    for label, runs in groups.items():
        row = _group_row(runs)
        if row is None:
            continue
        if row in at:
            also.setdefault(row, []).append(label)
        else:
            at[row] = label
    if len(at) < MIN_ROWS:
        return []
    fl = groups[at[FL_ROW]] if FL_ROW in at else None
    header = ["method", "nms", "batch / image", "paper AP", "ours: AP (%) mean ± std [95% CI]", "n",
              "ours − FL: paired AP difference [95% CI]"]
    rows, paper, ours = [], [], []
    for row, ap in TABLE_1D.items():
        name, nms, batch, _ = row
        label = at.get(row)
        cells = ["–", "not in this sweep", "–"] if label is None else _cells(f"{name}", groups[label], fl)
        rows.append([name, "–" if nms is None else f"{nms:g}", "–" if batch is None else batch, f"{ap:.1f}", *cells])
        mean = cell_stats(groups[label])["mean"] if label is not None else None
        if mean is not None:
            paper.append(ap)
            ours.append(mean)
    for label, runs in groups.items():
        if label not in at.values() and runs and runs[0].config:
            rows.append([f"`{label}`", "", "", "not in the paper", *_cells(label, runs, fl)])
    rho = spearman(paper, ours)
    md = ["## Against the paper (Table 1d)", "",
          "Lin et al. 2017 (Focal Loss), Table 1d: online hard example mining (OHEM: the highest-loss anchors "
          "per image after NMS, on softmax cross-entropy; 1:3: at most one foreground anchor per three "
          "background ones) against the focal loss (FL). Paper AP beside ours; ours over the finished seeds (n), "
          "diverged and unfinished runs counted, not averaged; the last column is each method minus FL over the "
          "seeds both have, and says only what its interval supports.", ""]
    md += markdown_table(header, rows)
    md += ["", f"Spearman rank correlation of the paper's order and ours over the {len(paper)} rows both have: "
           + ("n/a" if rho is None else f"rho = {rho:+.2f}"), ""]
    md += [f"- note: {TABLE_1D[r]:.1f} ({r[0]}): also {', '.join(f'`{g}`' for g in gs)} (one group per row is "
           f"shown: `{at[r]}`)" for r, gs in also.items()]
    md += [f"Paper: {PAPER_1D_SETUP}; ours: this sweep's runs. The AP values are not comparable across the two "
           "setups; the order of the rows is what is compared.", ""]
    return md
