"""The imbalance sweep's section of the report: AP against the *measured* imbalance, per loss.

``experiment=imbalance_sweep`` runs every loss on datasets of increasing foreground:background
anchor imbalance. Here each (loss, dataset) pair becomes one point: the mean of its runs'
measured background anchors per foreground anchor (``bg_per_fg`` over each run's training log)
and the mean AP (%) of its finished seeds with a 95% t interval (``reports.stats.summary``).
Levels (datasets) are ordered by measured imbalance; between adjacent levels the losses' order
by mean AP is compared, and a change of order is called a *resolved* flip only where the paired
differences (same seeds, ``reports.stats.paired_difference``) on both sides have 95% intervals
that exclude 0 with opposite signs.

    points = imbalance_points(runs)                    # {} unless the runs span >= 2 datasets
    md_lines = imbalance_section(runs, out / "plots")  # [] likewise; writes ap_vs_imbalance.png
"""

import itertools
import math
from pathlib import Path

from matplotlib.figure import Figure

from analysis.markdown import markdown_table
from analysis.plots import save_figure
from reports.runs import Run, bg_per_fg, loss_name, on_tuning_split
from reports.stats import (
    difference_text,
    direction,
    order_text,
    paired_difference,
    summary,
    verdict,
)

PLOT = "ap_vs_imbalance.png"
_DODGE = 0.03  # relative x offset between methods in the plot, so their error bars do not overlap


def dataset_name(run: Run) -> str | None:
    name = ((run.config or {}).get("dataset") or {}).get("name")
    return str(name) if name is not None else None


def _mean(values) -> float | None:
    xs = [v for v in values if v is not None and math.isfinite(v)]
    return math.fsum(xs) / len(xs) if xs else None


def imbalance_points(runs: list[Run]) -> dict[str, list[dict]]:
    """Per loss (in order of first appearance), one point per dataset, sorted by measured ratio.

    A point: {dataset, ratio, runs, n, mean, std, half_width, lo, hi, diverged, not_counted,
    seeds, ap, notes}. ``ratio``: mean of the measured background anchors per foreground anchor
    of the pair's runs that logged any (every status: the anchor assignment does not depend on
    the model, so a diverged run measured it as well as a finished one); None if none did.
    AP in percent, over the finished runs with an eval.json: n, mean, std, half_width, lo, hi
    as ``reports.stats.summary`` (std and interval None for n < 2); ``seeds`` those runs' seeds,
    ``ap`` {seed: AP} for pairing (runs without a seed are in the mean but not paired).
    ``diverged`` counts diverged runs (never in the means), ``not_counted`` the other runs
    without an AP (running, failed, finished without eval.json ...).

    Runs without a dataset name or loss ``_target_`` in their config are skipped, and so are
    runs evaluated on the tuning split (``eval_split: tune``, a study's lr tuning): their AP is
    of other images and their seeds would pair with the compared runs'. Returns {}
    unless the remaining runs span at least 2 datasets (not an imbalance sweep).
    """
    keyed = [(loss_name(r), dataset_name(r), r) for r in runs]
    keyed = [(loss, ds, r) for loss, ds, r in keyed
             if loss is not None and ds is not None and not on_tuning_split(r)]
    if len({ds for _, ds, _ in keyed}) < 2:
        return {}
    cells: dict[str, dict[str, list[Run]]] = {}
    for loss, ds, r in keyed:
        cells.setdefault(loss, {}).setdefault(ds, []).append(r)
    points: dict[str, list[dict]] = {}
    for loss, by_ds in cells.items():
        rows = []
        for ds, rs in by_ds.items():
            counted = [r for r in rs if r.status == "finished" and isinstance((r.eval or {}).get("AP"), (int, float))]
            aps = [100.0 * r.eval["AP"] for r in counted]
            stats = summary(aps)
            del stats["missing"]
            ap, notes = {}, []
            for r, v in zip(counted, aps):
                if r.seed is None:
                    notes.append(f"{r.name}: no seed, not paired")
                elif r.seed in ap:
                    notes.append(f"{r.name}: seed {r.seed} twice, the first one is paired")
                else:
                    ap[r.seed] = v
            rows.append({"dataset": ds, "ratio": _mean(bg_per_fg(r.metrics) for r in rs), "runs": len(rs),
                         **stats, "diverged": sum(r.status == "diverged" for r in rs),
                         "not_counted": sum(r not in counted and r.status != "diverged" for r in rs),
                         "seeds": [r.seed for r in counted], "ap": ap, "notes": notes})
        points[loss] = sorted(rows, key=lambda p: (p["ratio"] is None, p["ratio"] or 0.0, p["dataset"]))
    return points


def levels(points: dict[str, list[dict]]) -> list[tuple[str, float | None]]:
    """(dataset, measured ratio) per level, by increasing ratio: a level's ratio is the mean of
    its points' ratios over the losses (they share the anchors, so they agree up to the
    images each run saw); levels without any measurement come last with None."""
    ratios: dict[str, list] = {}
    for pts in points.values():
        for p in pts:
            ratios.setdefault(p["dataset"], []).append(p["ratio"])
    out = [(ds, _mean(rs)) for ds, rs in ratios.items()]
    return sorted(out, key=lambda x: (x[1] is None, x[1] or 0.0, x[0]))


def ratio_label(ratio: float | None) -> str:
    return "1:?" if ratio is None else f"1:{ratio:.0f}"


def _at(points: dict[str, list[dict]], dataset: str) -> dict[str, dict]:
    """loss -> its point at ``dataset`` (losses without one are absent)."""
    return {loss: p for loss, pts in points.items() for p in pts if p["dataset"] == dataset}


def _order(at: dict[str, dict]) -> list[str]:
    """The losses with a mean AP at a level, best first (ties keep the losses' order)."""
    with_ap = [loss for loss in at if at[loss]["mean"] is not None]
    return sorted(with_ap, key=lambda loss: -at[loss]["mean"])


def _order_text(at: dict[str, dict], order: list[str]) -> str:
    if not order:
        return "(no AP)"
    return order_text(order, {loss: at[loss]["mean"] for loss in order},
                      {loss: f"{loss} ({at[loss]['mean']:.1f})" for loss in order})


def pair_differences(points: dict[str, list[dict]]) -> list[dict]:
    """Every pair of losses (first - second, in the losses' order) at every level where both
    have a point: {a, b, dataset, ratio, diff (``paired_difference`` of AP %), sign (+1/-1:
    resolved, 0: not), verdict}."""
    rows = []
    for ds, ratio in levels(points):
        at = _at(points, ds)
        for a, b in itertools.combinations(points, 2):
            if a in at and b in at:
                diff = paired_difference(at[a]["ap"], at[b]["ap"])
                rows.append({"a": a, "b": b, "dataset": ds, "ratio": ratio, "diff": diff, "sign": direction(diff),
                             "verdict": verdict(a, b, diff)})
    return rows


def order_flips(points: dict[str, list[dict]]) -> list[str]:
    """One sentence per pair of adjacent levels (by measured ratio): whether the losses' order by
    mean AP stays or changes, and for each pair of losses whose order swapped, whether the flip is
    resolved (the paired differences' 95% intervals on both sides exclude 0, with opposite
    signs) or not at this number of seeds. [] with fewer than 2 levels."""
    lv = [(ds, r) for ds, r in levels(points) if r is not None]
    sentences = []
    for (ds1, r1), (ds2, r2) in zip(lv, lv[1:]):
        at1, at2 = _at(points, ds1), _at(points, ds2)
        o1, o2 = _order(at1), _order(at2)
        both = [loss for loss in points if loss in o1 and loss in o2]
        swapped = [(a, b) for a, b in itertools.combinations(both, 2)
                   if (at1[a]["mean"] - at1[b]["mean"]) * (at2[a]["mean"] - at2[b]["mean"]) < 0]
        l1, l2 = ratio_label(r1), ratio_label(r2)
        head = f"between {l1} (`{ds1}`) and {l2} (`{ds2}`)"
        missing = sorted(set(o1) ^ set(o2))
        tail = f" ({', '.join(missing)} without an AP at one of them)" if missing else ""
        if not swapped:
            stays = "the order stays" if o1 == o2 else "no two losses swap"
            sentences.append(f"{head} {stays}: {_order_text(at1, o1)}, then {_order_text(at2, o2)}{tail}.")
            continue
        parts = []
        for a, b in swapped:
            d1 = paired_difference(at1[a]["ap"], at1[b]["ap"])
            d2 = paired_difference(at2[a]["ap"], at2[b]["ap"])
            s1, s2 = direction(d1), direction(d2)
            detail = f"at {l1}: {verdict(a, b, d1)}; at {l2}: {verdict(a, b, d2)}"
            if s1 * s2 < 0:
                parts.append(f"{a} vs {b}: resolved flip ({detail})")
            else:
                parts.append(f"{a} vs {b}: the order changes but the flip is not resolved at this number of "
                             f"seeds ({detail})")
        sentences.append(f"{head} the order changes from {_order_text(at1, o1)} to {_order_text(at2, o2)}{tail}: "
                         + "; ".join(parts) + ".")
    return sentences


def plot_ap_vs_imbalance(points: dict[str, list[dict]], path) -> None:
    """AP (%) against measured background anchors per foreground anchor (log x), one line per
    loss: mean over seeds with 95% t interval error bars (none for n = 1). Methods are offset
    by a few percent along x so their bars stay apart; ticks sit at the levels' ratios."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    k = len(points)
    for i, (loss, pts) in enumerate(points.items()):
        shown = [p for p in pts if p["ratio"] is not None and p["mean"] is not None]
        if not shown:
            continue
        dodge = 1.0 + _DODGE * (i - (k - 1) / 2)
        ax.errorbar([p["ratio"] * dodge for p in shown], [p["mean"] for p in shown],
                    yerr=[p["half_width"] or 0.0 for p in shown], marker="o", capsize=4, label=loss)
    ticks = [(ds, r) for ds, r in levels(points) if r is not None]
    ax.set_xscale("log")
    if ticks:
        ax.set_xticks([r for _, r in ticks], [ratio_label(r) for _, r in ticks])
        ax.set_xticks([], minor=True)
        ax.set_xlim(min(r for _, r in ticks) / 1.3, max(r for _, r in ticks) * 1.3)
    ax.set(xlabel="measured foreground : background anchors (log scale)", ylabel="COCO AP (%)",
           title="AP against measured imbalance (mean, 95% CI over seeds)")
    save_figure(fig, path, legend_axes=[ax], fontsize=8)


def _cell(p: dict | None) -> str:
    if p is None:
        return "–"
    if p["mean"] is None:
        text = "–, n=0"
    elif p["lo"] is None:
        text = f"{p['mean']:.1f}, n={p['n']}"
    else:
        text = f"{p['mean']:.1f} [{p['lo']:.1f}, {p['hi']:.1f}], n={p['n']}"
    return text + (f", **{p['diverged']} diverged**" if p["diverged"] else "")


def _diff_cell(row: dict | None) -> str:
    if row is None:
        return "–"
    text = difference_text(row["diff"])
    return f"**{text}**" if row["sign"] else text


def imbalance_section(runs: list[Run], plots_dir) -> list[str]:
    """``## AP against measured imbalance`` as markdown lines, and ``plots_dir/ap_vs_imbalance.png``
    (linked as ``plots/ap_vs_imbalance.png``: the report sits beside plots/). [] when the runs
    span fewer than 2 datasets (not an imbalance sweep); then no plot is written."""
    points = imbalance_points(runs)
    if not points:
        return []
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    plot_ap_vs_imbalance(points, plots_dir / PLOT)
    lv = levels(points)
    md = ["## AP against measured imbalance", "",
          "Each level is a dataset; its imbalance is **measured**: background anchors per foreground anchor "
          "over the runs' training logs (mean over the level's runs). COCO AP (%) per loss: mean [95% t "
          "interval] over its finished seeds (n); diverged runs are excluded from the means and counted.", ""]
    md += markdown_table(["level", "dataset", "measured fg:bg anchors", "runs"],
                 [[i + 1, f"`{ds}`", ratio_label(r), sum(p["runs"] for p in _at(points, ds).values())]
                  for i, (ds, r) in enumerate(lv)]) + [""]
    md += markdown_table(["loss", *(f"{ratio_label(r)} (`{ds}`)" for ds, r in lv)],
                 [[loss, *(_cell(_at(points, ds).get(loss)) for ds, _ in lv)] for loss in points]) + [""]
    md += ["![AP against imbalance](plots/ap_vs_imbalance.png)", ""]
    diffs = {(d["a"], d["b"], d["dataset"]): d for d in pair_differences(points)}
    if len(points) >= 2:
        md += ["Paired differences a − b (AP points, same seeds, mean [95% t interval], n paired seeds); "
               "**bold**: the interval excludes 0 (resolved).", ""]
        md += markdown_table(["a − b", *(ratio_label(r) for _, r in lv)],
                     [[f"{a} − {b}", *(_diff_cell(diffs.get((a, b, ds))) for ds, _ in lv)]
                      for a, b in itertools.combinations(points, 2)]) + [""]
    md += ["### Where the order flips", ""]
    flips = order_flips(points)
    md += [f"- {s[0].upper()}{s[1:]}" for s in flips] or ["- Fewer than 2 levels with a measured imbalance."]
    md += ["", "A flip is resolved only where the paired 95% intervals on both sides exclude 0 with opposite "
           "signs; otherwise the means changed order but more seeds are needed to tell.", ""]
    notes = [f"{loss} at `{p['dataset']}`: {n}" for loss, pts in points.items() for p in pts for n in p["notes"]]
    notes += [f"{loss} at `{p['dataset']}`: {p['not_counted']} run(s) without an AP (not finished or no eval.json)"
              for loss, pts in points.items() for p in pts if p["not_counted"]]
    if notes:
        md += [f"- note: {n}" for n in notes] + [""]
    return md
